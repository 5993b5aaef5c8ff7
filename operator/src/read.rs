//! The read side of the store: what `status`, `events`, `traffic show`,
//! `revision list|show`, `env list|show` and `audit verify` print, as one
//! serializable view per object, the same in every command. Reads take no
//! environment lock and see one WAL snapshot per query, so a long verb never
//! blocks them. The CLI reads through this module only.
//!
//! Schemas (JSON):
//! - revision: `{env, id, deployment, sequence, lifecycle, artifact: {digest,
//!   location}, drain_seconds, settings, health?: {status, message,
//!   checked_at}}` (`health`: a ready revision's last probe by `host agent`)
//! - split: `{generation, entries: [{revision, weight_bps}], idempotency_key}`
//! - deployment: `{env, id, current: split|null, previous: split|null}`
//! - event: `{seq, env, revision, from, to, reason, actor, at}` (`at`: RFC 3339, UTC)
//! - environment: `{id, binding: {requirement, descriptor, pack_digest,
//!   settings, capabilities}}`
//! - status: `{env, binding, deployments: [deployment], revisions: [revision], agent_pid}`
//! - audit: `{intact, rows, head: {seq, hash}|null, broken: {seq, problem}|null}`

use envpack_host::StateDir;

use crate::sql::{Db, params};
use envpack_model::{Artifact, Lifecycle, Revision};
use serde::Serialize;

use crate::audit;
use crate::db;
use crate::error::StoreError;
use crate::ops::agent::{self, HealthView};
use crate::store::{self, Binding, Generation};

/// One revision, with the environment and deployment it belongs to.
#[derive(Clone, Debug, Serialize)]
pub struct RevisionView {
    pub env: String,
    pub id: String,
    pub deployment: String,
    pub sequence: u64,
    pub lifecycle: Lifecycle,
    pub artifact: Artifact,
    pub drain_seconds: u32,
    pub settings: std::collections::BTreeMap<String, String>,
    /// A ready revision's last probe by `host agent`, if it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub health: Option<HealthView>,
}

impl RevisionView {
    pub fn new(env: &str, r: Revision) -> Self {
        RevisionView {
            env: env.to_string(),
            id: r.id,
            deployment: r.deployment,
            sequence: r.sequence,
            lifecycle: r.lifecycle,
            artifact: r.artifact,
            drain_seconds: r.drain_seconds,
            settings: r.settings,
            health: None,
        }
    }
}

/// One deployment's current and previous split.
#[derive(Clone, Debug, Serialize)]
pub struct DeploymentView {
    pub env: String,
    pub id: String,
    pub current: Option<Generation>,
    pub previous: Option<Generation>,
    /// The last generation before its traffic was withdrawn (a retirement
    /// under way, or one undone by a later split), if it ever was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub withdrawn_after: Option<i64>,
}

/// One lifecycle event.
#[derive(Clone, Debug, Serialize)]
pub struct EventView {
    pub seq: i64,
    pub env: String,
    pub revision: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub actor: String,
    /// RFC 3339, UTC.
    pub at: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct EnvironmentView {
    pub id: String,
    pub binding: Binding,
}

#[derive(Clone, Debug, Serialize)]
pub struct StatusView {
    pub env: String,
    pub binding: Binding,
    pub deployments: Vec<DeploymentView>,
    pub revisions: Vec<RevisionView>,
    /// The pid of the `host agent` watching this state directory, if one runs.
    pub agent_pid: Option<u32>,
}

/// The last audit row: what an operator records elsewhere to detect a
/// truncated log later (`host audit verify --head SEQ:HASH`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct AuditView {
    pub intact: bool,
    pub rows: usize,
    pub head: Option<AuditHead>,
    pub broken: Option<audit::Broken>,
}

/// One row of the audit log, as `audit show` prints it.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEntryView {
    pub seq: i64,
    /// RFC 3339, UTC.
    pub at: String,
    pub actor: String,
    pub command: String,
    /// The command's arguments as recorded (a JSON object).
    pub arguments: serde_json::Value,
    /// `ok`, or what refused or failed it.
    pub outcome: String,
    pub hash: String,
}

/// Formats epoch seconds as RFC 3339 in UTC.
pub fn rfc3339(at: i64) -> String {
    jiff::Timestamp::from_second(at).map_or_else(|_| at.to_string(), |t| t.to_string())
}

/// Serde helpers: epoch seconds kept as such in the database, written as
/// RFC 3339 (UTC) in every JSON view (`#[serde(serialize_with = ...)]`).
pub(crate) mod json_time {
    pub fn at<S: serde::Serializer>(at: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*at))
    }

    pub fn maybe<S: serde::Serializer>(at: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
        match at {
            Some(at) => s.serialize_str(&super::rfc3339(*at)),
            None => s.serialize_none(),
        }
    }
}

