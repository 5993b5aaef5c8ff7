//! The sandbox: one commented engine configuration, the limits a call runs
//! under (deadline, memory budget), the compiled-code cache, the per-call
//! store state, and the [`runtime::Runtime`] that loads packs and runs verbs.

pub(crate) mod cache;
pub(crate) mod call_state;
mod classify;
pub(crate) mod compile;
pub(crate) mod engine;
mod instance;
pub(crate) mod lease;
pub(crate) mod limits;
pub(crate) mod load;
pub(crate) mod phases;
pub(crate) mod runtime;
pub(crate) mod services;
pub(crate) mod shape;

pub use instance::{InstantiateTimes, LiveInstance};
