//! Traffic split rules: weights in basis points, each at most 10000,
//! summed in u64 to exactly 10000 ([`validate_weights`], used wherever a
//! split is checked, so the host and the store can never disagree), and
//! what a split may name before it is recorded ([`check_recordable`]).

use crate::environment::SplitEntry;
use crate::lifecycle::Lifecycle;

/// The whole of traffic, in basis points.
pub const FULL_BPS: u64 = 10_000;

/// Why a split's weights are not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WeightError {
    #[error("the split has no entries")]
    Empty,
    #[error("entry {revision} has {weight_bps} bps; an entry may hold at most 10000")]
    EntryTooLarge { revision: String, weight_bps: u32 },
    #[error("weights sum to {sum} bps; they must sum to exactly 10000")]
    WrongSum { sum: u64 },
    #[error("revision {0} appears twice in the split")]
    DuplicateRevision(String),
}

/// Sum of the weights in u64, so that no u32 overflow can wrap to 10000.
pub fn sum_bps(entries: &[SplitEntry]) -> u64 {
    entries.iter().map(|e| u64::from(e.weight_bps)).sum()
}

/// Checks every weight rule; the error names the first rule broken.
pub fn validate_weights(entries: &[SplitEntry]) -> Result<(), WeightError> {
    if entries.is_empty() {
        return Err(WeightError::Empty);
    }
    if let Some(e) = entries.iter().find(|e| u64::from(e.weight_bps) > FULL_BPS) {
        return Err(WeightError::EntryTooLarge {
            revision: e.revision.clone(),
            weight_bps: e.weight_bps,
        });
    }
    for (i, e) in entries.iter().enumerate() {
        if entries[..i].iter().any(|p| p.revision == e.revision) {
            return Err(WeightError::DuplicateRevision(e.revision.clone()));
        }
    }
    let sum = sum_bps(entries);
    if sum != FULL_BPS {
        return Err(WeightError::WrongSum { sum });
    }
    Ok(())
}

/// Why a split cannot be recorded for a deployment.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("invalid split: {0}")]
    Weights(#[from] WeightError),
    #[error("revision {revision} belongs to deployment {owner}, not {deployment}")]
    ForeignRevision {
        revision: String,
        deployment: String,
        owner: String,
    },
    #[error("revision {0} is archived; an archived revision cannot be in a split, even at 0 bps")]
    Archived(String),
    #[error("revision {revision} is {lifecycle}; only ready revisions may get weight > 0")]
    NotReady { revision: String, lifecycle: Lifecycle },
}

/// Whether two splits route the same: the same revisions at the same
/// weights, in any order (an entry's place carries no meaning).
pub fn same_split(a: &[SplitEntry], b: &[SplitEntry]) -> bool {
    fn sorted(entries: &[SplitEntry]) -> Vec<(&str, u32)> {
        let mut pairs: Vec<(&str, u32)> = entries.iter().map(|e| (e.revision.as_str(), e.weight_bps)).collect();
        pairs.sort_unstable();
        pairs
    }
    a.len() == b.len() && sorted(a) == sorted(b)
}

/// `entries` without the revisions archived at 0 bps since they were
/// recorded: an earlier split re-applied (a rollback, a rollout's steps or
/// its compensation) must not name them, and they carried no traffic, so
/// nothing routed changes. A revision with weight stays, archived or not:
/// [`check_recordable`] refuses that split by name.
pub fn without_archived_idle(entries: &[SplitEntry], mut archived: impl FnMut(&str) -> bool) -> Vec<SplitEntry> {
    entries
        .iter()
        .filter(|e| !(e.weight_bps == 0 && archived(&e.revision)))
        .cloned()
        .collect()
}