/// A rollout and its steps, as `rollout status` shows them.
#[derive(Clone, Debug, Serialize)]
pub struct RolloutView {
    #[serde(flatten)]
    pub rollout: crate::rollout::Rollout,
    pub steps: Vec<crate::rollout::Step>,
    /// The pid of the process driving it now: `null` for a running rollout
    /// means its driver died (`rollout resume` or `host agent` goes on).
    pub driver_pid: Option<u32>,
    /// The machine that process runs on (with records shared by several).
    pub driver_machine: Option<String>,
    /// The machine that alone may drive it, when that is not this one (an
    /// environment whose processes run there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drive_on: Option<String>,
}

/// A read-only view of `state.db`.
pub struct Reader {
    conn: Db,
    state_dir: StateDir,
    /// Whether this connection listens for committed changes yet.
    listening: std::sync::atomic::AtomicBool,
}

impl Reader {
    /// Opens the database read-only; a missing or older one is created or
    /// migrated first (the only write a reader ever causes).
    pub fn open(state_dir: &StateDir) -> Result<Self, StoreError> {
        Ok(Reader {
            conn: db::Location::of(state_dir).open_read_only()?,
            state_dir: state_dir.clone(),
            listening: Default::default(),
        })
    }

    pub fn environments(&self) -> Result<Vec<EnvironmentView>, StoreError> {
        store::list_envs(&self.conn)?
            .into_iter()
            .map(|id| {
                let binding = store::binding(&self.conn, &id)?;
                Ok(EnvironmentView { id, binding })
            })
            .collect()
    }

    pub fn revisions(&self, env: &str, include_archived: bool) -> Result<Vec<RevisionView>, StoreError> {
        store::require_env(&self.conn, env)?;
        let mut health: std::collections::HashMap<String, HealthView> =
            agent::health_of(&self.conn, env)?.into_iter().collect();
        Ok(store::revisions(&self.conn, env, include_archived)?
            .into_iter()
            .map(|r| {
                let mut view = RevisionView::new(env, r);
                view.health = health.remove(&view.id);
                view
            })
            .collect())
    }

    pub fn revision(&self, env: &str, id: &str) -> Result<RevisionView, StoreError> {
        store::require_env(&self.conn, env)?;
        let mut view = RevisionView::new(env, store::revision(&self.conn, env, id)?);
        view.health = agent::health_of(&self.conn, env)?
            .into_iter()
            .find_map(|(revision, health)| (revision == id).then_some(health));
        Ok(view)
    }

    pub fn deployments(&self, env: &str) -> Result<Vec<DeploymentView>, StoreError> {
        store::require_env(&self.conn, env)?;
        store::deployments(&self.conn, env)?
            .into_iter()
            .map(|id| {
                let mut generations = store::generations(&self.conn, env, &id, 2)?.into_iter();
                Ok(DeploymentView {
                    env: env.to_string(),
                    current: generations.next(),
                    previous: generations.next(),
                    withdrawn_after: store::split_floor(&self.conn, env, &id)?,
                    id,
                })
            })
            .collect()
    }

    pub fn status(&self, env: &str) -> Result<StatusView, StoreError> {
        let binding = store::binding(&self.conn, env)?;
        Ok(StatusView {
            env: env.to_string(),
            binding,
            deployments: self.deployments(env)?,
            revisions: self.revisions(env, false)?,
            agent_pid: agent::running(&self.state_dir),
        })
    }

    /// The environment's rollouts (one deployment's, if given) with their
    /// steps: every unfinished one and the last of each deployment.
    pub fn rollouts(&self, env: &str, deployment: Option<&str>) -> Result<Vec<RolloutView>, StoreError> {
        store::require_env(&self.conn, env)?;
        let drive_on = store::binding(&self.conn, env)
            .ok()
            .and_then(|b| b.other_machine(self.conn.is_postgres()).map(str::to_string));
        crate::rollout::record::latest(&self.conn, env, deployment)?
            .into_iter()
            .map(|rollout| {
                let steps = crate::rollout::record::steps(&self.conn, &rollout.id)?;
                let driver = agent::driver(&self.state_dir, &self.conn, &rollout.id);
                Ok(RolloutView {
                    rollout,
                    steps,
                    driver_pid: driver.as_ref().map(|d| d.pid),
                    driver_machine: driver.and_then(|d| d.machine),
                    drive_on: drive_on.clone(),
                })
            })
            .collect()
    }

    /// A number that changes whenever another connection commits to the
    /// database: one cheap query to learn whether anything is new.
    pub fn data_version(&self) -> Result<i64, StoreError> {
        match self.conn.as_sqlite() {
            Some(conn) => Ok(conn.pragma_query_value(None, "data_version", |r| r.get(0))?),
            // Every write transaction moves the counter (see `db::postgres`).
            None => Ok(self
                .conn
                .query_row("SELECT changes FROM envpack_schema", params![], |r| r.get(0))?),
        }
    }

