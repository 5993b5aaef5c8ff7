//! Benchmarks of the envpack host: pack loading (cold, and as a command
//! loads an installed pack), instantiation, every verb through the full
//! host path at three environment sizes side by side with a native
//! baseline, throughput across environments on all cores, a full `extended`
//! conformance run, memory, whole commands, `pack install`, and the floors
//! they stand on (a bare wasmtime call, a bare SQLite commit, a bare
//! process start). Any pack can be measured (`--pack`); the reference pack
//! is the default, and an interpreter pack is measured beside it.
//! Measured and compared in one run; reported with median and p99.

mod breakdown;
mod cli;
mod floors;
mod install;
mod native;
mod programs;
pub mod render;
pub mod scenario;
mod stats;
mod subject;
mod targets;
mod throughput;

pub use cli::Programs;
pub use install::LocalProcessInstall;
pub use subject::{BenchEnv, REFERENCE};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envpack_conformance::{Profile, RunConfig, SignatureStatus};
use envpack_host::{AllocatorChoice, HostConfig, LoadSource, MemoryKv, Pack, Runtime, SignaturePolicy, VerbPhases};
use envpack_model::{Environment, Request};
use envpack_trust::{Keyring, Registry, TrustStore};
use serde::Serialize;

use crate::breakdown::VerbBreakdown;
use crate::cli::CommandFigure;
use crate::native::NativeLedger;
use crate::stats::{Figure, latency, value};
use crate::subject::Subject;

/// Environment sizes (revisions, most archived) every verb is measured at.
pub const SIZES: [usize; 3] = [10, 1_000, 10_000];

#[derive(Clone, Debug)]
pub struct Options {
    /// Fewer iterations: a smoke run for CI.
    pub quick: bool,
    /// The pack to measure: the reference pack by default; any pack, sealed
    /// or not (an unsealed pack is sealed with what its `describe` says).
    pub pack: PathBuf,
    /// The settings and grants of its environments.
    pub env: BenchEnv,
    /// An interpreter pack (componentize-py, ComponentizeJS) measured beside
    /// it: one command on each, side by side, and its `pack install`
    /// against its compile time. `None` skips it (its targets are then
    /// reported as not measured).
    pub interpreter_pack: Option<PathBuf>,
    /// The local-process pack's `pack install`, as an operator runs it.
    pub local_process: Option<LocalProcessInstall>,
    /// The `host` binaries whose command path is measured; none skips it.
    pub programs: Option<Programs>,
    /// A PostgreSQL database (URL) to run `status` and `traffic set` on as
    /// well, beside the same commands on SQLite; its environment `bench`
    /// is removed and made again.
    pub database: Option<String>,
}

/// Why the bench could not produce figures.
#[derive(Debug)]
pub struct BenchError(pub String);

impl std::fmt::Display for BenchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

pub(crate) fn fail(what: &str) -> impl Fn(String) -> BenchError + '_ {
    move |e| BenchError(format!("{what}: {e}"))
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    /// `release` or `debug`: debug figures are not representative.
    pub build: &'static str,
    pub allocator: String,
}

/// A WASM figure next to its native counterpart.
#[derive(Clone, Debug, Serialize)]
pub struct Ratio {
    pub name: String,
    pub wasm_median_us: f64,
    pub native_median_us: f64,
    /// wasm / native.
    pub ratio: f64,
    /// wasm - native: what the host path and the sandbox add.
    pub overhead_us: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub goal: String,
    pub measured: f64,
    pub met: bool,
    /// What the figure stands on, measured in the same run (why an unmet
    /// target cannot be met, when that is the reason).
    pub floor: Option<String>,
    /// Unmet, and the floor shows it cannot be met: what it stands on
    /// alone, measured in this run, already exceeds the goal.
    pub unreachable: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub machine: Machine,
    pub quick: bool,
    pub figures: Vec<Figure>,
    pub ratios: Vec<Ratio>,
    /// Each verb's host path phase by phase, against a bare wasmtime call.
    pub breakdown: Vec<VerbBreakdown>,
    /// Whole commands through the real binary, phase by phase.
    pub commands: Vec<CommandFigure>,
    /// What was not measured, and why (a missing pack or tool).
    pub skipped: Vec<String>,
    pub targets: Vec<Target>,
}

