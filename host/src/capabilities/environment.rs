//! The `environment` resource: a read-only view of the environment a verb acts
//! on, lent to the pack for one call. Each method is an indexed lookup, so
//! what a call costs depends on what the pack reads, not on history size.

use std::sync::Arc;

use wasmtime::component::Resource;

use envpack_model::Environment;
use wasmtime::component::ResourceTable;

use crate::contract::bindings::envpack::deployer::environment::HostEnvironment;
use crate::contract::bindings::{EnvHandle, wit};
use crate::contract::convert::{pairs, revision_to_wit, split_to_wit};

/// What `environment` is linked with: the call's resource table, where
/// the lent environment is.
pub struct EnvView<'a> {
    pub(crate) table: &'a mut ResourceTable,
}

fn env_of(view: &EnvView<'_>, handle: &Resource<EnvHandle>) -> wasmtime::Result<Arc<Environment>> {
    Ok(view.table.get(handle)?.0.clone())
}

impl crate::contract::bindings::envpack::deployer::environment::Host for EnvView<'_> {}

impl HostEnvironment for EnvView<'_> {
    fn id(&mut self, handle: Resource<EnvHandle>) -> wasmtime::Result<String> {
        Ok(env_of(self, &handle)?.id().to_string())
    }

    fn settings(&mut self, handle: Resource<EnvHandle>) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(pairs(env_of(self, &handle)?.settings()))
    }

    fn setting(&mut self, handle: Resource<EnvHandle>, key: String) -> wasmtime::Result<Option<String>> {
        Ok(env_of(self, &handle)?.settings().get(&key).cloned())
    }

    fn revision(&mut self, handle: Resource<EnvHandle>, id: String) -> wasmtime::Result<Option<wit::Revision>> {
        Ok(env_of(self, &handle)?.revision(&id).map(revision_to_wit))
    }

    fn split(
        &mut self,
        handle: Resource<EnvHandle>,
        deployment: String,
    ) -> wasmtime::Result<Option<wit::TrafficSplit>> {
        let env = env_of(self, &handle)?;
        let split = env.deployment(&deployment).and_then(|d| d.split.as_ref());
        Ok(split.map(|s| split_to_wit(&deployment, s)))
    }

    fn deployments(&mut self, handle: Resource<EnvHandle>) -> wasmtime::Result<Vec<String>> {
        Ok(env_of(self, &handle)?.deployments().map(|d| d.id.clone()).collect())
    }

    fn drop(&mut self, handle: Resource<EnvHandle>) -> wasmtime::Result<()> {
        // The host lends the handle and deletes it after the call; a guest
        // never owns one, so there is nothing to free here.
        let _ = handle;
        Ok(())
    }
}
