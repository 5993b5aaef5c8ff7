//! `CallState`: everything one verb call's `Store` holds. A fresh one is made
//! for every call and dropped after it, so nothing leaks between calls.
//!
//! Like wasmtime-wasi with its views, each capability owns its slice of the
//! call's state (`kv`, `log`, `clock`, `process`, `probe`, `http`,
//! `secrets`) and is linked with a getter that lends it that slice plus the
//! call's [`Ledger`] (gate, recording, deadline) — never another
//! capability's state. The call state only holds them together.

use std::sync::Arc;
use std::time::{Duration, Instant};

use envpack_model::{Capability, CapabilityCall, Gate, Grants, Recording};
use wasmtime::component::{HasData, ResourceTable};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capabilities::CallEnv;
use crate::capabilities::clock::{ClockState, ClockView, WasiReads, WasiSleepView};
use crate::capabilities::environment::EnvView;
use crate::capabilities::http::HttpPolicy;
use crate::capabilities::kv::{KvSession, KvView};
use crate::capabilities::ledger::Ledger;
use crate::capabilities::log::{LogState, LogView};
use crate::capabilities::probe::{ProbeState, ProbeView};
use crate::capabilities::process::{ProcessState, ProcessView};
use crate::capabilities::secrets::{SecretsState, SecretsView};
use crate::sandbox::limits::MemoryBudget;
use crate::sandbox::phases::Laps;
use crate::sandbox::services::Services;

/// How much of the pack's stderr is kept to explain a trap.
pub const STDERR_BYTES: usize = 16 * 1024;

/// The data of one call's `Store`.
pub struct CallState {
    pub(crate) table: ResourceTable,
    pub(crate) ledger: Ledger,
    pub(crate) budget: MemoryBudget,
    /// Where the call's time went, phase by phase.
    pub(crate) laps: Laps,
    /// On a metered runtime, the deadline the call's fuel stands for (its
    /// wall-clock deadline is then only a backstop), and the fuel burned.
    pub(crate) fuel_deadline: Option<Duration>,
    pub(crate) fuel_used: Option<u64>,
    wasi: WasiCtx,
    stderr: MemoryOutputPipe,
    /// What the pack read through WASI's clocks and randomness.
    wasi_reads: Arc<WasiReads>,
    log: LogState,
    pub(crate) kv: KvSession,
    pub(crate) clock: ClockState,
    process: ProcessState,
    probe: ProbeState,
    http_ctx: WasiHttpCtx,
    http: HttpPolicy,
    secrets: SecretsState,
}

impl CallState {
    /// A state with no ambient authority: no environment variables, no
    /// network, stdout discarded and stderr captured for error messages,
    /// and no files but the environment's work directory (as `/`,
    /// read-write) when `process` is both declared and granted.
    pub fn new(gate: Gate, kv: KvSession, memory_budget: usize, deadline: Duration) -> Self {
        let env = CallEnv {
            id: String::new(),
            grants: Grants::default(),
        };
        Self::for_env(gate, kv, memory_budget, deadline, env, Services::default())
    }

    /// [`Self::new`] for one environment's call.
    pub fn for_env(
        gate: Gate,
        kv: KvSession,
        memory_budget: usize,
        deadline: Duration,
        env: CallEnv,
        services: Services,
    ) -> Self {
        let stderr = MemoryOutputPipe::new(STDERR_BYTES);
        let mut builder = WasiCtx::builder();
        builder.stderr(stderr.clone());
        let wasi_reads = Arc::new(WasiReads::default());
        wasi_reads.attach(&mut builder, gate.check(Capability::Clock, "wasi:clocks").is_ok());
        if gate.check(Capability::Process, "wasi:filesystem").is_ok()
            && let Some(workspace) = &services.workspace
        {
            // A directory that cannot be opened simply is not visible.
            let _ = builder.preopened_dir(&workspace.work_dir, "/", FsPerms::ReadWrite);
        }
        let wasi = builder.build();
        let now = Instant::now();
        let ledger = Ledger::new(gate, now, deadline);
        let http = HttpPolicy::new(&ledger, &env.grants, now + deadline);
        CallState {
            table: ResourceTable::new(),
            budget: MemoryBudget::new(memory_budget),
            laps: Laps::start(now),
            fuel_deadline: None,
            fuel_used: None,
            wasi,
            stderr,
            wasi_reads,
            log: LogState::new(services.log_sink.clone()),
            kv,
            clock: ClockState::default(),
            process: ProcessState::new(&env, services.workspace.clone()),
            probe: ProbeState::new(&env),
            http_ctx: WasiHttpCtx::new(),
            http,
            secrets: SecretsState::new(&env, services.secrets.clone()),
            ledger,
        }
    }

