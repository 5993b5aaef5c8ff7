//! Rollouts through the real binary with the reference pack: a canary
//! through every step, a failing gate rolling back on its own, promote and
//! abort from a second process, blue-green's keep-old window, manual
//! traffic refused during a rollout, and SIGKILL at random points followed
//! by `rollout resume`.

mod common;

use std::process::Child;
use std::time::{Duration, Instant};

use common::{Rng, Sandbox, json, ok, operator, spawn};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use serde_json::{Value, json as j};

fn stage_ready(sb: &Sandbox, id: &str) {
    common::stage(sb, "dev", id);
    ok(sb, &["revision", "warm", "dev", id]);
}

/// `dev` with R1 ready and serving all of `web`, R2 staged.
fn serving_r1() -> Sandbox {
    let sb = operator();
    stage_ready(&sb, "R1");
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000"]);
    common::stage(&sb, "dev", "R2");
    sb
}

fn lifecycle(sb: &Sandbox, id: &str) -> String {
    json(sb, &["revision", "show", "dev", id, "--json"])["lifecycle"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Every generation of web's split, oldest first, as `R2=2500 R1=7500`.
fn generations(sb: &Sandbox) -> Vec<String> {
    let conn = rusqlite::Connection::open(sb.state_dir().join("state.db")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT entries FROM split_generations WHERE env_id = 'dev' AND deployment = 'web' ORDER BY generation",
        )
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|e| split_text(&serde_json::from_str(&e.unwrap()).unwrap()))
        .collect()
}

fn split_text(entries: &Value) -> String {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| format!("{}={}", e["revision"].as_str().unwrap(), e["weight_bps"]))
        .collect::<Vec<_>>()
        .join(" ")
}

fn rollout(sb: &Sandbox) -> Value {
    json(sb, &["rollout", "status", "dev", "web", "--json"])[0].clone()
}

