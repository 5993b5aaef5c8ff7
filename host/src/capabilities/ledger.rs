//! The ledger of one call: what every capability consults, as every WASI
//! interface consults wasmtime's resource table. It holds the gate that
//! allows or refuses each capability call (declared by the pack, granted by
//! the operator), the recording of every call made, and the call's
//! deadline. Capabilities own their own state; this is the one thing they
//! share, and it is passed to each explicitly with its own state (see
//! `sandbox::call_state`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use envpack_model::{Capability, CapabilityCall, Denied, Gate, Recording};

/// The gate, the recording and the clock of one verb call.
pub struct Ledger {
    gate: Gate,
    recording: Recording,
    /// Capability calls recorded so far, readable by capabilities that
    /// record later (outbound HTTP), so their calls keep their place.
    recorded: Arc<AtomicUsize>,
    started: Instant,
    deadline: Duration,
}

impl Ledger {
    pub fn new(gate: Gate, started: Instant, deadline: Duration) -> Self {
        Ledger {
            gate,
            recording: Recording::default(),
            recorded: Arc::new(AtomicUsize::new(0)),
            started,
            deadline,
        }
    }

    /// Checks one capability call against the gate and records it, allowed
    /// or refused; a refusal is the trap that ends the call.
    pub fn call(&mut self, capability: Capability, operation: &'static str, detail: String) -> wasmtime::Result<()> {
        let verdict = self.gate.check(capability, operation);
        self.push(CapabilityCall {
            capability,
            operation,
            detail,
            allowed: verdict.is_ok(),
            declared: self.gate.declared(capability),
        });
        verdict.map_err(wasmtime::Error::new)
    }

    /// Records a call without checking it (its verdict was reached elsewhere).
    pub fn push(&mut self, call: CapabilityCall) {
        self.recording.push(call);
        self.recorded.store(self.recording.calls.len(), Ordering::Relaxed);
    }

    /// Records a call that happened after the first `at` calls.
    pub fn insert(&mut self, at: usize, call: CapabilityCall) {
        self.recording.insert(at, call);
        self.recorded.store(self.recording.calls.len(), Ordering::Relaxed);
    }

    /// Marks the call just recorded as refused by its scope, with the reason.
    pub fn refused(&mut self, reason: &str) {
        if let Some(last) = self.recording.calls.last_mut() {
            last.allowed = false;
            last.detail = format!("{} (refused: {reason})", last.detail);
        }
    }

    /// The gate's verdict on a call, without recording it.
    pub fn check(&self, capability: Capability, operation: &'static str) -> Result<(), Denied> {
        self.gate.check(capability, operation)
    }

    pub fn declared(&self, capability: Capability) -> bool {
        self.gate.declared(capability)
    }

    /// A live count of the calls recorded so far.
    pub fn counter(&self) -> Arc<AtomicUsize> {
        self.recorded.clone()
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Time left before the call's deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_sub(self.started.elapsed())
    }

    pub fn into_recording(self) -> Recording {
        self.recording
    }
}