struct Iterations {
    loads: usize,
    instances: usize,
    verbs: usize,
    throughput: Duration,
    conformance: usize,
    live: usize,
    commands: usize,
}

impl Iterations {
    fn new(quick: bool) -> Self {
        if quick {
            Iterations {
                loads: 3,
                instances: 200,
                verbs: 100,
                throughput: Duration::from_millis(500),
                conformance: 1,
                live: 50,
                commands: 3,
            }
        } else {
            Iterations {
                loads: 20,
                instances: 5_000,
                verbs: 2_000,
                throughput: Duration::from_secs(3),
                conformance: 5,
                live: 200,
                commands: 30,
            }
        }
    }
}

fn runtime(cache: Option<&Path>) -> Result<Runtime, BenchError> {
    runtime_with(cache, AllocatorChoice::Auto)
}

fn runtime_with(cache: Option<&Path>, allocator: AllocatorChoice) -> Result<Runtime, BenchError> {
    let config = HostConfig {
        deadline: Duration::from_secs(10),
        cache_dir: cache.map(Path::to_path_buf),
        allocator,
        ..HostConfig::default()
    };
    Runtime::new(config, Arc::new(MemoryKv::default())).map_err(|e| fail("runtime")(e.to_string()))
}

/// Read the file, verify its signature, load it (compile, link, describe): a cold load.
async fn load(runtime: &Runtime, file: &Path, subject: &Subject) -> Result<(Pack, Duration), BenchError> {
    let started = Instant::now();
    let bytes = std::fs::read(file).map_err(|e| fail("read")(e.to_string()))?;
    let trust = TrustStore::empty();
    let keyring = Keyring {
        trust: &trust,
        extra: vec![subject.key.public()],
    };
    let policy = SignaturePolicy::Require {
        keyring: &keyring,
        detached: None,
    };
    let pack = runtime
        .load(file.display().to_string(), bytes, policy)
        .await
        .map_err(|e| fail("load")(e.to_string()))?
        .pack;
    Ok((pack, started.elapsed()))
}

/// An installed pack loaded as a command loads it: the trust store and the
/// registry opened, the pack checked (its seal, its signatures against the
/// trust store), its compiled code from the cache, linked; `describe` from
/// the cache's record.
async fn load_installed(runtime: &Runtime, state: &Path, descriptor: &str) -> Result<(Pack, Duration), BenchError> {
    let started = Instant::now();
    let trust = TrustStore::open(&state.join("trust.json")).map_err(|e| fail("trust")(e.to_string()))?;
    let registry = Registry::open(&state.join("packs")).map_err(|e| fail("registry")(e.to_string()))?;
    let installed = registry.lookup(descriptor).map_err(|e| fail("lookup")(e.to_string()))?;
    let checked = registry
        .check(installed, &trust.keyring())
        .map_err(|e| fail("check")(e.to_string()))?;
    let (source, verified) = LoadSource::installed(&registry, installed, checked);
    let pack = runtime
        .load_installed(source, verified)
        .await
        .map_err(|e| fail("load")(e.to_string()))?
        .pack;
    Ok((pack, started.elapsed()))
}

/// A state directory (trust store, registry) with the subject installed.
fn install_in(state: &Path, subject: &Subject) -> Result<(), BenchError> {
    let mut trust = TrustStore::open(&state.join("trust.json")).map_err(|e| fail("trust")(e.to_string()))?;
    trust
        .add(&subject.key.public(), "bench")
        .map_err(|e| fail("trust")(e.to_string()))?;
    let keyring = trust.keyring();
    let verified = envpack_trust::verify(&subject.signed, &keyring, None).map_err(|e| fail("verify")(e.to_string()))?;
    let mut registry = Registry::open(&state.join("packs")).map_err(|e| fail("registry")(e.to_string()))?;
    registry
        .install(&subject.signed, &subject.manifest, &verified, false)
        .map_err(|e| fail("install")(e.to_string()))?;
    Ok(())
}

pub(crate) async fn call_ok(
    runtime: &Runtime,
    pack: &Pack,
    env: &Arc<Environment>,
    request: &Request,
) -> Result<Duration, BenchError> {
    Ok(call_timed(runtime, pack, env, request).await?.0)
}