/// Waits (bounded) until `web`'s rollout has a step matching `pred`.
fn wait_for_step(sb: &Sandbox, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
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

fn soaking(step: &Value, label: &str) -> bool {
    step["action"]["kind"] == "soak"
        && step["state"] == "started"
        && step["action"]["label"].as_str().unwrap().contains(label)
}

fn finished(mut child: Child) -> (i32, String) {
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

fn audit_commands(sb: &Sandbox) -> Vec<(String, String, String)> {
    let conn = rusqlite::Connection::open(sb.state_dir().join("state.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT command, arguments, outcome FROM audit ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_canary_goes_through_every_step_and_drains_the_old_revision() {
    let sb = serving_r1();
    let out = ok(
        &sb,
        &[
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "R2",
            "--steps",
            "25,50,100",
            "--soak",
            "300ms",
            "--interval",
            "100ms",
            "--analysis",
            "probe=2",
        ],
    );
    assert!(out.contains("succeeded"), "{out}");
    assert_eq!(
        generations(&sb),
        ["R1=10000", "R2=2500 R1=7500", "R2=5000 R1=5000", "R2=10000"]
    );
    assert_eq!(lifecycle(&sb, "R2"), "ready");
    assert_eq!(lifecycle(&sb, "R1"), "inactive");
    let r = rollout(&sb);
    assert_eq!(r["state"], "succeeded");
    let states: Vec<&str> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["state"].as_str().unwrap())
        .collect();
    assert!(states.iter().all(|s| *s == "done"), "{r:#}");
    // Each soak saw the probe gate answer, and kept the time it soaked.
    let soaks: Vec<&Value> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"]["kind"] == "soak")
        .collect();
    assert_eq!(soaks.len(), 2);
    for soak in soaks {
        assert_eq!(soak["soaked_ms"], 300);
        assert!(soak["note"].as_str().unwrap().contains("probe: healthy"), "{soak}");
    }
    let commands: Vec<String> = audit_commands(&sb).into_iter().map(|(c, _, _)| c).collect();
    assert!(commands.contains(&"rollout start".to_string()));
    assert_eq!(commands.last().unwrap(), "rollout succeeded");
}

#[test]
fn a_failing_probe_gate_rolls_back_on_its_own() {
    let sb = serving_r1();
    let child = spawn(
        &sb,
        &[
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "R2",
            "--steps",
            "10,50,100",
            "--soak",
            "20s",
            "--interval",
            "100ms",
            "--analysis",
            "probe=2",
        ],
    );
    wait_for_step(&sb, "soaking step 2", |s| soaking(s, "step 2"));
    // The provider's health check starts failing for R2 at step 2.
    ok(
        &sb,
        &[
            "env",
            "bind",
            "dev",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--setting",
            "unhealthy=R2",
        ],
    );
    let (code, stderr) = finished(child);
    assert_eq!(code, 1, "a rolled-back rollout exits 1: {stderr}");
    assert!(stderr.contains("rolling back"), "{stderr}");
    assert_eq!(
        generations(&sb),
        ["R1=10000", "R2=1000 R1=9000", "R2=5000 R1=5000", "R1=10000"],
        "the previous split is back"
    );
    assert_eq!(lifecycle(&sb, "R2"), "inactive", "the new revision is drained");
    assert_eq!(lifecycle(&sb, "R1"), "ready");
    let r = rollout(&sb);
    assert_eq!(r["state"], "rolled-back");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("2 unhealthy answers in a row") && reason.contains("unhealthy"),
        "{reason}"
    );
    let failed: Vec<&Value> = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{r:#}");
    assert!(failed[0]["action"]["label"].as_str().unwrap().contains("step 2"));
    // The reason is in the events and the audit log.
    let events = json(&sb, &["events", "dev", "--json"]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["revision"] == "R2" && e["reason"].as_str().unwrap().contains("rolling back")),
        "{events:#}"
    );
    let audit = audit_commands(&sb);
    assert!(
        audit
            .iter()
            .any(|(c, a, _)| c == "rollout rollback" && a.contains("unhealthy")),
        "{audit:?}"
    );
    assert_eq!(audit.last().unwrap().0, "rollout rolled back");
}

#[test]
fn promote_from_a_second_process_skips_the_remaining_soaks() {
    let sb = serving_r1();
    let child = spawn(
        &sb,
        &[
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "R2",
            "--steps",
            "10,50,100",
            "--soak",
            "60s",
            "--interval",
            "100ms",
        ],
    );
    wait_for_step(&sb, "soaking step 1", |s| soaking(s, "step 1"));
    let out = sb.host().args(["rollout", "promote", "dev", "web"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the process driving rollout"));
    let (code, stderr) = finished(child);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        generations(&sb),
        ["R1=10000", "R2=1000 R1=9000", "R2=10000"],
        "50% was skipped"
    );
    assert_eq!(lifecycle(&sb, "R1"), "inactive");
    let r = rollout(&sb);
    assert_eq!(r["state"], "succeeded");
    let skipped = r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "skipped")
        .count();
    assert_eq!(skipped, 3, "two soaks and the 50% split: {r:#}");
}

#[test]
fn abort_from_a_second_process_restores_the_split_and_drains_the_new_revision() {
    let sb = serving_r1();
    let child = spawn(
        &sb,
        &[
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "R2",
            "--steps",
            "30,100",
            "--soak",
            "60s",
            "--interval",
            "100ms",
        ],
    );
    wait_for_step(&sb, "soaking step 1", |s| soaking(s, "step 1"));
    ok(&sb, &["rollout", "abort", "dev", "web", "--actor", "alice"]);
    let (code, stderr) = finished(child);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(generations(&sb), ["R1=10000", "R2=3000 R1=7000", "R1=10000"]);
    assert_eq!(lifecycle(&sb, "R2"), "inactive");
    let r = rollout(&sb);
    assert_eq!(r["state"], "rolled-back");
    assert_eq!(r["reason"], "aborted by alice");
    // Nothing is left to abort, promote or resume.
    sb.host()
        .args(["rollout", "abort", "dev", "web"])
        .assert()
        .code(2)
        .stderr(contains("web has no rollout in progress"));
}

#[test]
fn blue_green_keeps_the_old_revision_warm_for_its_window_then_archives_it() {
    let sb = serving_r1();
    let child = spawn(
        &sb,
        &[
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "R2",
            "--strategy",
            "blue-green",
            "--soak",
            "200ms",
            "--keep-old",
            "2s",
            "--interval",
            "100ms",
            "--analysis",
            "probe",
        ],
    );
    wait_for_step(&sb, "the keep-old window", |s| soaking(s, "kept warm"));
    assert_eq!(generations(&sb), ["R1=10000", "R2=10000"], "switched in one step");
    assert_eq!(
        lifecycle(&sb, "R1"),
        "ready",
        "the old revision is still warm during the window"
    );
    let (code, stderr) = finished(child);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(lifecycle(&sb, "R1"), "archived");
    assert_eq!(lifecycle(&sb, "R2"), "ready");
}

#[test]
fn manual_traffic_is_refused_during_a_rollout_unless_forced_and_recorded() {
    let sb = serving_r1();
    ok(&sb, &["rollout", "start", "dev", "web", "--to", "R2", "--no-drive"]);
    sb.host()
        .args(["traffic", "set", "dev", "web", "R1=10000"])
        .assert()
        .code(2)
        .stderr(contains("has rollout").and(contains("--force")));
    sb.host()
        .args(["traffic", "rollback", "dev", "web"])
        .assert()
        .code(2)
        .stderr(contains("has rollout"));
    // A second rollout of the same deployment is refused too.
    sb.host()
        .args(["rollout", "start", "dev", "web", "--to", "R2"])
        .assert()
        .code(2)
        .stderr(contains("already has rollout"));
    let id = rollout(&sb)["id"].as_str().unwrap().to_string();
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000", "--force"]);
    let audit = audit_commands(&sb);
    let forced = audit.iter().rev().find(|(c, _, _)| c == "traffic set").unwrap();
    let args: Value = serde_json::from_str(&forced.1).unwrap();
    assert_eq!(args["forced_during_rollout"], j!(id));
    // Pause, then resume: the rollout is driven to its end by `resume`.
    ok(&sb, &["rollout", "pause", "dev", "web"]);
    assert_eq!(rollout(&sb)["state"], "paused");
    let out = ok(&sb, &["rollout", "promote", "dev", "web"]);
    assert!(
        out.contains("succeeded"),
        "promote drives a rollout no one drives: {out}"
    );
    assert_eq!(generations(&sb).last().unwrap(), "R2=10000");
}

#[test]
fn bad_rollouts_are_refused_before_anything_is_recorded() {
    let sb = serving_r1();
    let refused = |args: &[&str], message: &str| {
        let mut all = vec!["rollout", "start", "dev", "web"];
        all.extend(args);
        sb.host().args(&all).assert().code(2).stderr(contains(message));
    };
    refused(&["--to", "R2", "--steps", "10,50"], "must end at 100");
    refused(&["--to", "R2", "--steps", "50,10,100"], "rise strictly");
    refused(&["--to", "R2", "--soak", "soon"], "not a duration");
    refused(&["--to", "R2", "--analysis", "latency=5"], "unknown gate");
    refused(
        &["--to", "R2", "--analysis", "http=http://example.com/"],
        "--allow-http http://example.com:80",
    );
    refused(&["--to", "R2", "--analysis", "command=true"], "--allow-run true");
    refused(&["--to", "R1"], "already has all of web's traffic");
    refused(&["--to", "NOPE"], "no revision \"NOPE\"");
    assert_eq!(json(&sb, &["rollout", "status", "dev", "--json"]), j!([]));
    assert_eq!(generations(&sb), ["R1=10000"]);
}

/// Kills a rollout's driver at random points, resumes it, and checks that
/// it ended as its plan allows: every split it recorded is one the plan
/// intended, the last is the new revision alone (or, rolled back, the
/// previous split), and the revisions' lifecycles agree.
#[test]
fn sigkill_at_random_points_then_resume_ends_where_the_plan_allows() {
    let sb = serving_r1();
    let mut rng = Rng::new();
    let mut serving = "R1".to_string();
    for round in 0..8 {
        let to = format!("N{round}");
        common::stage(&sb, "dev", &to);
        let before = generations(&sb).len();
        // Half the rounds roll back: the new revision's probe fails from the start.
        let failing = rng.below(2) == 0;
        let unhealthy = format!("unhealthy={}", if failing { to.as_str() } else { "" });
        ok(
            &sb,
            &[
                "env",
                "bind",
                "dev",
                "--deployer",
                "envpack.deployer.ledger@^1",
                "--setting",
                &unhealthy,
            ],
        );
        let args = [
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            &to,
            "--steps",
            "20,60,100",
            "--soak",
            "200ms",
            "--interval",
            "50ms",
            "--analysis",
            "probe=1",
        ];
        let mut child = spawn(&sb, &args);
        // Within the rollout's own run time (under a second; a rollback is quicker).
        std::thread::sleep(Duration::from_millis(rng.below(if failing { 500 } else { 900 })));
        let _ = child.kill();
        let _ = child.wait();
        // Started at all? Then resume until it finishes (a second kill, too).
        let started = json(&sb, &["rollout", "status", "dev", "web", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["revision"] == to.as_str());
        if !started {
            eprintln!("round {round}: killed before the rollout was recorded");
            continue;
        }
        let at = rollout(&sb)["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["state"] == "started" || s["state"] == "pending")
            .map_or("the end".to_string(), |s| format!("{} {}", s["state"], s["action"]));
        eprintln!("round {round}: killed at {at}");
        if rng.below(2) == 0 {
            let mut again = spawn(&sb, &["rollout", "resume", "dev", "web"]);
            std::thread::sleep(Duration::from_millis(rng.below(800)));
            let _ = again.kill();
            let _ = again.wait();
        }
        while rollout(&sb)["state"] != "succeeded" && rollout(&sb)["state"] != "rolled-back" {
            let out = sb.host().args(["rollout", "resume", "dev", "web"]).output().unwrap();
            assert!(
                matches!(out.status.code(), Some(0 | 1)),
                "round {round}: resume: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let r = rollout(&sb);
        let intended = [
            format!("{to}=2000 {serving}=8000"),
            format!("{to}=6000 {serving}=4000"),
            format!("{to}=10000"),
            format!("{serving}=10000"),
        ];
        let recorded = generations(&sb)[before..].to_vec();
        eprintln!("round {round}: {} after {recorded:?}", r["state"]);
        assert!(
            recorded.iter().all(|g| intended.contains(g)),
            "round {round}: a split no step intended: {recorded:?} (plan {intended:?})"
        );
        match r["state"].as_str().unwrap() {
            "succeeded" => {
                assert_eq!(recorded.last().unwrap(), &intended[2], "round {round}");
                assert_eq!(lifecycle(&sb, &to), "ready", "round {round}");
                assert_eq!(lifecycle(&sb, &serving), "inactive", "round {round}");
                serving = to;
            }
            _ => {
                assert_eq!(generations(&sb).last().unwrap(), &intended[3], "round {round}: {r:#}");
                assert_ne!(lifecycle(&sb, &to), "ready", "round {round}");
                assert_eq!(lifecycle(&sb, &serving), "ready", "round {round}");
            }
        }
        let unfinished = r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["state"] == "pending" || s["state"] == "started")
            .count();
        assert_eq!(unfinished, 0, "round {round}: {r:#}");
    }
    ok(&sb, &["audit", "verify"]);
}

/// An environment that trusts a deploy key: only commands signed with it
/// move its traffic or rebind it, and the audit log names the key.
#[test]
fn a_prod_environment_moves_traffic_only_for_its_deploy_key_holders() {
    let sb = operator();
    let deploy = sb.dir.path().join("deploy");
    ok(&sb, &["keygen", "--out", &common::p(&deploy)]);
    let trusted = format!("ops={}", common::p(&deploy.with_extension("pub")));
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
            "--trust-deploy-key",
            &trusted,
        ],
    );
    for id in ["P1", "P2"] {
        common::stage(&sb, "prod", id);
        ok(&sb, &["revision", "warm", "prod", id]);
    }
    let refused = |args: &[&str], message: &str| {
        sb.host().args(args).assert().code(6).stderr(contains(message));
    };
    refused(
        &["traffic", "set", "prod", "web", "P1=10000"],
        "it trusts deploy keys [ops]",
    );
    let stranger = common::p(&sb.dir.path().join("key"));
    refused(
        &["traffic", "set", "prod", "web", "P1=10000", "--deploy-key", &stranger],
        "is not one of its deploy keys [ops]",
    );
    let key = common::p(&deploy);
    ok(
        &sb,
        &["traffic", "set", "prod", "web", "P1=10000", "--deploy-key", &key],
    );
    ok(
        &sb,
        &[
            "rollout",
            "start",
            "prod",
            "web",
            "--to",
            "P2",
            "--no-drive",
            "--deploy-key",
            &key,
        ],
    );
    refused(
        &["rollout", "abort", "prod", "web"],
        "rollout abort on environment \"prod\" is refused",
    );
    refused(&["rollout", "promote", "prod", "web"], "deploy keys [ops]");
    // Pausing and resuming carry out what a key holder started.
    ok(&sb, &["rollout", "pause", "prod", "web"]);
    ok(
        &sb,
        &[
            "rollout",
            "abort",
            "prod",
            "web",
            "--deploy-key",
            &key,
            "--actor",
            "carol",
        ],
    );
    // The protection cannot be taken off without the key either.
    refused(
        &["env", "bind", "prod", "--deployer", "envpack.deployer.ledger@^1"],
        "env bind on environment \"prod\" is refused",
    );
    // Unprotected `dev` needs no key.
    common::stage(&sb, "dev", "D1");
    ok(&sb, &["revision", "warm", "dev", "D1"]);
    ok(&sb, &["traffic", "set", "dev", "web", "D1=10000"]);
    let audit = audit_commands(&sb);
    let signed: Vec<(String, Value)> = audit
        .iter()
        .filter_map(|(c, a, o)| {
            let args: Value = serde_json::from_str(a).unwrap();
            (o == "ok" && args["env"] == "prod" && !args["authorized_by"].is_null())
                .then(|| (c.clone(), args["authorized_by"].clone()))
        })
        .collect();
    let commands: Vec<&str> = signed.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        commands,
        ["traffic set", "rollout start", "rollout abort"],
        "{audit:#?}"
    );
    assert!(
        signed
            .iter()
            .all(|(_, by)| by["key"] == "ops" && by["signature"].as_str().unwrap().len() == 128)
    );
    let refusals = audit.iter().filter(|(_, _, o)| o.contains("is refused")).count();
    assert_eq!(refusals, 5, "every refusal is audited too");
}
