//! Revision commands: stage, warm, drain, archive, retry. Warm and drain
//! commit their first step (`warming`, `draining`) before the pack runs, so
//! that a crash mid-call leaves a visible state; running the same command
//! again **resumes** it (the verbs are idempotent), so no revision is left
//! without a way forward.

use std::collections::BTreeMap;

use envpack_model::{Artifact, Lifecycle, Outcome, Request, Revision, validate_id};
use serde_json::json;

use super::{Bound, Operator, now};
use crate::error::StoreError;
use crate::store;

/// What a new revision is made of.
pub struct NewRevision {
    pub id: Option<String>,
    pub deployment: String,
    pub digest: String,
    pub location: String,
    pub drain_seconds: u32,
    pub settings: BTreeMap<String, String>,
}

/// How a revision verb moves the lifecycle around the pack call.
struct Plan {
    command: &'static str,
    request: Request,
    /// Applied (and committed) before the pack is called; a revision already
    /// in this state resumes the command.
    before: Option<Lifecycle>,
    /// Applied after the pack succeeds.
    after: Lifecycle,
    /// Applied, with the pack's message, if it fails.
    on_failure: Option<Lifecycle>,
    /// Refused while an unfinished rollout needs the revision (an
    /// operator's drain or archive; a rollout's own steps are not).
    spare_rollouts: bool,
}

/// The text an event keeps of a pack's outcome.
fn detail(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Revision { detail, .. } if !detail.is_empty() => format!(": {detail}"),
        _ => String::new(),
    }
}

