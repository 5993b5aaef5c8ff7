//! The envpack vocabulary and its rules, with no runtime: the environment a
//! pack acts on (deployments, revisions, traffic splits) and the grammar of
//! its ids; a revision's lifecycle table; the split rules; the verbs, the
//! requests the host accepts for them and the outcomes it returns; the
//! host-side preconditions and the checks of what a pack claims; the
//! runtime-config projection; the settings a pack declares and their
//! types; capabilities, the gate that decides each call, the operator's
//! grants and the recording of every call; deadlines and limits as data;
//! and the errors of a verb call.
//!
//! `envpack-trust` (what a pack file says about itself and who vouches for
//! it) and `envpack-host` (the sandbox that runs packs) build on this crate;
//! it depends on neither, and on no WebAssembly runtime.

mod capability;
pub mod command_grant;
mod deadlines;
mod environment;
mod error;
pub mod files;
mod grants;
pub mod lifecycle;
mod limits;
pub mod outcome;
mod pack_info;
pub mod preconditions;
mod recording;
pub mod runtime_config;
mod settings;
pub mod split;
pub mod text;
mod verb;

pub use capability::{Capability, Denied, Gate};
pub use deadlines::{DEFAULT_MAX_MS, DeadlineError, DeadlinePolicy, LIMIT_MS};
pub use environment::{
    Artifact, Deployment, DeploymentDoc, Environment, EnvironmentDoc, MAX_ID_BYTES, ModelError, Revision, SplitEntry,
    TrafficSplit, quoted, validate_id,
};
pub use error::{Origin, ProviderCause, VerbError};
pub use grants::{
    GrantError, GrantedCommand, Grants, WORK_DIR, is_executable, parse_address, parse_origin, parse_probe_scope,
    resolve_command, validate_secret_name,
};
pub use lifecycle::Lifecycle;
pub use limits::{LIMIT_NAMES, MAX_ARTIFACT_BYTES, Over, PackLimits, ResultCaps, Shape, ShapeError};
pub use pack_info::{CONTRACT_VERSION, PackInfo, accepts_contract, descriptor_name, sha256_hex};
pub use recording::{CapabilityCall, MAX_DETAIL_BYTES, MAX_RECORDED, MAX_RECORDED_BYTES, Recording};
pub use runtime_config::RuntimeConfig;
pub use settings::{Declared, SettingSpec, SettingType, SettingsError, closest, distance};
pub use split::{FULL_BPS, SplitError, WeightError, validate_weights};
pub use verb::{Health, Outcome, Request, Verb};
