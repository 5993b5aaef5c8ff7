//! `CallState`: everything one verb call's `Store` holds. A fresh one is made
//! for every call and dropped after it, so nothing leaks between calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{FsPerms, WasiCtx, WasiCtxView, WasiView};

use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::capabilities::grants::Grants;
use crate::capabilities::http::HttpPolicy;
use crate::sandbox::services::Services;

use crate::capabilities::clock::WasiReads;
use crate::capabilities::gate::{Capability, Gate};
use crate::capabilities::kv::KvSession;
use crate::capabilities::recording::{CapabilityCall, Recording};
use crate::sandbox::limits::MemoryBudget;
use crate::sandbox::phases::Laps;

/// How much of the pack's stderr is kept to explain a trap.
pub const STDERR_BYTES: usize = 16 * 1024;

/// The data of one call's `Store`.
pub struct CallState {
    pub(crate) table: ResourceTable,
    pub(crate) wasi: WasiCtx,
    pub(crate) stderr: MemoryOutputPipe,
    pub(crate) budget: MemoryBudget,
    pub(crate) gate: Gate,
    pub(crate) recording: Recording,
    pub(crate) kv: KvSession,
    pub(crate) log_lines: usize,
    pub(crate) log_dropped: usize,
    pub(crate) started: Instant,
    pub(crate) deadline: Duration,
    /// The environment's id and scopes, for the capabilities that check them.
    pub(crate) env_id: String,
    pub(crate) grants: Grants,
    pub(crate) services: Services,
    pub(crate) http_ctx: WasiHttpCtx,
    pub(crate) http: HttpPolicy,
    /// Where the call's time went, phase by phase.
    pub(crate) laps: Laps,
    /// What the pack read through WASI's clocks and randomness.
    pub(crate) wasi_reads: Arc<WasiReads>,
    /// On a metered runtime, the deadline the call's fuel stands for (its
    /// wall-clock `deadline` is then only a backstop).
    pub(crate) fuel_deadline: Option<Duration>,
    /// Fuel burned, on a metered runtime.
    pub(crate) fuel_used: Option<u64>,
    /// Time asked for through `clock.sleep-ms`.
    pub(crate) slept: Duration,
}

impl CallState {
    /// A state with no ambient authority: no environment variables, no
    /// network, stdout discarded and stderr captured for error messages, and
    /// no files but the environment's work directory (as `/`, read-write)
    /// when `process` is both declared and granted.
    pub fn new(gate: Gate, kv: KvSession, memory_budget: usize, deadline: Duration) -> Self {
        Self::for_env(
            gate,
            kv,
            memory_budget,
            deadline,
            String::new(),
            Grants::default(),
            Services::default(),
        )
    }

    /// [`Self::new`] for one environment's call.
    pub fn for_env(
        gate: Gate,
        kv: KvSession,
        memory_budget: usize,
        deadline: Duration,
        env_id: String,
        grants: Grants,
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
        let http = HttpPolicy::new(&gate, &grants, now + deadline);
        CallState {
            table: ResourceTable::new(),
            wasi,
            stderr,
            budget: MemoryBudget::new(memory_budget),
            gate,
            recording: Recording::default(),
            kv,
            log_lines: 0,
            log_dropped: 0,
            started: now,
            deadline,
            env_id,
            grants,
            services,
            http_ctx: WasiHttpCtx::new(),
            http,
            laps: Laps::start(now),
            wasi_reads,
            fuel_deadline: None,
            fuel_used: None,
            slept: Duration::ZERO,
        }
    }

    /// Adds what the pack read through WASI's clocks and randomness to its
    /// recording, as calls of capability `clock`: one line per interface
    /// with the count, so that `capability.declared` sees a pack that
    /// reads time or randomness without declaring `clock`.
    pub(crate) fn record_wasi_reads(&mut self) {
        for (operation, count) in self.wasi_reads.counts() {
            self.recording.push(CapabilityCall {
                capability: Capability::Clock,
                operation,
                detail: format!("{count} reads"),
                allowed: self.gate.check(Capability::Clock, operation).is_ok(),
                declared: self.gate.declared(Capability::Clock),
            });
        }
    }

    /// Adds the call's outbound HTTP requests to its recording, each in
    /// its place among the other capability calls.
    pub(crate) fn record_http(&mut self) {
        let log = std::mem::take(&mut *self.http.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        for (inserted, entry) in log.into_iter().enumerate() {
            let outcome = match (entry.status, &entry.refused) {
                (_, Some(reason)) => format!(" (refused: {reason})"),
                (Some(status), None) => format!(" -> {status}"),
                (None, None) => String::new(),
            };
            let call = CapabilityCall {
                capability: Capability::Http,
                operation: "http.request",
                detail: format!("{} {}{outcome}", entry.method, entry.url),
                allowed: entry.allowed,
                declared: self.gate.declared(Capability::Http),
            };
            self.recording.insert(entry.after + inserted, call);
        }
    }

    /// Marks the call just recorded as refused by its scope, with the reason.
    pub(crate) fn refused(&mut self, reason: &str) {
        if let Some(last) = self.recording.calls.last_mut() {
            last.allowed = false;
            last.detail = format!("{} (refused: {reason})", last.detail);
        }
    }

    /// Time left before the call's deadline.
    pub(crate) fn remaining(&self) -> Duration {
        self.deadline.saturating_sub(self.started.elapsed())
    }

    /// Checks one capability call against the gate and records it, allowed
    /// or refused; a refusal is the trap that ends the call.
    pub(crate) fn capability_call(
        &mut self,
        capability: Capability,
        operation: &'static str,
        detail: String,
    ) -> wasmtime::Result<()> {
        let verdict = self.gate.check(capability, operation);
        self.recording.push(CapabilityCall {
            capability,
            operation,
            detail,
            allowed: verdict.is_ok(),
            declared: self.gate.declared(capability),
        });
        self.http.recorded = self.recording.calls.len();
        verdict.map_err(wasmtime::Error::new)
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
