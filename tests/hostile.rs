//! Hostile packs through the real binary: each misbehaviour ends in a clear
//! `provider` (or verification) error naming verb and cause, nothing of the
//! call is saved, and a normal call afterwards works.

mod common;

use common::{A1, Sandbox, TEST_HOSTILE, error_kind, error_message, fixture};
use serde_json::json;

/// Runs stage-revision of A1 in `mode` and returns (exit code, kind, message).
fn stage_in_mode(sb: &Sandbox, mode: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let env = sb.env_file(mode, &fixture(json!({ "mode": mode })));
    let mut target = vec!["--revision", A1];
    target.extend_from_slice(extra);
    let (out, v) = sb.call(TEST_HOSTILE, "stage-revision", &env, &target);
    assert_eq!(v["guest_entered"], true, "{v:#}");
    assert_eq!(v["kv_committed"], false, "{v:#}");
    (
        out.status.code(),
        error_kind(&v).to_string(),
        error_message(&v).to_string(),
    )
}

fn assert_normal_call_works(sb: &Sandbox) {
    let env = sb.env_file("normal", &fixture(json!({})));
    let (out, v) = sb.call(TEST_HOSTILE, "stage-revision", &env, &["--revision", A1]);
    assert!(out.status.success(), "normal call after a hostile one: {v:#}");
    assert_eq!(v["result"]["ok"]["revision"], A1);
}

fn assert_provider_error(mode: &str, extra: &[&str], needle: &str) {
    let sb = Sandbox::new();
    let (code, kind, message) = stage_in_mode(&sb, mode, extra);
    assert_eq!(code, Some(1), "{mode}: {message}");
    assert_eq!(kind, "provider", "{mode}: {message}");
    assert!(
        message.contains("stage-revision failed"),
        "{mode}: the verb is not named: {message}"
    );
    assert!(message.contains(needle), "{mode}: expected {needle:?} in {message}");
    assert_normal_call_works(&sb);
}

#[test]
fn a_looping_pack_is_stopped_at_the_deadline() {
    assert_provider_error("loop", &["--deadline-ms", "300"], "ran past its deadline of 300 ms");
}

#[test]
fn a_pack_blocked_in_a_wasi_sleep_is_stopped_at_the_deadline() {
    assert_provider_error("sleep", &["--deadline-ms", "300"], "ran past its deadline of 300 ms");
}

#[test]
fn a_pack_allocating_without_bound_is_stopped_at_the_budget() {
    assert_provider_error("alloc", &["--memory-mib", "16"], "over the budget of 16777216 bytes");
}

#[test]
fn a_trapping_pack_reports_its_panic() {
    assert_provider_error("trap", &[], "deliberate trap in stage-revision");
}

#[test]
fn a_huge_result_is_refused() {
    assert_provider_error("huge", &[], "over the cap of 1048576 bytes");
}

#[test]
fn an_undeclared_capability_is_refused() {
    let sb = Sandbox::new();
    let env = sb.env_file("undeclared", &fixture(json!({ "mode": "undeclared" })));
    let (out, v) = sb.call(TEST_HOSTILE, "stage-revision", &env, &["--revision", A1]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        error_message(&v).contains("does not declare capability `clock`"),
        "{v:#}"
    );
    let refused = v["recording"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["allowed"] == false)
        .cloned();
    assert_eq!(refused.map(|c| c["operation"].clone()), Some(json!("clock.now-ms")));
}

#[test]
fn an_ungranted_capability_is_refused() {
    let sb = Sandbox::new();
    let mut doc = fixture(json!({ "mode": "write-then-trap" }));
    doc["capabilities"] = json!(["log"]);
    let env = sb.env_file("ungranted", &doc);
    let (_, v) = sb.call(TEST_HOSTILE, "stage-revision", &env, &["--revision", A1]);
    assert!(error_message(&v).contains("capability `kv` is not granted"), "{v:#}");
}

#[test]
fn kv_writes_of_a_trapping_call_are_discarded() {
    let sb = Sandbox::new();
    let (_, kind, message) = stage_in_mode(&sb, "write-then-trap", &[]);
    assert_eq!(kind, "provider", "{message}");
    assert!(
        !String::from_utf8_lossy(&sb.kv_bytes()).contains("half-done"),
        "the trapped call's write was saved"
    );
}

#[test]
fn a_pack_echoing_another_deployment_is_refused() {
    let sb = Sandbox::new();
    let env = sb.env_file("echo", &fixture(json!({ "mode": "wrong-echo" })));
    let (out, v) = sb.call(TEST_HOSTILE, "apply-traffic-split", &env, &["--deployment", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(error_kind(&v), "cross-deployment-interference", "{v:#}");
    assert!(error_message(&v).contains("returned api:"), "{v:#}");
    assert_normal_call_works(&sb);
}

#[test]
fn a_pack_echoing_another_revision_is_refused() {
    let sb = Sandbox::new();
    let (code, kind, message) = stage_in_mode(&sb, "wrong-revision", &[]);
    assert_eq!((code, kind.as_str()), (Some(1), "outcome-mismatch"), "{message}");
}
