//! The sandbox: one commented engine configuration, the limits a call runs
//! under (deadline, memory budget), the compiled-code cache, the per-call
//! store state, and the [`runtime::Runtime`] that loads packs and runs verbs.

pub mod cache;
pub mod call_state;
mod classify;
pub mod compile;
pub mod deadlines;
pub mod engine;
mod instance;
pub mod limits;
pub mod load;
pub mod phases;
pub mod runtime;
pub mod services;
pub mod shape;

pub use instance::LiveInstance;
