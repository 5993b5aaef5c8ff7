//! Traffic commands: set a deployment's split (checked host-side, applied by
//! the pack, recorded as a new generation with the pack's kv writes), and
//! roll back to the previous generation in one step.

use envpack_model::{Lifecycle, Request, SplitEntry};
use serde::Serialize;
use serde_json::json;

use super::{Operator, now};
use crate::error::StoreError;
use crate::store;

/// What a traffic command did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The generation these entries were recorded as.
    pub generation: i64,
    /// The deployment's current generation now.
    pub current: i64,
    /// True when an idempotency key replayed an earlier command: nothing ran.
    pub replayed: bool,
}

impl Operator<'_> {
    /// Sets a deployment's split: validated, applied by the pack, then
    /// recorded as a new generation. Refused while a rollout moves the
    /// deployment, unless `force` (the audit row names the rollout).
    pub async fn set_traffic(
        &mut self,
        env: &str,
        deployment: &str,
        entries: Vec<SplitEntry>,
        key: Option<String>,
        force: bool,
    ) -> Result<Applied, StoreError> {
        let _lock = self.lock(env)?;
        let mut args = json!({ "env": env, "deployment": deployment, "entries": entries, "idempotency_key": key });
        if key.as_deref().is_some_and(|k| k.trim().is_empty()) {
            let error = StoreError::Invalid(
                "an empty idempotency key names no command: give a non-empty --idempotency-key, or none".into(),
            );
            return self.failed("traffic set", &args, error);
        }
        match self.rollout_guard(env, deployment, force) {
            Ok(Some(id)) => args["forced_during_rollout"] = json!(id),
            Ok(None) => {}
            Err(e) => return self.failed("traffic set", &args, e),
        }
        if let Err(e) = self.authorize(env, "traffic set", &mut args) {
            return self.failed("traffic set", &args, e);
        }
        self.record_split("traffic set", &args, env, deployment, &entries, key)
            .await
    }

    /// A rollout's own split: applied and recorded like `traffic set`.
    pub(crate) async fn apply_recorded_split(
        &mut self,
        command: &str,
        env: &str,
        deployment: &str,
        entries: &[SplitEntry],
        key: Option<String>,
    ) -> Result<Applied, StoreError> {
        let _lock = self.lock(env)?;
        let args = json!({ "env": env, "deployment": deployment, "entries": entries, "idempotency_key": key });
        self.record_split(command, &args, env, deployment, entries, key).await
    }

    /// Refuses to move a deployment's traffic by hand while a rollout moves
    /// it, unless forced: then the rollout's id, for the audit row.
    fn rollout_guard(&self, env: &str, deployment: &str, force: bool) -> Result<Option<String>, StoreError> {
        match super::rollout::record::unfinished(&self.conn, env, deployment)? {
            None => Ok(None),
            Some(rollout) if force => Ok(Some(rollout.id)),
            Some(rollout) => Err(StoreError::RolloutActive {
                deployment: deployment.to_string(),
                id: rollout.id,
                state: rollout.state.to_string(),
            }),
        }
    }

    async fn record_split(
        &mut self,
        command: &str,
        args: &serde_json::Value,
        env: &str,
        deployment: &str,
        entries: &[SplitEntry],
        key: Option<String>,
    ) -> Result<Applied, StoreError> {
        if let Some(key) = &key
            && let Some(previous) = store::generation_by_key(&self.conn, env, deployment, key)?
        {
            if envpack_model::split::same_split(&previous.entries, entries) {
                let current = store::current_split(&self.conn, env, deployment)?.map_or(0, |g| g.generation);
                return Ok(Applied {
                    generation: previous.generation,
                    current,
                    replayed: true,
                });
            }
            let error = StoreError::KeyReused {
                key: key.clone(),
                deployment: deployment.to_string(),
            };
            return self.failed(command, args, error);
        }
        match self.apply_split(env, deployment, entries).await {
            Ok(()) => {
                let actor = self.actor.clone();
                let generation = self.commit(command, args, |tx| {
                    let generation =
                        store::insert_generation(tx, env, deployment, entries, key.as_deref(), &actor, now())?;
                    pause_overridden(tx, args, command, generation, &actor)?;
                    Ok(generation)
                })?;
                Ok(Applied {
                    generation,
                    current: generation,
                    replayed: false,
                })
            }
            Err(e) => self.failed(command, args, e),
        }
    }

    /// Goes back to an earlier generation's entries (`to`, else the one
    /// before the current), as a new generation; revisions archived at 0 bps
    /// since are left out, one archived with weight is refused by name.
    /// Refused while a rollout moves the deployment, unless `force`.
    pub async fn rollback(
        &mut self,
        env: &str,
        deployment: &str,
        to: Option<i64>,
        force: bool,
    ) -> Result<Applied, StoreError> {
        let _lock = self.lock(env)?;
        let mut args = json!({ "env": env, "deployment": deployment });
        if let Some(to) = to {
            args["to"] = json!(to);
        }
        if let Err(e) = self.require_deployment(env, deployment) {
            return self.failed("traffic rollback", &args, e);
        }
        match self.rollout_guard(env, deployment, force) {
            Ok(Some(id)) => args["forced_during_rollout"] = json!(id),
            Ok(None) => {}
            Err(e) => return self.failed("traffic rollback", &args, e),
        }
        if let Err(e) = self.authorize(env, "traffic rollback", &mut args) {
            return self.failed("traffic rollback", &args, e);
        }
        let previous = match self.rollback_target(env, deployment, to) {
            Ok(previous) => previous,
            Err(e) => return self.failed("traffic rollback", &args, e),
        };
        let entries = self.replayable(env, &previous.entries);
        match self.apply_split(env, deployment, &entries).await {
            Ok(()) => {
                let actor = self.actor.clone();
                let generation = self.commit("traffic rollback", &args, |tx| {
                    let generation = store::insert_generation(tx, env, deployment, &entries, None, &actor, now())?;
                    pause_overridden(tx, &args, "traffic rollback", generation, &actor)?;
                    Ok(generation)
                })?;
                Ok(Applied {
                    generation,
                    current: generation,
                    replayed: false,
                })
            }
            Err(e) => self.failed("traffic rollback", &args, e),
        }
    }

    /// `entries`, recorded earlier, as they can be applied again today:
    /// without the revisions archived at 0 bps since
    /// ([`envpack_model::split::without_archived_idle`]).
    pub(crate) fn replayable(&self, env: &str, entries: &[SplitEntry]) -> Vec<SplitEntry> {
        envpack_model::split::without_archived_idle(entries, |id| {
            store::revision(&self.conn, env, id).is_ok_and(|r| r.lifecycle == Lifecycle::Archived)
        })
    }

    /// The generation a rollback goes back to: `to`, which must be an
    /// earlier one, else the one before the current.
    fn rollback_target(&self, env: &str, deployment: &str, to: Option<i64>) -> Result<store::Generation, StoreError> {
        let Some(current) = store::current_split(&self.conn, env, deployment)? else {
            return Err(match store::split_floor(&self.conn, env, deployment)? {
                Some(floor) => StoreError::Invalid(format!(
                    "the traffic of {deployment} was withdrawn after generation {floor} (a retirement): generations up to {floor} are history; \
                     set a split with `host traffic set`, or finish the retirement with `host deployment retire {env} {deployment}`"
                )),
                None => StoreError::NoPrevious(deployment.to_string()),
            });
        };
        let Some(to) = to else {
            return store::generations(&self.conn, env, deployment, 2)?
                .into_iter()
                .nth(1)
                .ok_or_else(|| StoreError::NoPrevious(deployment.to_string()));
        };
        if to == current.generation {
            return Err(StoreError::Invalid(format!(
                "generation {to} is {deployment}'s current split: roll back to an earlier one"
            )));
        }
        match store::generation(&self.conn, env, deployment, to)? {
            Some(g) if to < current.generation => Ok(g),
            _ => Err(StoreError::NoGeneration {
                deployment: deployment.to_string(),
                generation: to,
                current: current.generation,
            }),
        }
    }

    pub(crate) fn require_deployment(&self, env: &str, deployment: &str) -> Result<(), StoreError> {
        store::require_env(&self.conn, env)?;
        if !store::deployments(&self.conn, env)?.iter().any(|d| d == deployment) {
            if let Some(at) = store::retired_at(&self.conn, env, deployment)? {
                return Err(StoreError::Invalid(format!(
                    "deployment {deployment} of {env:?} was retired ({}); stage a revision into it to start it again",
                    crate::read::rfc3339(at)
                )));
            }
            return Err(StoreError::UnknownDeployment {
                env: env.to_string(),
                deployment: deployment.to_string(),
            });
        }
        Ok(())
    }

    async fn apply_split(&mut self, env: &str, deployment: &str, entries: &[SplitEntry]) -> Result<(), StoreError> {
        self.require_deployment(env, deployment)?;
        envpack_model::split::check_recordable(deployment, entries, |id| {
            store::revision(&self.conn, env, id).map(|r| (r.deployment, r.lifecycle))
        })?;
        let bound = self.bound(env).await?;
        let environment = store::load_environment(&self.conn, env, &bound.binding, &[], Some((deployment, entries)))?;
        self.run_verb(&bound, environment, &Request::ApplyTrafficSplit(deployment.to_string()))
            .await?;
        Ok(())
    }
}

/// A split forced over a running rollout (`--force`) pauses it, in the
/// same transaction: its next step would otherwise overwrite the split the
/// operator just chose. `rollout resume` goes on from there; `rollout
/// abort` restores the split it started from.
fn pause_overridden(
    tx: &crate::sql::Db,
    args: &serde_json::Value,
    command: &str,
    generation: i64,
    actor: &str,
) -> Result<(), StoreError> {
    use super::rollout::record::{self, State};
    let Some(id) = args["forced_during_rollout"].as_str() else {
        return Ok(());
    };
    if record::get(tx, id)?.state != State::Running {
        return Ok(());
    }
    let reason = format!(
        "{command} --force by {actor} set generation {generation}; `rollout resume` goes on from it, `rollout abort` restores the split the rollout started from"
    );
    record::set_state(tx, id, State::Paused, &reason, now())
}