impl Operator<'_> {
    /// Creates a revision and stages it through the pack; the row, the
    /// event, the pack's kv writes and the audit row commit together.
    pub async fn stage(&mut self, env: &str, new: NewRevision) -> Result<Revision, StoreError> {
        let _lock = self.lock(env)?;
        let args = json!({ "env": env, "deployment": new.deployment, "id": new.id, "digest": new.digest, "location": new.location });
        let result = self.stage_inner(env, new).await;
        match result {
            Ok((revision, detail)) => {
                let r = revision.clone();
                let actor = self.actor.clone();
                self.commit("revision stage", &args, |tx| {
                    store::ensure_deployment(tx, env, &r.deployment)?;
                    store::insert_revision(tx, env, &r, now())?;
                    store::set_lifecycle(
                        tx,
                        env,
                        &r.id,
                        Lifecycle::Staged,
                        &format!("revision stage succeeded{detail}"),
                        &actor,
                        now(),
                    )
                })?;
                Ok(Revision {
                    lifecycle: Lifecycle::Staged,
                    ..revision
                })
            }
            Err(e) => self.failed("revision stage", &args, e),
        }
    }

    async fn stage_inner(&mut self, env: &str, new: NewRevision) -> Result<(Revision, String), StoreError> {
        store::require_env(&self.conn, env)?;
        validate_id("deployment id", &new.deployment).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let id = new.id.unwrap_or_else(|| ulid::Ulid::new().to_string());
        validate_id("revision id", &id).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if store::find_revision(&self.conn, env, &id)?.is_some() {
            return Err(StoreError::DuplicateRevision(id));
        }
        let revision = Revision {
            id: id.clone(),
            deployment: new.deployment.clone(),
            sequence: store::next_sequence(&self.conn, env, &new.deployment)?,
            lifecycle: Lifecycle::Inactive,
            artifact: Artifact {
                digest: new.digest,
                location: new.location,
            },
            drain_seconds: new.drain_seconds,
            settings: new.settings,
        };
        let bound = self.bound(env).await?;
        let environment =
            store::load_environment(&self.conn, env, &bound.binding, std::slice::from_ref(&revision), None)?;
        let outcome = self.run_verb(&bound, environment, &Request::Stage(id)).await?;
        Ok((revision, detail(&outcome)))
    }

    async fn revision_verb(&mut self, env: &str, id: &str, plan: Plan) -> Result<Revision, StoreError> {
        let Plan {
            command,
            request,
            before,
            after,
            on_failure,
            spare_rollouts,
        } = plan;
        let _lock = self.lock(env)?;
        let args = json!({ "env": env, "revision": id });
        if spare_rollouts && let Err(e) = self.needed_by_rollout(env, id) {
            return self.failed(command, &args, e);
        }
        let (bound, resume) = match self.prepare_revision_verb(env, id, before, after).await {
            Ok(prepared) => prepared,
            Err(e) => return self.failed(command, &args, e),
        };
        let actor = self.actor.clone();
        if let Some(step) = before
            && !resume
        {
            self.commit(
                command,
                &json!({ "env": env, "revision": id, "step": envpack_model::lifecycle::name(step) }),
                |tx| store::set_lifecycle(tx, env, id, step, &format!("{command} started"), &actor, now()),
            )?;
        }
        let environment = store::load_environment(&self.conn, env, &bound.binding, &[], None)?;
        let how = if resume { "resumed and succeeded" } else { "succeeded" };
        match self.run_verb(&bound, environment, &request).await {
            Ok(outcome) => {
                let mut reason = format!("{command} {how}{}", detail(&outcome));
                if after == Lifecycle::Archived {
                    // An archived revision keeps no process, whatever the
                    // pack left running: its whole trees go.
                    let killed = self.stop_revision_processes(env, id)?;
                    if killed > 0 {
                        reason.push_str(&format!("; the host stopped {killed} processes the pack left running"));
                    }
                }
                self.commit(command, &args, |tx| {
                    store::set_lifecycle(tx, env, id, after, &reason, &actor, now())
                })?;
                store::revision(&self.conn, env, id)
            }
            Err(StoreError::Pack(error)) => {
                let reason = format!("{command} failed: {error}");
                let Some(failed) = on_failure else {
                    let lifecycle = store::revision(&self.conn, env, id)?.lifecycle;
                    let error = StoreError::PackLeft {
                        error: Box::new(error),
                        env: env.to_string(),
                        revision: id.to_string(),
                        lifecycle,
                    };
                    return self.failed(command, &args, error);
                };
                let outcome = format!("error: {error}");
                self.commit_as(command, &args, &outcome, |tx| {
                    store::set_lifecycle(tx, env, id, failed, &reason, &actor, now())
                })?;
                Err(StoreError::PackLeft {
                    error: Box::new(error),
                    env: env.to_string(),
                    revision: id.to_string(),
                    lifecycle: failed,
                })
            }
            Err(other) => self.failed(command, &args, other),
        }
    }

    /// Refuses to take down a revision an unfinished rollout of its
    /// deployment needs: its target, or one serving the split it started
    /// from (what an abort goes back to).
    fn needed_by_rollout(&self, env: &str, id: &str) -> Result<(), StoreError> {
        let revision = store::revision(&self.conn, env, id)?;
        let Some(rollout) = crate::ops::rollout::record::unfinished(&self.conn, env, &revision.deployment)? else {
            return Ok(());
        };
        let role = if rollout.revision == id {
            "its target"
        } else if rollout.previous.iter().any(|e| e.revision == id && e.weight_bps > 0) {
            "what it goes back to if aborted"
        } else {
            return Ok(());
        };
        Err(StoreError::Invalid(format!(
            "revision {id} is {role} for rollout {} of deployment {} ({}); take it down once the rollout ends \
             (`host rollout promote|abort {env} {}`), or end the rollout where it stands first \
             (`host rollout cancel {env} {} --reason TEXT`)",
            rollout.id,
            rollout.deployment,
            rollout.state.name(),
            rollout.deployment,
            rollout.deployment
        )))
    }

    /// Checks the transition and loads the pack; says whether the command
    /// resumes one that was interrupted (the revision is already in `before`).
    async fn prepare_revision_verb(
        &mut self,
        env: &str,
        id: &str,
        before: Option<Lifecycle>,
        after: Lifecycle,
    ) -> Result<(Bound, bool), StoreError> {
        store::require_env(&self.conn, env)?;
        let revision = store::revision(&self.conn, env, id)?;
        let resume = before.is_some_and(|b| b == revision.lifecycle);
        let first = if resume { after } else { before.unwrap_or(after) };
        envpack_model::lifecycle::check(id, revision.lifecycle, first)?;
        if matches!(before.unwrap_or(after), Lifecycle::Draining | Lifecycle::Archived) {
            let holders = store::weight_holders(&self.conn, env, &revision)?;
            if !holders.is_empty() {
                return Err(StoreError::HasWeight {
                    revision: id.to_string(),
                    holders,
                });
            }
        }
        Ok((self.bound(env).await?, resume))
    }

    /// staged → warming → ready (or failed); a revision left `warming` by an
    /// interrupted command is warmed again.
    pub async fn warm(&mut self, env: &str, id: &str) -> Result<Revision, StoreError> {
        let plan = Plan {
            command: "revision warm",
            request: Request::Warm(id.into()),
            before: Some(Lifecycle::Warming),
            after: Lifecycle::Ready,
            on_failure: Some(Lifecycle::Failed),
            spare_rollouts: false,
        };
        self.revision_verb(env, id, plan).await
    }

    /// ready → draining → inactive; a revision left `draining` (interrupted,
    /// or refused by the pack) is drained again.
    pub async fn drain(&mut self, env: &str, id: &str) -> Result<Revision, StoreError> {
        self.drain_as(env, id, true).await
    }

    /// [`Self::drain`]; a rollout's own step does not spare rollouts.
    pub(crate) async fn drain_as(&mut self, env: &str, id: &str, spare_rollouts: bool) -> Result<Revision, StoreError> {
        let plan = Plan {
            command: "revision drain",
            request: Request::Drain(id.into()),
            before: Some(Lifecycle::Draining),
            after: Lifecycle::Inactive,
            on_failure: None,
            spare_rollouts,
        };
        self.revision_verb(env, id, plan).await
    }

    pub async fn archive(&mut self, env: &str, id: &str) -> Result<Revision, StoreError> {
        self.archive_as(env, id, true).await
    }

    /// [`Self::archive`]; a rollout's own step does not spare rollouts.
    pub(crate) async fn archive_as(
        &mut self,
        env: &str,
        id: &str,
        spare_rollouts: bool,
    ) -> Result<Revision, StoreError> {
        let plan = Plan {
            command: "revision archive",
            request: Request::Archive(id.into()),
            before: None,
            after: Lifecycle::Archived,
            on_failure: None,
            spare_rollouts,
        };
        self.revision_verb(env, id, plan).await
    }

    /// Records a revision archived without calling the pack: the way out
    /// when the pack keeps refusing to drain or archive it. The reason is
    /// required and recorded in the event; the host stops the revision's
    /// processes, and whatever else the provider still runs for it is the
    /// operator's to clean up. Refused for a revision with traffic, one
    /// already archived, or while a rollout moves its deployment.
    pub fn abandon(&mut self, env: &str, id: &str, reason: &str) -> Result<Revision, StoreError> {
        const COMMAND: &str = "revision abandon";
        let _lock = self.lock(env)?;
        let args = json!({ "env": env, "revision": id, "reason": reason });
        if let Err(e) = self.check_abandon(env, id, reason) {
            return self.failed(COMMAND, &args, e);
        }
        self.abandon_locked(COMMAND, &args, env, id, reason)?;
        store::revision(&self.conn, env, id)
    }

    /// Records `id` archived without calling the pack, its lock held: the
    /// host stops the revision's processes, the event says why and that
    /// the pack was not called. Shared by `revision abandon` and a
    /// retirement's `--abandon`.
    pub(super) fn abandon_locked(
        &mut self,
        command: &str,
        args: &serde_json::Value,
        env: &str,
        id: &str,
        reason: &str,
    ) -> Result<(), StoreError> {
        let killed = match self.stop_revision_processes(env, id) {
            Ok(killed) => killed,
            Err(e) => return self.failed(command, args, e),
        };
        let mut event = format!("{command}: {}; the pack was not called", reason.trim());
        if killed > 0 {
            event.push_str(&format!("; the host stopped {killed} processes"));
        }
        let actor = self.actor.clone();
        self.commit(command, args, |tx| store::abandon(tx, env, id, &event, &actor, now()))
    }

    fn check_abandon(&self, env: &str, id: &str, reason: &str) -> Result<(), StoreError> {
        store::require_env(&self.conn, env)?;
        let revision = store::revision(&self.conn, env, id)?;
        if reason.trim().is_empty() {
            return Err(StoreError::Invalid(
                "abandoning a revision needs a --reason: it is recorded in the revision's events".into(),
            ));
        }
        if !envpack_model::lifecycle::abandonable(revision.lifecycle) {
            return Err(StoreError::Invalid(format!("revision {id} is already archived")));
        }
        let holders = store::weight_holders(&self.conn, env, &revision)?;
        if !holders.is_empty() {
            return Err(StoreError::HasWeight {
                revision: id.to_string(),
                holders,
            });
        }
        // A draining (or drained) revision never gets weight again, so a
        // rollout that is draining it (its provider refusing) cannot be
        // harmed: abandoning it is the way on, and the rollout's drain step
        // then finds it archived. One the rollout may still give traffic
        // waits for the rollout.
        let traffic_free = matches!(revision.lifecycle, Lifecycle::Draining | Lifecycle::Inactive);
        if !traffic_free
            && let Some(rollout) = super::rollout::record::unfinished(&self.conn, env, &revision.deployment)?
        {
            return Err(StoreError::Invalid(format!(
                "rollout {} ({}) moves deployment {} and may still give {id} traffic: let it drain {id} \
                 (a revision that is draining can be abandoned whatever the rollout does), or `host rollout abort {env} {}` first",
                rollout.id, rollout.state, revision.deployment, revision.deployment
            )));
        }
        Ok(())
    }

    pub async fn retry(&mut self, env: &str, id: &str) -> Result<Revision, StoreError> {
        let plan = Plan {
            command: "revision retry",
            request: Request::Stage(id.into()),
            before: None,
            after: Lifecycle::Staged,
            on_failure: None,
            spare_rollouts: false,
        };
        self.revision_verb(env, id, plan).await
    }
}
