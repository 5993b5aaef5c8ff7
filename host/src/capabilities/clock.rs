//! Capability `clock`: wall clock, monotonic clock and a sleep that counts
//! against the call's deadline.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::capabilities::gate::Capability;
use crate::contract::bindings::envpack::deployer::clock::Host;
use crate::sandbox::call_state::CallState;
use crate::sandbox::limits::DeadlineExceeded;

impl Host for CallState {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.capability_call(Capability::Clock, "clock.now-ms", String::new())?;
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    fn monotonic_ns(&mut self) -> wasmtime::Result<u64> {
        self.capability_call(Capability::Clock, "clock.monotonic-ns", String::new())?;
        Ok(u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    async fn sleep_ms(&mut self, ms: u32) -> wasmtime::Result<()> {
        self.capability_call(Capability::Clock, "clock.sleep-ms", format!("{ms} ms"))?;
        let remaining = self.deadline.saturating_sub(self.started.elapsed());
        let wanted = Duration::from_millis(u64::from(ms));
        tokio::time::sleep(wanted.min(remaining)).await;
        if wanted > remaining {
            return Err(wasmtime::Error::new(DeadlineExceeded(self.deadline)));
        }
        Ok(())
    }
}

/// WASI's clocks for a pack without the `clock` capability: stopped at the
/// epoch, so time reaches a pack only through the contract's `clock`
/// (granted and recorded), never as a side channel through WASI.
pub struct StoppedClock;

impl wasmtime_wasi::HostWallClock for StoppedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}
