//! `host call`: one verb of an author's own build against an environment
//! document, through the full host path (preconditions, sandboxed
//! instance, outcome check). Its pack state (`call_kv` in the database),
//! work directory and processes are kept apart from every operator
//! environment (scope `call`); it reads the operator's secrets.

use std::sync::Arc;

use envpack_host::{CallMode, CallReport, Pack, Runtime, StateDir};
use envpack_model::{Environment, Request};

use crate::error::StoreError;
use crate::packstate::CallKv;

/// Runs `request` of `pack` against `env`.
#[tracing::instrument(name = "call", skip_all, fields(verb = %request.verb(), env = %env.id()))]
pub async fn call(
    runtime: &Runtime,
    state: &StateDir,
    pack: &Pack,
    env: Environment,
    request: &Request,
) -> Result<CallReport, StoreError> {
    let kv = Arc::new(CallKv::open(&crate::db::Location::of(state))?);
    let services = state.services("call", env.id(), kv).map_err(StoreError::Invalid)?;
    Ok(runtime
        .call_in(pack, &Arc::new(env), request, CallMode::HOST, services)
        .await)
}
