//! Capability `clock`: wall clock, monotonic clock and a sleep that counts
//! against the call's deadline.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::Resource;
use wasmtime_wasi::clocks::WasiClocksCtxView;
use wasmtime_wasi::p2::bindings::clocks::monotonic_clock;
use wasmtime_wasi::p2::{DynPollable, Pollable, subscribe};

use envpack_model::Capability;

use crate::capabilities::ledger::Ledger;
use crate::contract::bindings::envpack::deployer::clock::Host;
use crate::error::DeadlineExceeded;

/// The `clock` capability's part of one call.
#[derive(Debug, Default)]
pub struct ClockState {
    /// Time asked for through `clock.sleep-ms`.
    pub slept: Duration,
    /// Time waited out on WASI clock pollables (`subscribe-duration`,
    /// `subscribe-instant`: what `std::thread::sleep` and friends become),
    /// in nanoseconds; shared with the pollables in the call's table.
    pub wasi_waited: Arc<AtomicU64>,
}

impl ClockState {
    /// Every sleep of the call: `clock.sleep-ms` plus the WASI clock waits.
    pub fn slept_total(&self) -> Duration {
        self.slept + Duration::from_nanos(self.wasi_waited.load(Ordering::Relaxed))
    }
}

/// What `clock` is linked with: its state and the call's ledger.
pub struct ClockView<'a> {
    pub(crate) state: &'a mut ClockState,
    pub(crate) ledger: &'a mut Ledger,
}

impl Host for ClockView<'_> {
    fn now_ms(&mut self) -> wasmtime::Result<u64> {
        self.ledger.call(Capability::Clock, "clock.now-ms", String::new())?;
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Ok(u64::try_from(since.as_millis()).unwrap_or(u64::MAX))
    }

    fn monotonic_ns(&mut self) -> wasmtime::Result<u64> {
        self.ledger
            .call(Capability::Clock, "clock.monotonic-ns", String::new())?;
        Ok(u64::try_from(self.ledger.started().elapsed().as_nanos()).unwrap_or(u64::MAX))
    }

    async fn sleep_ms(&mut self, ms: u32) -> wasmtime::Result<()> {
        self.ledger
            .call(Capability::Clock, "clock.sleep-ms", format!("{ms} ms"))?;
        let remaining = self.ledger.remaining();
        let wanted = Duration::from_millis(u64::from(ms));
        self.state.slept += wanted;
        tokio::time::sleep(wanted.min(remaining)).await;
        if wanted > remaining {
            return Err(wasmtime::Error::new(DeadlineExceeded(self.ledger.deadline())));
        }
        Ok(())
    }
}

/// `wasi:clocks/monotonic-clock` as wasmtime-wasi serves it, except that
/// its pollables count the time they are waited on: a WASI sleep is work
/// against the call's time budget as much as `clock.sleep-ms` is. Linked
/// over wasmtime-wasi's own definition (the linker allows shadowing there).
pub struct WasiSleepView<'a> {
    pub(crate) clocks: WasiClocksCtxView<'a>,
    pub(crate) waited: Arc<AtomicU64>,
}

impl WasiSleepView<'_> {
    fn counted(&mut self, duration: Duration) -> wasmtime::Result<Resource<DynPollable>> {
        let deadline = tokio::time::Instant::now().checked_add(duration);
        let wait = self.clocks.table.push(CountedWait {
            deadline,
            duration,
            waited: self.waited.clone(),
            done: false,
        })?;
        subscribe(self.clocks.table, wait)
    }
}

impl monotonic_clock::Host for WasiSleepView<'_> {
    fn now(&mut self) -> wasmtime::Result<u64> {
        monotonic_clock::Host::now(&mut self.clocks)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        monotonic_clock::Host::resolution(&mut self.clocks)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let now = monotonic_clock::Host::now(&mut self.clocks)?;
        self.counted(Duration::from_nanos(when.saturating_sub(now)))
    }

    fn subscribe_duration(&mut self, duration: u64) -> wasmtime::Result<Resource<DynPollable>> {
        self.counted(Duration::from_nanos(duration))
    }
}

/// A clock pollable that adds the time it was waited on, once it fires,
/// to the call's count. A wait cut short because something else in the
/// same `poll` was ready first (a timeout beside an HTTP response) adds
/// nothing: that time belongs to what was awaited, not to a sleep.
struct CountedWait {
    /// `None`: further away than the clock can say; never fires.
    deadline: Option<tokio::time::Instant>,
    duration: Duration,
    waited: Arc<AtomicU64>,
    done: bool,
}

