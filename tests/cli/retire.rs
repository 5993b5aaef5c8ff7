//! `host deployment retire` and `env bind` to another pack: a deployment
//! ends for good through documented commands only, whatever state it is in
//! (its last revision at 100%, a drain the provider refuses, a SIGKILL
//! half-way), and an environment never moves to a pack that cannot drain
//! the revisions its old pack made.

use crate::common::rollout::{
    audit_commands, finished, lifecycle, serving_r1, soaking, stage_ready, start_rollout, wait_for_step,
};
use crate::common::{DIGEST, Sandbox, TEST_HOSTILE, install_signed, json, ok, operator, p};
use crate::local_process::{Reaper, artifacts, distribution, local_env, processes_under, stage, stage_for};
use crate::state::assert_agree;

/// Stages `id` into `deployment` of `env` on the ledger.
pub(crate) fn stage_in(sb: &Sandbox, env: &str, deployment: &str, id: &str) {
    let location = format!("file:///b/{id}");
    ok(
        sb,
        &[
            "revision",
            "stage",
            env,
            deployment,
            "--digest",
            DIGEST,
            "--location",
            &location,
            "--id",
            id,
        ],
    );
}

pub(crate) fn deployments(sb: &Sandbox, env: &str) -> Vec<String> {
    sb.sql_rows(&format!(
        "SELECT id FROM deployments WHERE env_id = '{env}' AND retired_at IS NULL ORDER BY id"
    ))
    .into_iter()
    .map(|row| row[0].clone())
    .collect()
}

