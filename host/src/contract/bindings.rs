//! Rust types and traits generated from `wit/` by wasmtime's `bindgen!`.
//! Nothing else in the crate spells a WIT name by hand.

use std::sync::Arc;

use envpack_model::Environment;

/// The host value behind an `environment` handle: the environment lent to
/// the pack for one call.
pub struct EnvHandle(pub Arc<Environment>);

wasmtime::component::bindgen!({
    path: "../wit",
    // The widest world: a pack exports `deployer` (always) and
    // `endpoints` (since 1.2, optional); each is looked up on its own (see
    // [`PackPre`]), so packs without `endpoints` link as before.
    world: "pack-with-endpoints-and-teardown",
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
pub use exports::envpack::deployer::{endpoints, teardown};

/// A pack pre-linked: its `InstancePre` and where its exports are, the
/// optional ones `None` when the pack does not export them.
pub struct PackPre<T: 'static> {
    instance_pre: wasmtime::component::InstancePre<T>,
    deployer: verbs::GuestIndices,
    endpoints: Option<endpoints::GuestIndices>,
    teardown: Option<teardown::GuestIndices>,
}

/// One instance's exports: `deployer` looked up, the optional ones only
/// when a call needs them (a verb call pays for none of them).
pub struct Exports<'p> {
    pub verbs: verbs::Guest,
    instance: wasmtime::component::Instance,
    endpoints: Option<&'p endpoints::GuestIndices>,
    teardown: Option<&'p teardown::GuestIndices>,
}

impl Exports<'_> {
    /// `endpoints`, if the pack exports it.
    pub fn endpoints(&self, store: impl wasmtime::AsContextMut) -> wasmtime::Result<Option<endpoints::Guest>> {
        self.endpoints.map(|i| i.load(store, &self.instance)).transpose()
    }

    /// `teardown`, if the pack exports it.
    pub fn teardown(&self, store: impl wasmtime::AsContextMut) -> wasmtime::Result<Option<teardown::Guest>> {
        self.teardown.map(|i| i.load(store, &self.instance)).transpose()
    }
}

impl<T: 'static> PackPre<T> {
    /// Finds the exports: `deployer` must be there, `endpoints` may be.
    pub fn new(instance_pre: wasmtime::component::InstancePre<T>) -> wasmtime::Result<Self> {
        let deployer = verbs::GuestIndices::new(&instance_pre)?;
        let endpoints = endpoints::GuestIndices::new(&instance_pre).ok();
        let teardown = teardown::GuestIndices::new(&instance_pre).ok();
        Ok(PackPre {
            instance_pre,
            deployer,
            endpoints,
            teardown,
        })
    }

    pub async fn instantiate_async(
        &self,
        mut store: impl wasmtime::AsContextMut<Data = T>,
    ) -> wasmtime::Result<Exports<'_>>
    where
        T: Send,
    {
        let mut store = store.as_context_mut();
        let instance = self.instance_async(&mut store).await?;
        self.exports(&mut store, instance)
    }

    /// The instance alone: wasmtime's `InstancePre::instantiate_async`,
    /// nothing looked up in it yet.
    pub async fn instance_async(
        &self,
        mut store: impl wasmtime::AsContextMut<Data = T>,
    ) -> wasmtime::Result<wasmtime::component::Instance>
    where
        T: Send,
    {
        self.instance_pre.instantiate_async(&mut store).await
    }

    /// An instance's `deployer` exports, each checked against the types the
    /// host calls it with.
    pub fn exports(
        &self,
        mut store: impl wasmtime::AsContextMut<Data = T>,
        instance: wasmtime::component::Instance,
    ) -> wasmtime::Result<Exports<'_>> {
        let verbs = self.deployer.load(&mut store, &instance)?;
        Ok(Exports {
            verbs,
            instance,
            endpoints: self.endpoints.as_ref(),
            teardown: self.teardown.as_ref(),
        })
    }
}
