//! The `environment` resource: a read-only view of the environment a verb acts
//! on, lent to the pack for one call. Each method is an indexed lookup, so
//! what a call costs depends on what the pack reads, not on history size.

use std::sync::Arc;

use wasmtime::component::Resource;

use crate::contract::bindings::envpack::deployer::environment::HostEnvironment;
use crate::contract::bindings::wit;
use crate::model::{Environment, Lifecycle, Revision, TrafficSplit};
use crate::sandbox::call_state::CallState;

/// The host value behind an `environment` handle.
pub struct EnvHandle(pub Arc<Environment>);

fn env_of(state: &CallState, handle: &Resource<EnvHandle>) -> wasmtime::Result<Arc<Environment>> {
    Ok(state.table.get(handle)?.0.clone())
}

fn pairs(map: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn lifecycle_to_wit(l: Lifecycle) -> wit::Lifecycle {
    match l {
        Lifecycle::Inactive => wit::Lifecycle::Inactive,
        Lifecycle::Staged => wit::Lifecycle::Staged,
        Lifecycle::Warming => wit::Lifecycle::Warming,
        Lifecycle::Ready => wit::Lifecycle::Ready,
        Lifecycle::Draining => wit::Lifecycle::Draining,
        Lifecycle::Failed => wit::Lifecycle::Failed,
        Lifecycle::Archived => wit::Lifecycle::Archived,
    }
}

pub(crate) fn revision_to_wit(r: &Revision) -> wit::Revision {
    wit::Revision {
        id: r.id.clone(),
        deployment: r.deployment.clone(),
        sequence: r.sequence,
        lifecycle: lifecycle_to_wit(r.lifecycle),
        artifact_digest: r.artifact.digest.clone(),
        artifact_location: r.artifact.location.clone(),
        drain_seconds: r.drain_seconds,
        settings: pairs(&r.settings),
    }
}

pub(crate) fn split_to_wit(deployment: &str, s: &TrafficSplit) -> wit::TrafficSplit {
    wit::TrafficSplit {
        deployment: deployment.to_string(),
        generation: s.generation,
        entries: s
            .entries
            .iter()
            .map(|e| wit::SplitEntry {
                revision: e.revision.clone(),
                weight_bps: e.weight_bps,
            })
            .collect(),
    }
}

impl crate::contract::bindings::envpack::deployer::environment::Host for CallState {}
impl crate::contract::bindings::envpack::deployer::types::Host for CallState {}

impl HostEnvironment for CallState {
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
