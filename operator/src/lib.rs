//! The operator's system of record: environments bound to packs by
//! descriptor, revisions and their lifecycle, traffic splits with
//! generations, lifecycle events and a hash-chained audit log, in SQLite.
//! Every verb goes through the host (preconditions, sandbox, outcome check)
//! and its transition is applied only after the pack succeeds.

pub mod audit;
pub mod authz;
pub mod db;
pub mod error;
pub mod lifecycle;
pub mod lock;
pub mod ops;
pub mod packstate;
pub mod read;
pub mod store;

pub use error::StoreError;
pub use ops::Operator;
pub use ops::rollout;
