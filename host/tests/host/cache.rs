//! The compiled-code cache: a second load is a verified hit, mapped from the
//! entry's file, and anything the host did not write itself (corrupted,
//! swapped, unrecorded, changed with its times put back) is rebuilt; an
//! entry opened for writing while its code is mapped stops the process
//! before the write can happen.

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

#[tokio::test]
async fn a_hit_runs_mapped_from_the_entry_and_skips_describe() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    let first = rt.load_pack_file(LEDGER.as_ref()).await.unwrap();
    assert_eq!(first.cache_event(), &CacheEvent::Miss);
    assert!(!first.is_mapped());
    let second = rt.load_pack_file(LEDGER.as_ref()).await.unwrap();
    assert_eq!(second.cache_event(), &CacheEvent::Hit);
    assert!(second.is_mapped(), "a hit runs from the entry's mapping");
    assert_eq!(second.info(), first.info(), "describe is remembered with the code");
    // Entries are read-only, their records and the secret private.
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let [entry] = entries(dir.path(), ".cwasm").try_into().unwrap();
    assert_eq!(mode(&entry), 0o400);
    assert_eq!(mode(&entry.with_extension("cwasm.tag")), 0o600);
    assert_eq!(mode(&dir.path().join("secret")), 0o600);
}

#[tokio::test]
async fn an_entry_changed_with_its_times_put_back_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    event(&rt, LEDGER).await;
    let [entry] = entries(dir.path(), ".cwasm").try_into().unwrap();
    let before = std::fs::metadata(&entry).unwrap();
    let mut bytes = std::fs::read(&entry).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&entry, &bytes).unwrap();
    // Same size, same modification time: only the status-change time,
    // which user space cannot set, tells.
    let file = std::fs::File::options().write(true).open(&entry).unwrap();
    file.set_times(
        std::fs::FileTimes::new()
            .set_modified(before.modified().unwrap())
            .set_accessed(before.accessed().unwrap()),
    )
    .unwrap();
    drop(file);
    assert_eq!(
        std::fs::metadata(&entry).unwrap().modified().unwrap(),
        before.modified().unwrap()
    );
    assert!(
        matches!(event(&rt, LEDGER).await, CacheEvent::Rebuilt(r) if r.contains("does not match")),
        "a changed entry is read whole and refused"
    );
    assert_eq!(event(&rt, LEDGER).await, CacheEvent::Hit);
}

#[tokio::test]
async fn an_intact_entry_with_a_new_identity_is_verified_whole_then_mapped_again() {
    // A state directory restored from a copy: same bytes, new inode and times.
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    event(&rt, LEDGER).await;
    let [entry] = entries(dir.path(), ".cwasm").try_into().unwrap();
    let bytes = std::fs::read(&entry).unwrap();
    std::fs::remove_file(&entry).unwrap();
    std::fs::write(&entry, &bytes).unwrap();
    let pack = rt.load_pack_file(LEDGER.as_ref()).await.unwrap();
    assert_eq!(pack.cache_event(), &CacheEvent::Hit);
    assert!(!pack.is_mapped(), "checked against its keyed tag and used from memory");
    let pack = rt.load_pack_file(LEDGER.as_ref()).await.unwrap();
    assert!(pack.is_mapped(), "its new identity was recorded: mapped again");
}

/// Set by [`an_entry_opened_for_writing_while_mapped_stops_the_process`]
/// for the copy of this test binary it runs: the cache directory to map from.
const CHILD: &str = "ENVPACK_TEST_MAPPED_CHILD";

/// The child of the test below: maps the entry, says so, and waits to be
/// stopped. Run on its own, it has nothing to do.
#[tokio::test]
async fn mapped_child() {
    let Some(dir) = std::env::var_os(CHILD) else {
        return;
    };
    let rt = runtime(Path::new(&dir));
    let pack = rt.load_pack_file(LEDGER.as_ref()).await.unwrap();
    assert!(pack.is_mapped());
    println!("MAPPED");
    use std::io::Write;
    std::io::stdout().flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
    panic!("the child was not stopped while its code was mapped");
}

#[tokio::test]
async fn an_entry_opened_for_writing_while_mapped_stops_the_process() {
    use std::io::{BufRead, Write};
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime(dir.path());
    event(&rt, LEDGER).await;
    let [entry] = entries(dir.path(), ".cwasm").try_into().unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "cache::mapped_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mapped = stdout.lines().map_while(Result::ok).any(|line| line.contains("MAPPED"));
    assert!(mapped, "the child never mapped the entry");
    // Opening the entry for writing blocks until the child, which holds a
    // read lease, is gone: the child is stopped before anything is written.
    let mut file = std::fs::File::options().write(true).open(&entry).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(envpack_host::LEASE_BROKEN_EXIT),
        "{status:?} {:?}",
        status.signal()
    );
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("opened for writing"), "{stderr}");
    file.write_all(b"not code").unwrap();
    drop(file);
    assert!(matches!(event(&rt, LEDGER).await, CacheEvent::Rebuilt(_)));
}
