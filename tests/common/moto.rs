//! A real AWS API emulator for the aws-ecs pack's tests: `moto_server` from
//! the virtualenv `scripts/setup-system` makes (`target/moto-venv`), started
//! on a free loopback port per test and killed when the test ends; and the
//! AWS side of the fixture, made and inspected through the AWS API
//! (`tests/apps/aws_fixture.py`, boto3), never through the pack.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::Sandbox;

fn venv() -> PathBuf {
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv");
    assert!(
        venv.join("bin/moto_server").exists(),
        "moto is not installed in {}: run scripts/setup-system (scripts/test does)",
        venv.display()
    );
    venv
}

/// One moto server; killed on drop.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

impl Moto {
    pub fn start() -> Moto {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new(venv().join("bin/moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not listen on {port} within 60 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        moto
    }

    fn fixture(&self, args: &[&str]) -> Value {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/apps/aws_fixture.py");
        let out = Command::new(venv().join("bin/python"))
            .arg(script)
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "aws_fixture.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A VPC, subnets, a security group, an ALB and an ECS cluster named `name`.
    pub fn create(&self, name: &str) -> Fixture {
        let v = self.fixture(&["create", &self.endpoint, name]);
        let field = |k: &str| v[k].as_str().unwrap().to_string();
        Fixture {
            endpoint: self.endpoint.clone(),
            cluster: field("cluster"),
            load_balancer: field("load_balancer"),
            vpc: field("vpc"),
            subnets: field("subnets"),
            security_groups: field("security_groups"),
        }
    }

    /// What exists in AWS for `fixture`, as `aws_fixture.py inspect` prints it.
    pub fn inspect(&self, fixture: &Fixture) -> Value {
        self.fixture(&["inspect", &self.endpoint, &fixture.cluster, &fixture.load_balancer])
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The AWS resources an operator points the pack at.
pub struct Fixture {
    pub endpoint: String,
    pub cluster: String,
    pub load_balancer: String,
    pub vpc: String,
    pub subnets: String,
    pub security_groups: String,
}

impl Fixture {
    /// The pack settings for this fixture, as `--setting` arguments.
    pub fn settings(&self) -> Vec<String> {
        [
            ("region", "us-east-1"),
            ("endpoint", self.endpoint.as_str()),
            ("cluster", self.cluster.as_str()),
            ("load-balancer", self.load_balancer.as_str()),
            ("vpc", self.vpc.as_str()),
            ("subnets", self.subnets.as_str()),
            ("security-groups", self.security_groups.as_str()),
            ("poll-ms", "100"),
        ]
        .iter()
        .flat_map(|(k, v)| ["--setting".to_string(), format!("{k}={v}")])
        .collect()
    }

    /// The grants the pack needs: its endpoint and its two secrets.
    pub fn grants(&self) -> Vec<String> {
        vec![
            "--allow-http".into(),
            self.endpoint.clone(),
            "--allow-secret".into(),
            "aws-access-key-id".into(),
            "--allow-secret".into(),
            "aws-secret-access-key".into(),
        ]
    }
}

/// Sets the credentials the pack signs with (moto takes any).
pub fn set_credentials(sb: &Sandbox) {
    for (name, value) in [
        ("aws-access-key-id", "AKIDENVPACKTEST"),
        ("aws-secret-access-key", "test-secret"),
    ] {
        let out = sb
            .host()
            .args(["secret", "set", name])
            .write_stdin(value)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "secret set {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
