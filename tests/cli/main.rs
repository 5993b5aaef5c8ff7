//! The `host` command's integration tests, one binary: every module drives
//! the real `host` (built by cargo for this test) and checks what it did
//! from outside — the state database, files, processes, nginx and moto.

mod common;

mod agent;
mod authoring;
mod aws_ecs;
mod bench;
mod capabilities;
mod compile_bombs;
mod conformance;
mod containment;
mod hostile;
mod inspect;
mod local_process;
mod machines;
mod metric_gates;
mod oci;
mod operator;
mod operator_edges;
mod preconditions;
mod retire;
mod retire_races;
mod rollout;
mod rollout_access;
mod rollout_gates;
mod settings;
mod signing;
mod snapshots;
mod state;
mod swap;
mod teardown;
mod verbs;
mod watch;
