//! The operator's system of record: environments bound to packs by
//! descriptor, revisions and their lifecycle, traffic splits with
//! generations, lifecycle events and a hash-chained audit log, in SQLite.
//! Every verb goes through the host (preconditions, sandbox, outcome check)
//! and its transition is applied only after the pack succeeds.

mod audit;
mod authz;
mod db;
mod error;
mod lock;
mod ops;
mod packstate;
mod read;
mod sql;
mod store;

pub use authz::DeployKey;
pub use error::StoreError;
pub use ops::agent;
pub use ops::distribute;
pub use ops::index;
pub use ops::rollout;
pub use ops::{
    Admission, AdmissionError, Applied, BindRequest, IndexedPack, Lang, NewError, NewPack, NewProject, NewRevision,
    Operator, Rebound, Retirement, Teardown, call, install, new_pack, remove_pack,
};
pub use read::{
    AuditEntryView, AuditHead, DeploymentView, EnvironmentView, Reader, RevisionView, RolloutView, rfc3339,
};
pub use store::{Binding, Generation};
