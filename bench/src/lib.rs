//! Benchmarks of the envpack host: pack loading (cold and from the compiled
//! code cache), instantiation, every verb through the full host path at three
//! environment sizes side by side with a native baseline, throughput across
//! environments on all cores, a full `extended` conformance run, and memory.
//! Measured and compared in one run; reported with median and p99.

mod breakdown;
mod cli;
mod native;
pub mod render;
pub mod scenario;
mod stats;
mod targets;

pub use cli::Programs;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envpack_conformance::{Profile, RunConfig, SignatureStatus};
use envpack_host::{AllocatorChoice, HostConfig, MemoryKv, Pack, Runtime, SignaturePolicy, VerbPhases};
use envpack_model::{Environment, Request};
use envpack_trust::{Keyring, Manifest, PrivateKey, TrustStore};
use serde::Serialize;

use crate::breakdown::VerbBreakdown;
use crate::cli::CommandFigure;
use crate::native::NativeLedger;
use crate::stats::{Figure, latency, value};

/// The manifest the bench seals the reference pack with before signing it.
const LEDGER_MANIFEST: &str = r#"
descriptor = "envpack.deployer.ledger@1.0.0"
contract_version = "1.1.0"
capabilities = ["log", "kv"]
author = "envpack bench"
"#;

/// Environment sizes (revisions, most archived) every verb is measured at.
pub const SIZES: [usize; 3] = [10, 1_000, 10_000];

#[derive(Clone, Debug)]
pub struct Options {
    /// Fewer iterations: a smoke run for CI.
    pub quick: bool,
    /// The reference pack (unsealed build).
    pub pack: PathBuf,
    /// The `host` binaries whose command path is measured; none skips it.
    pub programs: Option<Programs>,
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
    pub targets: Vec<Target>,
}

