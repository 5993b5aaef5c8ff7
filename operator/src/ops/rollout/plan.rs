//! What a rollout is asked to do (its spec) and the steps that do it: the
//! forward plan, written whole when the rollout starts, and the
//! compensation appended when it rolls back. Every step is idempotent, so a
//! step interrupted by a crash is simply run again.

use envpack_model::SplitEntry;
use serde::{Deserialize, Serialize};

use super::gates::Gate;

/// How traffic moves to the new revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Weight in steps, a soak with the gates after each.
    Canary,
    /// Checked at 0%, switched at once, the old revisions kept warm for a window.
    BlueGreen,
}

/// The bake when none is asked for: blue-green keeps the old revisions
/// warm for five minutes after the switch; a canary drains them at once.
pub const BLUE_GREEN_BAKE_MS: u64 = 5 * 60 * 1000;

impl Strategy {
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blue-green",
        }
    }

    pub fn parse(text: &str) -> Result<Strategy, String> {
        match text {
            "canary" => Ok(Strategy::Canary),
            "blue-green" => Ok(Strategy::BlueGreen),
            other => Err(format!("unknown strategy {other:?}: use canary or blue-green")),
        }
    }
}

/// A rollout as asked for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spec {
    pub strategy: Strategy,
    /// The new revision's weight at each canary step, in percent, ending at 100.
    pub steps: Vec<u32>,
    /// How long each soak lasts (gates evaluated throughout).
    pub soak_ms: u64,
    /// How long the rollout stays at 100% with the old revisions warm and
    /// the gates on (a failure still rolls back) before draining them.
    #[serde(alias = "keep_old_ms")]
    pub bake_ms: u64,
    /// How often gates are evaluated during a soak.
    pub interval_ms: u64,
    pub gates: Vec<Gate>,
}

impl Spec {
    /// Checks what no step could repair later.
    pub fn check(&self) -> Result<(), String> {
        if self.strategy == Strategy::Canary {
            if self.steps.last() != Some(&100) {
                return Err("--steps must end at 100 (e.g. --steps 10,25,50,100)".into());
            }
            if self.steps.windows(2).any(|w| w[0] >= w[1]) || self.steps.first() == Some(&0) {
                return Err(format!(
                    "--steps must rise strictly from above 0 to 100, got {}",
                    self.steps.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                ));
            }
        }
        if self.interval_ms == 0 {
            return Err("--interval must be above 0".into());
        }
        Ok(())
    }
}

/// Whether a step moves the rollout on or undoes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    Forward,
    Compensate,
}

/// One step of a rollout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Action {
    /// Warms the revision (nothing if it is ready already).
    Warm { revision: String },
    /// Records and applies this split (nothing if it is the current one).
    Split { entries: Vec<SplitEntry> },
    /// Waits, evaluating the gates; a failing gate rolls the rollout back.
    Soak { ms: u64, label: String },
    /// Drains the revision (nothing if it is not serving).
    Drain { revision: String },
    /// Archives the revision.
    Archive { revision: String },
}

impl Action {
    /// Once a rollout drains or archives the revisions it moved away from,
    /// there is nothing to go back to: from there on it only goes forward.
    pub fn is_point_of_no_return(&self) -> bool {
        matches!(self, Action::Drain { .. } | Action::Archive { .. })
    }

    /// One line for people: `split R2=2500 R1=7500`, `soak 30s (step 1)`.
    pub fn describe(&self) -> String {
        match self {
            Action::Warm { revision } => format!("warm {revision}"),
            Action::Split { entries } => format!("split {}", entries_text(entries)),
            Action::Soak { ms, label } => format!("soak {} ({label})", duration_text(*ms)),
            Action::Drain { revision } => format!("drain {revision}"),
            Action::Archive { revision } => format!("archive {revision}"),
        }
    }
}

