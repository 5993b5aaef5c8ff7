//! The hot pieces of the host, so that a regression shows in one command:
//! `cargo bench -p envpack-bench`. The reference pack (`ledger`) on the
//! pooling allocator, as an embedding runs it; `host bench` has the whole
//! picture (phases, commands, native baseline, throughput).

use std::sync::{Arc, LazyLock};

use divan::Bencher;
use envpack_bench::scenario;
use envpack_host::{HostConfig, MemoryKv, Pack, Runtime, SignaturePolicy};
use envpack_model::{Environment, Request, SplitEntry, preconditions, validate_weights};

fn main() {
    divan::main();
}

struct Fixture {
    tokio: tokio::runtime::Runtime,
    host: Runtime,
    pack: Pack,
    env: Arc<Environment>,
    big_env: Arc<Environment>,
    bytes: Vec<u8>,
    _cache: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let tokio = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let cache = tempfile::tempdir().expect("a temp dir");
    let config = HostConfig {
        cache_dir: Some(cache.path().to_path_buf()),
        ..HostConfig::default()
    };
    let host = Runtime::new(config, Arc::new(MemoryKv::default())).expect("a runtime");
    let bytes = std::fs::read(envpack_test_packs::LEDGER).expect("the ledger pack is built");
    let pack = tokio
        .block_on(host.load("ledger".into(), bytes.clone(), SignaturePolicy::Skip))
        .expect("the ledger pack loads")
        .pack;
    let env = scenario::environment("hot", 10);
    for request in scenario::setup() {
        let report = tokio.block_on(host.call(&pack, &env, &request));
        assert!(report.result.is_ok(), "setup: {:?}", report.result);
    }
    Fixture {
        tokio,
        host,
        pack,
        env,
        big_env: scenario::environment("hot-big", 10_000),
        bytes,
        _cache: cache,
    }
}

static FIXTURE: LazyLock<Fixture> = LazyLock::new(fixture);

fn warm() -> Request {
    scenario::measured()
        .into_iter()
        .find(|(verb, _)| *verb == "warm-revision")
        .map(|(_, request)| request)
        .expect("the scenario measures warm-revision")
}

/// One instance from the pack's `InstancePre`, dropped at once.
#[divan::bench]
fn instantiate(bencher: Bencher) {
    let f = &*FIXTURE;
    bencher.bench(|| f.tokio.block_on(f.host.instantiate(&f.pack)).expect("instantiates"));
}

/// `warm-revision` through the whole host path.
#[divan::bench]
fn verb_host_path(bencher: Bencher) {
    let f = &*FIXTURE;
    let request = warm();
    bencher.bench(|| {
        let report = f.tokio.block_on(f.host.call(&f.pack, &f.env, &request));
        assert!(report.result.is_ok());
    });
}

/// `warm-revision` as a bare wasmtime call: the host path's floor.
#[divan::bench]
fn verb_bare(bencher: Bencher) {
    let f = &*FIXTURE;
    let request = warm();
    bencher.bench(|| {
        f.tokio
            .block_on(f.host.call_bare(&f.pack, &f.env, &request))
            .expect("calls")
    });
}

/// The host-side checks of a verb in an environment of 10,000 revisions.
#[divan::bench]
fn preconditions_10k(bencher: Bencher) {
    let f = &*FIXTURE;
    let request = warm();
    bencher.bench(|| preconditions::check(&f.big_env, &request).expect("valid"));
}

/// A split's weights checked.
#[divan::bench]
fn split_weights(bencher: Bencher) {
    let entries: Vec<SplitEntry> = (0..5)
        .map(|i| SplitEntry {
            revision: format!("01JBWBENCH000000000000000{i}"),
            weight_bps: 2000,
        })
        .collect();
    bencher.bench(|| validate_weights(divan::black_box(&entries)).expect("valid"));
}

/// The compiled-code cache's tag over an entry the size of the reference
/// pack's (300 KiB): the HMAC-SHA256 it used to be and the keyed BLAKE3 it
/// is now, side by side.
mod cache_tag {
    use hmac::Mac;

    const ENTRY: usize = 300 * 1024;
    const KEY: [u8; 32] = [7; 32];

    #[divan::bench]
    fn hmac_sha256(bencher: divan::Bencher) {
        let bytes = vec![0x5a_u8; ENTRY];
        bencher.bench(|| {
            let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&KEY).expect("any key length");
            mac.update(divan::black_box(&bytes));
            mac.finalize().into_bytes()
        });
    }

    #[divan::bench]
    fn keyed_blake3(bencher: divan::Bencher) {
        let bytes = vec![0x5a_u8; ENTRY];
        bencher.bench(|| blake3::keyed_hash(&KEY, divan::black_box(&bytes)));
    }
}

/// A pack loaded from the compiled-code cache (tag, deserialize, link, describe).
#[divan::bench(sample_count = 30)]
fn load_cached(bencher: Bencher) {
    let f = &*FIXTURE;
    bencher.bench(|| {
        f.tokio
            .block_on(f.host.load("ledger".into(), f.bytes.clone(), SignaturePolicy::Skip))
            .expect("loads")
    });
}
