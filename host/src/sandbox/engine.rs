//! The one `Engine` every pack runs on: component model, epoch interruption
//! driven by a ticker thread, and the pooling allocator, falling back to
//! on-demand allocation when the machine cannot reserve the pool's virtual
//! memory. Also the `Linker` with WASI (no ambient authority) and the
//! contract's capability imports.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::SetupError;
use crate::sandbox::call_state::CallState;
use crate::sandbox::compile::Compiler;
use envpack_model::{PackLimits, ResultCaps};

/// Bytes of each table and stack slot reset in place (not decommitted) after a call.
const KEEP_RESIDENT: usize = 64 * 1024;
/// Bytes of a memory slot's dirtied pages reset in place after a call, where
/// Linux's `PAGEMAP_SCAN` (6.7+) finds which pages a call wrote: copied back
/// from the pack's image, so the next instance in the slot writes to resident
/// pages instead of faulting each one in copy-on-write (every such fault also
/// flushes the other cores' TLBs). An interpreter pack dirties a few MiB of
/// its heap image per call. What a call dirtied beyond this is decommitted.
/// Without the scan, the lowest [`KEEP_RESIDENT`] bytes are reset whether
/// written or not, so that stays small.
const MEMORY_KEEP_RESIDENT: usize = 16 << 20;
/// Slots whose decommits are batched into one flush.
const DECOMMIT_BATCH: usize = 16;

/// How often the ticker advances the engine's epoch; the deadline's resolution.
pub const TICK: Duration = Duration::from_millis(2);

/// Fuel (wasmtime's count of executed wasm operators) a metered call may
/// burn per millisecond of its deadline: a slow machine's pace, 100 million
/// operators a second. A metered engine turns a deadline into this much
/// fuel, so that judging a pack's speed never depends on how busy the
/// machine is.
pub const FUEL_PER_MS: u64 = 100_000;

/// Which instance allocator the engine ended up with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Allocator {
    Pooling,
    OnDemand,
}

/// Which allocator to ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocatorChoice {
    /// Pooling, or on-demand if the pool cannot be reserved.
    Auto,
    OnDemand,
}

/// Limits and sizes of the host.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Wall-clock time one verb call may take, instantiation included.
    pub deadline: Duration,
    /// Bytes of linear memory one instance may hold, across all its memories.
    pub memory_budget: usize,
    pub result_caps: ResultCaps,
    /// Instances that may be live at once (pool size).
    pub max_instances: u32,
    pub allocator: AllocatorChoice,
    /// Where compiled components are cached; `None` compiles every load.
    pub cache_dir: Option<std::path::PathBuf>,
    /// The shape a pack may have before it is compiled.
    pub pack_limits: PackLimits,
    /// Where compiles run (in this process, or a worker under limits).
    pub compiler: Compiler,
    /// Meter guest work in fuel ([`FUEL_PER_MS`] per millisecond of the
    /// deadline): the conformance bench's deterministic clock. Off in
    /// production, where the wall-clock deadline alone applies. (Every
    /// engine compiles fuel accounting in, metered or not: see
    /// [`base_config`].)
    pub meter_fuel: bool,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            deadline: Duration::from_secs(2),
            memory_budget: 64 << 20,
            result_caps: ResultCaps::default(),
            max_instances: 256,
            allocator: AllocatorChoice::Auto,
            cache_dir: None,
            pack_limits: PackLimits::default(),
            compiler: Compiler::InProcess,
            meter_fuel: false,
        }
    }
}

/// The one engine configuration. Fuel accounting is compiled into every
/// engine's code, metered or not: an unmetered store simply has all the
/// fuel there is. So the conformance bench (metered) and the operator
/// (unmetered) run the same compiled code, and `pack install`, which needs
/// both, compiles a pack once: for a 20 MB interpreter pack that is ~10 s
/// saved per install, against a few percent of guest time (BENCHMARKS.md).
fn base_config() -> Config {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    config.consume_fuel(true);
    config.max_wasm_stack(1 << 20);
    config
}

fn pooling_config(host: &HostConfig) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::default();
    let n = host.max_instances;
    pool.total_component_instances(n);
    pool.total_core_instances(n.saturating_mul(16));
    pool.total_memories(n.saturating_mul(2));
    pool.total_tables(n.saturating_mul(4));
    pool.total_stacks(n);
    pool.max_memory_size(host.memory_budget);
    // A verb call touches few pages: resetting them with memset is cheaper
    // than returning them to the kernel and faulting them in again, and
    // batching the remaining decommits amortizes the syscalls.
    let scan = PoolingAllocationConfig::is_pagemap_scan_available();
    pool.linear_memory_keep_resident(if scan { MEMORY_KEEP_RESIDENT } else { KEEP_RESIDENT });
    pool.pagemap_scan(if scan { Enabled::Yes } else { Enabled::No });
    pool.table_keep_resident(KEEP_RESIDENT);
    pool.async_stack_keep_resident(KEEP_RESIDENT);
    pool.decommit_batch_size(DECOMMIT_BATCH);
    pool
}

/// Builds the engine, preferring the pooling allocator.
pub fn build_engine(host: &HostConfig) -> Result<(Engine, Allocator), SetupError> {
    if host.allocator == AllocatorChoice::Auto {
        let mut config = base_config();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pooling_config(host)));
        match Engine::new(&config) {
            Ok(engine) => return Ok((engine, Allocator::Pooling)),
            Err(e) => tracing::warn!(error = %e, "pooling allocator unavailable; using on-demand allocation"),
        }
    }
    let engine = Engine::new(&base_config()).map_err(|e| SetupError::Engine(e.to_string()))?;
    Ok((engine, Allocator::OnDemand))
}

