//! Where a verb's time goes: the median of each phase of the host path over
//! a verb's samples, next to a bare wasmtime call of the same export on the
//! same pack and environment ([`Runtime::call_bare`]), so that what the host
//! adds over wasmtime's own floor is one subtraction.

use std::sync::Arc;
use std::time::{Duration, Instant};

use envpack_host::{Pack, Phase, Runtime, VerbPhases};
use envpack_model::{Environment, Request};
use serde::Serialize;

use crate::stats::latency;
use crate::{BenchError, fail};

/// One phase's median, in µs.
#[derive(Clone, Debug, Serialize)]
pub struct PhaseFigure {
    pub phase: String,
    pub median_us: f64,
}

/// One verb's path, phase by phase, against the bare call.
#[derive(Clone, Debug, Serialize)]
pub struct VerbBreakdown {
    pub verb: String,
    pub phases: Vec<PhaseFigure>,
    /// Capability calls the pack makes in this verb (kv, log, ...): their
    /// cost is in `guest`, for the full path and the bare call alike.
    pub capability_calls: usize,
    /// Median of the whole host path.
    pub full_us: f64,
    /// Median of the bare wasmtime call: store, instantiate, export.
    pub bare_us: f64,
    /// full - bare: what the host's own checks and bookkeeping cost.
    pub host_overhead_us: f64,
}

fn median_us(values: Vec<Duration>) -> f64 {
    latency("", values).median
}

/// The median of each phase over `samples`.
pub fn phase_medians(samples: &[VerbPhases]) -> Vec<PhaseFigure> {
    Phase::ALL
        .iter()
        .map(|phase| PhaseFigure {
            phase: phase.name().to_string(),
            median_us: median_us(samples.iter().map(|s| s.get(*phase)).collect()),
        })
        .collect()
}

/// One bare call of `request`, timed.
pub async fn bare(
    host: &Runtime,
    pack: &Pack,
    env: &Arc<Environment>,
    request: &Request,
) -> Result<Duration, BenchError> {
    let started = Instant::now();
    host.call_bare(pack, env, request)
        .await
        .map_err(|e| fail("bare call")(format!("{e:#}")))?;
    Ok(started.elapsed())
}

/// One verb's row.
pub fn row(verb: &str, phases: &[VerbPhases], capability_calls: usize, full_us: f64, bare_us: f64) -> VerbBreakdown {
    VerbBreakdown {
        verb: verb.to_string(),
        phases: phase_medians(phases),
        capability_calls,
        full_us,
        bare_us,
        host_overhead_us: full_us - bare_us,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phase_medians_name_every_phase_in_order() {
        let samples: Vec<VerbPhases> = (1..=5)
            .map(|i| VerbPhases {
                guest: Duration::from_micros(i),
                settle: Duration::from_micros(10 * i),
                ..VerbPhases::default()
            })
            .collect();
        let medians = phase_medians(&samples);
        let names: Vec<&str> = medians.iter().map(|m| m.phase.as_str()).collect();
        assert_eq!(names, Phase::ALL.map(Phase::name));
        let of = |name: &str| medians.iter().find(|m| m.phase == name).unwrap().median_us;
        assert_eq!(of("guest"), 3.0);
        assert_eq!(of("settle"), 30.0);
        assert_eq!(of("instantiate"), 0.0);
        let r = row("warm-revision", &samples, 3, 40.0, 25.0);
        assert_eq!(r.host_overhead_us, 15.0);
    }
}