/// One call through the full host path: its time and its phases.
async fn call_timed(
    runtime: &Runtime,
    pack: &Pack,
    env: &Arc<Environment>,
    request: &Request,
) -> Result<(Duration, VerbPhases, usize), BenchError> {
    let report = runtime.call(pack, env, request).await;
    match report.result {
        Ok(_) => Ok((report.elapsed, report.phases, report.recording.calls.len())),
        Err(e) => Err(BenchError(format!("{} failed during the bench: {e}", request.verb()))),
    }
}

/// Runs every benchmark.
pub async fn run(options: &Options) -> Result<BenchReport, BenchError> {
    let n = Iterations::new(options.quick);
    let scratch = tempfile::tempdir().map_err(|e| fail("temp dir")(e.to_string()))?;
    let subject = subject::prepare(&options.pack).await?;
    let file = scratch.path().join("pack.signed.wasm");
    std::fs::write(&file, &subject.signed).map_err(|e| fail("write")(e.to_string()))?;
    let mut figures = Vec::new();
    let mut skipped = Vec::new();

    // Cold: no cache, every load compiles (a big pack: as many as fit in 5 s).
    let cold = runtime(None)?;
    let mut samples = Vec::new();
    let started = Instant::now();
    while samples.len() < n.loads && (samples.is_empty() || started.elapsed() < Duration::from_secs(5)) {
        samples.push(load(&cold, &file, &subject).await?.1);
    }
    figures.push(latency("load.cold", samples));
    drop(cold);

    // Warm: an installed pack, as a command loads it.
    let state = scratch.path().join("state");
    install_in(&state, &subject)?;
    let host = Arc::new(runtime(Some(&state.join("cache")))?);
    let descriptor = subject.manifest.descriptor.clone();
    let pack = Arc::new(load_installed(&host, &state, &descriptor).await?.0);
    let mut samples = Vec::new();
    for _ in 0..n.loads {
        samples.push(load_installed(&host, &state, &descriptor).await?.1);
    }
    figures.push(latency("load.warm", samples));

    figures.extend(instantiate(&host, &pack, n.instances, "instantiate").await?);
    // The same, on the allocator a one-shot command uses.
    let on_demand = runtime_with(Some(&state.join("cache")), AllocatorChoice::OnDemand)?;
    let pack_on_demand = load(&on_demand, &file, &subject).await?.0;
    figures.extend(instantiate(&on_demand, &pack_on_demand, n.instances, "instantiate.on-demand").await?);
    drop((pack_on_demand, on_demand));
    let shape = Shape {
        subject: &subject,
        env: &options.env,
    };
    let (ratios, breakdown) = verbs(&host, &pack, &shape, n.verbs, &mut figures).await?;
    figures.extend(throughput::measure(&host, &pack, &shape, n.throughput).await?);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    figures.push(floors::effective_cores(cores));
    figures.push(conformance(&host, &file, &shape, n.conformance).await?);
    figures.extend(memory(&host, &pack, &shape, n.live).await?);
    figures.extend(floors::in_process(scratch.path(), n.commands)?);

    let interpreter = match &options.interpreter_pack {
        Some(path) if path.is_file() => {
            let interpreter = subject::prepare(path).await?;
            let file = scratch.path().join("interpreter.signed.wasm");
            std::fs::write(&file, &interpreter.signed).map_err(|e| fail("write")(e.to_string()))?;
            // Its compile time: an in-process load with no cache (compile, link, describe).
            let cold = runtime(None)?;
            let compile = load(&cold, &file, &interpreter).await?.1;
            figures.push(latency("interpreter.compile", vec![compile]));
            Some((interpreter, file))
        }
        Some(path) => {
            skipped.push(format!(
                "interpreter pack: none at {} (build it with `packs/py-stateless/build`)",
                path.display()
            ));
            None
        }
        None => {
            skipped.push("interpreter pack: not asked for (--interpreter-pack)".into());
            None
        }
    };
    let commands = match &options.programs {
        Some(programs) => {
            let mut subjects = vec![cli::CliSubject::new(
                "reference",
                &subject,
                file.clone(),
                &options.env,
                scratch.path(),
            )?];
            if let Some((interpreter, file)) = &interpreter {
                subjects.push(cli::CliSubject::new(
                    "interpreter",
                    interpreter,
                    file.clone(),
                    &BenchEnv::default(),
                    scratch.path(),
                )?);
            }
            match &options.database {
                Some(url) => subjects.push(
                    cli::CliSubject::new("postgres", &subject, file.clone(), &options.env, scratch.path())?
                        .on_database(url.clone()),
                ),
                None => skipped.push("commands on PostgreSQL: not asked for (--database)".into()),
            }
            let measured = cli::measure(programs, scratch.path(), &subjects, n.commands)?;
            figures.extend(measured.installs);
            if interpreter.is_some() {
                figures.extend(floors::integrity(
                    &scratch.path().join("cli-state-interpreter"),
                    n.commands,
                )?);
            }
            figures.push(floors::process_start(n.commands)?);
            if let Some(url) = &options.database {
                figures.extend(floors::postgres(url, n.commands)?);
            }
            match &options.local_process {
                Some(local) => match install::local_process(&programs.program, scratch.path(), local)? {
                    Ok(measured) => figures.extend(measured),
                    Err(why) => skipped.push(format!("local-process install: {why}")),
                },
                None => skipped.push("local-process install: not asked for (--local-process-pack)".into()),
            }
            measured.commands
        }
        None => Vec::new(),
    };

    let mut report = BenchReport {
        machine: Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            build: if cfg!(debug_assertions) { "debug" } else { "release" },
            allocator: format!("{:?}", host.allocator()),
        },
        quick: options.quick,
        figures,
        ratios,
        breakdown,
        commands,
        skipped,
        targets: Vec::new(),
    };
    report.targets = targets::evaluate(&report);
    Ok(report)
}