fn events_of(sb: &Sandbox, env: &str, id: &str) -> Vec<serde_json::Value> {
    json(sb, &["events", env, "--json"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["revision"] == id)
        .cloned()
        .collect()
}

/// The wedge of a deployment whose last revision holds 100%: it leaves
/// through `deployment retire`, the other deployment untouched; staging
/// into it again starts it afresh at the next generation.
#[test]
fn the_last_revision_serving_a_deployment_leaves_by_retiring_it() {
    let sb = serving_r1();
    stage_in(&sb, "dev", "api", "A1");
    ok(&sb, &["revision", "warm", "dev", "A1"]);
    ok(&sb, &["traffic", "set", "dev", "api", "A1=10000"]);
    // Without retirement the revision at 100% can be neither drained nor archived.
    sb.host().args(["revision", "drain", "dev", "R1"]).assert().failure();
    let out = sb
        .host()
        .args(["deployment", "retire", "dev", "web", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let steps: Vec<&str> = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    for expected in [
        "traffic of web withdrawn (generation 1)",
        "drain-revision R1",
        "archive-revision R1",
        "archive-revision R2",
        "deployment web retired",
    ] {
        assert!(steps.iter().any(|s| s.starts_with(expected)), "{expected}: {steps:#?}");
    }
    // The ledger is a contract 1.1 pack: what it holds beyond revisions is named.
    assert!(
        done["left"][0].as_str().unwrap().contains("exports no `teardown`"),
        "{done:#}"
    );
    assert!(stderr.contains("exports no `teardown`"), "{stderr}");
    assert_eq!(lifecycle(&sb, "R1"), "archived");
    assert_eq!(lifecycle(&sb, "R2"), "archived");
    assert_eq!(lifecycle(&sb, "A1"), "ready", "the other deployment is untouched");
    assert_eq!(deployments(&sb, "dev"), ["api"]);
    let traffic = ok(&sb, &["traffic", "show", "dev"]);
    assert!(traffic.contains("A1"), "{traffic}");
    assert!(!traffic.contains("R1"), "web has no split: {traffic}");
    assert_agree(&sb, "dev", "after retiring web");
    let rows = audit_commands(&sb);
    let retire_rows = rows.iter().filter(|(c, _, _)| c == "deployment retire").count();
    assert!(retire_rows >= 5, "a row per step: {rows:?}");
    // Run again (a retried job), it says it is done; traffic for it is refused by name.
    let out = sb.host().args(["deployment", "retire", "dev", "web"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("deployment web was retired already"), "{stdout}");
    let out = sb
        .host()
        .args(["traffic", "set", "dev", "web", "R1=10000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("was retired") && stderr.contains("stage a revision into it"),
        "{stderr}"
    );
    let out = sb
        .host()
        .args(["deployment", "retire", "dev", "nope"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("has no deployment \"nope\""));
    // Staging into it again revives it, and its split numbers go on.
    stage_ready(&sb, "R3");
    ok(&sb, &["traffic", "set", "dev", "web", "R3=10000"]);
    let shown = json(&sb, &["traffic", "show", "dev", "--json"]);
    let web = shown
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == "web")
        .unwrap_or_else(|| panic!("web in {shown:#}"));
    assert_eq!(
        web["current"]["generation"], 2,
        "never a generation a pack saw before: {web:#}"
    );
    assert_eq!(
        web["previous"],
        serde_json::Value::Null,
        "the withdrawn split is history: {web:#}"
    );
    assert_eq!(deployments(&sb, "dev"), ["api", "web"]);
}

/// Real processes behind nginx: the retired deployment's processes and
/// route are gone (looked up by pid and port, not asked of the pack), the
/// other deployment's revision is untouched, and staging into the retired
/// one serves again through a new nginx.
#[test]
fn a_local_process_deployment_retired_leaves_no_process_and_no_route() {
    let (sb, listen, _) = local_env(4);
    let _reaper = Reaper(sb.state_dir());
    let art = artifacts(&sb);
    stage(&sb, "R1", &art.executable, &[], "1");
    ok(&sb, &["revision", "warm", "site", "R1"]);
    ok(&sb, &["traffic", "set", "site", "web", "R1=10000"]);
    stage_for(&sb, "api", "A1", &art.executable, &[], "1");
    assert_eq!(distribution(listen, 10).values().sum::<usize>(), 10);
    let of = |id: &str| {
        processes_under(&sb.state_dir())
            .into_iter()
            .filter(|(_, cwd)| cwd.to_string_lossy().contains(&format!("/revisions/{id}/")))
            .count()
    };
    assert!(of("R1") > 0, "R1 runs");
    let out = sb
        .host()
        .args(["deployment", "retire", "site", "web", "--json"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        done["left"],
        serde_json::json!([]),
        "local-process releases what it made: {done:#}"
    );
    assert!(done["steps"].to_string().contains("release-deployment web"), "{done:#}");
    assert_eq!(of("R1"), 0, "R1's processes are gone");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", listen)).is_err(),
        "nginx no longer listens for web"
    );
    let a1 = json(&sb, &["revision", "show", "site", "A1", "--json"]);
    assert_eq!(a1["lifecycle"], "staged", "api is untouched");
    stage(&sb, "R2", &art.executable, &[], "1");
    ok(&sb, &["revision", "warm", "site", "R2"]);
    ok(&sb, &["traffic", "set", "site", "web", "R2=10000"]);
    assert_eq!(
        distribution(listen, 10).get("R2").copied().unwrap_or(0),
        10,
        "web serves again from R2"
    );
}

/// A drain the provider keeps refusing stops the retirement where it is,
/// recorded, naming both ways on; `--abandon --reason` finishes it without
/// the pack.
#[test]
fn a_retirement_the_pack_refuses_is_finished_by_abandoning() {
    let sb = serving_r1();
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
    let out = sb.host().args(["deployment", "retire", "dev", "web"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the retirement stopped at drain-revision R1"),
        "{stderr}"
    );
    assert!(stderr.contains("`host deployment retire dev web` again"), "{stderr}");
    assert!(stderr.contains("--abandon --reason"), "{stderr}");
    assert_eq!(lifecycle(&sb, "R1"), "draining", "recorded where it stopped");
    assert_eq!(deployments(&sb, "dev"), ["web"], "not retired yet");
    let status = ok(&sb, &["status", "dev"]);
    assert!(
        status.contains("traffic withdrawn after generation 1") && status.contains("host deployment retire dev web"),
        "a retirement under way shows: {status}"
    );
    let out = sb
        .host()
        .args(["traffic", "rollback", "dev", "web", "--to", "1"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("was withdrawn after generation 1"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Abandoning takes a reason (clap refuses it without one).
    let out = sb
        .host()
        .args(["deployment", "retire", "dev", "web", "--abandon"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = sb
        .host()
        .args(["deployment", "retire", "dev", "web", "--abandon", "--reason", "   "])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a --reason"));
    let out = sb
        .host()
        .args([
            "deployment",
            "retire",
            "dev",
            "web",
            "--abandon",
            "--reason",
            "the provider lost the host",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("the pack was not called"),
        "what is left is named: {stderr}"
    );
    assert_eq!(lifecycle(&sb, "R1"), "archived");
    assert_eq!(lifecycle(&sb, "R2"), "archived");
    let last = events_of(&sb, "dev", "R1").pop().unwrap();
    assert!(
        last["reason"].as_str().unwrap().contains("the provider lost the host"),
        "{last:#}"
    );
    assert!(deployments(&sb, "dev").is_empty());
}

/// `env bind` to another pack while the old one's revisions live is
/// refused (the new pack could not drain them) and nothing changes; with
/// `--teardown` they leave through the old pack, with `--abandon` without it.
#[test]
fn moving_to_another_pack_takes_the_old_revisions_down_first() {
    let sb = serving_r1();
    install_signed(&sb, TEST_HOSTILE, "packs/test-hostile/pack.toml", "hostile");
    let to_hostile = [
        "env",
        "bind",
        "dev",
        "--deployer",
        "envpack.test.hostile@^0.1",
        "--reset-settings",
        "--setting",
        "mode=sleep",
    ];
    let out = sb.host().args(to_hostile).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for expected in [
        "2 revisions made by envpack.deployer.ledger",
        "R1, R2",
        "--teardown",
        "--abandon --reason",
    ] {
        assert!(stderr.contains(expected), "{expected}: {stderr}");
    }
    let shown = json(&sb, &["env", "show", "dev", "--json"]);
    assert!(
        shown.to_string().contains("envpack.deployer.ledger@"),
        "unchanged: {shown:#}"
    );
    assert_eq!(lifecycle(&sb, "R1"), "ready");
    // Another version of the same pack is no move: the ledger keeps them,
    // and --teardown there would be said (audited) and not done: refused.
    ok(&sb, &["env", "bind", "dev", "--deployer", "envpack.deployer.ledger@^1"]);
    let out = sb
        .host()
        .args([
            "env",
            "bind",
            "dev",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--teardown",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("apply when an environment moves to another pack"));
    assert_eq!(lifecycle(&sb, "R1"), "ready");
    let mut through = to_hostile.to_vec();
    through.push("--teardown");
    let out = sb.host().args(&through).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("drain-revision R1"), "{stderr}");
    assert_eq!(lifecycle(&sb, "R1"), "archived");
    assert_eq!(lifecycle(&sb, "R2"), "archived");
    let shown = json(&sb, &["env", "show", "dev", "--json"]);
    assert!(shown.to_string().contains("envpack.test.hostile@"), "{shown:#}");
    assert_agree(&sb, "dev", "after the move");

    // --abandon: the revisions are recorded archived with the reason, the ledger not called.
    ok(
        &sb,
        &[
            "env",
            "create",
            "prod",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv",
        ],
    );
    stage_in(&sb, "prod", "web", "P1");
    ok(&sb, &["revision", "warm", "prod", "P1"]);
    let out = sb
        .host()
        .args([
            "env",
            "bind",
            "prod",
            "--deployer",
            "envpack.test.hostile@^0.1",
            "--abandon",
            "--reason",
            "moving to hostile",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let p1 = json(&sb, &["revision", "show", "prod", "P1", "--json"]);
    assert_eq!(p1["lifecycle"], "archived");
    let last = events_of(&sb, "prod", "P1").pop().unwrap();
    assert!(
        last["reason"].as_str().unwrap().contains("moving to hostile"),
        "{last:#}"
    );
}

fn ledger_settings(sb: &Sandbox, settings: &[&str]) {
    let mut args = vec![
        "env",
        "bind",
        "dev",
        "--deployer",
        "envpack.deployer.ledger@^1",
        "--reset-settings",
    ];
    for s in settings {
        args.extend(["--setting", s]);
    }
    ok(sb, &args);
}

/// A rollout stuck on a drain its provider refuses for good (of the old
/// revision going forward, of the new one rolling back): abort is refused
/// there, so abandoning the draining revision is the way on, and resuming
/// finishes the rollout.
#[test]
fn a_rollout_stuck_on_a_refused_drain_is_finished_by_abandoning_the_draining_revision() {
    let sb = operator();
    stage_ready(&sb, "V1");
    stage_ready(&sb, "V2");
    ok(&sb, &["traffic", "set", "dev", "web", "V1=10000"]);
    ledger_settings(&sb, &["refuse-drain=V1"]);
    let out = sb
        .host()
        .args([
            "rollout", "start", "dev", "web", "--to", "V2", "--steps", "100", "--soak", "1s",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(lifecycle(&sb, "V1"), "draining");
    sb.host().args(["rollout", "abort", "dev", "web"]).assert().code(2);
    // V2 may still get traffic from the rollout: not abandoned.
    sb.host()
        .args(["revision", "abandon", "dev", "V2", "--reason", "x"])
        .assert()
        .code(2);
    ok(
        &sb,
        &["revision", "abandon", "dev", "V1", "--reason", "the old host is gone"],
    );
    ok(&sb, &["rollout", "resume", "dev", "web"]);
    assert_eq!(crate::common::rollout::rollout(&sb)["state"], "succeeded");
    assert_eq!(lifecycle(&sb, "V1"), "archived");
    assert_eq!(lifecycle(&sb, "V2"), "ready");

    // Rolling back: the new revision's drain refused for good.
    stage_ready(&sb, "V3");
    ledger_settings(&sb, &["refuse-drain=V3", "unhealthy=V3"]);
    let out = sb
        .host()
        .args([
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "V3",
            "--steps",
            "50,100",
            "--soak",
            "2s",
            "--interval",
            "100ms",
            "--analysis",
            "probe=1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(crate::common::rollout::rollout(&sb)["state"], "rolling-back");
    assert_eq!(lifecycle(&sb, "V3"), "draining");
    ok(
        &sb,
        &[
            "revision",
            "abandon",
            "dev",
            "V3",
            "--reason",
            "the canary host is gone",
        ],
    );
    // A rollout that ends rolled back exits 1.
    sb.host().args(["rollout", "resume", "dev", "web"]).assert().code(1);
    assert_eq!(crate::common::rollout::rollout(&sb)["state"], "rolled-back");
    let shown = json(&sb, &["traffic", "show", "dev", "--json"]);
    assert_eq!(shown[0]["current"]["entries"][0]["revision"], "V2", "{shown:#}");
    // (Abandoning skips the lifecycle table and the pack by design: the
    // store and the ledger disagree about V1 and V3 now, on record.)
    assert!(ok(&sb, &["audit", "verify"]).contains("intact"));
}

/// In an environment that trusts deploy keys a retirement takes one, and
/// every step it records carries the signature (traffic withdrawn from a
/// keyed environment is never unsigned in the log).
#[test]
fn a_retirement_in_an_environment_with_deploy_keys_is_signed_at_every_step() {
    let sb = operator();
    let key = sb.dir.path().join("deploy");
    ok(&sb, &["keygen", "--out", &p(&key)]);
    let trust = format!("ci={}", p(&key.with_extension("pub")));
    ok(
        &sb,
        &[
            "env",
            "create",
            "keyed",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv",
            "--trust-deploy-key",
            &trust,
        ],
    );
    stage_in(&sb, "keyed", "web", "K1");
    ok(&sb, &["revision", "warm", "keyed", "K1"]);
    let signed = |args: &[&str]| {
        let mut all = vec!["--deploy-key", key.to_str().unwrap()];
        all.extend_from_slice(args);
        all.iter().map(|s| s.to_string()).collect::<Vec<String>>()
    };
    let set = signed(&["traffic", "set", "keyed", "web", "K1=10000"]);
    ok(&sb, &set.iter().map(String::as_str).collect::<Vec<_>>());
    sb.host()
        .args(["deployment", "retire", "keyed", "web"])
        .assert()
        .code(6);
    assert_eq!(lifecycle_in(&sb, "keyed", "K1"), "ready", "nothing done unsigned");
    let retire = signed(&["deployment", "retire", "keyed", "web"]);
    ok(&sb, &retire.iter().map(String::as_str).collect::<Vec<_>>());
    let rows: Vec<(String, String, String)> = audit_commands(&sb)
        .into_iter()
        .filter(|(c, _, o)| c == "deployment retire" && o.starts_with("ok"))
        .collect();
    assert!(rows.len() >= 6, "the command and each step: {rows:#?}");
    for (_, args, _) in &rows {
        assert!(args.contains("authorized_by"), "unsigned step: {args}");
    }
}

fn lifecycle_in(sb: &Sandbox, env: &str, id: &str) -> String {
    json(sb, &["revision", "show", env, id, "--json"])["lifecycle"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `env remove --force` under a process driving one of its rollouts is
/// refused, naming it; paused, the environment goes.
#[test]
fn removing_an_environment_under_a_running_driver_is_refused() {
    let sb = serving_r1();
    ok(&sb, &["revision", "warm", "dev", "R2"]);
    let child = start_rollout(&sb, "dev web --to R2 --steps 50,100 --soak 30s --interval 100ms");
    wait_for_step(&sb, "soaking", |s| soaking(s, "step 1"));
    let out = sb.host().args(["env", "remove", "dev", "--force"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is being driven by process"), "{stderr}");
    assert!(stderr.contains("host rollout pause dev web"), "{stderr}");
    ok(&sb, &["rollout", "pause", "dev", "web"]);
    let (code, stderr) = finished(child);
    assert_eq!(code, 7, "paused: {stderr}");
    ok(&sb, &["env", "remove", "dev", "--force"]);
}