impl BenchReport {
    fn median(&self, name: &str) -> f64 {
        self.figures.iter().find(|f| f.name == name).map_or(0.0, |f| f.median)
    }
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

/// The reference pack sealed and signed with a fresh key, and that key's keyring.
fn signed_pack(path: &Path) -> Result<(Vec<u8>, PrivateKey), BenchError> {
    let bytes = std::fs::read(path).map_err(|e| BenchError(format!("cannot read {}: {e}", path.display())))?;
    let manifest = Manifest::from_toml(LEDGER_MANIFEST).map_err(|e| fail("manifest")(e.to_string()))?;
    let sealed = manifest.seal(&bytes).map_err(|e| fail("seal")(e.to_string()))?;
    let key = PrivateKey::generate().map_err(|e| fail("keygen")(e.to_string()))?;
    let signed = envpack_trust::sign(&sealed, &key).map_err(|e| fail("sign")(e.to_string()))?;
    Ok((signed, key))
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

/// Read the file, verify its signature, load it (compile or cache, link, describe).
async fn load(runtime: &Runtime, file: &Path, key: &PrivateKey) -> Result<(Pack, Duration), BenchError> {
    let started = Instant::now();
    let bytes = std::fs::read(file).map_err(|e| fail("read")(e.to_string()))?;
    let trust = TrustStore::empty();
    let keyring = Keyring {
        trust: &trust,
        extra: vec![key.public()],
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

async fn call_ok(
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
    let (signed, key) = signed_pack(&options.pack)?;
    let file = scratch.path().join("ledger.signed.wasm");
    std::fs::write(&file, &signed).map_err(|e| fail("write")(e.to_string()))?;
    let mut figures = Vec::new();

    // Cold: no cache, every load compiles.
    let cold = runtime(None)?;
    let mut samples = Vec::new();
    for _ in 0..n.loads {
        samples.push(load(&cold, &file, &key).await?.1);
    }
    figures.push(latency("load.cold", samples));
    drop(cold);

    // Warm: from the compiled-code cache.
    let host = Arc::new(runtime(Some(&scratch.path().join("cache")))?);
    let pack = Arc::new(load(&host, &file, &key).await?.0);
    let mut samples = Vec::new();
    for _ in 0..n.loads {
        samples.push(load(&host, &file, &key).await?.1);
    }
    figures.push(latency("load.warm", samples));

    figures.push(instantiate(&host, &pack, n.instances, "instantiate").await?);
    // The same, on the allocator a one-shot command uses.
    let on_demand = runtime_with(None, AllocatorChoice::OnDemand)?;
    let pack_on_demand = load(&on_demand, &file, &key).await?.0;
    figures.push(instantiate(&on_demand, &pack_on_demand, n.instances, "instantiate.on-demand").await?);
    drop((pack_on_demand, on_demand));
    let (ratios, breakdown) = verbs(&host, &pack, n.verbs, &mut figures).await?;
    figures.push(throughput(&host, &pack, n.throughput).await?);
    figures.push(conformance(&host, &file, n.conformance).await?);
    figures.extend(memory(&host, &pack, n.live).await?);
    let commands = match &options.programs {
        Some(programs) => {
            let public_key = scratch.path().join("bench.pub");
            let pem = key.public().to_pem().map_err(|e| fail("public key")(e.to_string()))?;
            std::fs::write(&public_key, pem).map_err(|e| fail("write")(e.to_string()))?;
            cli::measure(programs, scratch.path(), &file, &public_key, n.commands)?
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
        targets: Vec::new(),
    };
    report.targets = targets::evaluate(&report);
    Ok(report)
}

async fn instantiate(host: &Runtime, pack: &Pack, count: usize, name: &str) -> Result<Figure, BenchError> {
    let mut samples = Vec::with_capacity(count);
    for _ in 0..count {
        let started = Instant::now();
        let live = host
            .instantiate(pack)
            .await
            .map_err(|e| fail("instantiate")(e.to_string()))?;
        samples.push(started.elapsed());
        drop(live);
    }
    Ok(latency(name, samples))
}

/// Every verb at every size, WASM then native, and their ratios; at the
/// smallest size, each verb's phases and its bare wasmtime call too.
async fn verbs(
    host: &Runtime,
    pack: &Pack,
    count: usize,
    figures: &mut Vec<Figure>,
) -> Result<(Vec<Ratio>, Vec<VerbBreakdown>), BenchError> {
    let mut ratios = Vec::new();
    let mut rows = Vec::new();
    for size in SIZES {
        let env = scenario::environment(&format!("bench-{size}"), size);
        let mut native = NativeLedger::default();
        for request in scenario::setup() {
            call_ok(host, pack, &env, &request).await?;
            native.call(&env, &request).map_err(fail("native setup"))?;
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

/// Verbs per second with many environments served at once on all cores.
async fn throughput(host: &Arc<Runtime>, pack: &Arc<Pack>, duration: Duration) -> Result<Figure, BenchError> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut envs = Vec::new();
    for i in 0..cores * 4 {
        let env = scenario::environment(&format!("throughput-{i}"), 10);
        for request in scenario::setup() {
            call_ok(host, pack, &env, &request).await?;
        }
        envs.push(env);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for env in envs {
        let (host, pack) = (host.clone(), pack.clone());
        tasks.spawn(async move {
            let mut done = 0u64;
            let mix = scenario::mix();
            while started.elapsed() < duration {
                for request in &mix {
                    call_ok(&host, &pack, &env, request).await?;
                    done += 1;
                }
            }
            Ok::<u64, BenchError>(done)
        });
    }
    let mut total = 0;
    while let Some(result) = tasks.join_next().await {
        total += result.map_err(|e| fail("throughput task")(e.to_string()))??;
    }
    Ok(value(
        "throughput.verbs_per_second",
        "1/s",
        total as f64 / started.elapsed().as_secs_f64(),
    ))
}

async fn conformance(host: &Runtime, file: &Path, runs: usize) -> Result<Figure, BenchError> {
    // As `host conformance` runs it: metered, on the default number of
    // generated cases (one seed, so that every run does the same work).
    let metered = HostConfig {
        meter_fuel: true,
        cache_dir: None,
        ..host.config().clone()
    };
    let host = &Runtime::new(metered, Arc::new(MemoryKv::default())).map_err(|e| BenchError(e.to_string()))?;
    let pack = &host.load_pack_file(file).await.map_err(|e| BenchError(e.to_string()))?;
    let config = RunConfig {
        profile: Profile::Extended,
        seed: Some(1),
        ..RunConfig::default()
    };
    let mut samples = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let report = envpack_conformance::run(host, pack, "ledger", &SignatureStatus::Unsigned, &config).await;
        samples.push(started.elapsed());
        if !report.passed() {
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

async fn memory(host: &Runtime, pack: &Pack, live: usize) -> Result<Vec<Figure>, BenchError> {
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
    let env = scenario::environment("memory", 10);
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
