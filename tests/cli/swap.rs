//! Swap by descriptor: one operator script, word for word, against an
//! environment bound to `local-process` (real processes behind a real
//! nginx) and one bound to `aws-ecs` (moto); the same exit codes from both,
//! and each provider's effects read from outside (requests through nginx,
//! the listener's weights from the AWS API). Then one environment moves
//! from one pack to the other with `env bind` and goes on.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::common::moto::{Fixture, Moto, set_credentials};
use crate::common::{Sandbox, free_port, install_signed, local_process_grants, operator, revision_app_tarball};
use envpack_test_packs::{AWS_ECS, LOCAL_PROCESS};
use serde_json::json;
use sha2::{Digest, Sha256};

/// The body of `GET /` through nginx on `port`.
fn get(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response.split("\r\n\r\n").nth(1).unwrap_or("").trim().to_string()
}

/// Binding arguments of the local-process pack: grants and settings, with
/// nginx on `listen` and revisions on ports of `range`.
fn local_binding(listen: u16, range: &str) -> Vec<String> {
    let mut args: Vec<String> = [
        "--deployer",
        "envpack.deployer.local-process@^1",
        "--capability",
        "log,clock",
        "--allow-probe",
        &format!("127.0.0.1:{range}"),
        "--setting",
        &format!("listen.web=127.0.0.1:{listen}"),
        "--setting",
        &format!("ports={range}"),
    ]
    .map(String::from)
    .to_vec();
    args.extend(local_process_grants(&[range, &listen.to_string()]));
    args
}

fn cloud_binding(fx: &Fixture, port: u16) -> Vec<String> {
    let mut args: Vec<String> = [
        "--deployer",
        "envpack.deployer.aws-ecs@^1",
        "--capability",
        "log,kv,clock",
    ]
    .map(String::from)
    .to_vec();
    args.extend(fx.grants());
    args.extend(fx.settings());
    args.extend(["--setting".into(), format!("listen.web={port}")]);
    args
}

/// Runs `host ARGS` (an operator command line); its exit code.
fn run(sb: &Sandbox, args: &[String]) -> i32 {
    let out = sb.host().args(args).output().unwrap();
    out.status.code().unwrap_or(-1)
}

/// The operator script: revision ids `first`, `second`, in `env`. Every
/// line is the same whichever pack the environment is bound to.
fn script(env: &str, first: &str, second: &str, tarball: &Path) -> Vec<(Vec<String>, i32)> {
    let digest = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(std::fs::read(tarball).unwrap()))
    );
    let location = format!("file://{}", tarball.display());
    let stage = |id: &str| {
        let mut line = vec!["revision", "stage", env, "web", "--id", id, "--digest", &digest];
        line.extend(["--location", &location, "--drain-seconds", "1"]);
        line.extend([
            "--setting",
            "run=/usr/bin/python3 app.py",
            "--setting",
            "image=registry.example/app:1",
        ]);
        line.into_iter().map(String::from).collect::<Vec<_>>()
    };
    let line = |words: &[&str]| words.iter().map(|w| w.replace("{env}", env)).collect::<Vec<_>>();
    let weights = |a: &str, b: &str| format!("{first}={a}|{second}={b}");
    let set = |a: &str, b: &str| {
        let mut words = line(&["traffic", "set", "{env}", "web"]);
        words.extend(weights(a, b).split('|').map(String::from));
        words
    };
    vec![
        (stage(first), 0),
        (line(&["revision", "warm", "{env}", first]), 0),
        (line(&["traffic", "set", "{env}", "web", &format!("{first}=10000")]), 0),
        (stage(second), 0),
        (line(&["revision", "warm", "{env}", second]), 0),
        (set("9000", "1000"), 0),
        // Refused by the host, whatever the pack: a split over 10000.
        (set("9000", "2000"), 2),
        // Refused while the revision has traffic.
        (line(&["revision", "drain", "{env}", second]), 2),
        (line(&["traffic", "rollback", "{env}", "web"]), 0),
        (set("10000", "0"), 0),
        (line(&["revision", "drain", "{env}", second]), 0),
        (line(&["revision", "archive", "{env}", second]), 0),
        (line(&["revision", "warm", "{env}", "NO-SUCH-REVISION"]), 2),
    ]
}

/// Removes the environments when the test ends, so that no app or nginx
/// outlives it even when it fails.
struct Cleanup<'a>(&'a Sandbox, [&'a str; 2]);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for env in self.1 {
            let _ = self.0.host().args(["env", "remove", env, "--force"]).output();
        }
    }
}

#[test]
fn one_script_two_packs_same_exit_codes_then_env_bind_moves_an_environment() {
    let moto = Moto::start();
    let fx = moto.create("swap");
    let sb = operator();
    set_credentials(&sb, &fx);
    install_signed(&sb, LOCAL_PROCESS, "packs/local-process/pack.toml", "local-process");
    install_signed(&sb, AWS_ECS, "packs/aws-ecs/pack.toml", "aws-ecs");
    let _cleanup = Cleanup(&sb, ["local", "cloud"]);

    let tarball = revision_app_tarball(&sb);

    let base = 20_000 + (std::process::id() % 80) as u16 * 500 + 400;
    let range = format!("{base}-{}", base + 99);
    let nginx = free_port();
    let mut create = vec!["env".to_string(), "create".into(), "local".into()];
    create.extend(local_binding(nginx, &range));
    assert_eq!(run(&sb, &create), 0);
    let mut create = vec!["env".to_string(), "create".into(), "cloud".into()];
    create.extend(cloud_binding(&fx, 8080));
    assert_eq!(run(&sb, &create), 0);

    for env in ["local", "cloud"] {
        for (line, expected) in script(env, "S1", "S2", &tarball) {
            assert_eq!(run(&sb, &line), expected, "{env}: host {}", line.join(" "));
        }
    }
    // Each provider routes all of web to S1, as seen from outside.
    assert!((0..10).all(|_| get(nginx) == "S1"), "nginx serves S1 only");
    let listener = |port: u16| {
        moto.inspect(&fx)["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["port"] == port)
            .map(|l| l["forward"].clone())
    };
    assert_eq!(listener(8080), Some(json!({"S1": 1})));

    // `cloud` moves to local-process: refused while aws-ecs's revisions
    // live (local-process could not drain them); with --teardown they are
    // retired through aws-ecs first, its listener released, then the same
    // commands go on.
    let nginx2 = free_port();
    let mut bind = vec!["env".to_string(), "bind".into(), "cloud".into()];
    bind.extend(local_binding(nginx2, &format!("{}-{}", base + 50, base + 99)));
    assert_eq!(run(&sb, &bind), 2, "env bind cloud to local-process, revisions live");
    bind.push("--teardown".into());
    assert_eq!(run(&sb, &bind), 0, "env bind cloud to local-process --teardown");
    let s1 = crate::common::json(&sb, &["revision", "show", "cloud", "S1", "--json"]);
    assert_eq!(s1["lifecycle"], "archived", "S1 retired through aws-ecs");
    assert_eq!(listener(8080), None, "aws-ecs released cloud's listener");
    for (line, expected) in script("cloud", "S3", "S4", &tarball) {
        assert_eq!(run(&sb, &line), expected, "cloud: host {}", line.join(" "));
    }
    assert!((0..10).all(|_| get(nginx2) == "S3"), "cloud's new nginx serves S3 only");
}
