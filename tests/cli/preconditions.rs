//! Host-side preconditions: each is refused before any guest code runs. The
//! proof is the pack's own evidence: the reference pack logs on entry to
//! every verb and keeps its state in kv, and neither shows any call.

use crate::common::{A1, A2, B1, LEDGER, Sandbox, error_kind, fixture, with_web_split};
use serde_json::{Value, json};

/// Stages A1 so that the kv state is not empty, then returns its bytes.
fn seeded(sb: &Sandbox) -> Vec<u8> {
    let env = sb.env_file("seed", &fixture(json!({})));
    let (out, v) = sb.call(LEDGER, "stage-revision", &env, &["--revision", A1]);
    assert!(out.status.success(), "{v:#}");
    let kv = sb.kv_bytes();
    assert!(!kv.is_empty());
    kv
}

fn assert_refused_before_guest(sb: &Sandbox, doc: &Value, verb: &str, target: &[&str], kind: &str) -> Value {
    let before = seeded(sb);
    let env = sb.env_file("case", doc);
    let (out, v) = sb.call(LEDGER, verb, &env, target);
    assert_eq!(out.status.code(), Some(1), "{v:#}");
    assert_eq!(error_kind(&v), kind, "{v:#}");
    assert_eq!(v["result"]["error"]["precondition"], true);
    assert_eq!(v["guest_entered"], false, "{v:#}");
    assert_eq!(
        v["recording"]["calls"],
        json!([]),
        "the pack logged or touched kv: {v:#}"
    );
    assert_eq!(sb.kv_bytes(), before, "the pack's kv changed");
    v
}

#[test]
fn unknown_revision_is_refused_for_every_revision_verb() {
    for verb in [
        "stage-revision",
        "warm-revision",
        "drain-revision",
        "archive-revision",
        "probe-revision",
    ] {
        let sb = Sandbox::new();
        let v = assert_refused_before_guest(
            &sb,
            &fixture(json!({})),
            verb,
            &["--revision", "01JBWNOTHERE"],
            "revision-not-found",
        );
        assert!(
            v["result"]["error"]["message"]
                .as_str()
                .unwrap()
                .contains("01JBWNOTHERE")
        );
    }
}

#[test]
fn missing_split_is_refused() {
    let sb = Sandbox::new();
    let mut doc = fixture(json!({}));
    doc["deployments"][1]["split"] = Value::Null;
    assert_refused_before_guest(
        &sb,
        &doc,
        "apply-traffic-split",
        &["--deployment", "api"],
        "split-not-found",
    );
    let sb = Sandbox::new();
    assert_refused_before_guest(
        &sb,
        &fixture(json!({})),
        "apply-traffic-split",
        &["--deployment", "nope"],
        "split-not-found",
    );
}

#[test]
fn bad_sums_are_refused_with_the_sum() {
    let cases = [
        (json!([{ "revision": A1, "weight_bps": 9000 }]), "sums to 9000"),
        (
            json!([{ "revision": A1, "weight_bps": 9000 }, { "revision": A2, "weight_bps": 1001 }]),
            "sums to 10001",
        ),
        (
            json!([{ "revision": A1, "weight_bps": 10001 }, { "revision": A2, "weight_bps": 0 }]),
            "at most 10000",
        ),
        (json!([]), "no entries"),
        // 4294967295 + 10001 wraps to 10000 in u32; the host sums in u64.
        (
            json!([{ "revision": A1, "weight_bps": 4294967295u32 }, { "revision": A2, "weight_bps": 10001 }]),
            "sums to 4294977296",
        ),
    ];
    for (entries, expected) in cases {
        let sb = Sandbox::new();
        let v = assert_refused_before_guest(
            &sb,
            &with_web_split(entries),
            "apply-traffic-split",
            &["--deployment", "web"],
            "invalid-split",
        );
        let message = v["result"]["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "expected {expected:?} in {message}");
    }
}

#[test]
fn split_entries_must_name_revisions_of_that_deployment() {
    let sb = Sandbox::new();
    let doc = with_web_split(json!([{ "revision": A1, "weight_bps": 5000 }, { "revision": B1, "weight_bps": 5000 }]));
    let v = assert_refused_before_guest(
        &sb,
        &doc,
        "apply-traffic-split",
        &["--deployment", "web"],
        "foreign-revision",
    );
    assert!(
        v["result"]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("belongs to deployment \"api\"")
    );

    let sb = Sandbox::new();
    let doc =
        with_web_split(json!([{ "revision": A1, "weight_bps": 5000 }, { "revision": "ghost", "weight_bps": 5000 }]));
    assert_refused_before_guest(
        &sb,
        &doc,
        "apply-traffic-split",
        &["--deployment", "web"],
        "revision-not-found",
    );
}
