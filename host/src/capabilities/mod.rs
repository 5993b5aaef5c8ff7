//! Capabilities: the host's implementations of the contract's imports.
//! Each owns its part of a call's state and is linked with a view of it
//! plus the call's [`ledger::Ledger`], whose gate decides every call
//! (declared by the pack, granted by the operator) and whose recording
//! keeps it, so the host can later prove what a pack did (or did not do)
//! during a verb. kv has a per-call part ([`kv`]) over a durable store
//! ([`kv_store`]).

pub(crate) mod artifacts;
pub(crate) mod clock;
pub(crate) mod download;
pub(crate) mod environment;
pub(crate) mod http;
pub(crate) mod kv;
pub(crate) mod kv_store;
pub(crate) mod ledger;
pub(crate) mod log;
pub(crate) mod probe;
pub(crate) mod process;
pub(crate) mod secrets;
