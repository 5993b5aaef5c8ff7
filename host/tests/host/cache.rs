//! The compiled-code cache: a second load is a verified hit, and anything the
//! host did not write itself (corrupted, swapped, unrecorded) is rebuilt.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use envpack_host::{CacheEvent, HostConfig, MemoryKv, Runtime};
use envpack_test_packs::{LEDGER, TEST_HOSTILE};

fn runtime(cache: &Path) -> Runtime {
    let config = HostConfig {
        cache_dir: Some(cache.to_path_buf()),
        ..HostConfig::default()
    };
    Runtime::new(config, Arc::new(MemoryKv::default())).unwrap()
}

fn entries(cache: &Path, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    found.sort();
    found
}

async fn event(rt: &Runtime, pack: &str) -> CacheEvent {
    rt.load_pack_file(pack.as_ref()).await.unwrap().cache_event().clone()
}

#[tokio::test]
async fn second_load_hits_and_corruption_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    assert_eq!(event(&rt, LEDGER).await, CacheEvent::Miss);
    assert_eq!(event(&rt, LEDGER).await, CacheEvent::Hit);

    let [entry] = entries(dir.path(), ".cwasm").try_into().unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&entry, &bytes).unwrap();
    assert!(matches!(event(&rt, LEDGER).await, CacheEvent::Rebuilt(r) if r.contains("does not match")));
    assert_eq!(event(&rt, LEDGER).await, CacheEvent::Hit);

    std::fs::remove_file(entry.with_extension("cwasm.tag")).unwrap();
    assert!(matches!(event(&rt, LEDGER).await, CacheEvent::Rebuilt(r) if r.contains("no record")));
}

#[tokio::test]
async fn an_entry_swapped_for_another_packs_code_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    event(&rt, LEDGER).await;
    event(&rt, TEST_HOSTILE).await;
    let cwasm = entries(dir.path(), ".cwasm");
    let macs = entries(dir.path(), ".cwasm.tag");
    // Both entries and their records are genuine, but swapped between names.
    std::fs::copy(&cwasm[1], &cwasm[0]).unwrap();
    std::fs::copy(&macs[1], &macs[0]).unwrap();
    let rebuilt = [event(&rt, LEDGER).await, event(&rt, TEST_HOSTILE).await];
    assert!(
        rebuilt.iter().any(|e| matches!(e, CacheEvent::Rebuilt(_))),
        "{rebuilt:?}"
    );
    let pack = rt.load_pack_file(LEDGER.as_ref()).await.unwrap();
    assert_eq!(pack.info().descriptor, "envpack.deployer.ledger@1.0.0");
}

#[tokio::test]
async fn a_new_secret_invalidates_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    event(&runtime(dir.path()), LEDGER).await;
    std::fs::remove_file(dir.path().join("secret")).unwrap();
    assert!(matches!(
        event(&runtime(dir.path()), LEDGER).await,
        CacheEvent::Rebuilt(_)
    ));
}

#[tokio::test]
async fn an_entry_an_older_host_tagged_is_compiled_anew_without_a_warning_and_retagged() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    assert_eq!(event(&rt, LEDGER).await, CacheEvent::Miss);
    let [entry] = entries(dir.path(), ".cwasm").try_into().unwrap();
    // What a host before the BLAKE3 tag left: the entry and its HMAC record.
    std::fs::remove_file(entry.with_extension("cwasm.tag")).unwrap();
    std::fs::write(entry.with_extension("cwasm.mac"), "00".repeat(32)).unwrap();
    assert_eq!(event(&rt, LEDGER).await, CacheEvent::Miss);
    assert!(!entry.with_extension("cwasm.mac").exists());
    assert!(entry.with_extension("cwasm.tag").exists());
    assert_eq!(event(&rt, LEDGER).await, CacheEvent::Hit);
}
