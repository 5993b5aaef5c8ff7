//! Host implementations of the contract's imports. Each capability checks the
//! call's [`Gate`](crate::capability::Gate) first and records the call, so the
//! host can later prove what a pack did (or did not do) during a verb.

pub mod clock;
pub mod environment;
pub mod kv;
pub mod log;
pub mod recording;
