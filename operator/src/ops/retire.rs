//! `host deployment retire ENV DEP`: a deployment ended for good, its
//! traffic withdrawn, every revision that is not archived drained and
//! archived by the pack (or, with `--abandon`, recorded as archived with
//! the operator's reason, the pack not called), its own resources released
//! through the pack (`release-deployment`, contract 1.2's optional
//! `teardown` export), then the deployment retired: no longer listed, its
//! revisions and split history kept. The last revision holding 100% of a
//! deployment leaves this way. `env remove --teardown` and `env bind` to
//! another pack retire every deployment the same way.
//!
//! Each step commits as it happens (a split withdrawn, a lifecycle event,
//! an audit row), so a retirement the pack stops half-way, or a SIGKILL,
//! leaves an accurate record, and running the command again goes on from
//! there.

use envpack_model::{Lifecycle, Outcome, Request};
use serde_json::json;

use super::Bound;
use crate::error::StoreError;
use crate::ops::{Operator, now};
use crate::store;

/// The export through which a pack releases a deployment.
const TEARDOWN: &str = "envpack:deployer/teardown@";

/// How a deployment's revisions that are not archived leave.
#[derive(Clone, Debug)]
pub enum Retirement {
    /// Drained and archived through the pack, then the deployment
    /// released through it.
    ThroughPack,
    /// Recorded as archived with this reason; the pack is not called and
    /// the host stops the revisions' processes. What the provider still
    /// holds is the operator's to clean up.
    Abandon(String),
}

/// What a retirement (or a teardown) did, step by step, for the operator.
#[derive(Debug, Default)]
pub struct Teardown {
    pub steps: Vec<String>,
    /// What is left at the provider (the pack exports no `teardown`, or
    /// was not called).
    pub left: Vec<String>,
    /// Nothing was done: it was retired already.
    pub already: bool,
}

/// The command a retirement runs under, and what to tell the operator when
/// a pack call stops it.
pub(crate) struct RetireCommand<'a> {
    pub command: &'a str,
    /// What it is called in messages: "the teardown".
    pub what: &'a str,
    /// The command line that goes on from where it stopped.
    pub again: String,
    /// The command line that goes on without the pack.
    pub instead: String,
    /// The deploy key's signature of the command, where the environment
    /// trusts deploy keys: every step's audit row carries it.
    pub authorized_by: Option<serde_json::Value>,
}

impl RetireCommand<'_> {
    /// A step's audit arguments, with the command's signature.
    fn step(&self, mut args: serde_json::Value) -> serde_json::Value {
        if let Some(signed) = &self.authorized_by {
            args["authorized_by"] = signed.clone();
        }
        args
    }
}

