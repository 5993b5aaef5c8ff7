//! Why a verb call failed. Spec errors keep the contract's names;
//! everything that goes wrong inside the sandbox becomes a `provider` error
//! naming verb and cause.

use std::time::Duration;

use serde::Serialize;

use crate::capability::Denied;
use crate::split::WeightError;
use crate::verb::Verb;

/// Who detected a spec error: the host before the pack ran, or the pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    Host,
    Pack,
}

/// Why a verb call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerbError {
    #[error("revision-not-found: revision {revision:?} is not in environment {env:?}")]
    RevisionNotFound {
        env: String,
        revision: String,
        origin: Origin,
    },
    #[error("split-not-found: deployment {deployment:?} has no recorded traffic split")]
    SplitNotFound { deployment: String, origin: Origin },
    #[error("invalid-split: the split of deployment {deployment:?} sums to {sum} bps: {detail}")]
    InvalidSplit {
        deployment: String,
        sum: u64,
        detail: String,
        origin: Origin,
    },
    #[error(
        "foreign-revision: the split of deployment {deployment:?} names revision {revision:?}, which belongs to deployment {owner:?}"
    )]
    ForeignRevision {
        deployment: String,
        revision: String,
        owner: String,
    },
    #[error(
        "cross-deployment-interference: {verb} for deployment {deployment:?} returned {got}, but the recorded split is {expected}; nothing was recorded as applied"
    )]
    CrossDeploymentInterference {
        verb: Verb,
        deployment: String,
        expected: String,
        got: String,
    },
    #[error("outcome-mismatch: {verb} was called for revision {expected:?} but the pack reported revision {got:?}")]
    OutcomeMismatch { verb: Verb, expected: String, got: String },
    #[error("provider: {verb} failed: {cause}")]
    Provider { verb: Verb, cause: ProviderCause },
    /// The pack's call succeeded but the host could not save its kv writes;
    /// nothing of the call was recorded.
    #[error("host-state: {verb} ran, but the host could not save the pack's kv writes: {detail}")]
    StateNotSaved { verb: Verb, detail: String },
}

/// What went wrong with the provider or inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProviderCause {
    #[error("the pack reported: {0}")]
    Reported(String),
    #[error("the pack returned a provider error with an empty message (the contract requires one)")]
    EmptyMessage,
    #[error("the pack trapped: {0}")]
    Trap(String),
    #[error("the pack ran past its deadline of {} ms and was stopped", .0.as_millis())]
    Deadline(Duration),
    #[error("{}, over the budget of {budget} bytes, and was stopped", memory_request(*requested, *at_start))]
    MemoryBudget {
        requested: usize,
        budget: usize,
        /// The memories' declared initial size, before any of the pack's code ran.
        at_start: bool,
    },
    #[error("the pack returned {what} of {size} bytes, over the cap of {cap} bytes")]
    ResultTooLarge {
        what: &'static str,
        size: usize,
        cap: usize,
    },
    #[error("{0}")]
    CapabilityDenied(Denied),
    #[error("{what} exceeds the host's limit: {detail}")]
    CapabilityLimit { what: &'static str, detail: String },
    #[error("the pack could not be instantiated: {0}")]
    Instantiate(String),
    /// The conformance bench stopped calling a pack that kept overrunning
    /// its deadline.
    #[error("not called: {0}")]
    NotCalled(String),
}

impl VerbError {
    /// The contract's name for this error, as JSON output spells it.
    pub fn kind(&self) -> &'static str {
        match self {
            VerbError::RevisionNotFound { .. } => "revision-not-found",
            VerbError::SplitNotFound { .. } => "split-not-found",
            VerbError::InvalidSplit { .. } => "invalid-split",
            VerbError::ForeignRevision { .. } => "foreign-revision",
            VerbError::CrossDeploymentInterference { .. } => "cross-deployment-interference",
            VerbError::OutcomeMismatch { .. } => "outcome-mismatch",
            VerbError::Provider { .. } => "provider",
            VerbError::StateNotSaved { .. } => "host-state",
        }
    }

    /// Whether the host refused the call before any guest code ran.
    /// Whether the call was stopped at its deadline.
    pub fn is_deadline(&self) -> bool {
        matches!(
            self,
            VerbError::Provider {
                cause: ProviderCause::Deadline(_),
                ..
            }
        )
    }

    /// Whether the pack itself answered with this error (a typed error, or
    /// a provider error it returned), as opposed to being stopped or not run
    /// (a trap, a deadline, a budget, a refused capability...).
    pub fn is_pack_answer(&self) -> bool {
        match self {
            VerbError::Provider { cause, .. } => {
                matches!(cause, ProviderCause::Reported(_) | ProviderCause::EmptyMessage)
            }
            _ => true,
        }
    }

    pub fn is_precondition(&self) -> bool {
        match self {
            VerbError::RevisionNotFound { origin, .. }
            | VerbError::SplitNotFound { origin, .. }
            | VerbError::InvalidSplit { origin, .. } => *origin == Origin::Host,
            VerbError::ForeignRevision { .. } => true,
            _ => false,
        }
    }

    pub fn invalid_split(deployment: &str, sum: u64, error: &WeightError, origin: Origin) -> Self {
        VerbError::InvalidSplit {
            deployment: deployment.to_string(),
            sum,
            detail: error.to_string(),
            origin,
        }
    }
}

/// What a pack asked of its memory budget, in words.
fn memory_request(requested: usize, at_start: bool) -> String {
    if at_start {
        format!("the pack needs {requested} bytes of memory to start")
    } else {
        format!("the pack tried to grow its memories to {requested} bytes")
    }
}
