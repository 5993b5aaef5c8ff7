//! What `host agent` does on the operator: it claims the state directory
//! (one agent per directory, a kernel lock released when it dies), finds
//! the rollouts nobody drives, and probes ready revisions, keeping the last
//! answer per revision for `status`. The agent holds no deploy key: it only
//! drives rollouts whose start (or promote, abort) was authorized when it
//! was recorded, and probing changes nothing.

use crate::sql::{Db, OptionalExt, params};
use envpack_model::{Health, Lifecycle};
use serde::Serialize;

use super::rollout::{driver_lock_name, record};
use crate::error::StoreError;
use crate::lock::{self, EnvLock};
use crate::ops::{Operator, now};
use crate::store;
use envpack_host::StateDir;

/// The lock an agent holds for as long as it runs. Not a valid
/// environment id, so never an environment's lock.
const AGENT_LOCK: &str = "host agent";

/// Claims the state directory for this process's agent: `Err(pid)` of the
/// agent that already has it.
pub fn claim(state_dir: &StateDir) -> Result<Result<EnvLock, u32>, StoreError> {
    match lock::try_lock_named(&state_dir.locks(), AGENT_LOCK)? {
        Some(held) => Ok(Ok(held)),
        None => Ok(Err(lock::holder(&state_dir.locks(), AGENT_LOCK).unwrap_or(0))),
    }
}

/// The pid of the agent running for this state directory, if one does.
pub fn running(state_dir: &StateDir) -> Option<u32> {
    lock::holder(&state_dir.locks(), AGENT_LOCK)
}

/// The pid of the process driving rollout `id`, if one does (on whichever
/// machine, when the records are shared: asked through `db`).
pub fn driver(state_dir: &StateDir, db: &Db, id: &str) -> Option<crate::lock::LockHolder> {
    lock::shared_holder(state_dir, db, &driver_lock_name(id))
}

/// What the last probe of a ready revision said, and when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HealthView {
    /// `healthy`, `unhealthy`, `unsupported` (the pack cannot probe) or
    /// `error` (the probe itself failed).
    pub status: String,
    pub message: String,
    #[serde(serialize_with = "crate::read::json_time::at")]
    pub checked_at: i64,
}

/// One probe's result, for the agent's log.
pub struct Checked {
    pub env: String,
    pub revision: String,
    pub health: HealthView,
    /// The status before, when it changed.
    pub changed_from: Option<String>,
}

impl Operator<'_> {
    /// Rollouts that should be moving and no process drives (of the
    /// environments this machine may change).
    pub fn undriven_rollouts(&self) -> Result<Vec<String>, StoreError> {
        let mut undriven = Vec::new();
        for id in record::driving_ids(&self.conn)? {
            if driver(&self.state_dir, &self.conn, &id).is_none()
                && let Some(rollout) = record::find(&self.conn, &id)?
                && self.runs_here(&rollout.env)
            {
                undriven.push(id);
            }
        }
        Ok(undriven)
    }

    /// Whether this machine may drive and probe `env`: with shared
    /// records, an environment whose processes run on another machine is
    /// that machine's agent's (probing its revisions from here would
    /// find nothing listening).
    /// Nor one whose pinned pack is not installed here (its probes would
    /// all be errors, written for every machine to see).
    fn runs_here(&self, env: &str) -> bool {
        let shared = self.conn.is_postgres();
        match store::binding(&self.conn, env) {
            Ok(binding) => {
                let pack_here = !shared
                    || envpack_trust::Registry::open(&self.state_dir.packs())
                        .is_ok_and(|registry| registry.lookup(&binding.pack_digest).is_ok());
                binding.other_machine(shared).is_none() && pack_here
            }
            Err(_) => true,
        }
    }

    /// `(environment, revision)` of every ready revision (of the
    /// environments this machine may change).
    pub fn ready_revisions(&self) -> Result<Vec<(String, String)>, StoreError> {
        let mut ready = Vec::new();
        for env in store::list_envs(&self.conn)? {
            if !self.runs_here(&env) {
                continue;
            }
            for r in store::revisions(&self.conn, &env, false)? {
                if r.lifecycle == Lifecycle::Ready {
                    ready.push((env.clone(), r.id));
                }
            }
        }
        Ok(ready)
    }

    /// Probes one ready revision through its pack and records the answer;
    /// a change of status is also an event on the revision.
    pub async fn check_health(&mut self, env: &str, revision: &str) -> Result<Checked, StoreError> {
        let (status, message) = match self.probe(env, revision).await {
            Ok(Health::Healthy) => ("healthy", String::new()),
            Ok(Health::Unhealthy(why)) => ("unhealthy", why),
            Ok(Health::Unsupported) => ("unsupported", "the pack cannot probe revisions".into()),
            Err(e) => ("error", e.to_string()),
        };
        let health = HealthView {
            status: status.into(),
            message,
            checked_at: now(),
        };
        let actor = self.actor.clone();
        let tx = self.conn.transaction()?;
        // Drained or archived while it was probed: nothing to record.
        let current = store::revision(&tx, env, revision)?.lifecycle;
        // A change is an event; so is a first answer that is not healthy (a
        // revision already lost when the agent started).
        let changed_from = match last_status(&tx, env, revision)? {
            Some(before) => Some(before).filter(|b| b != status),
            None => matches!(status, "unhealthy" | "error").then(|| "unprobed".to_string()),
        };
        if current == Lifecycle::Ready {
            tx.execute(
                "INSERT INTO revision_health (env_id, revision, status, message, checked_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (env_id, revision) DO UPDATE SET status = ?3, message = ?4, checked_at = ?5",
                params![env, revision, health.status, health.message, health.checked_at],
            )?;
            if let Some(from) = &changed_from {
                let reason = if health.message.is_empty() {
                    format!("probed by the agent: {from} -> {status}")
                } else {
                    format!("probed by the agent: {from} -> {status}: {}", health.message)
                };
                store::note_event(&tx, env, revision, current, &reason, &actor, health.checked_at)?;
            }
        }
        tx.commit()?;
        Ok(Checked {
            env: env.to_string(),
            revision: revision.to_string(),
            health,
            changed_from,
        })
    }
}

fn last_status(conn: &Db, env: &str, revision: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT status FROM revision_health WHERE env_id = ?1 AND revision = ?2",
            params![env, revision],
            |r| r.get(0),
        )
        .optional()?)
}

/// The last probe of each ready revision of `env` that has one.
pub(crate) fn health_of(conn: &Db, env: &str) -> Result<Vec<(String, HealthView)>, StoreError> {
    Ok(conn.query_map(
        "SELECT h.revision, h.status, h.message, h.checked_at FROM revision_health h
         JOIN revisions r ON r.env_id = h.env_id AND r.id = h.revision
         WHERE h.env_id = ?1 AND r.lifecycle = 'ready'",
        params![env],
        |r| {
            Ok((
                r.get::<String>(0)?,
                HealthView {
                    status: r.get(1)?,
                    message: r.get(2)?,
                    checked_at: r.get(3)?,
                },
            ))
        },
    )?)
}