/// The linker, built on a thread of its own from the moment the runtime is
/// made, while the command does its first work (opening its records,
/// checking the pack, mapping its code): adding every WASI and contract
/// function by name costs 0.25–0.3 ms, which a command otherwise waits for.
pub struct Linking {
    built: OnceLock<Result<Linker<CallState>, String>>,
    building: Mutex<Option<LinkerThread>>,
}

type LinkerThread = JoinHandle<Result<Linker<CallState>, SetupError>>;

impl Linking {
    pub fn start(engine: &Engine) -> Self {
        let linking = Linking {
            built: OnceLock::new(),
            building: Mutex::new(None),
        };
        let for_thread = engine.clone();
        match std::thread::Builder::new()
            .name("envpack-link".into())
            .spawn(move || build_linker(&for_thread))
        {
            Ok(handle) => *linking.building.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle),
            // No thread to spare: built here and now.
            Err(_) => {
                let _ = linking.built.set(build_linker(engine).map_err(|e| e.to_string()));
            }
        }
        linking
    }

    /// The linker, waiting for its thread if it is not done yet.
    pub fn get(&self) -> Result<&Linker<CallState>, SetupError> {
        self.built
            .get_or_init(|| {
                let handle = self.building.lock().unwrap_or_else(PoisonError::into_inner).take();
                match handle.map(JoinHandle::join) {
                    Some(Ok(built)) => built.map_err(|e| e.to_string()),
                    Some(Err(_)) => Err("the thread building it panicked".into()),
                    None => Err("it was never started".into()),
                }
            })
            .as_ref()
            .map_err(|e| SetupError::Link(e.clone()))
    }
}

/// Links WASI p2 (with a context that grants nothing) and the contract's imports.
pub fn build_linker(engine: &Engine) -> Result<Linker<CallState>, SetupError> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| SetupError::Link(e.to_string()))?;
    // Outbound HTTP is always linked; the capability's policy decides per request.
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker).map_err(|e| SetupError::Link(e.to_string()))?;
    // Each capability is linked with its own view of the call state.
    link_capabilities(&mut linker).map_err(|e| SetupError::Link(e.to_string()))?;
    Ok(linker)
}

fn link_capabilities(linker: &mut Linker<CallState>) -> wasmtime::Result<()> {
    use crate::contract::bindings::envpack::deployer as contract;
    use crate::sandbox::call_state as views;
    contract::types::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    contract::environment::add_to_linker::<_, views::Env>(linker, CallState::env_view)?;
    contract::log::add_to_linker::<_, views::Log>(linker, CallState::log_view)?;
    contract::kv::add_to_linker::<_, views::Kv>(linker, CallState::kv_view)?;
    contract::clock::add_to_linker::<_, views::Clock>(linker, CallState::clock_view)?;
    contract::process::add_to_linker::<_, views::Process>(linker, CallState::process_view)?;
    contract::probe::add_to_linker::<_, views::Probe>(linker, CallState::probe_view)?;
    contract::secrets::add_to_linker::<_, views::Secrets>(linker, CallState::secrets_view)?;
    // WASI's monotonic clock again, over wasmtime-wasi's: its sleeps count.
    linker.allow_shadowing(true);
    wasmtime_wasi::p2::bindings::clocks::monotonic_clock::add_to_linker::<_, views::WasiSleep>(
        linker,
        CallState::wasi_sleep_view,
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Advances the engine's epoch every [`TICK`] until dropped. The thread
/// parks between ticks, so dropping the ticker wakes it at once instead of
/// waiting out a tick (up to 2 ms of every command's exit, measured).
pub struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub fn start(engine: &Engine) -> Result<Self, SetupError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let engine = engine.clone();
        let thread = std::thread::Builder::new()
            .name("envpack-epoch".into())
            .spawn(move || {
                let mut next = std::time::Instant::now() + TICK;
                while !flag.load(Ordering::Acquire) {
                    let now = std::time::Instant::now();
                    if now < next {
                        // Wakes early on `unpark` (drop) or spuriously; the loop rechecks.
                        std::thread::park_timeout(next - now);
                        continue;
                    }
                    engine.increment_epoch();
                    next = now + TICK;
                }
            })
            .map_err(|e| SetupError::Engine(format!("cannot start the epoch ticker thread: {e}")))?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_linker_built_on_its_thread_is_the_one_every_caller_gets() {
        let (engine, _) = build_engine(&HostConfig {
            allocator: AllocatorChoice::OnDemand,
            ..HostConfig::default()
        })
        .unwrap();
        let linking = Arc::new(Linking::start(&engine));
        let callers: Vec<_> = (0..4)
            .map(|_| {
                let linking = linking.clone();
                std::thread::spawn(move || linking.get().map(|l| l as *const _ as usize).unwrap())
            })
            .collect();
        let seen: Vec<usize> = callers.into_iter().map(|c| c.join().unwrap()).collect();
        assert!(seen.windows(2).all(|w| w[0] == w[1]), "{seen:?}");
        assert_eq!(seen[0], linking.get().unwrap() as *const _ as usize);
    }
}
