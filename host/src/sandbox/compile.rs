//! Compiling a pack, bounded. First the shape walk ([`super::shape`]) refuses
//! what is plainly too big; then the compile itself runs either in this
//! process (a library user's choice) or in a worker process — the `host`
//! binary run again as `host __compile-worker` — under `RLIMIT_CPU` and
//! `RLIMIT_AS`, so that a pack Cranelift is slow or hungry on costs at most
//! the worker's limits and never the caller's memory. The worker reads the
//! pack on stdin and writes the serialized component on stdout; the caller
//! deserializes it with its own engine (same compile settings, so the
//! engines agree; a mismatch is refused by wasmtime, never run).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use crate::sandbox::engine::{AllocatorChoice, HostConfig, build_engine};
use envpack_model::PackLimits;

use crate::error::CompileError;

use crate::sandbox::shape;

/// The argument that turns the `host` binary into a compile worker.
pub const WORKER_ARG: &str = "__compile-worker";

/// The most a worker may write back (a serialized component is a few times
/// the pack's size; packs are capped at 64 MiB).
const MAX_OUTPUT: u64 = 1 << 30;

/// Where compiles run.
#[derive(Clone, Debug, Default)]
pub enum Compiler {
    /// In this process: bounded by the shape walk only.
    #[default]
    InProcess,
    /// In a worker process with its own limits.
    Worker(WorkerLimits),
}

/// How to start the worker, and what it may spend.
#[derive(Clone, Debug)]
pub struct WorkerLimits {
    /// A program that runs [`worker_main`] when given [`WORKER_ARG`] (the `host` binary).
    pub program: PathBuf,
    /// CPU seconds, across the compiler's threads.
    pub cpu_seconds: u64,
    /// Bytes of address space.
    pub memory_bytes: u64,
}

impl WorkerLimits {
    pub const DEFAULT_CPU_SECONDS: u64 = 60;
    pub const DEFAULT_MEMORY_MIB: u64 = 2048;
}

/// A compiled pack.
pub struct Output {
    pub component: Component,
    /// Its serialized form, when a worker compiled it: what the cache stores
    /// as it is, instead of serializing the component again (for an
    /// interpreter pack, 40 MB copied once less).
    pub serialized: Option<Vec<u8>>,
}

/// Checks the pack's shape, then compiles it where `compiler` says.
pub fn compile(
    engine: &Engine,
    compiler: &Compiler,
    limits: &PackLimits,
    bytes: &[u8],
) -> Result<Output, CompileError> {
    shape::check(bytes, limits)?;
    match compiler {
        Compiler::InProcess => Component::new(engine, bytes)
            .map(|component| Output {
                component,
                serialized: None,
            })
            .map_err(|e| CompileError::Refused(format!("{e:#}"))),
        Compiler::Worker(worker) => {
            let serialized = run_worker(worker, bytes)?;
            // SAFETY: `serialized` was produced by `Component::serialize` in
            // the worker this process just ran (the `host` binary itself), from
            // an engine built by the same `build_engine`; wasmtime checks that
            // the compile settings agree and refuses the bytes otherwise.
            let component = unsafe { Component::deserialize(engine, &serialized) }
                .map_err(|e| CompileError::Refused(format!("{e:#}")))?;
            Ok(Output {
                component,
                serialized: Some(serialized),
            })
        }
    }
}

/// The pack in an unlinked temporary file, to be the worker's stdin: a
/// worker that dies early then cannot break a pipe under the caller.
fn pack_file(bytes: &[u8]) -> Result<std::fs::File, CompileError> {
    use std::io::Seek;
    let fail = |e: std::io::Error| CompileError::Worker(format!("cannot hand the pack to the worker: {e}"));
    let mut file = tempfile::tempfile().map_err(fail)?;
    file.write_all(bytes).map_err(fail)?;
    file.rewind().map_err(fail)?;
    Ok(file)
}

