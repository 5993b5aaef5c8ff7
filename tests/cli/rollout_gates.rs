//! Rollout analysis beyond one synthetic request: gates at every step and
//! through a bake at 100% (the old revision still warm), a manual gate
//! that holds until `rollout continue`, a metric gate whose Prometheus
//! cannot answer, a first deploy checked before any traffic, and gate
//! options refused by name. The real-Prometheus runs are in
//! `local_process.rs`; these use the ledger pack's probe.

use std::time::Duration;

use serde_json::Value;

use crate::common::rollout::{
    finished, generations, lifecycle, mark_unhealthy, rollout, serving_r1, soaking, start_rollout, wait_for_step,
};
use crate::common::{free_port, ok, operator};

/// The soak steps' `(state, note)`, in order.
fn soaks(r: &Value) -> Vec<(String, String)> {
    r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["action"]["kind"] == "soak")
        .map(|s| {
            (
                s["state"].as_str().unwrap().to_string(),
                s["note"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn a_canary_that_turns_bad_during_the_bake_rolls_back_with_the_old_revision_still_serving() {
    let sb = serving_r1();
    let child = start_rollout(
        &sb,
        "dev web --to R2 --steps 100 --soak 200ms --bake 30s --interval 100ms --analysis probe=2",
    );
    wait_for_step(&sb, "baking", |s| soaking(s, "bake at 100%"));
    assert_eq!(generations(&sb).last().unwrap(), "R2=10000");
    assert_eq!(
        lifecycle(&sb, "R1"),
        "ready",
        "the old revision stays warm through the bake"
    );
    mark_unhealthy(&sb, "R2");
    let (code, stderr) = finished(child);
    assert_eq!(code, 1, "rolled back: {stderr}");
    assert_eq!(generations(&sb), ["R1=10000", "R2=10000", "R1=10000"]);
    assert_eq!(lifecycle(&sb, "R1"), "ready");
    assert_eq!(lifecycle(&sb, "R2"), "inactive");
    let r = rollout(&sb);
    assert_eq!(r["state"], "rolled-back");
    assert!(r["reason"].as_str().unwrap().contains("bake at 100%"), "{r:#}");
    // The 100% step soaked with its gate before the bake began.
    let soaks = soaks(&r);
    assert_eq!(soaks[0].0, "done", "{soaks:?}");
    assert!(soaks[0].1.contains("probe: healthy"), "{soaks:?}");
}

#[test]
fn a_manual_gate_holds_each_soak_until_continue_which_is_not_promote() {
    let sb = serving_r1();
    let child = start_rollout(
        &sb,
        "dev web --to R2 --steps 50,100 --soak 100ms --interval 50ms --analysis manual",
    );
    let held = |sb: &_| {
        wait_for_step(sb, "a soak held", |s| {
            s["action"]["kind"] == "soak" && s["state"] == "started" && s["soaked_ms"] == 100
        })
    };
    let first = held(&sb);
    // Held well past its time: still at 50%, still soaking.
    std::thread::sleep(Duration::from_millis(600));
    let again = rollout(&sb);
    let step = again["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["seq"] == first["seq"])
        .unwrap();
    assert_eq!(step["state"], "started", "{again:#}");
    assert_eq!(generations(&sb).last().unwrap(), "R2=5000 R1=5000");
    let shown = ok(&sb, &["rollout", "status", "dev", "web"]);
    assert!(shown.contains("host rollout continue dev web"), "{shown}");
    ok(&sb, &["rollout", "continue", "dev", "web", "--actor", "carol"]);
    // Continue ends one soak: the rollout moves to 100% and holds again there.
    let second = held(&sb);
    assert_ne!(second["seq"], first["seq"]);
    assert_eq!(generations(&sb).last().unwrap(), "R2=10000");
    assert_eq!(lifecycle(&sb, "R1"), "ready", "not drained while the 100% soak holds");
    ok(&sb, &["rollout", "continue", "dev", "web"]);
    let (code, stderr) = finished(child);
    assert_eq!(code, 0, "{stderr}");
    let r = rollout(&sb);
    assert_eq!(r["state"], "succeeded");
    let soaks = soaks(&r);
    assert_eq!(soaks.len(), 2);
    assert!(soaks[0].1.contains("continued by carol"), "{soaks:?}");
    assert_eq!(lifecycle(&sb, "R1"), "inactive");
    // Nothing to continue any more: refused by name.
    let out = sb.host().args(["rollout", "continue", "dev", "web"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no rollout in progress"));
}

#[test]
fn a_first_deploy_is_checked_before_any_traffic_and_a_failed_one_leaves_no_split() {
    let sb = operator();
    crate::common::stage(&sb, "dev", "R1");
    mark_unhealthy(&sb, "R1");
    let out = sb
        .host()
        .args([
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "R1",
            "--soak",
            "100ms",
            "--interval",
            "20ms",
        ])
        .args(["--analysis", "probe=2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(generations(&sb).is_empty(), "no traffic ever went to it");
    assert_eq!(lifecycle(&sb, "R1"), "inactive");
    assert_eq!(rollout(&sb)["state"], "rolled-back");
    mark_unhealthy(&sb, "");
    crate::common::stage(&sb, "dev", "R2");
    ok(
        &sb,
        &[
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "R2",
            "--soak",
            "100ms",
            "--interval",
            "20ms",
            "--analysis",
            "probe",
        ],
    );
    assert_eq!(generations(&sb), ["R2=10000"]);
    assert_eq!(lifecycle(&sb, "R2"), "ready");
}

#[test]
fn a_metric_gate_that_cannot_reach_prometheus_pauses_or_rolls_back_as_asked() {
    let sb = serving_r1();
    let down = format!(
        "prometheus=http://127.0.0.1:{}/,max=0.05,inconclusive=3,query=sum(rate(app_requests_total{{revision=\"{{{{revision}}}}\"}}[30s]))",
        free_port()
    );
    let out = sb
        .host()
        .args(["rollout", "start", "dev", "web", "--to", "R2", "--steps", "50,100"])
        .args(["--soak", "10s", "--interval", "50ms", "--analysis", &down])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(7), "paused, not finished: {stderr}");
    assert!(stderr.contains("is paused, not finished"), "{stderr}");
    let r = rollout(&sb);
    assert_eq!(r["state"], "paused");
    let reason = r["reason"].as_str().unwrap();
    assert!(
        reason.contains("3 inconclusive results") && reason.contains("unreachable"),
        "{reason}"
    );
    assert_eq!(
        generations(&sb).last().unwrap(),
        "R2=5000 R1=5000",
        "it holds where it was"
    );
    ok(&sb, &["rollout", "abort", "dev", "web"]);
    assert_eq!(generations(&sb).last().unwrap(), "R1=10000");
    // Asked to roll back instead.
    crate::common::stage(&sb, "dev", "R3");
    let rollback = down.replace(",inconclusive=3,", ",inconclusive=2,on-inconclusive=rollback,");
    let out = sb
        .host()
        .args(["rollout", "start", "dev", "web", "--to", "R3", "--steps", "50,100"])
        .args(["--soak", "10s", "--interval", "50ms", "--analysis", &rollback])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(rollout(&sb)["state"], "rolled-back");
    assert_eq!(generations(&sb).last().unwrap(), "R1=10000");
}

#[test]
fn a_gate_option_that_does_not_exist_is_refused_by_name_and_nothing_is_recorded() {
    let sb = serving_r1();
    for (gate, expect) in [
        (
            "http=http://127.0.0.1:9/,max-errors=0.1",
            "unknown option \"max-errors\"",
        ),
        (
            "prometheus=http://127.0.0.1:9/,maximum=1,query=up",
            "unknown option \"maximum\"",
        ),
        (
            "prometheus=http://127.0.0.1:9/,max=1,query=x{r=\"{{canary}}\"}",
            "unknown placeholder {{canary}}",
        ),
        ("prometheus=http://127.0.0.1:9/,query=up", "needs a threshold"),
        ("manual=later", "takes no value"),
    ] {
        let out = sb
            .host()
            .args(["rollout", "start", "dev", "web", "--to", "R2", "--analysis", gate])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{gate}: {stderr}");
        assert!(stderr.contains(expect), "{gate}: {stderr}");
    }
    let out = sb
        .host()
        .args([
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "R2",
            "--strategy",
            "blue-green",
            "--steps",
            "10,100",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--steps is for canary"));
    let out = ok(&sb, &["rollout", "status", "dev", "web"]);
    assert_eq!(out.trim(), "no rollouts");
    // A metric gate to an origin neither loopback nor granted is refused.
    let out = sb
        .host()
        .args(["rollout", "start", "dev", "web", "--to", "R2", "--analysis"])
        .arg("prometheus=http://prometheus.example:9090,max=1,query=up")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-http http://prometheus.example:9090"));
}

/// A pack built against contract 1.1 cannot say where a revision is
/// reached: a gate aimed at the canary is refused before anything is
/// recorded, and so is `revision endpoint`, naming why.
#[test]
fn a_gate_aimed_at_the_canary_needs_a_pack_that_says_where_it_is() {
    let sb = serving_r1();
    let out = sb
        .host()
        .args([
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "R2",
            "--analysis",
            "http={{canary}}/healthz",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exports no `endpoints`"), "{stderr}");
    assert_eq!(ok(&sb, &["rollout", "status", "dev", "web"]).trim(), "no rollouts");
    let out = sb.host().args(["revision", "endpoint", "dev", "R1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("exports no `endpoints`"));
}
