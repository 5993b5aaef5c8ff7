//! The runner: selects the checks of a profile from the catalog, runs each
//! against the pack (see `checks` for how they call it: directly, with no
//! host preconditions or echo checks, capability calls audited rather than
//! refused), and assembles the report.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use envpack_host::{MemoryKv, Pack, Runtime};

use crate::catalog::{CATALOG, Check, CheckDef};
use crate::checks::{self, Ctx, RUNS, Verdict};
use crate::config::{RunConfig, SignatureStatus};
use crate::report::{CheckResult, Report};

/// Runs the selected checks of `config.profile` against a loaded pack.
pub async fn run(
    runtime: &Runtime,
    pack: &Pack,
    source: &str,
    signature: &SignatureStatus,
    config: &RunConfig,
) -> Report {
    let started = Instant::now();
    let run_id = RUNS.fetch_add(1, Ordering::Relaxed);
    let scratch = config
        .scratch
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("envpack-bench-{}-{run_id}", std::process::id()));
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
        run_id,
        scratch,
        workspaces: Mutex::new(Vec::new()),
        overruns: AtomicUsize::new(0),
    };
    let mut results = Vec::new();
    for def in CATALOG.iter().filter(|c| config.profile.selects(c.profile)) {
        let span = tracing::info_span!("check", id = def.id);
        let _enter = span.enter();
        let check_started = Instant::now();
        let verdict = checks::run(def.check, &ctx).await;
        results.push(result(def, verdict, check_started.elapsed()));
    }
    // Nothing the run started outlives it: processes stopped, directories removed.
    ctx.clean_up();
    let descriptor = pack.info().descriptor.clone();
    let mut report = Report::new(
        source.to_string(),
        descriptor,
        config.profile,
        results,
        ms(started.elapsed()),
    );
    report.seed = Some(seed);
    report
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
