//! Deadlines that fit real work. Starting a process and waiting for it to
//! get healthy takes seconds, not milliseconds, so a verb's deadline is
//! chosen per verb, in this order:
//!
//! 1. the operator's deadline for that verb in the environment
//!    (`env create/bind --deadline VERB=MS`), exactly;
//! 2. else the pack's expectation for that verb in its signed manifest
//!    (`[deadlines]` in `pack.toml`), capped by the environment's
//!    `--max-deadline-ms` (default [`DEFAULT_MAX_MS`]);
//! 3. else the host's default (`--deadline-ms`).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::verb::Verb;

/// The cap on a pack's own expectation when the operator set none: 2 minutes.
pub const DEFAULT_MAX_MS: u64 = 120_000;
/// No deadline may be longer than an hour.
pub const LIMIT_MS: u64 = 3_600_000;

/// An environment's deadline settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadlinePolicy {
    /// Per verb (`warm-revision`, ...), in milliseconds: used as given.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub verbs: BTreeMap<String, u64>,
    /// The most a pack's own expectation may get, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ms: Option<u64>,
}

/// A deadline setting that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeadlineError {
    #[error(
        "{0:?} is not a verb (verbs: stage-revision, warm-revision, drain-revision, archive-revision, apply-traffic-split, report-runtime-config, probe-revision)"
    )]
    UnknownVerb(String),
    #[error("a deadline of {0} ms is out of range (1 to {LIMIT_MS} ms)")]
    OutOfRange(u64),
}

fn validate(verbs: &BTreeMap<String, u64>) -> Result<(), DeadlineError> {
    for (verb, ms) in verbs {
        match Verb::from_name(verb) {
            Some(v) if v != Verb::Describe => {}
            _ => return Err(DeadlineError::UnknownVerb(verb.clone())),
        }
        check_range(*ms)?;
    }
    Ok(())
}

fn check_range(ms: u64) -> Result<(), DeadlineError> {
    if (1..=LIMIT_MS).contains(&ms) {
        Ok(())
    } else {
        Err(DeadlineError::OutOfRange(ms))
    }
}

impl DeadlinePolicy {
    /// Checks a per-verb map (an operator's or a manifest's).
    pub fn validate_verbs(verbs: &BTreeMap<String, u64>) -> Result<(), DeadlineError> {
        validate(verbs)
    }

    pub fn validate(&self) -> Result<(), DeadlineError> {
        validate(&self.verbs)?;
        if let Some(max) = self.max_ms {
            check_range(max)?;
        }
        Ok(())
    }

    /// The deadline of `verb`, given the pack's expectations and the host's default.
    pub fn deadline(&self, verb: Verb, expected: &BTreeMap<String, u64>, default: Duration) -> Duration {
        if let Some(ms) = self.verbs.get(verb.name()) {
            return Duration::from_millis(*ms);
        }
        match expected.get(verb.name()) {
            Some(ms) => Duration::from_millis((*ms).min(self.max_ms.unwrap_or(DEFAULT_MAX_MS))),
            None => default,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_then_pack_capped_then_default() {
        let default = Duration::from_millis(2_000);
        let expected: BTreeMap<String, u64> = [("warm-revision".to_string(), 300_000)].into();
        let none = DeadlinePolicy::default();
        assert_eq!(
            none.deadline(Verb::WarmRevision, &expected, default),
            Duration::from_millis(DEFAULT_MAX_MS)
        );
        assert_eq!(none.deadline(Verb::DrainRevision, &expected, default), default);
        let capped = DeadlinePolicy {
            max_ms: Some(30_000),
            ..DeadlinePolicy::default()
        };
        assert_eq!(
            capped.deadline(Verb::WarmRevision, &expected, default),
            Duration::from_millis(30_000)
        );
        let exact = DeadlinePolicy {
            verbs: [("warm-revision".to_string(), 5_000)].into(),
            max_ms: Some(1_000),
        };
        assert_eq!(
            exact.deadline(Verb::WarmRevision, &expected, default),
            Duration::from_millis(5_000)
        );
        assert!(validate(&[("warm".to_string(), 1)].into()).is_err());
        assert!(validate(&[("describe".to_string(), 1)].into()).is_err());
        assert!(validate(&[("warm-revision".to_string(), 0)].into()).is_err());
        assert!(validate(&[("warm-revision".to_string(), LIMIT_MS + 1)].into()).is_err());
    }
}
