//! Errors of the operator layer. Each names the problem in one line; the
//! command layer maps them to exit codes.

use envpack_host::LoadError;
use envpack_model::VerbError;
use envpack_trust::{DescriptorError, RegistryError, TrustError};

use envpack_model::lifecycle::Refused;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state database: {0}")]
    Database(crate::sql::DbError),
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
    #[error(transparent)]
    Split(#[from] envpack_model::SplitError),
    #[error("idempotency key {key:?} was already used for deployment {deployment} with different entries")]
    KeyReused { key: String, deployment: String },
    #[error("deployment {0} has no previous split generation to roll back to")]
    NoPrevious(String),
    #[error(
        "deployment {deployment} has no generation {generation} to roll back to (its current one is {current}; `host traffic show ENV` shows it)"
    )]
    NoGeneration {
        deployment: String,
        generation: i64,
        current: i64,
    },
    #[error("deployment {0} has no traffic split yet (set one with `host traffic set`)")]
    NoSplit(String),
    #[error("the pack refused: {0}")]
    Pack(VerbError),
    #[error("the pack refused: {error}; revision {revision} is now {lifecycle}")]
    PackLeft {
        error: Box<VerbError>,
        env: String,
        revision: String,
        lifecycle: envpack_model::Lifecycle,
    },
    #[error("invalid deployer requirement: {0}")]
    Requirement(#[from] DescriptorError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("environment {0:?} is not bound to a pack (`host env bind`)")]
    Unbound(String),
    #[error(
        "{descriptor} declares capabilities [{}] that environment {env:?} does not grant; grant them with --capability",
        missing.join(", ")
    )]
    Ungranted {
        descriptor: String,
        env: String,
        missing: Vec<String>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the state database holds a value it cannot read: {0}")]
    Corrupt(String),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("cannot import the pack state of an older host (kv.json): {0}; move the file aside to start without it")]
    Import(String),
    #[error(
        "deployment {deployment} has rollout {id} in progress ({state}); move its traffic with `host rollout promote|abort`, or pass --force to override the rollout (recorded in the audit log)"
    )]
    RolloutActive {
        deployment: String,
        id: String,
        state: String,
    },
    #[error("{command} on environment {env:?} is refused: {detail}")]
    Unauthorized {
        env: String,
        command: String,
        detail: String,
    },
    /// A pack call of a multi-step command (a retirement, a teardown)
    /// failed: what was done is recorded, the message says how to go on.
    #[error("{0}")]
    StepRefused(String),
    #[error("rollout {id} stopped at {reason}; `host rollout resume` retries from there{then}")]
    RolloutStopped { id: String, reason: String, then: String },
    #[error("{descriptor} is bound by environment(s) {}; removing it would stop their commands", environments.join(", "))]
    PackInUse {
        descriptor: String,
        environments: Vec<String>,
    },
    #[error("{}", pinned_pack_gone(env, descriptor, digest, elsewhere.as_deref()))]
    PinnedPackGone {
        env: String,
        descriptor: String,
        digest: String,
        /// Where the shared index says it was installed from, if anywhere.
        elsewhere: Option<Box<crate::ops::IndexedPack>>,
    },
    #[error(
        "{here}; machine {} installed {} ({}) from {}: `host pack sync` installs it here (verified against this machine's trust store), or `host pack install` it from a copy",
        pack.machine, pack.descriptor, pack.digest, pack.source
    )]
    PackElsewhere {
        requirement: String,
        /// What this machine's registry said.
        here: String,
        pack: Box<crate::ops::IndexedPack>,
    },
    #[error(
        "environment {env:?} is pinned to {descriptor} signed by key {pinned}, but the installed file is signed by {found}; refusing to run it (`host env upgrade {env}` moves the pin on purpose)"
    )]
    SignerChanged {
        env: String,
        descriptor: String,
        pinned: String,
        found: String,
    },
    #[error(
        "environment {env:?}'s work directory holds {used_mib} MiB, over its budget of {budget_mib} MiB; stage, warm and traffic changes wait until drain or archive frees space (or `host env bind {env} --disk-mib N`)"
    )]
    OverDiskBudget {
        env: String,
        used_mib: u64,
        budget_mib: u64,
    },
    #[error("{0}")]
    LockLost(String),
    #[error(
        "environment {env:?} runs its processes on machine {machine:?} (its work directory and processes are there, not on {here:?}); run this command on {machine} (if {machine} is gone for good, `host env remove {env} --force` here forgets the environment)"
    )]
    OtherMachine { env: String, machine: String, here: String },
    #[error("cannot lock environment {env:?}: {detail}")]
    Lock { env: String, detail: String },
}

fn pinned_pack_gone(env: &str, descriptor: &str, digest: &str, elsewhere: Option<&crate::ops::IndexedPack>) -> String {
    match elsewhere {
        Some(p) => format!(
            "environment {env:?} is pinned to {descriptor} ({digest}), which is not installed on this machine (machine {} installed it from {}); `host pack sync` installs it here (verified against this machine's trust store), or `host pack install` it from a copy",
            p.machine, p.source
        ),
        None => format!(
            "environment {env:?} is pinned to {descriptor} ({digest}), which is no longer installed; install it again, or move the environment with `host env upgrade {env}`"
        ),
    }
}

impl From<crate::sql::DbError> for StoreError {
    /// A value that does not parse is corruption, named as such; a lost
    /// lock says what to do; anything else is the database failing.
    fn from(error: crate::sql::DbError) -> Self {
        use crate::sql::DbError;
        match error {
            DbError::Conversion { column, detail } => StoreError::Corrupt(format!("column {column}: {detail}")),
            DbError::Sqlite(rusqlite::Error::SqliteFailure(e, detail))
                if e.code == rusqlite::ErrorCode::NotADatabase =>
            {
                StoreError::Corrupt(format!(
                    "state.db is not a SQLite database ({})",
                    detail.unwrap_or_default()
                ))
            }
            DbError::Fenced(message) => StoreError::LockLost(message),
            DbError::BadUrl(message) => StoreError::Invalid(format!("state database: {message}")),
            other => StoreError::Database(other),
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        crate::sql::DbError::from(error).into()
    }
}
