//! Errors of the operator layer. Each names the problem in one line; the
//! command layer maps them to exit codes.

use envpack_host::VerbError;

use crate::lifecycle::Refused;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(
        "the state database has schema version {found}, written by a newer host; this host understands up to {supported}. Upgrade the host"
    )]
    NewerSchema { found: i64, supported: i64 },
    #[error("no environment {0:?} (create it with `host env create`)")]
    UnknownEnv(String),
    #[error("environment {0:?} already exists")]
    EnvExists(String),
    #[error("environment {env:?} has no deployment {deployment:?}")]
    UnknownDeployment { env: String, deployment: String },
    #[error("environment {env:?} has no revision {revision:?}")]
    UnknownRevision { env: String, revision: String },
    #[error("revision {0:?} already exists")]
    DuplicateRevision(String),
    #[error(transparent)]
    Transition(#[from] Refused),
    #[error("revision {revision} still has traffic ({}); move it away first", holders.join(", "))]
    HasWeight { revision: String, holders: Vec<String> },
    #[error("revision {revision} is {lifecycle}; only ready revisions may get weight > 0")]
    NotReady { revision: String, lifecycle: String },
    #[error("revision {revision} belongs to deployment {owner}, not {deployment}")]
    ForeignRevision {
        revision: String,
        deployment: String,
        owner: String,
    },
    #[error("invalid split: {0}")]
    Weights(String),
    #[error("idempotency key {key:?} was already used for deployment {deployment} with different entries")]
    KeyReused { key: String, deployment: String },
    #[error("deployment {0} has no previous split generation to roll back to")]
    NoPrevious(String),
    #[error("deployment {0} has no traffic split yet (set one with `host traffic set`)")]
    NoSplit(String),
    #[error("the pack refused: {0}")]
    Pack(VerbError),
    #[error("{0}")]
    Binding(String),
    #[error("{0}")]
    Invalid(String),
    #[error("cannot lock environment {env:?}: {detail}")]
    Lock { env: String, detail: String },
}