pub fn entries_text(entries: &[SplitEntry]) -> String {
    entries
        .iter()
        .map(|e| format!("{}={}", e.revision, e.weight_bps))
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn duration_text(ms: u64) -> String {
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// `previous` with `to` at `bps`: every other revision scaled down in
/// proportion, the rounding remainder given to the heaviest, zero-weight
/// entries dropped (but `to`, which stays even at 0).
pub fn shifted(previous: &[SplitEntry], to: &str, bps: u32) -> Vec<SplitEntry> {
    let others: Vec<&SplitEntry> = previous
        .iter()
        .filter(|e| e.revision != to && e.weight_bps > 0)
        .collect();
    let total: u64 = others.iter().map(|e| u64::from(e.weight_bps)).sum();
    let rest = 10_000 - bps;
    let mut entries: Vec<SplitEntry> = others
        .iter()
        .map(|e| SplitEntry {
            revision: e.revision.clone(),
            weight_bps: u32::try_from(u64::from(e.weight_bps) * u64::from(rest) / total.max(1)).unwrap_or(0),
        })
        .collect();
    let given: u32 = entries.iter().map(|e| e.weight_bps).sum();
    if let Some(heaviest) = entries.iter_mut().max_by_key(|e| e.weight_bps) {
        heaviest.weight_bps += rest - given;
    }
    entries.retain(|e| e.weight_bps > 0);
    entries.insert(
        0,
        SplitEntry {
            revision: to.to_string(),
            weight_bps: bps,
        },
    );
    entries
}

/// The revisions `previous` sends traffic to, but `to`.
pub fn old_revisions(previous: &[SplitEntry], to: &str) -> Vec<String> {
    previous
        .iter()
        .filter(|e| e.revision != to && e.weight_bps > 0)
        .map(|e| e.revision.clone())
        .collect()
}

/// The forward steps: warm; move the weight (canary: in steps;
/// blue-green: checked at 0%, then switched), soaking with the gates at
/// every weight reached, 100% included; bake at 100% with the old
/// revisions still warm; then drain them (blue-green archives them too).
/// A first deploy (no split yet) is checked before any traffic, then
/// switched: it has nothing to bake against.
pub fn forward(spec: &Spec, previous: &[SplitEntry], to: &str) -> Vec<Action> {
    let mut steps = vec![Action::Warm {
        revision: to.to_string(),
    }];
    let old = old_revisions(previous, to);
    let soak = |label: String| Action::Soak {
        ms: spec.soak_ms,
        label,
    };
    if old.is_empty() {
        steps.push(soak("checking the new revision before any traffic".into()));
        steps.push(Action::Split {
            entries: shifted(&[], to, 10_000),
        });
        return steps;
    }
    match spec.strategy {
        Strategy::Canary => {
            let count = spec.steps.len();
            for (index, percent) in spec.steps.iter().enumerate() {
                steps.push(Action::Split {
                    entries: shifted(previous, to, percent * 100),
                });
                steps.push(soak(format!("step {} of {count}, {percent}%", index + 1)));
            }
        }
        Strategy::BlueGreen => {
            steps.push(soak("checking the new revision at 0%".into()));
            steps.push(Action::Split {
                entries: shifted(previous, to, 10_000),
            });
            steps.push(soak("switched, 100%".into()));
        }
    }
    if spec.bake_ms > 0 {
        steps.push(Action::Soak {
            ms: spec.bake_ms,
            label: "bake at 100%, the old revisions kept warm".into(),
        });
    }
    match spec.strategy {
        Strategy::Canary => steps.extend(old.iter().map(|r| Action::Drain { revision: r.clone() })),
        Strategy::BlueGreen => {
            for revision in &old {
                steps.push(Action::Drain {
                    revision: revision.clone(),
                });
                steps.push(Action::Archive {
                    revision: revision.clone(),
                });
            }
        }
    }
    steps
}

/// The compensation: the previous split back (a first deploy had none),
/// the new revision drained.
pub fn compensation(previous: &[SplitEntry], to: &str) -> Vec<Action> {
    let mut steps = Vec::new();
    if !previous.is_empty() {
        steps.push(Action::Split {
            entries: previous.to_vec(),
        });
    }
    steps.push(Action::Drain {
        revision: to.to_string(),
    });
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pairs: &[(&str, u32)]) -> Vec<SplitEntry> {
        pairs
            .iter()
            .map(|(r, w)| SplitEntry {
                revision: r.to_string(),
                weight_bps: *w,
            })
            .collect()
    }

    #[test]
    fn shifting_keeps_the_sum_and_the_old_proportions() {
        let previous = split(&[("A", 7000), ("B", 3000)]);
        let at = shifted(&previous, "N", 2500);
        assert_eq!(at, split(&[("N", 2500), ("A", 5250), ("B", 2250)]));
        let at = shifted(&previous, "N", 3333);
        assert_eq!(at.iter().map(|e| e.weight_bps).sum::<u32>(), 10_000, "{at:?}");
        assert_eq!(shifted(&previous, "N", 10_000), split(&[("N", 10_000)]));
        // The new revision already in the split: its old weight is replaced.
        let with_new = split(&[("A", 9000), ("N", 1000)]);
        assert_eq!(shifted(&with_new, "N", 5000), split(&[("N", 5000), ("A", 5000)]));
    }

    #[test]
    fn a_canary_soaks_at_every_step_bakes_then_drains_the_old() {
        let mut spec = Spec {
            strategy: Strategy::Canary,
            steps: vec![10, 50, 100],
            soak_ms: 1000,
            bake_ms: 0,
            interval_ms: 100,
            gates: Vec::new(),
        };
        let steps: Vec<String> = forward(&spec, &split(&[("A", 10_000)]), "N")
            .iter()
            .map(Action::describe)
            .collect();
        assert_eq!(
            steps,
            [
                "warm N",
                "split N=1000 A=9000",
                "soak 1s (step 1 of 3, 10%)",
                "split N=5000 A=5000",
                "soak 1s (step 2 of 3, 50%)",
                "split N=10000",
                "soak 1s (step 3 of 3, 100%)",
                "drain A"
            ]
        );
        spec.bake_ms = 60_000;
        let steps = forward(&spec, &split(&[("A", 10_000)]), "N");
        assert_eq!(
            steps[steps.len() - 2].describe(),
            "soak 60s (bake at 100%, the old revisions kept warm)"
        );
        spec.strategy = Strategy::BlueGreen;
        let steps: Vec<String> = forward(&spec, &split(&[("A", 10_000)]), "N")
            .iter()
            .map(Action::describe)
            .collect();
        assert_eq!(
            steps,
            [
                "warm N",
                "soak 1s (checking the new revision at 0%)",
                "split N=10000",
                "soak 1s (switched, 100%)",
                "soak 60s (bake at 100%, the old revisions kept warm)",
                "drain A",
                "archive A"
            ]
        );
    }

    #[test]
    fn a_first_deploy_is_checked_before_any_traffic_and_undone_by_a_drain() {
        let spec = Spec {
            strategy: Strategy::Canary,
            steps: vec![10, 100],
            soak_ms: 1000,
            bake_ms: 60_000,
            interval_ms: 100,
            gates: Vec::new(),
        };
        let steps: Vec<String> = forward(&spec, &[], "N").iter().map(Action::describe).collect();
        assert_eq!(
            steps,
            [
                "warm N",
                "soak 1s (checking the new revision before any traffic)",
                "split N=10000"
            ]
        );
        let back: Vec<String> = compensation(&[], "N").iter().map(Action::describe).collect();
        assert_eq!(back, ["drain N"]);
    }

    #[test]
    fn steps_must_rise_to_100() {
        let mut spec = Spec {
            strategy: Strategy::Canary,
            steps: vec![10, 50],
            soak_ms: 0,
            bake_ms: 0,
            interval_ms: 100,
            gates: Vec::new(),
        };
        assert!(spec.check().unwrap_err().contains("end at 100"));
        spec.steps = vec![50, 10, 100];
        assert!(spec.check().unwrap_err().contains("rise strictly"));
        spec.steps = vec![0, 100];
        assert!(spec.check().is_err());
        spec.steps = vec![100];
        assert!(spec.check().is_ok());
    }
}