/// The pack under bench and what its environments get.
pub(crate) struct Shape<'a> {
    subject: &'a Subject,
    env: &'a BenchEnv,
}

impl Shape<'_> {
    pub(crate) fn environment(&self, id: &str, size: usize) -> Arc<Environment> {
        scenario::environment_for(id, size, self.subject.capabilities(), self.env)
    }
}

/// `instantiate`: an instance a verb can be called on, as the phase
/// breakdown's `instantiate` column: `.wasmtime`, wasmtime's
/// `InstancePre::instantiate_async` alone, then `.exports`, the `deployer`
/// exports looked up and type-checked; `.with-store` adds what the host
/// makes first (the call state, the `Store`).
async fn instantiate(host: &Runtime, pack: &Pack, count: usize, name: &str) -> Result<Vec<Figure>, BenchError> {
    let mut both = Vec::with_capacity(count);
    let mut instance = Vec::with_capacity(count);
    let mut exports = Vec::with_capacity(count);
    let mut with_store = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let (live, times) = host
            .instantiate_timed(pack)
            .await
            .map_err(|e| fail("instantiate")(e.to_string()))?;
        with_store.push(started.elapsed());
        both.push(times.instance + times.exports);
        instance.push(times.instance);
        exports.push(times.exports);
        drop(live);
    }
    Ok(vec![
        latency(name, both),
        latency(format!("{name}.wasmtime"), instance),
        latency(format!("{name}.exports"), exports),
        latency(format!("{name}.with-store"), with_store),
    ])
}

