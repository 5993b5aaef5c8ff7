//! Where one verb call's time goes: the host path split into its phases,
//! measured with one clock read per phase boundary (a few tens of
//! nanoseconds a call) and carried in the [`CallReport`](super::runtime::CallReport)
//! for `host bench`'s breakdown.

use std::time::{Duration, Instant};

use serde::Serialize;

/// The phases of one verb call, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Host-side preconditions (no guest code yet).
    Preconditions,
    /// The gate, the kv session, the WASI context and the `Store`.
    State,
    /// A fresh instance from the pack's `InstancePre`.
    Instantiate,
    /// The environment lent to the guest as a resource.
    Lend,
    /// The export itself: the guest's own work and its capability calls.
    Guest,
    /// The store dropped: the instance's memories and stack given back.
    Teardown,
    /// Outbound HTTP requests folded into the call's recording.
    Recording,
    /// The host's verdict on what the pack returned.
    Outcome,
    /// kv writes made durable (or dropped) by the verdict.
    Settle,
}

impl Phase {
    pub const ALL: [Phase; 9] = [
        Phase::Preconditions,
        Phase::State,
        Phase::Instantiate,
        Phase::Lend,
        Phase::Guest,
        Phase::Teardown,
        Phase::Recording,
        Phase::Outcome,
        Phase::Settle,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Phase::Preconditions => "preconditions",
            Phase::State => "state",
            Phase::Instantiate => "instantiate",
            Phase::Lend => "lend",
            Phase::Guest => "guest",
            Phase::Teardown => "teardown",
            Phase::Recording => "recording",
            Phase::Outcome => "outcome",
            Phase::Settle => "settle",
        }
    }
}

/// Time spent in each [`Phase`] of one call; phases a call did not reach are zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct VerbPhases {
    #[serde(serialize_with = "nanos")]
    pub preconditions: Duration,
    #[serde(serialize_with = "nanos")]
    pub state: Duration,
    #[serde(serialize_with = "nanos")]
    pub instantiate: Duration,
    #[serde(serialize_with = "nanos")]
    pub lend: Duration,
    #[serde(serialize_with = "nanos")]
    pub guest: Duration,
    #[serde(serialize_with = "nanos")]
    pub teardown: Duration,
    #[serde(serialize_with = "nanos")]
    pub recording: Duration,
    #[serde(serialize_with = "nanos")]
    pub outcome: Duration,
    #[serde(serialize_with = "nanos")]
    pub settle: Duration,
}

fn nanos<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl VerbPhases {
    pub fn get(&self, phase: Phase) -> Duration {
        match phase {
            Phase::Preconditions => self.preconditions,
            Phase::State => self.state,
            Phase::Instantiate => self.instantiate,
            Phase::Lend => self.lend,
            Phase::Guest => self.guest,
            Phase::Teardown => self.teardown,
            Phase::Recording => self.recording,
            Phase::Outcome => self.outcome,
            Phase::Settle => self.settle,
        }
    }

    fn slot(&mut self, phase: Phase) -> &mut Duration {
        match phase {
            Phase::Preconditions => &mut self.preconditions,
            Phase::State => &mut self.state,
            Phase::Instantiate => &mut self.instantiate,
            Phase::Lend => &mut self.lend,
            Phase::Guest => &mut self.guest,
            Phase::Teardown => &mut self.teardown,
            Phase::Recording => &mut self.recording,
            Phase::Outcome => &mut self.outcome,
            Phase::Settle => &mut self.settle,
        }
    }

    /// The sum of every phase.
    pub fn total(&self) -> Duration {
        Phase::ALL.iter().map(|p| self.get(*p)).sum()
    }
}

/// A stopwatch that charges the time since its last lap to a phase.
#[derive(Clone, Copy, Debug)]
pub struct Laps {
    last: Instant,
    pub phases: VerbPhases,
}

impl Laps {
    pub fn start(at: Instant) -> Self {
        Laps {
            last: at,
            phases: VerbPhases::default(),
        }
    }

    /// Ends `phase` now.
    pub fn lap(&mut self, phase: Phase) {
        let now = Instant::now();
        *self.phases.slot(phase) += now.saturating_duration_since(self.last);
        self.last = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn laps_charge_each_phase_its_own_time() {
        let start = Instant::now();
        let mut laps = Laps::start(start);
        laps.lap(Phase::Preconditions);
        std::thread::sleep(Duration::from_millis(5));
        laps.lap(Phase::Guest);
        laps.lap(Phase::Settle);
        assert!(laps.phases.guest >= Duration::from_millis(5));
        assert!(laps.phases.preconditions < Duration::from_millis(5));
        assert_eq!(laps.phases.instantiate, Duration::ZERO);
        assert!(laps.phases.total() <= start.elapsed());
        assert!(laps.phases.total() >= laps.phases.guest);
    }

    #[test]
    fn every_phase_has_its_own_slot_and_name() {
        let mut phases = VerbPhases::default();
        for (i, phase) in Phase::ALL.iter().enumerate() {
            *phases.slot(*phase) = Duration::from_nanos(i as u64 + 1);
        }
        for (i, phase) in Phase::ALL.iter().enumerate() {
            assert_eq!(
                phases.get(*phase),
                Duration::from_nanos(i as u64 + 1),
                "{}",
                phase.name()
            );
        }
        let names: std::collections::BTreeSet<_> = Phase::ALL.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), Phase::ALL.len());
    }
}
