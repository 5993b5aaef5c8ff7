//! The bench against the workspace's packs: the reference pack passes the
//! extended profile, and each faulty pack (the reference with exactly one
//! property broken) fails exactly the check for that property.

use std::sync::Arc;
use std::time::Duration;

use envpack_conformance::{BenchConfig, Profile, SignatureStatus, Status, run};
use envpack_host::{HostConfig, MemoryKv, Runtime};
use envpack_test_packs::{FAULTY, LEDGER};

fn runtime() -> Runtime {
    let config = HostConfig {
        // The host's default deadline: `budgets.time` judges by it.
        deadline: Duration::from_secs(2),
        ..HostConfig::default()
    };
    Runtime::new(config, Arc::new(MemoryKv::default())).unwrap()
}

fn extended() -> BenchConfig {
    BenchConfig {
        profile: Profile::Extended,
        history: 2_000,
        ..BenchConfig::default()
    }
}

/// The checks each fault must fail: its own check, and only where the fault
/// really shows there too, another.
fn expected_checks(fault: &str) -> &'static [&'static str] {
    match fault {
        // Deleting api's state when web is applied (after api, as the happy
        // path does when it moves traffic off A2) also makes the pack's
        // report drift from the host's record.
        "touches-sibling" => &["split.isolation", "runtime-config.drift"],
        other => std::slice::from_ref(expected_check(other)),
    }
}

/// The one check a fault is about.
fn expected_check(fault: &str) -> &'static &'static str {
    match fault {
        "accepts-unknown-revision" => &"spec.unknown-revision",
        "spec-error-as-provider" => &"spec.typed-errors",
        "accepts-bad-sum" => &"spec.invalid-split",
        "not-idempotent" => &"idempotency",
        "echoes-wrong-deployment" => &"verbs.echo",
        "touches-sibling" => &"split.isolation",
        "writes-before-rejecting" => &"spec.no-side-effect-before-error",
        "undeclared-capability" => &"capability.declared",
        "drifting-runtime-config" => &"runtime-config.drift",
        "too-slow" => &"budgets.time",
        other => panic!("no expected check for fault {other:?}: add it here"),
    }
}

#[tokio::test]
async fn the_reference_pack_passes_extended() {
    let rt = runtime();
    let pack = rt.load_pack_file(LEDGER.as_ref()).await.unwrap();
    let report = run(&rt, &pack, LEDGER, &SignatureStatus::Unsigned, &extended()).await;
    assert!(report.passed(), "{}", envpack_conformance::render::human(&report));
    let skipped: Vec<&str> = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Skip)
        .map(|c| c.id.as_str())
        .collect();
    // An unsealed, unsigned build skips exactly the manifest and signature checks.
    assert_eq!(skipped, ["manifest.agrees", "signature.trusted"]);
}

#[tokio::test]
async fn each_faulty_pack_fails_exactly_its_own_check() {
    assert_eq!(FAULTY.len(), 10, "one faulty pack per fault");
    let rt = runtime();
    for (fault, path) in FAULTY {
        let pack = rt.load_pack_file(path.as_ref()).await.unwrap();
        let report = run(&rt, &pack, path, &SignatureStatus::Unsigned, &extended()).await;
        let expected = *expected_check(fault);
        assert_eq!(
            report.failed_ids(),
            expected_checks(fault),
            "faulty pack {fault}:\n{}",
            envpack_conformance::render::human(&report)
        );
        let failed = report.checks.iter().find(|c| c.id == expected).unwrap();
        assert!(
            !failed.message.trim().is_empty(),
            "{fault}: a failure must say what happened"
        );
    }
}

#[tokio::test]
async fn two_runs_on_one_runtime_do_not_share_pack_state() {
    let rt = runtime();
    let pack = rt.load_pack_file(LEDGER.as_ref()).await.unwrap();
    for _ in 0..2 {
        let report = run(&rt, &pack, LEDGER, &SignatureStatus::Unsigned, &BenchConfig::default()).await;
        assert!(report.passed(), "{}", envpack_conformance::render::human(&report));
    }
}

#[tokio::test]
async fn the_core_profile_selects_only_core_checks() {
    let rt = runtime();
    let pack = rt.load_pack_file(LEDGER.as_ref()).await.unwrap();
    let report = run(&rt, &pack, LEDGER, &SignatureStatus::Unsigned, &BenchConfig::default()).await;
    assert!(report.checks.iter().all(|c| c.profile == Profile::Core));
    assert!(report.checks.iter().any(|c| c.id == "spec.typed-errors"));
    assert!(!report.checks.iter().any(|c| c.id == "budgets.time"));
}

#[test]
fn json_and_junit_carry_every_check() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(async {
        let host = runtime();
        let pack = host.load_pack_file(FAULTY[0].1.as_ref()).await.unwrap();
        run(
            &host,
            &pack,
            FAULTY[0].1,
            &SignatureStatus::Unsigned,
            &BenchConfig::default(),
        )
        .await
    });
    let json: serde_json::Value =
        serde_json::from_str(&envpack_conformance::render::json(std::slice::from_ref(&report))).unwrap();
    assert_eq!(json["summary"]["failed"], 1);
    assert_eq!(json["checks"].as_array().unwrap().len(), report.checks.len());
    for key in ["pack", "descriptor", "profile", "summary", "checks"] {
        assert!(json.get(key).is_some(), "missing {key}");
    }
    let xml = envpack_conformance::render::junit(std::slice::from_ref(&report)).unwrap();
    assert!(xml.contains("<testsuites"), "{xml}");
    assert_eq!(xml.matches("<testcase").count(), report.checks.len());
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
}