impl Operator<'_> {
    /// Retires `deployment` of `env` (see the module's doc).
    pub async fn retire_deployment(
        &mut self,
        env: &str,
        deployment: &str,
        how: Retirement,
    ) -> Result<Teardown, StoreError> {
        const COMMAND: &str = "deployment retire";
        let _lock = self.lock(env)?;
        let mut args = json!({ "env": env, "deployment": deployment });
        if let Retirement::Abandon(reason) = &how {
            args["abandon"] = json!(reason);
        }
        // Run again after it finished (a SIGKILL after its last step, a
        // retried CI job): done already, said so.
        if store::env_exists(&self.conn, env)?
            && let Some(at) = store::retired_at(&self.conn, env, deployment)?
        {
            self.commit_as(COMMAND, &args, "ok: retired already", |_| Ok(()))?;
            return Ok(Teardown {
                steps: vec![format!(
                    "deployment {deployment} was retired already ({})",
                    crate::read::rfc3339(at)
                )],
                left: Vec::new(),
                already: true,
            });
        }
        if let Err(e) = self.may_retire(env, deployment, &how, COMMAND, &mut args) {
            return self.failed(COMMAND, &args, e);
        }
        let bound = match &how {
            Retirement::ThroughPack => match self.bound(env).await {
                Ok(bound) => Some(bound),
                Err(e) => return self.failed(COMMAND, &args, e),
            },
            Retirement::Abandon(_) => None,
        };
        let retire = RetireCommand {
            command: COMMAND,
            what: "the retirement",
            again: format!("host deployment retire {env} {deployment}"),
            instead: format!("host deployment retire {env} {deployment} --abandon --reason TEXT"),
            authorized_by: args.get("authorized_by").cloned(),
        };
        // The command itself, as signed, before its first step.
        self.commit(COMMAND, &args, |_| Ok(()))?;
        let mut done = Teardown::default();
        self.retire_locked(&retire, env, bound.as_ref(), deployment, &how, &mut done)
            .await?;
        Ok(done)
    }

    fn may_retire(
        &mut self,
        env: &str,
        deployment: &str,
        how: &Retirement,
        command: &str,
        args: &mut serde_json::Value,
    ) -> Result<(), StoreError> {
        store::require_env(&self.conn, env)?;
        if let Retirement::Abandon(reason) = how
            && reason.trim().is_empty()
        {
            return Err(StoreError::Invalid(
                "abandoning a deployment's revisions needs a --reason: it is recorded in their events".into(),
            ));
        }
        // Retired ones are not listed: retiring one twice names it unknown.
        let known = store::deployments(&self.conn, env)?;
        if !known.iter().any(|d| d == deployment) {
            return Err(StoreError::UnknownDeployment {
                env: env.to_string(),
                deployment: deployment.to_string(),
            });
        }
        // Withdrawing traffic takes a deploy key where the environment trusts some.
        self.authorize(env, command, args)?;
        self.no_rollout_on(env, deployment)
    }

    /// A rollout moving `deployment` would fight its retirement: abort it first.
    pub(crate) fn no_rollout_on(&self, env: &str, deployment: &str) -> Result<(), StoreError> {
        match super::rollout::record::unfinished(&self.conn, env, deployment)? {
            Some(r) => Err(StoreError::Invalid(format!(
                "rollout {} ({}) moves deployment {deployment}: abort it first (`host rollout abort {env} {deployment}`), \
                 or, if it can go neither on nor back, end it where it stands (`host rollout cancel {env} {deployment} --reason TEXT`)",
                r.id, r.state
            ))),
            None => Ok(()),
        }
    }

    /// Retires one deployment, the environment's lock held; `bound` is the
    /// pack that made its revisions (`None` when abandoning them).
    pub(super) async fn retire_locked(
        &mut self,
        retire: &RetireCommand<'_>,
        env: &str,
        bound: Option<&Bound>,
        deployment: &str,
        how: &Retirement,
        done: &mut Teardown,
    ) -> Result<(), StoreError> {
        let command = retire.command;
        if let Some(split) = store::current_split(&self.conn, env, deployment)? {
            let step = retire.step(json!({ "env": env, "deployment": deployment, "step": "withdraw-traffic", "generation": split.generation }));
            self.commit(command, &step, |tx| store::withdraw_traffic(tx, env, deployment))?;
            done.steps.push(format!(
                "traffic of {deployment} withdrawn (generation {})",
                split.generation
            ));
        }
        let live: Vec<_> = store::revisions(&self.conn, env, false)?
            .into_iter()
            .filter(|r| r.deployment == deployment)
            .collect();
        for revision in live {
            match (how, bound) {
                (Retirement::ThroughPack, Some(bound)) => {
                    self.retire_revision(retire, env, bound, &revision, done).await?;
                }
                (Retirement::Abandon(_), _) | (Retirement::ThroughPack, None) => {
                    let reason = match how {
                        Retirement::Abandon(reason) => reason.trim(),
                        Retirement::ThroughPack => "no pack to drain it",
                    };
                    let step = retire
                        .step(json!({ "env": env, "revision": revision.id, "step": "abandon", "reason": reason }));
                    self.abandon_locked(command, &step, env, &revision.id, reason)?;
                    done.steps.push(format!("abandoned {}", revision.id));
                }
            }
        }
        match (how, bound) {
            (Retirement::ThroughPack, Some(bound)) if bound.pack.exports().iter().any(|e| e.starts_with(TEARDOWN)) => {
                let request = Request::ReleaseDeployment(deployment.to_string());
                let note = self.retire_step(retire, env, bound, &request).await?;
                let step = retire.step(json!({ "env": env, "deployment": deployment, "step": request.verb().name() }));
                self.commit(command, &step, |_| Ok(()))?;
                done.steps.push(format!("release-deployment {deployment}{note}"));
            }
            (Retirement::ThroughPack, Some(bound)) => done.left.push(format!(
                "deployment {deployment}: {} exports no `teardown` (contract 1.2), so what the deployment holds beyond its revisions (a route, a listener, a service) is left in place",
                bound.binding.descriptor
            )),
            _ => done.left.push(format!(
                "deployment {deployment}: its revisions were abandoned and the pack was not called, so whatever the provider holds for it is left in place"
            )),
        }
        let step = retire.step(json!({ "env": env, "deployment": deployment, "step": "retire" }));
        self.commit(command, &step, |tx| {
            store::retire_deployment(tx, env, deployment, now())
        })?;
        done.steps.push(format!("deployment {deployment} retired"));
        Ok(())
    }

    /// Drains (from ready or draining) and archives one revision through
    /// the pack, each transition committed as it happens.
    async fn retire_revision(
        &mut self,
        retire: &RetireCommand<'_>,
        env: &str,
        bound: &Bound,
        revision: &envpack_model::Revision,
        done: &mut Teardown,
    ) -> Result<(), StoreError> {
        let command = retire.command;
        let steps: &[(Request, Lifecycle)] = match revision.lifecycle {
            Lifecycle::Ready | Lifecycle::Draining => &[
                (Request::Drain(revision.id.clone()), Lifecycle::Inactive),
                (Request::Archive(revision.id.clone()), Lifecycle::Archived),
            ],
            _ => &[(Request::Archive(revision.id.clone()), Lifecycle::Archived)],
        };
        for (request, after) in steps {
            let actor = self.actor.clone();
            // ready -> draining first, as `revision drain` does.
            if revision.lifecycle == Lifecycle::Ready && matches!(request, Request::Drain(_)) {
                let step = retire.step(json!({ "env": env, "revision": revision.id, "step": "draining" }));
                self.commit(command, &step, |tx| {
                    store::set_lifecycle(
                        tx,
                        env,
                        &revision.id,
                        Lifecycle::Draining,
                        &format!("{command}: drain started"),
                        &actor,
                        now(),
                    )
                })?;
            }
            let note = self.retire_step(retire, env, bound, request).await?;
            if *after == Lifecycle::Archived {
                self.stop_revision_processes(env, &revision.id)?;
            }
            let reason = format!("{command}: {} succeeded{note}", request.verb());
            let step = retire.step(json!({ "env": env, "revision": revision.id, "step": request.verb().name() }));
            self.commit(command, &step, |tx| {
                store::set_lifecycle(tx, env, &revision.id, *after, &reason, &actor, now())
            })?;
            done.steps.push(format!("{} {}{note}", request.verb(), revision.id));
        }
        Ok(())
    }

    /// One pack call of a retirement; a failure is recorded and stops it
    /// (running it again goes on from here). Returns `: <the pack's note>`
    /// or nothing.
    async fn retire_step(
        &mut self,
        retire: &RetireCommand<'_>,
        env: &str,
        bound: &Bound,
        request: &Request,
    ) -> Result<String, StoreError> {
        let environment = store::load_environment(&self.conn, env, &bound.binding, &[], None)?;
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
                let target = match request {
                    Request::ReleaseDeployment(d) => d.as_str(),
                    other => other.revision().unwrap_or_default(),
                };
                let args = retire.step(json!({ "env": env, "step": request.verb().name(), "target": target }));
                let error = StoreError::StepRefused(format!(
                    "{} stopped at {} {target}: {e}; what was done is recorded: fix the cause and run `{}` again \
                     (or `{}` to go on without the pack, leaving what the provider still runs)",
                    retire.what,
                    request.verb(),
                    retire.again,
                    retire.instead,
                ));
                self.failed(retire.command, &args, error)
            }
        }
    }
}
