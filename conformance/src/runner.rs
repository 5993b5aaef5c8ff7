//! The runner: selects the checks of a profile from the catalog, runs each
//! against the pack (see `checks` for how they call it: directly, with no
//! host preconditions or echo checks, capability calls audited rather than
//! refused), and assembles the report.

use std::sync::atomic::{AtomicUsize, Ordering};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envpack_host::{MemoryKv, Pack, Runtime};

use crate::catalog::{CATALOG, Check, CheckDef};
use crate::checks::{self, CallStat, Ctx, Verdict};
use crate::config::{RunConfig, SignatureStatus};
use crate::progress::Progress;
use crate::report::{CallTotals, CheckResult, Cleanup, Report};
use crate::scratch::{Scratch, sweep};

/// Runs the selected checks of `config.profile` against a loaded pack.
pub async fn run(
    runtime: &Runtime,
    pack: &Pack,
    source: &str,
    signature: &SignatureStatus,
    config: &RunConfig,
) -> Report {
    let started = Instant::now();
    let base = config.scratch.clone().unwrap_or_else(std::env::temp_dir);
    let swept = sweep(&base);
    for line in &swept {
        tracing::warn!("{line}");
    }
    let scratch = Scratch::create(&base);
    let seed = config.seed.unwrap_or_else(fresh_seed);
    let ctx = Ctx {
        seed,
        source: source.to_string(),
        twin_kv: Arc::new(MemoryKv::default()),
        generated: tokio::sync::OnceCell::new(),
        runtime,
        pack,
        config,
        signature,
        calls: Mutex::new(Vec::new()),
        envs: AtomicUsize::new(0),
        nonce: scratch.nonce.clone(),
        scratch: scratch.dir.clone(),
        live: Mutex::default(),
        left: Mutex::default(),
        released: AtomicUsize::new(0),
        workspaces: Mutex::new(Vec::new()),
        overruns: AtomicUsize::new(0),
    };
    let mut results = Vec::new();
    let selected: Vec<&CheckDef> = CATALOG.iter().filter(|c| config.profile.selects(c.profile)).collect();
    for (index, def) in selected.iter().enumerate() {
        config.progress.report(Progress::Check {
            pack: source,
            index,
            total: selected.len(),
            id: def.id,
        });
        let span = tracing::info_span!("check", id = def.id);
        let _enter = span.enter();
        let check_started = Instant::now();
        let verdict = if config.dry && !def.check.is_pure() {
            Verdict::skip("dry run: no verb was called, so nothing reached a provider")
        } else {
            checks::run(def.check, &ctx).await
        };
        results.push(result(def, verdict, check_started.elapsed()));
    }
    // Nothing the run started outlives it: fixture revisions archived
    // through the pack where it reaches outside the host, processes
    // stopped, directories removed.
    config.progress.report(Progress::Releasing { pack: source });
    ctx.retire_all().await;
    ctx.clean_up();
    config.progress.report(Progress::Done { pack: source });
    let cleanup = Cleanup {
        released: ctx.released.load(Ordering::Relaxed),
        left: std::mem::take(&mut *ctx.left.lock().unwrap_or_else(std::sync::PoisonError::into_inner)),
        swept,
    };
    drop(scratch);
    let descriptor = pack.info().descriptor.clone();
    let mut report = Report::new(
        source.to_string(),
        descriptor,
        config.profile,
        results,
        ms(started.elapsed()),
    );
    report.seed = Some(seed);
    report.cleanup = cleanup;
    report.dry = config.dry;
    report.calls = totals(&ctx.all_calls());
    report
}

/// The run's calls taken together.
fn totals(calls: &[CallStat]) -> CallTotals {
    let sum = |f: fn(&CallStat) -> Duration| ms(calls.iter().map(f).sum());
    CallTotals {
        count: calls.len(),
        elapsed_ms: sum(|c| c.elapsed),
        in_pack_ms: sum(|c| c.in_pack),
        slept_ms: sum(|c| c.slept),
        programs: calls.iter().map(|c| c.started.len()).sum(),
        started: tally(calls.iter().flat_map(|c| &c.started)),
        signals: tally(calls.iter().flat_map(|c| &c.signals)),
    }
}

/// How many times each name occurs.
fn tally<'a>(names: impl Iterator<Item = &'a String>) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for name in names {
        *counts.entry(name.clone()).or_default() += 1;
    }
    counts
}

/// A seed for a run that was not given one.
fn fresh_seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        return u64::try_from(nanos % u128::from(u64::MAX)).unwrap_or(0) ^ u64::from(std::process::id());
    }
    u64::from_le_bytes(bytes)
}

/// The report of a pack that could not even be loaded: every selected
/// check fails on `describe.valid` or is skipped.
pub fn unloadable(source: &str, error: &str, config: &RunConfig) -> Report {
    let results = CATALOG
        .iter()
        .filter(|c| config.profile.selects(c.profile))
        .map(|def| {
            let verdict = if def.check == Check::DescribeValid {
                Verdict::fail(format!("the pack could not be loaded: {error}"))
            } else {
                Verdict::skip("the pack could not be loaded")
            };
            let mut result = result(def, verdict, Duration::ZERO);
            // A file that is not a pack breaks no sentence of the contract.
            result.wit.clear();
            result
        })
        .collect();
    Report::new(source.to_string(), String::new(), config.profile, results, 0.0)
}

fn result(def: &CheckDef, verdict: Verdict, elapsed: Duration) -> CheckResult {
    CheckResult {
        id: def.id.to_string(),
        profile: def.profile,
        status: verdict.status,
        message: verdict.message,
        statement: def.statement.to_string(),
        wit: def.wit.to_string(),
        elapsed_ms: ms(elapsed),
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
