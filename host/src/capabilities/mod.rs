//! Capabilities: the host's implementations of the contract's imports. The
//! [`gate::Gate`] decides per call (declared by the pack, granted by the
//! operator); each capability checks it first and records the call, so the
//! host can later prove what a pack did (or did not do) during a verb. kv has
//! a per-call part ([`kv`]) over a durable store ([`kv_store`]).

pub mod artifacts;
pub mod clock;
pub mod download;
pub mod environment;
pub mod gate;
pub mod grants;
pub mod http;
pub mod kv;
pub mod kv_store;
pub mod log;
pub mod probe;
pub mod process;
pub mod recording;
pub mod secrets;
