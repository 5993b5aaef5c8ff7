//! The envpack conformance bench: runs a catalog of checks against a deployer
//! pack and reports, per check, pass, fail (with what was called, what came
//! back and what was expected) or skip (with the reason).
//!
//! Pack authors call it from their own tests:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use envpack_conformance::{Profile, RunConfig, SignatureStatus, run};
//! use envpack_host::{HostConfig, MemoryKv, Runtime};
//!
//! let runtime = Runtime::new(HostConfig::default(), Arc::new(MemoryKv::default()))?;
//! let pack = runtime.load_pack_file("target/wasm32-wasip2/release/my_pack.wasm".as_ref()).await?;
//! let config = RunConfig { profile: Profile::Extended, ..RunConfig::default() };
//! let report = run(&runtime, &pack, "my_pack.wasm", &SignatureStatus::Unsigned, &config).await;
//! assert!(report.passed(), "{}", envpack_conformance::render::human(&report));
//! # Ok(()) }
//! ```

mod catalog;
mod checks;
mod config;
mod fixture;
mod generate;
mod judge;
mod progress;
pub mod render;
mod report;
mod runner;
mod scratch;

pub use catalog::{CATALOG, Profile};
pub use config::{FixtureSecrets, RunConfig, SignatureStatus};
pub use fixture::Inputs;
pub use judge::{judge_file, signature_status};
pub use progress::{Progress, ProgressSink};
pub use report::{CallTotals, CheckResult, Cleanup, Report, Status, Summary};
pub use runner::{run, unloadable};