/// The one rule for a split about to be recorded for `deployment`: valid
/// weights; every revision it names belongs to the deployment and is not
/// archived; only ready revisions get weight. `member` looks a revision up
/// as (its deployment, its lifecycle), failing with the caller's own error
/// for a revision it does not know.
pub fn check_recordable<E: From<SplitError>>(
    deployment: &str,
    entries: &[SplitEntry],
    mut member: impl FnMut(&str) -> Result<(String, Lifecycle), E>,
) -> Result<(), E> {
    validate_weights(entries).map_err(SplitError::from)?;
    for entry in entries {
        let (owner, lifecycle) = member(&entry.revision)?;
        if owner != deployment {
            return Err(SplitError::ForeignRevision {
                revision: entry.revision.clone(),
                deployment: deployment.to_string(),
                owner,
            }
            .into());
        }
        if lifecycle == Lifecycle::Archived {
            return Err(SplitError::Archived(entry.revision.clone()).into());
        }
        if entry.weight_bps > 0 && lifecycle != Lifecycle::Ready {
            return Err(SplitError::NotReady {
                revision: entry.revision.clone(),
                lifecycle,
            }
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_does_not_make_another_split() {
        let split = |pairs: &[(&str, u32)]| -> Vec<SplitEntry> {
            pairs
                .iter()
                .map(|(r, w)| SplitEntry {
                    revision: r.to_string(),
                    weight_bps: *w,
                })
                .collect()
        };
        assert!(same_split(
            &split(&[("a", 9000), ("b", 1000)]),
            &split(&[("b", 1000), ("a", 9000)])
        ));
        assert!(!same_split(
            &split(&[("a", 9000), ("b", 1000)]),
            &split(&[("a", 1000), ("b", 9000)])
        ));
        assert!(!same_split(&split(&[("a", 10000)]), &split(&[("a", 10000), ("b", 0)])));
    }

    #[test]
    fn only_archived_entries_at_zero_are_dropped() {
        let split = vec![
            SplitEntry {
                revision: "a".into(),
                weight_bps: 10_000,
            },
            SplitEntry {
                revision: "old".into(),
                weight_bps: 0,
            },
            SplitEntry {
                revision: "idle".into(),
                weight_bps: 0,
            },
        ];
        let kept = without_archived_idle(&split, |id| id == "old" || id == "a");
        let ids: Vec<&str> = kept.iter().map(|e| e.revision.as_str()).collect();
        assert_eq!(
            ids,
            ["a", "idle"],
            "an archived revision with weight is kept for the check to refuse"
        );
    }

    fn entries(weights: &[u32]) -> Vec<SplitEntry> {
        weights
            .iter()
            .enumerate()
            .map(|(i, w)| SplitEntry {
                revision: format!("r{i}"),
                weight_bps: *w,
            })
            .collect()
    }

    #[test]
    fn accepts_exact_sum() {
        assert_eq!(validate_weights(&entries(&[9000, 1000])), Ok(()));
        assert_eq!(validate_weights(&entries(&[10_000, 0])), Ok(()));
    }

    #[test]
    fn refuses_wrong_sums() {
        assert_eq!(
            validate_weights(&entries(&[9000])),
            Err(WeightError::WrongSum { sum: 9000 })
        );
        assert_eq!(
            validate_weights(&entries(&[9000, 1001])),
            Err(WeightError::WrongSum { sum: 10_001 })
        );
        assert_eq!(validate_weights(&[]), Err(WeightError::Empty));
    }

    #[test]
    fn u32_overflow_does_not_wrap() {
        // 2^32 - 6 + 10006 wraps to 10000 in u32; in u64 it is far larger.
        let e = entries(&[u32::MAX - 5, 10_006]);
        assert!(matches!(validate_weights(&e), Err(WeightError::EntryTooLarge { .. })));
        assert_eq!(sum_bps(&e), u64::from(u32::MAX - 5) + 10_006);
    }

    #[test]
    fn refuses_entry_over_full() {
        let e = entries(&[10_001]);
        assert!(matches!(
            validate_weights(&e),
            Err(WeightError::EntryTooLarge { weight_bps: 10_001, .. })
        ));
    }

    #[test]
    fn refuses_duplicate_revision() {
        let mut e = entries(&[5000, 5000]);
        e[1].revision = "r0".into();
        assert_eq!(validate_weights(&e), Err(WeightError::DuplicateRevision("r0".into())));
    }

    #[test]
    fn a_recorded_split_names_live_revisions_of_its_own_deployment() {
        let member = |id: &str| -> Result<(String, Lifecycle), SplitError> {
            Ok(match id {
                "r0" => ("web".into(), Lifecycle::Ready),
                "r1" => ("web".into(), Lifecycle::Staged),
                "r2" => ("web".into(), Lifecycle::Archived),
                _ => ("api".into(), Lifecycle::Ready),
            })
        };
        let split = |pairs: &[(&str, u32)]| -> Vec<SplitEntry> {
            pairs
                .iter()
                .map(|(r, w)| SplitEntry {
                    revision: r.to_string(),
                    weight_bps: *w,
                })
                .collect()
        };
        assert_eq!(
            check_recordable("web", &split(&[("r0", 10_000), ("r1", 0)]), member),
            Ok(())
        );
        let err = check_recordable("web", &split(&[("r1", 10_000)]), member).unwrap_err();
        assert_eq!(
            err.to_string(),
            "revision r1 is staged; only ready revisions may get weight > 0"
        );
        let err = check_recordable("web", &split(&[("r0", 10_000), ("r2", 0)]), member).unwrap_err();
        assert!(matches!(err, SplitError::Archived(_)), "{err}");
        let err = check_recordable("web", &split(&[("r9", 10_000)]), member).unwrap_err();
        assert_eq!(err.to_string(), "revision r9 belongs to deployment api, not web");
        let err = check_recordable("web", &split(&[("r0", 9_000)]), member).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid split: weights sum to 9000 bps; they must sum to exactly 10000"
        );
    }
}
