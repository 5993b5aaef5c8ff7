//! `host call` of every verb of the reference pack, through the full host
//! path, with the pack's kv state carried between calls.

use crate::common::{A1, A2, B1, LEDGER, Sandbox, fixture};
use predicates::str::contains;
use serde_json::json;

#[test]
fn every_verb_of_the_reference_pack_works_in_order() {
    let sb = Sandbox::new();
    let env = sb.env_file("dev", &fixture(json!({})));
    for (verb, rev) in [
        ("stage-revision", A1),
        ("stage-revision", A2),
        ("stage-revision", B1),
        ("warm-revision", A1),
        ("warm-revision", A2),
        ("warm-revision", B1),
    ] {
        let (out, v) = sb.call(LEDGER, verb, &env, &["--revision", rev]);
        assert!(out.status.success(), "{verb} {rev}: {v:#}");
        assert_eq!(v["result"]["ok"]["revision"], rev);
        assert_eq!(v["guest_entered"], true);
        assert_eq!(v["kv_committed"], true);
    }

    // Before any split is applied the pack's view lacks every block: drift.
    let (out, v) = sb.call(LEDGER, "report-runtime-config", &env, &[]);
    assert_eq!(out.status.code(), Some(4), "{v:#}");
    assert_eq!(v["result"]["ok"]["drift"], true);

    for dep in ["web", "api"] {
        let (out, v) = sb.call(LEDGER, "apply-traffic-split", &env, &["--deployment", dep]);
        assert!(out.status.success(), "{v:#}");
        assert_eq!(v["result"]["ok"]["deployment"], dep);
    }
    let (out, v) = sb.call(LEDGER, "apply-traffic-split", &env, &["--deployment", "web"]);
    assert!(out.status.success(), "idempotent re-apply: {v:#}");
    assert_eq!(
        v["result"]["ok"]["entries"],
        json!([{ "revision": A1, "weight_bps": 9000 }, { "revision": A2, "weight_bps": 1000 }])
    );

    let (out, v) = sb.call(LEDGER, "report-runtime-config", &env, &[]);
    assert!(out.status.success(), "{v:#}");
    let ok = &v["result"]["ok"];
    assert_eq!(ok["drift"], false);
    assert_eq!(ok["pack"], ok["host"]);
    assert_eq!(ok["host"]["entries"].as_array().unwrap().len(), 3);
    assert_eq!(ok["host"]["schema"], "envpack.runtime-config/v1");

    let (_, v) = sb.call(LEDGER, "probe-revision", &env, &["--revision", A1]);
    assert_eq!(v["result"]["ok"]["health"]["status"], "healthy");

    for verb in [
        "drain-revision",
        "drain-revision",
        "archive-revision",
        "archive-revision",
    ] {
        let (out, v) = sb.call(LEDGER, verb, &env, &["--revision", A2]);
        assert!(out.status.success(), "{verb}: {v:#}");
    }
    let (_, v) = sb.call(LEDGER, "probe-revision", &env, &["--revision", A2]);
    assert_eq!(v["result"]["ok"]["health"]["status"], "unhealthy");
}

#[test]
fn calls_are_idempotent_in_the_pack_state() {
    let sb = Sandbox::new();
    let env = sb.env_file("dev", &fixture(json!({})));
    sb.call(LEDGER, "stage-revision", &env, &["--revision", A1]);
    let once = sb.kv_bytes();
    let (out, v) = sb.call(LEDGER, "stage-revision", &env, &["--revision", A1]);
    assert!(out.status.success(), "{v:#}");
    assert_eq!(sb.kv_bytes(), once, "a second stage changed the pack's state");
}

#[test]
fn describe_prints_what_the_pack_declares() {
    let sb = Sandbox::new();
    sb.host()
        .args(["call", LEDGER, "describe", "--json"])
        .assert()
        .success()
        .stdout(contains("\"descriptor\": \"envpack.deployer.ledger@1.0.0\""));
}

#[test]
fn human_output_shows_outcome_and_capability_calls() {
    let sb = Sandbox::new();
    let env = sb.env_file("dev", &fixture(json!({})));
    sb.host()
        .args(["call", LEDGER, "stage-revision", "--revision", A1, "--env"])
        .arg(&env)
        .assert()
        .success()
        .stdout(contains("ok stage-revision"))
        .stdout(contains(format!("kv.set rev/{A1}")));
}

#[test]
fn usage_errors_name_the_problem() {
    let sb = Sandbox::new();
    let env = sb.env_file("dev", &fixture(json!({})));
    let run = |args: &[&str]| {
        let mut cmd = sb.host();
        cmd.args(["call", LEDGER]).args(args).arg("--env").arg(&env);
        cmd.assert()
    };
    run(&["stage-revison", "--revision", A1])
        .code(2)
        .stderr(contains("unknown verb \"stage-revison\""))
        .stderr(contains("verbs are:"));
    run(&["stage-revision"])
        .code(2)
        .stderr(contains("stage-revision needs --revision ID"));
    run(&["apply-traffic-split", "--revision", A1])
        .code(2)
        .stderr(contains("does not take --revision"));
    run(&["apply-traffic-split"])
        .code(2)
        .stderr(contains("needs --deployment ID"));
}

#[test]
fn malformed_environment_is_refused_with_its_problem() {
    let sb = Sandbox::new();
    let bad = sb.dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"id": "dev", "deployments": [{"id": "web", "revisions": [{"id": "r1"}]}]}"#,
    )
    .unwrap();
    sb.host()
        .args(["call", LEDGER, "stage-revision", "--revision", "r1", "--env"])
        .arg(&bad)
        .assert()
        .code(2)
        .stderr(contains("bad.json"))
        .stderr(contains("missing field"));

    let mut doc = fixture(json!({}));
    doc["deployments"][0]["revisions"][1]["id"] = json!(A1);
    let dup = sb.env_file("dup", &doc);
    sb.host()
        .args(["call", LEDGER, "stage-revision", "--revision", A1, "--env"])
        .arg(&dup)
        .assert()
        .code(2)
        .stderr(contains(format!("revision id \"{A1}\" appears more than once")));
    assert!(sb.kv_bytes().is_empty(), "a refused environment wrote state");
}
