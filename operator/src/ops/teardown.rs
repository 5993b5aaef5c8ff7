//! `host env remove ENV --teardown`: an environment torn down through its
//! pack, so that nothing the pack made for it is left. The traffic is
//! withdrawn (the pack is lent the environment with no split), every
//! revision that is not archived is drained and archived by the pack, each
//! deployment's own resources are released (`release-deployment`, contract
//! 1.2's optional `teardown` export), then the environment is removed as
//! `env remove` does. Every step is recorded as it happens (lifecycle
//! events, audit rows), so a teardown the pack stops half-way leaves an
//! accurate record, and running it again goes on from there.

use envpack_model::{Lifecycle, Outcome, Request};
use serde_json::json;

use super::rollout::record;
use crate::error::StoreError;
use crate::ops::{Operator, now};
use crate::store;

const COMMAND: &str = "env teardown";

/// The export through which a pack releases a deployment.
const TEARDOWN: &str = "envpack:deployer/teardown@";

/// What a teardown did, step by step, for the operator.
#[derive(Debug, Default)]
pub struct Teardown {
    pub steps: Vec<String>,
    /// What the pack could not release (it exports no `teardown`).
    pub left: Vec<String>,
}

impl Operator<'_> {
    /// Tears `env` down through its pack, then removes it.
    pub async fn teardown_env(&mut self, env: &str) -> Result<Teardown, StoreError> {
        let _lock = self.lock(env)?;
        let mut args = json!({ "env": env, "teardown": true });
        if let Err(e) = self
            .may_remove(env, COMMAND, &mut args)
            .and_then(|()| self.no_rollout(env))
        {
            return self.failed(COMMAND, &args, e);
        }
        let bound = match self.bound(env).await {
            Ok(bound) => bound,
            Err(e) => return self.failed(COMMAND, &args, e),
        };
        let mut done = Teardown::default();
        for revision in store::revisions(&self.conn, env, false)? {
            let steps: &[(Request, Lifecycle)] = match revision.lifecycle {
                Lifecycle::Ready | Lifecycle::Draining => &[
                    (Request::Drain(revision.id.clone()), Lifecycle::Inactive),
                    (Request::Archive(revision.id.clone()), Lifecycle::Archived),
                ],
                _ => &[(Request::Archive(revision.id.clone()), Lifecycle::Archived)],
            };
            for (request, after) in steps {
                // ready -> draining first, as `revision drain` does.
                if revision.lifecycle == Lifecycle::Ready && matches!(request, Request::Drain(_)) {
                    let actor = self.actor.clone();
                    let step = json!({ "env": env, "revision": revision.id, "step": "draining" });
                    self.commit(COMMAND, &step, |tx| {
                        store::set_lifecycle(
                            tx,
                            env,
                            &revision.id,
                            Lifecycle::Draining,
                            &format!("{COMMAND}: drain started"),
                            &actor,
                            now(),
                        )
                    })?;
                }
                let note = self.teardown_step(env, &bound, request).await?;
                if *after == Lifecycle::Archived {
                    self.stop_revision_processes(env, &revision.id)?;
                }
                let actor = self.actor.clone();
                let reason = format!("{COMMAND}: {} succeeded{note}", request.verb());
                let step = json!({ "env": env, "revision": revision.id, "step": request.verb().name() });
                self.commit(COMMAND, &step, |tx| {
                    store::set_lifecycle(tx, env, &revision.id, *after, &reason, &actor, now())
                })?;
                done.steps.push(format!("{} {}{note}", request.verb(), revision.id));
            }
        }
        let releases = bound.pack.exports().iter().any(|e| e.starts_with(TEARDOWN));
        for deployment in store::deployments(&self.conn, env)? {
            if !releases {
                done.left.push(format!(
                    "deployment {deployment}: {} exports no `teardown` (contract 1.2), so what the deployment holds beyond its revisions (a route, a listener, a service) is left in place",
                    bound.binding.descriptor
                ));
                continue;
            }
            let request = Request::ReleaseDeployment(deployment.clone());
            let note = self.teardown_step(env, &bound, &request).await?;
            let step = json!({ "env": env, "deployment": deployment, "step": request.verb().name() });
            self.commit(COMMAND, &step, |_| Ok(()))?;
            done.steps.push(format!("release-deployment {deployment}{note}"));
        }
        self.remove_locked(env, false, &args)?;
        Ok(done)
    }

    /// A rollout moving one of the environment's deployments would fight
    /// the teardown: abort it first.
    fn no_rollout(&self, env: &str) -> Result<(), StoreError> {
        for deployment in store::deployments(&self.conn, env)? {
            if let Some(r) = record::unfinished(&self.conn, env, &deployment)? {
                return Err(StoreError::Invalid(format!(
                    "rollout {} ({}) moves deployment {deployment}: abort it first (`host rollout abort {env} {deployment}`)",
                    r.id, r.state
                )));
            }
        }
        Ok(())
    }

    /// One pack call of the teardown, the environment lent without splits;
    /// a failure is recorded and stops the teardown (running it again goes
    /// on from here). Returns `: <the pack's note>` or nothing.
    async fn teardown_step(
        &mut self,
        env: &str,
        bound: &super::Bound,
        request: &Request,
    ) -> Result<String, StoreError> {
        let environment = store::load_environment_without_splits(&self.conn, env, &bound.binding)?;
        match self.run_verb(bound, environment, request).await {
            Ok(Outcome::Revision { detail, .. }) | Ok(Outcome::Released { note: Some(detail), .. }) => {
                Ok(if detail.is_empty() {
                    String::new()
                } else {
                    format!(": {detail}")
                })
            }
            Ok(_) => Ok(String::new()),
            Err(e) => {
                let args = json!({ "env": env, "step": request.verb().name(), "target": request.revision() });
                let error = StoreError::Invalid(format!(
                    "the teardown stopped at {} {}: {e}; what was done is recorded: fix the cause and run `host env remove {env} --teardown` again \
                     (or `host env remove {env} --force` to drop it without the pack, leaving what the provider still runs)",
                    request.verb(),
                    match request {
                        Request::ReleaseDeployment(d) => d.as_str(),
                        other => other.revision().unwrap_or_default(),
                    }
                ));
                self.failed(COMMAND, &args, error)
            }
        }
    }
}
