//! The sandbox through the library: one `Runtime` keeps serving normal calls
//! after hostile ones, every call gets a fresh instance, and a looping pack
//! does not stall other environments even on a single-threaded executor.

use std::sync::Arc;
use std::time::Duration;

use envpack_host::{AllocatorChoice, HostConfig, MemoryKv, Runtime};
use envpack_model::{Environment, Outcome, ProviderCause, Request, VerbError};
use envpack_test_packs::{LEDGER, TEST_HOSTILE};
use serde_json::json;

const A1: &str = "r-a1";

fn env(id: &str, mode: &str) -> Arc<Environment> {
    let doc = json!({
        "id": id,
        "capabilities": ["log", "kv"],
        "settings": { "mode": mode },
        "deployments": [{
            "id": "web",
            "split": { "generation": 1, "entries": [{ "revision": A1, "weight_bps": 10000 }] },
            "revisions": [{
                "id": A1, "sequence": 1, "lifecycle": "ready",
                "artifact": { "digest": format!("sha256:{}", "0".repeat(64)), "location": "mem://a1" }
            }]
        }]
    });
    Arc::new(Environment::from_json(&doc.to_string()).unwrap())
}

fn runtime(deadline_ms: u64) -> Runtime {
    let config = HostConfig {
        deadline: Duration::from_millis(deadline_ms),
        memory_budget: 32 << 20,
        ..HostConfig::default()
    };
    Runtime::new(config, Arc::new(MemoryKv::default())).unwrap()
}

fn stage() -> Request {
    Request::Stage(A1.to_string())
}

#[tokio::test]
async fn the_same_runtime_serves_normal_calls_after_each_hostile_one() {
    let rt = runtime(300);
    let pack = rt.load_pack_file(TEST_HOSTILE.as_ref()).await.unwrap();
    let normal = env("normal", "");
    for mode in [
        "loop",
        "alloc",
        "trap",
        "huge",
        "sleep",
        "undeclared",
        "write-then-trap",
    ] {
        let report = rt.call(&pack, &env(mode, mode), &stage()).await;
        let Err(VerbError::Provider { cause, .. }) = &report.result else {
            panic!("{mode}: expected a provider error, got {:?}", report.result);
        };
        let expected = match mode {
            "loop" | "sleep" => matches!(cause, ProviderCause::Deadline(_)),
            "alloc" => matches!(cause, ProviderCause::MemoryBudget { budget, .. } if *budget == 32 << 20),
            "trap" | "write-then-trap" => matches!(cause, ProviderCause::Trap(m) if m.contains("deliberate trap")),
            "huge" => matches!(cause, ProviderCause::ResultTooLarge { .. }),
            _ => matches!(cause, ProviderCause::CapabilityDenied(_)),
        };
        assert!(expected, "{mode}: wrong cause {cause:?}");
        assert!(!report.kv_committed, "{mode}");
        let after = rt.call(&pack, &normal, &stage()).await;
        assert!(
            after.result.is_ok(),
            "{mode}: the next normal call failed: {:?}",
            after.result
        );
    }
    assert!(rt.kv().dump("envpack.test.hostile/write-then-trap").unwrap().is_empty());
}

#[tokio::test]
async fn every_call_gets_a_fresh_instance() {
    let rt = runtime(2000);
    let pack = rt.load_pack_file(TEST_HOSTILE.as_ref()).await.unwrap();
    let counting = env("count", "count");
    for _ in 0..3 {
        let report = rt.call(&pack, &counting, &stage()).await;
        match report.result {
            Ok(Outcome::Revision { detail, .. }) => assert_eq!(detail, "call #1 of this instance"),
            other => panic!("{other:?}"),
        }
    }
}

