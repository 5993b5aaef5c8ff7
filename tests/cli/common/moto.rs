//! A real AWS API emulator for the aws-ecs pack's tests: `moto_server` from
//! the virtualenv `scripts/setup-system` makes (`target/moto-venv`), started
//! on a free loopback port per test and killed when the test ends; and the
//! AWS side of the fixture, made and inspected through the AWS API
//! (`tests/apps/aws_fixture.py`, boto3), never through the pack.
//!
//! moto enforces IAM once the fixture is made (`INITIAL_NO_AUTH_ACTION_COUNT`
//! is the fixture's request count): every request of the pack must carry a
//! valid SigV4 signature of a known key, and the user the pack signs as
//! holds exactly the README's policy (`packs/aws-ecs/iam-policy.json`).

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

/// How many requests `aws_fixture.py create` makes with a policy: moto
/// checks none of them, and every later one.
const FIXTURE_REQUESTS: u32 = 13;

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
            .env("INITIAL_NO_AUTH_ACTION_COUNT", FIXTURE_REQUESTS.to_string())
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

    fn fixture(&self, args: &[&str], admin: Option<&(String, String)>) -> Value {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/apps/aws_fixture.py");
        let mut command = Command::new(venv().join("bin/python"));
        command.arg(script).args(args);
        if let Some((key, secret)) = admin {
            command
                .env("FIXTURE_ACCESS_KEY_ID", key)
                .env("FIXTURE_SECRET_ACCESS_KEY", secret);
        }
        let out = command.output().unwrap();
        assert!(
            out.status.success(),
            "aws_fixture.py {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// A VPC, subnets, a security group, an ALB and an ECS cluster named `name`.
    pub fn create(&self, name: &str) -> Fixture {
        let policy = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("packs/aws-ecs/iam-policy.json");
        let v = self.fixture(&["create", &self.endpoint, name, &policy.display().to_string()], None);
        let field = |k: &str| v[k].as_str().unwrap().to_string();
        let keys = |user: &str| {
            (
                v[user][0].as_str().unwrap().to_string(),
                v[user][1].as_str().unwrap().to_string(),
            )
        };
        Fixture {
            admin: keys("admin"),
            pack: keys("pack"),
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
        self.fixture(
            &["inspect", &self.endpoint, &fixture.cluster, &fixture.load_balancer],
            Some(&fixture.admin),
        )
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
    /// (access key id, secret) of a user allowed everything.
    pub admin: (String, String),
    /// (access key id, secret) of the user holding the README's policy.
    pub pack: (String, String),
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

/// Sets the credentials the pack signs with: the policy user's.
pub fn set_credentials(sb: &Sandbox, fx: &Fixture) {
    for (name, value) in [("aws-access-key-id", &fx.pack.0), ("aws-secret-access-key", &fx.pack.1)] {
        let out = sb
            .host()
            .args(["secret", "set", name])
            .write_stdin(value.as_str())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "secret set {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
