//! envpack host: runs deployer packs (WebAssembly components built against
//! `wit/deployer.wit`) sandboxed, checks every precondition before a pack
//! runs, and verifies what the pack claims afterwards.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use envpack_host::{Environment, HostConfig, MemoryKv, Request, Runtime};
//!
//! let runtime = Runtime::new(HostConfig::default(), Arc::new(MemoryKv::default()))?;
//! let pack = runtime.load_pack_file("target/packs/ledger.wasm".as_ref()).await?;
//! let env = Arc::new(Environment::from_file("examples/dev.json".as_ref())?);
//! let report = runtime.call(&pack, &env, &Request::Stage("01J9ZQ8W1R3S4T5V6W7X8Y9Z0A".into())).await;
//! println!("{:?}", report.result);
//! # Ok(()) }
//! ```

pub mod bindings;
pub mod cache;
pub mod capabilities;
pub mod capability;
pub mod descriptor;
pub mod engine;
pub mod error;
pub mod fsutil;
pub mod keys;
pub mod kv;
pub mod manifest;
pub mod model;
pub mod pack;
pub mod preconditions;
pub mod registry;
pub mod runtime;
pub mod runtime_config;
pub mod sandbox;
pub mod sections;
pub mod signature;
pub mod split;
pub mod state;
pub mod trust;
pub mod verb;
mod verify;

pub use capability::Capability;
pub use engine::{Allocator, AllocatorChoice, HostConfig};
pub use error::{LoadError, Origin, ProviderCause, SetupError, VerbError};
pub use kv::{FileKv, KvStore, MemoryKv};
pub use model::{Environment, Lifecycle, Revision, SplitEntry, TrafficSplit};
pub use pack::{Pack, PackInfo};
pub use runtime::{CallMode, CallReport, LiveInstance, Runtime};
pub use runtime_config::RuntimeConfig;
pub use verb::{Health, Outcome, Request, Verb};