/// Every verb at every size, WASM then native, and their ratios; at the
/// smallest size, each verb's phases and its bare wasmtime call too.
async fn verbs(
    host: &Runtime,
    pack: &Pack,
    shape: &Shape<'_>,
    count: usize,
    figures: &mut Vec<Figure>,
) -> Result<(Vec<Ratio>, Vec<VerbBreakdown>), BenchError> {
    let mut ratios = Vec::new();
    let mut rows = Vec::new();
    // Native Rust does what the reference pack does; no other pack's.
    let with_native = shape.subject.is_reference();
    for size in SIZES {
        let env = shape.environment(&format!("bench-{size}"), size);
        let mut native = NativeLedger::default();
        for request in scenario::setup() {
            call_ok(host, pack, &env, &request).await?;
            if with_native {
                native.call(&env, &request).map_err(fail("native setup"))?;
            }
        }
        for (verb, request) in scenario::measured() {
            // At the smallest size, a bare call follows each full one, so
            // that both see the same machine (it is shared and noisy).
            let with_bare = size == SIZES[0];
            let mut samples = Vec::with_capacity(count);
            let mut phases = Vec::with_capacity(count);
            let mut bare = Vec::with_capacity(count);
            let mut calls = 0;
            for _ in 0..count {
                let (elapsed, phase, made) = call_timed(host, pack, &env, &request).await?;
                calls = made;
                samples.push(elapsed);
                phases.push(phase);
                if with_bare {
                    bare.push(breakdown::bare(host, pack, &env, &request).await?);
                }
            }
            let wasm = latency(format!("verb.{verb}.{size}"), samples);
            if with_bare {
                rows.push(breakdown::row(
                    verb,
                    &phases,
                    calls,
                    wasm.median,
                    latency("", bare).median,
                ));
            }
            if !with_native {
                figures.push(wasm);
                continue;
            }
            let mut samples = Vec::with_capacity(count);
            for _ in 0..count {
                let started = Instant::now();
                native.call(&env, &request).map_err(fail("native"))?;
                samples.push(started.elapsed());
            }
            let baseline = latency(format!("native.{verb}.{size}"), samples);
            ratios.push(Ratio {
                name: format!("{verb}.{size}"),
                wasm_median_us: wasm.median,
                native_median_us: baseline.median,
                ratio: wasm.median / baseline.median.max(0.001),
                overhead_us: wasm.median - baseline.median,
            });
            figures.push(wasm);
            figures.push(baseline);
        }
    }
    Ok((ratios, rows))
}

async fn conformance(host: &Runtime, file: &Path, shape: &Shape<'_>, runs: usize) -> Result<Figure, BenchError> {
    // As `host conformance` runs it: metered (the same compiled code, from
    // the cache), on the default number of generated cases (one seed, so
    // that every run does the same work).
    let metered = HostConfig {
        meter_fuel: true,
        ..host.config().clone()
    };
    let host = &Runtime::new(metered, Arc::new(MemoryKv::default())).map_err(|e| BenchError(e.to_string()))?;
    let pack = &host.load_pack_file(file).await.map_err(|e| BenchError(e.to_string()))?;
    let mut config = RunConfig {
        profile: Profile::Extended,
        seed: Some(1),
        grants: shape.env.grants.clone(),
        ..RunConfig::default()
    };
    config.inputs.settings = shape.env.settings.clone();
    let mut samples = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let report =
            envpack_conformance::run(host, pack, shape.subject.name(), &SignatureStatus::Unsigned, &config).await;
        samples.push(started.elapsed());
        // Any other pack is timed whatever its verdict (`host conformance` judges it).
        if shape.subject.is_reference() && !report.passed() {
            return Err(BenchError(format!(
                "the reference pack failed conformance: {:?}",
                report.failed_ids()
            )));
        }
    }
    Ok(latency("conformance.extended", samples))
}

/// Resident memory from /proc/self/status (`VmRSS` or `VmHWM`), in KiB.
fn proc_kib(field: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

async fn memory(host: &Runtime, pack: &Pack, shape: &Shape<'_>, live: usize) -> Result<Vec<Figure>, BenchError> {
    let before = proc_kib("VmRSS:").unwrap_or(0.0);
    let mut held = Vec::with_capacity(live);
    for _ in 0..live {
        held.push(
            host.instantiate(pack)
                .await
                .map_err(|e| fail("instantiate")(e.to_string()))?,
        );
    }
    let after = proc_kib("VmRSS:").unwrap_or(0.0);
    drop(held);
    let env = shape.environment("memory", 10);
    let linear = host.call(pack, &env, &Request::ReportRuntimeConfig).await.peak_memory as f64 / 1024.0;
    Ok(vec![
        value(
            "memory.per_live_instance_rss",
            "KiB",
            ((after - before) / live as f64).max(0.0),
        ),
        value("memory.linear_per_instance", "KiB", linear),
        value("memory.peak_rss", "KiB", proc_kib("VmHWM:").unwrap_or(0.0)),
    ])
}