    /// Ends the call's recording: what the pack read through WASI's clocks
    /// and randomness is recorded as calls of capability `clock` (one line
    /// per interface with the count, so that `capability.declared` sees a
    /// pack that reads time or randomness without declaring `clock`), and
    /// its outbound HTTP requests each in its place among the other calls.
    pub(crate) fn finish_recording(&mut self) {
        for (inserted, (at, call)) in self.http.take_calls().into_iter().enumerate() {
            self.ledger.insert(at + inserted, call);
        }
        for (operation, count) in self.wasi_reads.counts() {
            let call = CapabilityCall {
                capability: Capability::Clock,
                operation,
                detail: format!("{count} reads"),
                allowed: self.ledger.check(Capability::Clock, operation).is_ok(),
                declared: self.ledger.declared(Capability::Clock),
            };
            self.ledger.push(call);
        }
    }

    /// The recording and the kv session, once the call is over.
    pub(crate) fn into_parts(self) -> (Recording, KvSession) {
        (self.ledger.into_recording(), self.kv)
    }

    /// The call's deadline as its stop was measured: fuel on a metered
    /// runtime, else the wall clock.
    pub(crate) fn deadline(&self) -> Duration {
        self.fuel_deadline.unwrap_or(self.ledger.deadline())
    }

    /// What the pack wrote to stderr (a Rust panic message, typically), on
    /// one line, without the toolchain's backtrace advice.
    pub fn panic_message(&self) -> String {
        let text = String::from_utf8_lossy(&self.stderr.contents()).into_owned();
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("note: run with `RUST_BACKTRACE"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    // ---- the getters each capability is linked with ----

    pub(crate) fn log_view(&mut self) -> LogView<'_> {
        LogView {
            state: &mut self.log,
            ledger: &mut self.ledger,
        }
    }

    pub(crate) fn kv_view(&mut self) -> KvView<'_> {
        KvView {
            kv: &mut self.kv,
            ledger: &mut self.ledger,
        }
    }

    pub(crate) fn clock_view(&mut self) -> ClockView<'_> {
        ClockView {
            state: &mut self.clock,
            ledger: &mut self.ledger,
        }
    }

    pub(crate) fn wasi_sleep_view(&mut self) -> WasiSleepView<'_> {
        let waited = self.clock.wasi_waited.clone();
        WasiSleepView {
            clocks: wasmtime_wasi::clocks::WasiClocksView::clocks(self),
            waited,
        }
    }

    pub(crate) fn process_view(&mut self) -> ProcessView<'_> {
        ProcessView {
            state: &mut self.process,
            ledger: &mut self.ledger,
            table: &mut self.table,
        }
    }

    pub(crate) fn probe_view(&mut self) -> ProbeView<'_> {
        ProbeView {
            state: &mut self.probe,
            ledger: &mut self.ledger,
        }
    }

    pub(crate) fn secrets_view(&mut self) -> SecretsView<'_> {
        SecretsView {
            state: &mut self.secrets,
            ledger: &mut self.ledger,
        }
    }

    pub(crate) fn env_view(&mut self) -> EnvView<'_> {
        EnvView { table: &mut self.table }
    }
}

// `types` has no functions: the call state serves it as it is.
impl crate::contract::bindings::envpack::deployer::types::Host for CallState {}

/// [`HasData`] markers: which view each interface is linked with.
pub(crate) struct Log;
pub(crate) struct Kv;
pub(crate) struct Clock;
pub(crate) struct WasiSleep;
pub(crate) struct Process;
pub(crate) struct Probe;
pub(crate) struct Secrets;
pub(crate) struct Env;

impl HasData for Log {
    type Data<'a> = LogView<'a>;
}
impl HasData for Kv {
    type Data<'a> = KvView<'a>;
}
impl HasData for Clock {
    type Data<'a> = ClockView<'a>;
}
impl HasData for WasiSleep {
    type Data<'a> = WasiSleepView<'a>;
}
impl HasData for Process {
    type Data<'a> = ProcessView<'a>;
}
impl HasData for Probe {
    type Data<'a> = ProbeView<'a>;
}
impl HasData for Secrets {
    type Data<'a> = SecretsView<'a>;
}
impl HasData for Env {
    type Data<'a> = EnvView<'a>;
}

impl WasiHttpView for CallState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.http,
            table: &mut self.table,
            ctx: &mut self.http_ctx,
        }
    }
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}
