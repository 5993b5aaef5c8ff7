//! Capability `clock`: wall clock, monotonic clock and a sleep that counts
//! against the call's deadline.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::bindings::envpack::deployer::clock::Host;
use crate::capabilities::recording::CapabilityCall;
use crate::capability::Capability;
use crate::sandbox::DeadlineExceeded;
use crate::state::CallState;

impl CallState {
    fn clock_call(&mut self, operation: &'static str, detail: String) -> wasmtime::Result<()> {
        if let Err(denied) = self.gate.check(Capability::Clock, operation) {
            return Err(self.refuse(Capability::Clock, operation, detail, denied));
        }
        self.recording.push(CapabilityCall {
            capability: Capability::Clock,
            operation,
            detail,
            allowed: true,
        });
        Ok(())
    }
}

impl Host for CallState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.clock_call("clock.now-ms", String::new())?;
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    fn monotonic_ns(&mut self) -> wasmtime::Result<u64> {
        self.clock_call("clock.monotonic-ns", String::new())?;
        Ok(u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    async fn sleep_ms(&mut self, ms: u32) -> wasmtime::Result<()> {
        self.clock_call("clock.sleep-ms", format!("{ms} ms"))?;
        let remaining = self.deadline.saturating_sub(self.started.elapsed());
        let wanted = Duration::from_millis(u64::from(ms));
        tokio::time::sleep(wanted.min(remaining)).await;
        if wanted > remaining {
            return Err(wasmtime::Error::new(DeadlineExceeded(self.deadline)));
        }
        Ok(())
    }
}
