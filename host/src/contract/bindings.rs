//! Rust types and traits generated from `wit/` by wasmtime's `bindgen!`.
//! Nothing else in the crate spells a WIT name by hand.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "pack",
    imports: {
        "envpack:deployer/clock.sleep-ms": async | trappable,
        default: trappable,
    },
    exports: { default: async },
    with: {
        "envpack:deployer/environment.environment": crate::capabilities::environment::EnvHandle,
    },
});

pub use envpack::deployer::types as wit;
pub use exports::envpack::deployer::deployer as verbs;