    /// Waits until another process may have committed: on PostgreSQL
    /// until the notification every write transaction sends (`LISTEN
    /// envpack_changes`) arrives; SQLite has none to send, so there it
    /// sleeps `max` (then [`Self::data_version`] tells).
    pub fn wait_for_change(&self, max: std::time::Duration) -> Result<(), StoreError> {
        match self.conn.as_postgres() {
            // The first call starts listening and returns, so that the
            // caller reads once more: nothing committed before the LISTEN
            // is missed. Then a wait ends at a notification; the long
            // backstop is for a server that lost it.
            Some(client) if !self.listening.swap(true, std::sync::atomic::Ordering::Relaxed) => {
                client.batch("LISTEN envpack_changes")?;
            }
            Some(client) => {
                client.wait_notification(std::time::Duration::from_secs(30))?;
            }
            None => std::thread::sleep(max),
        }
        Ok(())
    }

    /// Events of `env` after sequence number `after`, oldest first.
    pub fn events(&self, env: &str, after: i64) -> Result<Vec<EventView>, StoreError> {
        store::require_env(&self.conn, env)?;
        Ok(store::events(&self.conn, env, after)?
            .into_iter()
            .map(|e| EventView {
                seq: e.seq,
                env: env.to_string(),
                revision: e.revision,
                from: e.from,
                to: e.to,
                reason: e.reason,
                actor: e.actor,
                at: rfc3339(e.at),
            })
            .collect())
    }

    /// The audit log's rows, oldest first: those whose arguments name
    /// environment `env` if given, the last `last` of them if given. Rows
    /// are shown as stored; `audit verify` says whether they are intact.
    pub fn audit_entries(&self, env: Option<&str>, last: Option<usize>) -> Result<Vec<AuditEntryView>, StoreError> {
        let mut entries: Vec<AuditEntryView> = audit::rows(&self.conn)?
            .into_iter()
            .map(|row| AuditEntryView {
                seq: row.seq,
                at: rfc3339(row.at),
                actor: row.actor,
                command: row.command,
                arguments: serde_json::from_str(&row.arguments).unwrap_or(serde_json::Value::String(row.arguments)),
                outcome: row.outcome,
                hash: row.hash,
            })
            .filter(|e| env.is_none_or(|env| e.arguments["env"] == env))
            .collect();
        if let Some(last) = last {
            let skip = entries.len().saturating_sub(last);
            entries.drain(..skip);
        }
        Ok(entries)
    }

    /// [`Self::audit`], and then the log against the heads exported to the
    /// audit sink `sink` (`--audit-sink`): a row appended or rewritten with
    /// a recomputed hash by someone who can write `state.db` is found there.
    pub fn audit_with_sink(
        &self,
        expected: Option<&AuditHead>,
        sink: &std::path::Path,
    ) -> Result<AuditView, StoreError> {
        let mut view = self.audit(expected)?;
        if view.broken.is_none() {
            let heads = audit::exported_heads(sink).map_err(StoreError::Invalid)?;
            let mut rows = audit::rows(&self.conn)?;
            // With shared records each machine exports its own commits to
            // its own sink: this sink vouches for this machine's rows, and
            // for rows naming no machine (the host always names one there).
            if self.conn.is_postgres() {
                let mine = format!(" on {}", crate::sql::machine_name());
                rows.retain(|r| r.actor.ends_with(&mine) || !r.actor.contains(" on "));
            }
            if let Some(broken) = audit::check_exported(&rows, &heads) {
                view.intact = false;
                view.broken = Some(broken);
            }
        }
        Ok(view)
    }

    /// Recomputes the audit chain; with `expected`, also checks that the
    /// row an operator recorded earlier is still there, unchanged, so that
    /// deleting the newest rows is detected too.
    pub fn audit(&self, expected: Option<&AuditHead>) -> Result<AuditView, StoreError> {
        let rows = audit::rows(&self.conn)?;
        let mut broken = audit::verify(&self.conn)?.err();
        if broken.is_none() && rows.is_empty() {
            // Every change writes an audit row: records without any mean rows were deleted.
            let records: i64 = self.conn.query_row(
                "SELECT (SELECT COUNT(*) FROM environments) + (SELECT COUNT(*) FROM lifecycle_events)",
                params![],
                |r| r.get(0),
            )?;
            if records > 0 {
                broken = Some(audit::Broken {
                    seq: 1,
                    problem: format!(
                        "is missing: the log is empty, but the store holds {records} environments and events; rows were deleted"
                    ),
                });
            }
        }
        if broken.is_none()
            && let Some(expected) = expected
        {
            let found = rows.iter().find(|r| r.seq == expected.seq);
            broken = match found {
                None => Some(audit::Broken {
                    seq: expected.seq,
                    problem: format!("is missing: the log ends at row {}; rows were deleted", rows.len()),
                }),
                Some(row) if row.hash != expected.hash => Some(audit::Broken {
                    seq: expected.seq,
                    problem: "differs from the recorded head: the log was rewritten".into(),
                }),
                Some(_) => None,
            };
        }
        Ok(AuditView {
            intact: broken.is_none(),
            rows: rows.len(),
            head: rows.last().map(|r| AuditHead {
                seq: r.seq,
                hash: r.hash.clone(),
            }),
            broken,
        })
    }
}
