//! The contract: the bindings generated from `wit/` (`bindgen!`), the verbs
//! and their outcomes as the host sees them, and the loaded [`pack::Pack`]
//! with its `describe` info and the one contract-version check.

pub mod bindings;
pub(crate) mod dispatch;
pub mod pack;
pub mod verb;
