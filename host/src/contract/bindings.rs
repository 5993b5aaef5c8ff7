//! Rust types and traits generated from `wit/` by wasmtime's `bindgen!`.
//! Nothing else in the crate spells a WIT name by hand.

use std::sync::Arc;

use envpack_model::Environment;

/// The host value behind an `environment` handle: the environment lent to
/// the pack for one call.
pub struct EnvHandle(pub Arc<Environment>);

wasmtime::component::bindgen!({
    path: "../wit",
    world: "pack",
    imports: {
        "envpack:deployer/clock.sleep-ms": async | trappable,
        "envpack:deployer/process.wait": async | trappable,
        "envpack:deployer/process.fetch-artifact": async | trappable,
        "envpack:deployer/probe.http-get": async | trappable,
        "envpack:deployer/probe.tcp-connect": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "envpack:deployer/environment.environment": EnvHandle,
    },
});

pub use envpack::deployer::types as wit;
pub use exports::envpack::deployer::deployer as verbs;