impl Pollable for CountedWait {
    fn ready<'a, 'b>(&'a mut self) -> Pin<Box<dyn Future<Output = ()> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            if self.done {
                return;
            }
            if self.duration.is_zero() {
                // As wasmtime-wasi does: a zero wait yields once so a guest
                // polling in a loop cannot starve the runtime.
                self.done = true;
                tokio::task::yield_now().await;
                return;
            }
            let Some(deadline) = self.deadline else {
                return std::future::pending().await;
            };
            let started = tokio::time::Instant::now();
            tokio::time::sleep_until(deadline).await;
            self.done = true;
            let waited = started.elapsed().min(self.duration);
            let nanos = u64::try_from(waited.as_nanos()).unwrap_or(u64::MAX);
            self.waited.fetch_add(nanos, Ordering::Relaxed);
        })
    }
}

/// What one call read through WASI's clocks and random interfaces. With
/// `clock` declared and granted the reads are served for real; without it
/// the clocks stand still at the epoch and "randomness" is a fixed byte
/// pattern, so time and chance reach a pack only through a granted,
/// recorded capability, never as a side channel. Either way every read is
/// counted and recorded (`CallState::finish_recording`). `insecure-seed`
/// (what Rust's `HashMap` reads at start) is a constant and not counted.
#[derive(Debug, Default)]
pub struct WasiReads {
    wall: AtomicUsize,
    monotonic: AtomicUsize,
    random: AtomicUsize,
}

/// The fixed seed of `wasi:random/insecure-seed`.
const SEED: u128 = 0x656e_7670_6163_6b00_656e_7670_6163_6b00;

impl WasiReads {
    /// Serves `builder`'s clocks and randomness through counters, live when `live`.
    pub fn attach(self: &Arc<Self>, builder: &mut wasmtime_wasi::WasiCtxBuilder, live: bool) {
        builder
            .wall_clock(WallTap {
                reads: self.clone(),
                live,
            })
            .monotonic_clock(MonotonicTap {
                reads: self.clone(),
                start: live.then(Instant::now),
            })
            .secure_random(RandomTap::new(self.clone(), live))
            .insecure_random(RandomTap::new(self.clone(), live))
            .insecure_random_seed(SEED);
    }

    /// `(operation, reads)` for every interface read at least once.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        [
            ("wasi:clocks/wall-clock", &self.wall),
            ("wasi:clocks/monotonic-clock", &self.monotonic),
            ("wasi:random", &self.random),
        ]
        .into_iter()
        .map(|(op, n)| (op, n.load(Ordering::Relaxed)))
        .filter(|(_, n)| *n > 0)
        .collect()
    }
}

struct WallTap {
    reads: Arc<WasiReads>,
    live: bool,
}

impl wasmtime_wasi::HostWallClock for WallTap {
    fn resolution(&self) -> Duration {
        if self.live {
            Duration::from_nanos(1)
        } else {
            Duration::from_secs(1)
        }
    }

    fn now(&self) -> Duration {
        self.reads.wall.fetch_add(1, Ordering::Relaxed);
        if self.live {
            SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
        } else {
            Duration::ZERO
        }
    }
}

struct MonotonicTap {
    reads: Arc<WasiReads>,
    /// `None`: stopped.
    start: Option<Instant>,
}

impl wasmtime_wasi::HostMonotonicClock for MonotonicTap {
    fn resolution(&self) -> u64 {
        if self.start.is_some() { 1 } else { 1_000_000_000 }
    }

    fn now(&self) -> u64 {
        self.reads.monotonic.fetch_add(1, Ordering::Relaxed);
        self.start
            .map_or(0, |start| u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX))
    }
}

/// Random bytes, counted: the OS's when live, else a fixed pattern.
struct RandomTap {
    reads: Arc<WasiReads>,
    source: Box<dyn rand::Rng + Send>,
}

impl RandomTap {
    fn new(reads: Arc<WasiReads>, live: bool) -> Self {
        let source: Box<dyn rand::Rng + Send> = if live {
            wasmtime_wasi::thread_rng()
        } else {
            Box::new(wasmtime_wasi::Deterministic::new(
                b"envpack: no clock, no chance".to_vec(),
            ))
        };
        RandomTap { reads, source }
    }
}

impl rand::TryRng for RandomTap {
    type Error = std::convert::Infallible;

    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        self.reads.random.fetch_add(1, Ordering::Relaxed);
        Ok(self.source.next_u32())
    }

    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        self.reads.random.fetch_add(1, Ordering::Relaxed);
        Ok(self.source.next_u64())
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), Self::Error> {
        self.reads.random.fetch_add(1, Ordering::Relaxed);
        self.source.fill_bytes(dest);
        Ok(())
    }
}
