//! `host env remove ENV --teardown`: an environment torn down through its
//! pack. Checked from outside: the processes left (none), nginx, the
//! lifecycle events and audit rows of each step, and a teardown the pack
//! stops half-way that a second run finishes.

use std::path::Path;

use crate::common::rollout::{
    audit_commands, lifecycle, mark_unhealthy, serving_r1, soaking, start_rollout, wait_for_step,
};
use crate::common::{json, ok};
use crate::local_process::{Reaper, artifacts, distribution, local_env, processes_under, stage, stage_for};

/// Two deployments of real processes behind nginx: torn down, nothing of
/// the environment runs and its records are gone; each step is audited.
#[test]
fn a_local_process_environment_torn_down_leaves_no_process_and_no_nginx() {
    let (sb, listen, _) = local_env(15);
    let _reaper = Reaper(sb.state_dir());
    let art = artifacts(&sb);
    stage(&sb, "R1", &art.executable, &[], "1");
    stage(&sb, "R2", &art.executable, &[], "1");
    ok(&sb, &["revision", "warm", "site", "R1"]);
    ok(&sb, &["revision", "warm", "site", "R2"]);
    ok(&sb, &["traffic", "set", "site", "web", "R1=5000", "R2=5000"]);
    stage_for(&sb, "api", "A1", &art.executable, &[], "1");
    assert_eq!(distribution(listen, 10).values().sum::<usize>(), 10);
    assert!(!processes_under(&sb.state_dir()).is_empty());
    let out = sb
        .host()
        .args(["env", "remove", "site", "--teardown", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps: Vec<&str> = done["teardown"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for expected in [
        "drain-revision R1",
        "archive-revision R2",
        "archive-revision A1",
        "release-deployment web",
    ] {
        assert!(steps.iter().any(|s| s.starts_with(expected)), "{expected}: {steps:#?}");
    }
    assert_eq!(
        done["left"],
        serde_json::json!([]),
        "local-process releases what it made"
    );
    let left = processes_under(&sb.state_dir());
    assert!(left.is_empty(), "the teardown left processes: {left:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", listen)).is_err(),
        "nginx no longer listens"
    );
    let work: Vec<String> = Path::new(&sb.state_dir())
        .join("work")
        .read_dir()
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        !work.iter().any(|name| name.starts_with("env-")),
        "the environment's work directory went with it: {work:?}"
    );
    let audit = audit_commands(&sb);
    let torn: Vec<&(String, String, String)> = audit.iter().filter(|(c, _, _)| c == "env teardown").collect();
    assert!(torn.len() >= 6, "a row per step: {torn:?}");
    assert_eq!(audit.last().unwrap().0, "env remove");
}

/// A pack of contract 1.1 has no `teardown`: its revisions are drained and
/// archived through it, and the command says what it could not release.
/// A drain the pack refuses stops the teardown, recorded, with both ways
/// on; once the provider lets go, a second run finishes.
#[test]
fn a_teardown_the_pack_stops_is_recorded_and_a_second_run_finishes_it() {
    let sb = serving_r1();
    ok(&sb, &["revision", "warm", "dev", "R2"]);
    // A rollout in progress is aborted first, by name.
    let child = start_rollout(&sb, "dev web --to R2 --steps 50,100 --soak 30s --interval 100ms");
    wait_for_step(&sb, "soaking", |s| soaking(s, "step 1"));
    let out = sb.host().args(["env", "remove", "dev", "--teardown"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("abort it first"));
    ok(&sb, &["rollout", "abort", "dev", "web"]);
    let _ = crate::common::rollout::finished(child);
    // The provider refuses to drain R1.
    ok(
        &sb,
        &[
            "env",
            "bind",
            "dev",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--setting",
            "refuse-drain=R1",
        ],
    );
    mark_unhealthy(&sb, "");
    let out = sb.host().args(["env", "remove", "dev", "--teardown"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("the teardown stopped at drain-revision R1"), "{stderr}");
    assert!(stderr.contains("--teardown` again"), "{stderr}");
    assert!(stderr.contains("host env remove dev --force"), "{stderr}");
    assert_eq!(
        lifecycle(&sb, "R1"),
        "draining",
        "the refused drain is recorded where it stopped"
    );
    let env = json(&sb, &["env", "show", "dev", "--json"]);
    assert_eq!(env["env"], "dev", "the environment is still there");
    ok(
        &sb,
        &[
            "env",
            "bind",
            "dev",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--unset",
            "refuse-drain",
        ],
    );
    let out = sb.host().args(["env", "remove", "dev", "--teardown"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("exports no `teardown`"), "{stderr}");
    let out = sb.host().args(["env", "show", "dev"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "removed");
}
