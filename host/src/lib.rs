//! envpack host: runs deployer packs (WebAssembly components built against
//! `wit/deployer.wit`) sandboxed, checks every precondition before a pack
//! runs, and verifies what the pack claims afterwards.
//!
//! The vocabulary (environments, verbs, outcomes, grants, limits) is
//! `envpack-model`'s; who vouches for a pack is `envpack-trust`'s. This
//! crate owns the runtime: the bindings, the capabilities and the sandbox.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use envpack_host::{HostConfig, MemoryKv, Runtime};
//! use envpack_model::{Environment, Request};
//!
//! let runtime = Runtime::new(HostConfig::default(), Arc::new(MemoryKv::default()))?;
//! let pack = runtime.load_pack_file("target/packs/ledger.wasm".as_ref()).await?;
//! let env = Arc::new(Environment::from_file("examples/dev.json".as_ref())?);
//! let report = runtime.call(&pack, &env, &Request::Stage("01J9ZQ8W1R3S4T5V6W7X8Y9Z0A".into())).await;
//! println!("{:?}", report.result);
//! # Ok(()) }
//! ```

mod capabilities;
mod contract;
mod error;
mod sandbox;
mod state_dir;
pub mod timing;

pub use capabilities::artifacts::revision_dir_name;
pub use capabilities::download::{get_text as http_get_text, origin as http_origin, status as http_status};
pub use capabilities::http::{MAX_REQUEST_BYTES, MAX_RESPONSE_BYTES};
pub use capabilities::kv_store::{Change, FileKv, KvError, KvStore, MemoryKv};
pub use capabilities::process::{
    Identity, MAX_LIVE, live as live_processes, recorded as recorded_processes, stop_all as stop_processes,
    stop_revision as stop_revision_processes,
};
pub use capabilities::secrets::{FileSecrets, NoSecrets, SecretStore, SecretsError};
pub use capabilities::{LogSink, Workspace};
pub use contract::pack::{MAX_PACK_BYTES, Pack, check_magic, read_pack_file};
pub use error::{CompileError, LoadError, SetupError};
pub use sandbox::cache::{CacheEvent, Described};
pub use sandbox::compile::{Compiler, WORKER_ARG, WorkerLimits, worker_main};
pub use sandbox::engine::{Allocator, AllocatorChoice, FUEL_PER_MS, HostConfig};
pub use sandbox::lease::{LEASE_BROKEN_EXIT, prepare as prepare_leases};
pub use sandbox::load::{LoadSource, Loaded, Signature, SignaturePolicy};
pub use sandbox::phases::{Phase, VerbPhases};
pub use sandbox::runtime::{CallMode, CallReport, Runtime};
pub use sandbox::services::Services;
pub use sandbox::shape::check as check_shape;
pub use sandbox::{InstantiateTimes, LiveInstance};
pub use state_dir::StateDir;
