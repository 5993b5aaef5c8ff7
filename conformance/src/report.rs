//! The bench's results as data: one [`Report`] per pack, serialized as the
//! JSON format documented for pack authors. Rendering lives in `render`.

use std::collections::BTreeMap;

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
    /// A dry run: only the checks that call no verb ran.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry: bool,
    /// What the run cleaned up after itself, and what it could not.
    #[serde(skip_serializing_if = "Cleanup::is_empty")]
    pub cleanup: Cleanup,
    /// Where the run's verb calls spent their time.
    #[serde(skip_serializing_if = "CallTotals::is_empty")]
    pub calls: CallTotals,
}

/// The run's verb calls taken together: how long they took, and how much of
/// it was the pack's own (its export running: its work, the programs it
/// started and waited for, its sleeps) rather than the host's path around it.
/// A run whose calls are nearly all the pack's own cannot be made much
/// faster by the host.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct CallTotals {
    pub count: usize,
    pub elapsed_ms: f64,
    pub in_pack_ms: f64,
    /// Of `in_pack_ms`, what the pack asked to sleep.
    pub slept_ms: f64,
    /// Programs the calls started.
    pub programs: usize,
    /// Of them, how many of each program (by file name: `tar`, `python3`):
    /// what a run that starts real programs waits for, one after another.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub started: BTreeMap<String, usize>,
    /// Signals the calls sent, by signal and the program it went to
    /// (`hup nginx`, `term python3`; the signal alone for a process the
    /// environment's table no longer has).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub signals: BTreeMap<String, usize>,
}

impl CallTotals {
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The host's part: each call's time outside the pack's export.
    pub fn host_ms(&self) -> f64 {
        (self.elapsed_ms - self.in_pack_ms).max(0.0)
    }
}

/// The end of a run: fixture revisions archived through the pack (of a
/// pack that reaches outside the host), what could not be released, and
/// what earlier runs that were killed had left.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Cleanup {
    /// Revisions archived through the pack when their environment retired.
    pub released: usize,
    /// Releases that failed: the pack may have left provider resources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left: Vec<String>,
    /// Scratch directories of killed runs, swept before this one began.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub swept: Vec<String>,
}

impl Cleanup {
    pub fn is_empty(&self) -> bool {
        self.released == 0 && self.left.is_empty() && self.swept.is_empty()
    }
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
            cleanup: Cleanup::default(),
            dry: false,
            calls: CallTotals::default(),
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
