//! Dispatch: one [`Request`] to the pack's matching export, its raw result
//! kept for the host's verdict.

use wasmtime::Store;
use wasmtime::component::Resource;

use crate::contract::bindings::{EnvHandle, Exports};
use crate::contract::convert::Raw;
use crate::sandbox::call_state::CallState;
use envpack_model::Request;

pub(crate) async fn call_export(
    exports: &Exports<'_>,
    store: &mut Store<CallState>,
    env: Resource<EnvHandle>,
    request: &Request,
) -> wasmtime::Result<Raw> {
    let guest = &exports.verbs;
    Ok(match request {
        Request::Stage(id) => Raw::Revision(guest.call_stage_revision(store, env, id).await?),
        Request::Warm(id) => Raw::Revision(guest.call_warm_revision(store, env, id).await?),
        Request::Drain(id) => Raw::Revision(guest.call_drain_revision(store, env, id).await?),
        Request::Archive(id) => Raw::Revision(guest.call_archive_revision(store, env, id).await?),
        Request::Probe(id) => Raw::Health(guest.call_probe_revision(store, env, id).await?),
        Request::ApplyTrafficSplit(deployment) => Raw::Split(
            deployment.clone(),
            guest.call_apply_traffic_split(store, env, deployment).await?,
        ),
        Request::ReportRuntimeConfig => Raw::Config(guest.call_report_runtime_config(store, env).await?),
        Request::Endpoint(id) => match exports.endpoints(&mut *store)? {
            Some(endpoints) => Raw::Endpoint(Some(endpoints.call_revision_endpoint(store, env, id).await?)),
            None => Raw::Endpoint(None),
        },
        Request::ReleaseDeployment(deployment) => match exports.teardown(&mut *store)? {
            Some(teardown) => Raw::Released(
                deployment.clone(),
                Some(teardown.call_release_deployment(store, env, deployment).await?),
            ),
            None => Raw::Released(deployment.clone(), None),
        },
    })
}
