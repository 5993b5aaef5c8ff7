//! The envpack conformance bench: runs a catalog of checks against a deployer
//! pack and reports, per check, pass, fail (with what was called, what came
//! back and what was expected) or skip (with the reason).
//!
//! Pack authors call it from their own tests:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use envpack_conformance::{BenchConfig, Profile, SignatureStatus, run};
//! use envpack_host::{HostConfig, MemoryKv, Runtime};
//!
//! let runtime = Runtime::new(HostConfig::default(), Arc::new(MemoryKv::default()))?;
//! let pack = runtime.load_pack_file("target/wasm32-wasip2/release/my_pack.wasm".as_ref()).await?;
//! let config = BenchConfig { profile: Profile::Extended, ..BenchConfig::default() };
//! let report = run(&runtime, &pack, "my_pack.wasm", &SignatureStatus::Unsigned, &config).await;
//! assert!(report.passed(), "{}", envpack_conformance::render::human(&report));
//! # Ok(()) }
//! ```

pub mod admission;
pub mod bench;
pub mod catalog;
mod checks;
pub mod fixture;
pub mod generate;
pub mod render;
pub mod report;

pub use admission::{Admission, AdmissionError, admit, judge_file, signature_status};
pub use bench::{BenchConfig, BenchSecrets, SignatureStatus, run, unloadable};
pub use catalog::{CATALOG, Profile};
pub use report::{CheckResult, Report, Status, Summary};
