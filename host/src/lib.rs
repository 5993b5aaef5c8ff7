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

pub mod capabilities;
pub mod contract;
pub mod error;
pub mod fsutil;
pub mod model;
pub mod sandbox;
pub mod text;
pub mod timing;
pub mod trust;

pub use capabilities::gate::Capability;
pub use capabilities::kv_store::{FileKv, KvStore, MemoryKv};
pub use contract::pack::{Pack, PackInfo};
pub use contract::verb::{Health, Outcome, Request, Verb};
pub use error::{LoadError, Origin, ProviderCause, SetupError, VerbError};
pub use model::runtime_config::RuntimeConfig;
pub use model::{Environment, Lifecycle, Revision, SplitEntry, TrafficSplit};
pub use sandbox::LiveInstance;
pub use sandbox::engine::{Allocator, AllocatorChoice, HostConfig};
pub use sandbox::load::{Loaded, Signature, SignaturePolicy};
pub use sandbox::runtime::{CallMode, CallReport, Runtime};
