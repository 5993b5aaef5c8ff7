//! Rollouts through the real binary with the reference pack: a canary
//! through every step, a failing gate rolling back on its own, promote and
//! abort from a second process, blue-green's keep-old window, a command
//! gate, and SIGKILL at random points followed by `rollout resume`.

use std::time::{Duration, Instant};

use crate::common::rollout::*;
use crate::common::{Rng, Sandbox, json, ok, operator, spawn};
use predicates::str::contains;
use serde_json::Value;

#[test]
fn a_canary_goes_through_every_step_and_drains_the_old_revision() {
    let sb = serving_r1();
    let out = run_rollout(
        &sb,
        "dev web --to R2 --steps 25,50,100 --soak 300ms --interval 100ms --analysis probe=2",
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
    assert_eq!(soaks.len(), 3, "a soak at each step, 100% included");
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
    let child = start_rollout(
        &sb,
        "dev web --to R2 --steps 10,50,100 --soak 20s --interval 100ms --analysis probe=2",
    );
    wait_for_step(&sb, "soaking step 2", |s| soaking(s, "step 2"));
    // The provider's health check starts failing for R2 at step 2.
    mark_unhealthy(&sb, "R2");
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
    let child = start_rollout(&sb, "dev web --to R2 --steps 10,50,100 --soak 60s --interval 100ms");
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
    assert_eq!(skipped, 4, "three soaks and the 50% split: {r:#}");
}

#[test]
fn abort_from_a_second_process_restores_the_split_and_drains_the_new_revision() {
    let sb = serving_r1();
    let child = start_rollout(&sb, "dev web --to R2 --steps 30,100 --soak 60s --interval 100ms");
    wait_for_step(&sb, "soaking step 1", |s| soaking(s, "step 1"));
    ok(&sb, &["rollout", "abort", "dev", "web", "--actor", "alice"]);
    let (code, stderr) = finished(child);
    assert_eq!(code, 1, "{stderr}");
    assert_eq!(generations(&sb), ["R1=10000", "R2=3000 R1=7000", "R1=10000"]);
    assert_eq!(lifecycle(&sb, "R2"), "inactive");
    let r = rollout(&sb);
    assert_eq!(r["state"], "rolled-back");
    // (With shared records the actor names the machine: "alice on HOST".)
    let reason = r["reason"].as_str().unwrap();
    match sb.database {
        None => assert_eq!(reason, "aborted by alice"),
        Some(_) => assert!(reason.starts_with("aborted by alice on "), "{reason}"),
    }
    // Nothing is left to abort, promote or resume.
    sb.host()
        .args(["rollout", "abort", "dev", "web"])
        .assert()
        .code(2)
        .stderr(contains("web has no rollout in progress"));
    // `resume` from a timer: nothing to do, exit 0, nothing written.
    let rows = audit_commands(&sb).len();
    sb.host()
        .args(["rollout", "resume", "dev", "web"])
        .assert()
        .success()
        .stderr(contains("nothing to resume"));
    assert_eq!(audit_commands(&sb).len(), rows);
}

#[test]
fn blue_green_keeps_the_old_revision_warm_for_its_window_then_archives_it() {
    let sb = serving_r1();
    let child = start_rollout(
        &sb,
        "dev web --to R2 --strategy blue-green --soak 200ms --keep-old 2s --interval 100ms --analysis probe",
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
        crate::common::stage(&sb, "dev", &to);
        let before = generations(&sb).len();
        // Half the rounds roll back: the new revision's probe fails from the start.
        let failing = rng.below(2) == 0;
        mark_unhealthy(&sb, if failing { to.as_str() } else { "" });
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

/// A command gate (a command the environment grants) fails the rollout when
/// its command exits non-zero; a second process asked to resume a rollout
/// that is being driven stands aside instead of driving it twice.
#[test]
fn a_command_gate_rolls_back_and_a_second_driver_stands_aside() {
    let sb = operator();
    ok(
        &sb,
        &[
            "env",
            "create",
            "gated",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv",
            "--allow-run",
            "test ! -e {any}",
        ],
    );
    for id in ["G1", "G2"] {
        crate::common::stage(&sb, "gated", id);
    }
    ok(&sb, &["revision", "warm", "gated", "G1"]);
    ok(&sb, &["traffic", "set", "gated", "web", "G1=10000"]);
    let flag = sb.dir.path().join("broken");
    let gate = format!("command=test ! -e {}", crate::common::p(&flag));
    let child = spawn(
        &sb,
        &[
            "rollout",
            "start",
            "gated",
            "web",
            "--to",
            "G2",
            "--steps",
            "50,100",
            "--soak",
            "60s",
            "--interval",
            "100ms",
            "--analysis",
            &gate,
        ],
    );
    let status = |sb: &Sandbox| json(sb, &["rollout", "status", "gated", "web", "--json"])[0].clone();
    let until = Instant::now() + Duration::from_secs(30);
    while !status(&sb)["steps"]
        .as_array()
        .is_some_and(|s| s.iter().any(|s| soaking(s, "step 1")))
    {
        assert!(Instant::now() < until, "never soaked: {:#}", status(&sb));
        std::thread::sleep(Duration::from_millis(50));
    }
    let second = sb.host().args(["rollout", "resume", "gated", "web"]).output().unwrap();
    assert!(second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("the process driving rollout"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    std::fs::write(&flag, "").unwrap();
    let (code, stderr) = finished(child);
    assert_eq!(code, 1, "{stderr}");
    let r = status(&sb);
    assert_eq!(r["state"], "rolled-back");
    assert!(
        r["reason"].as_str().unwrap().contains("command: /usr/bin/test exited"),
        "{r:#}"
    );
    let splits: i64 = sb.sql_rows("SELECT COUNT(*) FROM split_generations WHERE env_id = 'gated'")[0][0]
        .parse()
        .unwrap();
    assert_eq!(splits, 3, "G1, 50/50, G1 again: each applied once, by one driver");
}

/// A driver killed during a soak leaves the time soaked in the step's row;
/// `resume` runs the same soak again, for what was left of it.
#[test]
fn a_soak_killed_midway_keeps_its_soaked_time_for_resume() {
    let sb = serving_r1();
    let mut child = start_rollout(&sb, "dev web --to R2 --steps 50,100 --soak 4s --interval 100ms");
    let step = wait_for_step(&sb, "a second of soak", |s| {
        soaking(s, "step 1") && s["soaked_ms"].as_u64().unwrap() >= 1000
    });
    child.kill().unwrap();
    let _ = child.wait();
    let after_kill = rollout(&sb)["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seq"] == step["seq"])
        .unwrap()
        .clone();
    assert_eq!(after_kill["state"], "started", "{after_kill}");
    let kept = after_kill["soaked_ms"].as_u64().unwrap();
    assert!((1000..4000).contains(&kept), "{after_kill}");
    let out = sb.host().args(["rollout", "resume", "dev", "web"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("again: it was interrupted"), "{stderr}");
    let done = rollout(&sb);
    assert_eq!(done["state"], "succeeded");
    let soak = done["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seq"] == step["seq"])
        .unwrap()
        .clone();
    assert_eq!(
        (soak["state"].as_str(), soak["soaked_ms"].as_u64()),
        (Some("done"), Some(4000))
    );
    assert_eq!(
        generations(&sb),
        ["R1=10000", "R2=5000 R1=5000", "R2=10000"],
        "no step ran twice"
    );
}

/// `dev`'s web split naming R0 at 0 bps beside R1, then R0 archived: the
/// state the quick start leaves behind, from which an earlier split could
/// not be applied again.
fn serving_r1_beside_archived_r0() -> Sandbox {
    let sb = operator();
    stage_ready(&sb, "R1");
    stage_ready(&sb, "R0");
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000", "R0=0"]);
    ok(&sb, &["revision", "archive", "dev", "R0"]);
    assert_eq!(lifecycle(&sb, "R0"), "archived");
    sb
}

#[test]
fn traffic_rollback_leaves_out_a_revision_archived_at_zero() {
    let sb = serving_r1_beside_archived_r0();
    stage_ready(&sb, "R2");
    ok(&sb, &["traffic", "set", "dev", "web", "R1=5000", "R2=5000"]);
    ok(&sb, &["traffic", "rollback", "dev", "web"]);
    assert_eq!(
        generations(&sb),
        ["R1=10000 R0=0", "R1=5000 R2=5000", "R1=10000"],
        "the previous split without the archived revision"
    );
    // An archived revision that had weight is still refused by name.
    sb.host()
        .args(["traffic", "set", "dev", "web", "R1=5000", "R0=5000"])
        .assert()
        .failure()
        .stderr(contains("R0 is archived"));
}

#[test]
fn a_failed_canary_rolls_back_past_a_revision_archived_at_zero() {
    let sb = serving_r1_beside_archived_r0();
    crate::common::stage(&sb, "dev", "R2");
    let child = start_rollout(
        &sb,
        "dev web --to R2 --steps 10,50,100 --soak 20s --interval 100ms --analysis probe=2",
    );
    wait_for_step(&sb, "soaking step 1", |s| soaking(s, "step 1"));
    mark_unhealthy(&sb, "R2");
    let (code, stderr) = finished(child);
    assert_eq!(code, 1, "a rolled-back rollout exits 1: {stderr}");
    assert_eq!(rollout(&sb)["state"], "rolled-back", "{stderr}");
    assert_eq!(generations(&sb).last().unwrap(), "R1=10000", "{:?}", generations(&sb));
    assert_eq!(lifecycle(&sb, "R2"), "inactive", "the new revision is drained");
    // And the deployment is not wedged: a new rollout starts and succeeds.
    mark_unhealthy(&sb, "");
    crate::common::stage(&sb, "dev", "R3");
    let out = run_rollout(&sb, "dev web --to R3 --steps 50,100 --soak 100ms --interval 50ms");
    assert!(out.contains("succeeded"), "{out}");
    assert_eq!(generations(&sb).last().unwrap(), "R3=10000");
}

#[test]
fn traffic_rollback_to_any_earlier_generation_refusing_archived_ones_by_name() {
    let sb = operator();
    stage_ready(&sb, "R1");
    stage_ready(&sb, "R2");
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000"]);
    ok(&sb, &["traffic", "set", "dev", "web", "R1=5000", "R2=5000"]);
    ok(&sb, &["traffic", "set", "dev", "web", "R2=10000"]);
    let out = ok(&sb, &["traffic", "rollback", "dev", "web", "--to", "1"]);
    assert!(out.contains("generation 4"), "{out}");
    assert_eq!(
        generations(&sb),
        ["R1=10000", "R1=5000 R2=5000", "R2=10000", "R1=10000"]
    );
    let refused = |args: &[&str], message: &str| {
        let mut all = vec!["traffic", "rollback", "dev", "web"];
        all.extend(args);
        sb.host().args(&all).assert().code(2).stderr(contains(message));
    };
    refused(&["--to", "4"], "generation 4 is web's current split");
    refused(
        &["--to", "9"],
        "has no generation 9 to roll back to (its current one is 4",
    );
    refused(&["--to", "0"], "has no generation 0");
    // R2 drained and archived: generation 3 gave it all the traffic.
    ok(&sb, &["revision", "drain", "dev", "R2"]);
    ok(&sb, &["revision", "archive", "dev", "R2"]);
    refused(&["--to", "3"], "revision R2 is archived");
    assert_eq!(generations(&sb).len(), 4, "a refused rollback records nothing");
    let refusals: Vec<String> = audit_commands(&sb)
        .into_iter()
        .filter(|(c, a, _)| c == "traffic rollback" && a.contains("\"to\""))
        .map(|(_, a, r)| format!("{a} {r}"))
        .collect();
    assert_eq!(
        refusals.len(),
        5,
        "each rollback, refused or not, is audited: {refusals:?}"
    );
}

#[test]
fn a_drain_the_pack_keeps_refusing_is_left_by_abandoning_the_revision() {
    let sb = operator();
    stage_ready(&sb, "R1");
    stage_ready(&sb, "R2");
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000"]);
    ok(
        &sb,
        &[
            "env",
            "bind",
            "dev",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--setting",
            "refuse-drain=R2",
        ],
    );
    for _ in 0..2 {
        sb.host()
            .args(["revision", "drain", "dev", "R2"])
            .assert()
            .failure()
            .stderr(contains("refuses to drain R2"));
        assert_eq!(lifecycle(&sb, "R2"), "draining");
    }
    sb.host()
        .args(["revision", "archive", "dev", "R2"])
        .assert()
        .code(2)
        .stderr(contains("R2 is draining"));
    let refused = |args: &[&str], message: &str| {
        sb.host().args(args).assert().code(2).stderr(contains(message));
    };
    refused(&["revision", "abandon", "dev", "R2"], "--reason");
    refused(
        &["revision", "abandon", "dev", "R2", "--reason", " "],
        "needs a --reason",
    );
    refused(
        &["revision", "abandon", "dev", "R1", "--reason", "x"],
        "R1 still has traffic",
    );
    refused(
        &["revision", "abandon", "dev", "R9", "--reason", "x"],
        "has no revision \"R9\"",
    );
    let out = ok(
        &sb,
        &[
            "revision",
            "abandon",
            "dev",
            "R2",
            "--reason",
            "the provider lost the task",
        ],
    );
    assert!(out.contains("archived"), "{out}");
    assert_eq!(lifecycle(&sb, "R2"), "archived");
    refused(
        &["revision", "abandon", "dev", "R2", "--reason", "again"],
        "already archived",
    );
    let events = json(&sb, &["events", "dev", "--json"]);
    let last = events
        .as_array()
        .unwrap()
        .iter()
        .rfind(|e| e["revision"] == "R2")
        .unwrap()
        .clone();
    assert_eq!(
        (last["from"].as_str(), last["to"].as_str()),
        (Some("draining"), Some("archived"))
    );
    let reason = last["reason"].as_str().unwrap();
    assert!(
        reason.contains("the provider lost the task") && reason.contains("the pack was not called"),
        "{reason}"
    );
    let abandons: Vec<String> = audit_commands(&sb)
        .into_iter()
        .filter(|(c, _, _)| c == "revision abandon")
        .map(|(_, _, outcome)| outcome)
        .collect();
    assert_eq!(
        abandons.len(),
        5,
        "every abandon, refused or not, is audited: {abandons:?}"
    );
    // The rest of the deployment moves on.
    stage_ready(&sb, "R3");
    run_rollout(&sb, "dev web --to R3 --steps 100 --soak 10ms --interval 10ms");
    assert_eq!(generations(&sb).last().unwrap(), "R3=10000");
}

#[test]
fn a_split_forced_during_a_soak_pauses_the_rollout_instead_of_being_overwritten() {
    let sb = serving_r1();
    let child = start_rollout(&sb, "dev web --to R2 --steps 10,50,100 --soak 20s --interval 100ms");
    wait_for_step(&sb, "soaking step 1", |s| soaking(s, "step 1"));
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000", "R2=0", "--force"]);
    let (code, stderr) = finished(child);
    assert_eq!(code, 7, "the driver stops at the pause, unfinished: {stderr}");
    assert!(stderr.contains("is paused, not finished"), "{stderr}");
    let r = rollout(&sb);
    assert_eq!(r["state"], "paused", "{r:#}");
    assert!(r["reason"].as_str().unwrap().contains("--force"), "{r:#}");
    assert_eq!(
        generations(&sb).last().unwrap(),
        "R1=10000 R2=0",
        "the forced split stands"
    );
    // The operator decides: abort restores the split the rollout started from.
    ok(&sb, &["rollout", "abort", "dev", "web"]);
    assert_eq!(rollout(&sb)["state"], "rolled-back");
    assert_eq!(generations(&sb).last().unwrap(), "R1=10000");
}

/// An operator's drain or archive of a revision an unfinished rollout
/// needs (its target, or what an abort goes back to) is refused: taking
/// it down left the rollout unable to finish or roll back.
#[test]
fn revisions_a_rollout_needs_cannot_be_taken_down_under_it() {
    let sb = serving_r1();
    ok(&sb, &["revision", "warm", "dev", "R2"]);
    ok(
        &sb,
        &[
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "R2",
            "--steps",
            "50,100",
            "--soak",
            "100ms",
            "--no-drive",
        ],
    );
    for (id, role) in [("R1", "what it goes back to if aborted"), ("R2", "its target")] {
        for verb in ["drain", "archive"] {
            let out = sb.host().args(["revision", verb, "dev", id]).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{verb} {id}: {stderr}");
            assert!(stderr.contains(role) && stderr.contains("rollout cancel"), "{stderr}");
            assert_eq!(lifecycle(&sb, id), "ready");
        }
    }
    // The rollout itself still drains the old revision at its end.
    ok(&sb, &["rollout", "resume", "dev", "web"]);
    let r = rollout(&sb);
    assert_eq!(r["state"], "succeeded", "{r:#}");
    assert_eq!(lifecycle(&sb, "R1"), "inactive");
}
