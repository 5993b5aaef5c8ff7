//! A revision's lifecycle and its transition table. Every change of a
//! revision's lifecycle goes through [`check`]; anything not in the table
//! is refused.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Lifecycle state of a revision (see the design's transition table).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Lifecycle {
    Inactive,
    Staged,
    Warming,
    Ready,
    Draining,
    Failed,
    Archived,
}

use Lifecycle::*;

impl fmt::Display for Lifecycle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name(*self))
    }
}

/// Whether `from → to` is a transition of the design's table.
pub fn allowed(from: Lifecycle, to: Lifecycle) -> bool {
    matches!(
        (from, to),
        (Inactive, Staged)
            | (Staged, Warming)
            | (Warming, Ready)
            | (Ready, Draining)
            | (Draining, Inactive)
            | (Inactive, Archived)
            | (Staged | Warming | Ready, Failed)
            | (Failed, Staged)
            | (Staged | Warming | Ready | Failed, Archived)
    )
}

/// Whether a revision in `from` may be abandoned: recorded `archived` by
/// the host alone, outside the table and without calling the pack, when the
/// pack keeps refusing to drain or archive it. Any state but archived; the
/// pack never sees a lifecycle value it does not know.
pub fn abandonable(from: Lifecycle) -> bool {
    from != Archived
}

/// A refused transition, naming both ends.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("revision {revision} is {from}; it cannot become {to}")]
pub struct Refused {
    pub revision: String,
    pub from: Lifecycle,
    pub to: Lifecycle,
}

pub fn check(revision: &str, from: Lifecycle, to: Lifecycle) -> Result<(), Refused> {
    if allowed(from, to) {
        Ok(())
    } else {
        Err(Refused {
            revision: revision.to_string(),
            from,
            to,
        })
    }
}

/// The lifecycle names as stored.
pub fn name(l: Lifecycle) -> &'static str {
    match l {
        Inactive => "inactive",
        Staged => "staged",
        Warming => "warming",
        Ready => "ready",
        Draining => "draining",
        Failed => "failed",
        Archived => "archived",
    }
}

pub fn parse(text: &str) -> Option<Lifecycle> {
    [Inactive, Staged, Warming, Ready, Draining, Failed, Archived]
        .into_iter()
        .find(|l| name(*l) == text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        assert!(allowed(Inactive, Staged));
        assert!(allowed(Draining, Inactive));
        assert!(allowed(Failed, Staged));
        assert!(allowed(Ready, Archived));
        assert!(!allowed(Inactive, Ready));
        assert!(!allowed(Archived, Staged));
        assert!(!allowed(Draining, Archived));
        assert!(!allowed(Inactive, Failed));
        assert_eq!(
            check("r", Archived, Staged).unwrap_err().to_string(),
            "revision r is archived; it cannot become staged"
        );
        for l in [Inactive, Staged, Warming, Ready, Draining, Failed, Archived] {
            assert_eq!(parse(name(l)), Some(l));
        }
    }
}
