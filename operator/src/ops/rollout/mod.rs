//! Rollouts: a deployment moved to a new revision by a saga of steps
//! (warm, shift weight, soak under analysis gates, drain the old), persisted
//! row by row so that any `host` process can take over where a killed one
//! stopped, and turned around (previous split restored, new revision
//! drained) when a gate fails or an operator aborts.
//!
//! Who acts, exactly: one process at a time **drives** a rollout (it holds
//! the rollout's driver lock, a kernel lock released when it dies); the
//! others (`promote`, `abort`, `pause` from a second terminal) record their
//! intent in the rollout's rows, which the driver reads at every gate
//! evaluation, and drive it themselves when no one else does. Each step
//! takes the environment's lock only while its verb runs, so a soak never
//! blocks other commands.

mod drive;
pub(crate) mod gates;
mod intent;
pub(crate) mod plan;
pub(crate) mod prometheus;
pub(crate) mod record;

pub use drive::{Progress, driver_lock_name};
pub use gates::{GATES_HELP, Gate, Tally};
pub use intent::Intent;
pub use plan::{Action, BLUE_GREEN_BAKE_MS, Spec, Strategy};
pub use prometheus::{Metric, OnInconclusive};
pub use record::{Rollout, State, Step};
