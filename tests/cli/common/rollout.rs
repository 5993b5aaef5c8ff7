//! Helpers of the rollout tests: an environment serving R1, its split
//! history and rollout read back, and waits bounded in time.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Sandbox, json, ok, operator};

pub fn stage_ready(sb: &Sandbox, id: &str) {
    super::stage(sb, "dev", id);
    ok(sb, &["revision", "warm", "dev", id]);
}

/// `dev` with R1 ready and serving all of `web`, R2 staged.
pub fn serving_r1() -> Sandbox {
    let sb = operator();
    stage_ready(&sb, "R1");
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000"]);
    super::stage(&sb, "dev", "R2");
    sb
}

pub fn lifecycle(sb: &Sandbox, id: &str) -> String {
    json(sb, &["revision", "show", "dev", id, "--json"])["lifecycle"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every generation of web's split, oldest first, as `R2=2500 R1=7500`.
pub fn generations(sb: &Sandbox) -> Vec<String> {
    sb.sql_rows("SELECT entries FROM split_generations WHERE env_id = 'dev' AND deployment = 'web' ORDER BY generation")
        .into_iter()
        .map(|row| split_text(&serde_json::from_str(&row[0]).unwrap()))
        .collect()
}

pub fn split_text(entries: &Value) -> String {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}={}", e["revision"].as_str().unwrap(), e["weight_bps"]))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn rollout(sb: &Sandbox) -> Value {
    json(sb, &["rollout", "status", "dev", "web", "--json"])[0].clone()
}

/// Waits (bounded) until `web`'s rollout has a step matching `pred`.
pub fn wait_for_step(sb: &Sandbox, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let r = rollout(sb);
        if let Some(step) = r["steps"].as_array().and_then(|s| s.iter().find(|s| pred(s))) {
            return step.clone();
        }
        assert!(Instant::now() < until, "no step {what} within 30 s: {r:#}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn soaking(step: &Value, label: &str) -> bool {
    step["action"]["kind"] == "soak"
        && step["state"] == "started"
        && step["action"]["label"].as_str().unwrap().contains(label)
}

pub fn finished(mut child: Child) -> (i32, String) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut stderr = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut stderr).unwrap();
            return (status.code().unwrap_or(-1), stderr);
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("the rollout did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn audit_commands(sb: &Sandbox) -> Vec<(String, String, String)> {
    sb.sql_rows("SELECT command, arguments, outcome FROM audit ORDER BY seq")
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone(), row[2].clone()))
        .collect()
}

/// `host rollout start ARGS` (split at spaces) in the background.
pub fn start_rollout(sb: &Sandbox, args: &str) -> Child {
    let mut all = vec!["rollout", "start"];
    all.extend(args.split(' '));
    super::spawn(sb, &all)
}

/// `host rollout start ARGS` (split at spaces), asserting success: stdout.
pub fn run_rollout(sb: &Sandbox, args: &str) -> String {
    let mut all = vec!["rollout", "start"];
    all.extend(args.split(' '));
    ok(sb, &all)
}

/// Makes the ledger's probe answer unhealthy for `ids` (comma separated;
/// empty: none) in `dev`, as a provider's failing health check would.
pub fn mark_unhealthy(sb: &Sandbox, ids: &str) {
    let setting = format!("unhealthy={ids}");
    ok(
        sb,
        &[
            "env",
            "bind",
            "dev",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--setting",
            &setting,
        ],
    );
}
