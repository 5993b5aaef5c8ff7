//! The bench's results as data: one [`Report`] per pack, serialized as the
//! JSON format documented for pack authors. Rendering lives in `render`.

use serde::Serialize;

use crate::catalog::Profile;

/// How one check ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Pass,
    Fail,
    Skip,
}

/// One check's result.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    pub id: String,
    pub profile: Profile,
    pub status: Status,
    /// On failure: what was called, what came back and what was expected.
    /// On skip: why. On pass: a short note.
    pub message: String,
    pub statement: String,
    /// The sentence of the contract the check enforces.
    pub wit: String,
    pub elapsed_ms: f64,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// The bench's verdict on one pack.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Where the pack came from (path).
    pub pack: String,
    pub descriptor: String,
    pub profile: Profile,
    pub summary: Summary,
    pub checks: Vec<CheckResult>,
    pub elapsed_ms: f64,
    /// The seed of the generated cases; `host conformance --seed` replays them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
}

impl Report {
    pub(crate) fn new(
        pack: String,
        descriptor: String,
        profile: Profile,
        checks: Vec<CheckResult>,
        elapsed_ms: f64,
    ) -> Self {
        let count = |s| checks.iter().filter(|c| c.status == s).count();
        let summary = Summary {
            passed: count(Status::Pass),
            failed: count(Status::Fail),
            skipped: count(Status::Skip),
        };
        Report {
            pack,
            descriptor,
            profile,
            summary,
            checks,
            elapsed_ms,
            seed: None,
        }
    }

    /// Whether no selected check failed.
    pub fn passed(&self) -> bool {
        self.summary.failed == 0
    }

    /// Ids of the failed checks.
    pub fn failed_ids(&self) -> Vec<&str> {
        self.checks
            .iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| c.id.as_str())
            .collect()
    }
}