/// A pooled slot keeps the pages a call dirtied resident and resets them to
/// the pack's image (up to 16 MiB, found by `PAGEMAP_SCAN`), decommitting the
/// rest: either way the next instance in the slot must read none of it. The
/// pack marks its heap near its start and past 16 MiB, and looks for the
/// marks of the call before.
#[tokio::test]
async fn no_call_reads_what_an_earlier_call_left_in_its_memory() {
    for allocator in [AllocatorChoice::Auto, AllocatorChoice::OnDemand] {
        let config = HostConfig {
            memory_budget: 32 << 20,
            allocator,
            ..HostConfig::default()
        };
        let rt = Runtime::new(config, Arc::new(MemoryKv::default())).unwrap();
        let pack = rt.load_pack_file(TEST_HOSTILE.as_ref()).await.unwrap();
        let residue = env("residue", "residue");
        for call in 0..4 {
            let report = rt.call(&pack, &residue, &stage()).await;
            match report.result {
                Ok(Outcome::Revision { detail, .. }) => assert_eq!(detail, "clean", "{allocator:?}, call {call}"),
                other => panic!("{allocator:?}, call {call}: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_looping_pack_does_not_stall_other_environments() {
    let rt = Arc::new(runtime(1500));
    let hostile = Arc::new(rt.load_pack_file(TEST_HOSTILE.as_ref()).await.unwrap());
    let ledger = Arc::new(rt.load_pack_file(LEDGER.as_ref()).await.unwrap());
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();

    let (rt2, tx) = (rt.clone(), done_tx.clone());
    let looping = tokio::spawn(async move {
        let report = rt2.call(&hostile, &env("loop", "loop"), &stage()).await;
        let _ = tx.send("loop");
        report
    });
    // Let the looping call enter the guest first.
    tokio::task::yield_now().await;
    let (rt3, tx) = (rt.clone(), done_tx);
    let normal = tokio::spawn(async move {
        for _ in 0..5 {
            let report = rt3.call(&ledger, &env("other", ""), &stage()).await;
            assert!(report.result.is_ok(), "{:?}", report.result);
        }
        let _ = tx.send("normal");
    });
    assert_eq!(
        done_rx.recv().await,
        Some("normal"),
        "the other environment waited for the looping pack"
    );
    normal.await.unwrap();
    let report = looping.await.unwrap();
    assert!(matches!(
        report.result,
        Err(VerbError::Provider {
            cause: ProviderCause::Deadline(_),
            ..
        })
    ));
}

#[tokio::test]
async fn precondition_failures_never_instantiate() {
    let rt = runtime(2000);
    let pack = rt.load_pack_file(LEDGER.as_ref()).await.unwrap();
    let report = rt.call(&pack, &env("dev", ""), &Request::Warm("missing".into())).await;
    assert!(!report.guest_entered);
    assert!(report.recording.calls.is_empty());
    assert!(matches!(report.result, Err(VerbError::RevisionNotFound { .. })));
}

#[tokio::test]
async fn a_metered_runtime_stops_a_spinning_pack_by_fuel_and_reports_the_fuel_of_every_call() {
    let config = HostConfig {
        deadline: Duration::from_millis(300),
        meter_fuel: true,
        ..HostConfig::default()
    };
    let rt = Runtime::new(config, Arc::new(MemoryKv::default())).unwrap();
    let pack = rt.load_pack_file(TEST_HOSTILE.as_ref()).await.unwrap();
    let spin = rt.call(&pack, &env("spin", "loop"), &stage()).await;
    let Err(VerbError::Provider {
        cause: ProviderCause::Deadline(deadline),
        ..
    }) = &spin.result
    else {
        panic!("expected the deadline, got {:?}", spin.result);
    };
    assert_eq!(*deadline, Duration::from_millis(300));
    // All of the deadline's fuel was burned (300 ms at FUEL_PER_MS).
    let budget = 300 * envpack_host::FUEL_PER_MS;
    assert!(spin.fuel.is_some_and(|f| f >= budget), "{:?} of {budget}", spin.fuel);
    // A normal call burns a little, and reports it.
    let normal = rt.call(&pack, &env("normal", ""), &stage()).await;
    assert!(normal.result.is_ok(), "{:?}", normal.result);
    assert!(
        normal.fuel.is_some_and(|f| f > 0 && f < budget / 10),
        "{:?}",
        normal.fuel
    );
    // Unmetered, no fuel is reported.
    let plain = runtime(300);
    let pack = plain.load_pack_file(TEST_HOSTILE.as_ref()).await.unwrap();
    assert_eq!(plain.call(&pack, &env("normal", ""), &stage()).await.fuel, None);
}