fn run_worker(worker: &WorkerLimits, bytes: &[u8]) -> Result<Vec<u8>, CompileError> {
    let mut command = Command::new(&worker.program);
    command
        .arg(WORKER_ARG)
        .stdin(Stdio::from(pack_file(bytes)?))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env_remove("ENVPACK_LOG");
    let (cpu, memory) = (worker.cpu_seconds, worker.memory_bytes);
    // SAFETY: only setrlimit and close_range, which are async-signal-safe,
    // between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt;
        command.pre_exec(move || {
            // No descriptor but the pipes reaches the worker (a library's
            // fork handler may have opened one without close-on-exec); an
            // older kernel without close_range(2) leaves them as they are.
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC);
            let cpu = libc::rlimit {
                rlim_cur: cpu,
                rlim_max: cpu.saturating_add(1),
            };
            let memory = libc::rlimit {
                rlim_cur: memory,
                rlim_max: memory,
            };
            if libc::setrlimit(libc::RLIMIT_CPU, &cpu) < 0 || libc::setrlimit(libc::RLIMIT_AS, &memory) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| CompileError::Worker(format!("cannot start {}: {e}", worker.program.display())))?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(CompileError::Worker("the worker's pipes were not set up".into()));
    };
    // CPU time is the limit; the wall clock only catches a worker that
    // stopped using CPU without exiting.
    let wall = Duration::from_secs(worker.cpu_seconds.saturating_mul(4).max(10));
    let started = Instant::now();
    let (status, output, message) = std::thread::scope(|scope| {
        let output = scope.spawn(move || {
            let mut out = Vec::new();
            stdout.take(MAX_OUTPUT).read_to_end(&mut out).map(|_| out)
        });
        let message = scope.spawn(move || {
            let mut text = String::new();
            let _ = stderr.take(64 << 10).read_to_string(&mut text);
            text
        });
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Ok(status),
                Ok(None) if started.elapsed() > wall => {
                    let _ = child.kill();
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                Err(e) => break Err(e),
            }
        };
        (status, output.join(), message.join())
    });
    let status = status.map_err(|e| CompileError::Worker(format!("cannot wait for the worker: {e}")))?;
    let message = message.unwrap_or_default();
    let message = message.trim();
    if status.success() {
        return match output {
            Ok(Ok(out)) => Ok(out),
            _ => Err(CompileError::Worker("its answer could not be read".into())),
        };
    }
    Err(worker_failure(worker, status, message, started.elapsed() > wall))
}

/// Why the worker did not answer, from how it ended.
fn worker_failure(
    worker: &WorkerLimits,
    status: std::process::ExitStatus,
    message: &str,
    timed_out: bool,
) -> CompileError {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(REFUSED_EXIT), _) => CompileError::Refused(message.to_string()),
        (_, Some(libc::SIGXCPU)) => CompileError::Time(worker.cpu_seconds),
        (_, Some(libc::SIGKILL)) if timed_out => CompileError::Time(worker.cpu_seconds),
        // Out of address space: Rust's allocator aborts, or wasmtime says so.
        (_, Some(libc::SIGABRT)) => CompileError::Memory(worker.memory_bytes),
        _ if ["memory allocation", "Cannot allocate memory", "out of memory"]
            .iter()
            .any(|needle| message.contains(needle)) =>
        {
            CompileError::Memory(worker.memory_bytes)
        }
        _ => CompileError::Worker(format!("{status}: {message}")),
    }
}

/// The worker's exit status when the compiler refused the pack.
const REFUSED_EXIT: i32 = 3;

/// The worker: pack bytes on stdin, the serialized component on stdout, a
/// compiler's refusal on stderr with exit status 3. Returns the exit status.
pub fn worker_main() -> i32 {
    let mut bytes = Vec::new();
    if let Err(e) = std::io::stdin()
        .take(crate::contract::pack::MAX_PACK_BYTES + 1)
        .read_to_end(&mut bytes)
    {
        eprintln!("cannot read the pack: {e}");
        return 1;
    }
    // Compile settings depend neither on the allocator (on-demand reserves
    // no pool) nor on metering (every engine compiles fuel in).
    let config = HostConfig {
        allocator: AllocatorChoice::OnDemand,
        ..HostConfig::default()
    };
    let engine = match build_engine(&config) {
        Ok((engine, _)) => engine,
        Err(e) => {
            eprintln!("{e}");
            return 1;
        }
    };
    let serialized = Component::new(&engine, &bytes).and_then(|component| component.serialize());
    match serialized {
        Ok(out) => match std::io::stdout().lock().write_all(&out) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("cannot write the compiled pack: {e}");
                1
            }
        },
        Err(e) => {
            eprintln!("{e:#}");
            REFUSED_EXIT
        }
    }
}
