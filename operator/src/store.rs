//! Rows of the store: environments and bindings, deployments, revisions
//! (immutable but for their lifecycle, changed only through
//! [`set_lifecycle`]), lifecycle events, and split generations.

use std::collections::BTreeMap;

use crate::sql::{Db, OptionalExt, params};
use envpack_model::{
    Artifact, Capability, DeadlinePolicy, DeploymentDoc, Environment, EnvironmentDoc, Grants, Lifecycle, Revision,
    SplitEntry, TrafficSplit,
};
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use envpack_model::lifecycle;

/// An environment's binding to a pack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    pub requirement: String,
    pub descriptor: String,
    pub pack_digest: String,
    /// Key id of the key that signed the pinned pack ('' for a binding an
    /// older host made: any trusted signer, until the next bind or upgrade).
    #[serde(default)]
    pub signer: String,
    /// The most its work directory may hold, in MiB, before verbs that
    /// add to it (stage, warm, apply-traffic-split) are refused.
    #[serde(default = "default_disk_budget")]
    pub disk_budget_mib: u64,
    pub settings: BTreeMap<String, String>,
    pub capabilities: Vec<Capability>,
    /// Scopes of `process`, `probe`, `http`, `secrets`.
    #[serde(default)]
    pub grants: Grants,
    /// Per-verb deadlines and the cap on the pack's own expectations.
    #[serde(default)]
    pub deadlines: DeadlinePolicy,
    /// The keys whose holders alone may move this environment's traffic
    /// (see [`crate::authz`]); none: anyone with the state directory may.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deploy_keys: Vec<crate::authz::DeployKey>,
    /// The machine whose processes and work directory the environment's
    /// pack uses (bound with `process`): with shared records, commands that
    /// change it run there. Empty: any machine.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub machine: String,
}

impl Binding {
    /// The machine that alone may change the environment, when that is
    /// not this one: only with records `shared` by several machines (on one
    /// machine's own records a renamed host changes nothing).
    pub fn other_machine(&self, shared: bool) -> Option<&str> {
        let here = crate::sql::machine_name();
        (shared && !self.machine.is_empty() && self.machine != here).then_some(self.machine.as_str())
    }
}

/// An environment's work directory budget when none is given: 4 GiB.
pub const DEFAULT_DISK_BUDGET_MIB: u64 = 4096;

fn default_disk_budget() -> u64 {
    DEFAULT_DISK_BUDGET_MIB
}

/// One lifecycle event.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub seq: i64,
    pub revision: String,
    pub from: String,
    pub to: String,
    pub reason: String,
    pub actor: String,
    pub at: i64,
}

/// One generation of a deployment's split.
#[derive(Clone, Debug, Serialize)]
pub struct Generation {
    pub generation: i64,
    pub entries: Vec<SplitEntry>,
    pub idempotency_key: Option<String>,
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A column that does not hold what the schema says: an error naming it,
/// never a default.
#[derive(Debug, thiserror::Error)]
#[error("{what} holds {value:?}: {detail}")]
pub struct CorruptValue {
    what: &'static str,
    value: String,
    detail: String,
}

fn corrupt(column: usize, what: &'static str, value: &str, detail: impl std::fmt::Display) -> crate::sql::DbError {
    let mut value = value.to_string();
    value.truncate(80);
    crate::sql::DbError::Conversion {
        column,
        detail: Box::new(CorruptValue {
            what,
            value,
            detail: detail.to_string(),
        }),
    }
}

/// Column `column` of `row`, parsed as JSON.
fn json_column<T: for<'de> Deserialize<'de>>(
    row: &crate::sql::Row,
    column: usize,
    what: &'static str,
) -> Result<T, crate::sql::DbError> {
    let text: String = row.get(column)?;
    serde_json::from_str(&text).map_err(|e| corrupt(column, what, &text, e))
}

pub fn env_exists(conn: &Db, env: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row("SELECT 1 FROM environments WHERE id = ?1", params![env], |_| Ok(()))
        .optional()?
        .is_some())
}

pub fn require_env(conn: &Db, env: &str) -> Result<(), StoreError> {
    if env_exists(conn, env)? {
        Ok(())
    } else {
        Err(StoreError::UnknownEnv(env.to_string()))
    }
}

pub fn create_env(conn: &Db, env: &str, at: i64) -> Result<(), StoreError> {
    if env_exists(conn, env)? {
        return Err(StoreError::EnvExists(env.to_string()));
    }
    conn.execute(
        "INSERT INTO environments (id, created_at) VALUES (?1, ?2)",
        params![env, at],
    )?;
    Ok(())
}

pub fn list_envs(conn: &Db) -> Result<Vec<String>, StoreError> {
    Ok(conn.query_map("SELECT id FROM environments ORDER BY id", params![], |r| r.get(0))?)
}

pub fn remove_env(conn: &Db, env: &str) -> Result<(), StoreError> {
    require_env(conn, env)?;
    conn.execute("DELETE FROM lifecycle_events WHERE env_id = ?1", params![env])?;
    conn.execute("DELETE FROM environments WHERE id = ?1", params![env])?;
    Ok(())
}

/// Keeps a removed environment's deploy keys: re-creating it takes one.
pub fn retire_env(
    conn: &Db,
    env: &str,
    keys: &[crate::authz::DeployKey],
    actor: &str,
    at: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO retired_environments (id, deploy_keys, removed_at, actor) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET deploy_keys = ?2, removed_at = ?3, actor = ?4",
        params![env, json(&keys), at, actor],
    )?;
    Ok(())
}

/// The deploy keys of a removed environment of this id, if it had any.
pub fn retired_keys(conn: &Db, env: &str) -> Result<Vec<crate::authz::DeployKey>, StoreError> {
    let text: Option<String> = conn
        .query_row(
            "SELECT deploy_keys FROM retired_environments WHERE id = ?1",
            params![env],
            |r| r.get(0),
        )
        .optional()?;
    match text {
        Some(text) => serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("retired environment {env:?}: deploy keys: {e}"))),
        None => Ok(Vec::new()),
    }
}

pub fn forget_retired(conn: &Db, env: &str) -> Result<(), StoreError> {
    conn.execute("DELETE FROM retired_environments WHERE id = ?1", params![env])?;
    Ok(())
}

pub fn set_binding(conn: &Db, env: &str, binding: &Binding, at: i64) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO bindings (env_id, requirement, descriptor, pack_digest, settings, capabilities, bound_at, grants, deadlines, deploy_keys, signer, disk_budget_mib, machine)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT (env_id) DO UPDATE SET requirement = ?2, descriptor = ?3, pack_digest = ?4, settings = ?5, capabilities = ?6, bound_at = ?7, grants = ?8, deadlines = ?9, deploy_keys = ?10, signer = ?11, disk_budget_mib = ?12, machine = ?13",
        params![env, binding.requirement, binding.descriptor, binding.pack_digest, json(&binding.settings), json(&binding.capabilities), at, json(&binding.grants), json(&binding.deadlines), json(&binding.deploy_keys), binding.signer, binding.disk_budget_mib as i64, binding.machine],
    )?;
    Ok(())
}

/// The environment's binding: one query that also tells an unknown
/// environment from an unbound one.
pub fn binding(conn: &Db, env: &str) -> Result<Binding, StoreError> {
    conn.query_row(
        "SELECT b.requirement, b.descriptor, b.pack_digest, b.settings, b.capabilities, b.grants, b.deadlines,
                b.deploy_keys, b.signer, b.disk_budget_mib, b.machine
         FROM environments e LEFT JOIN bindings b ON b.env_id = e.id WHERE e.id = ?1",
        params![env],
        |r| {
            if r.get::<Option<String>>(0)?.is_none() {
                return Ok(None);
            }
            Ok(Some(Binding {
                requirement: r.get(0)?,
                descriptor: r.get(1)?,
                pack_digest: r.get(2)?,
                settings: json_column(r, 3, "binding settings")?,
                capabilities: json_column(r, 4, "binding capabilities")?,
                grants: json_column(r, 5, "binding grants")?,
                deadlines: json_column(r, 6, "binding deadlines")?,
                deploy_keys: json_column(r, 7, "binding deploy keys")?,
                signer: r.get(8)?,
                disk_budget_mib: u64::try_from(r.get::<i64>(9)?).unwrap_or(DEFAULT_DISK_BUDGET_MIB),
                machine: r.get(10)?,
            }))
        },
    )
    .optional()?
    .ok_or_else(|| StoreError::UnknownEnv(env.to_string()))?
    .ok_or_else(|| StoreError::Unbound(env.to_string()))
}

/// Records a deployment a revision is staged into; a retired one is
/// revived (its split starts empty, at the next generation).
pub fn ensure_deployment(conn: &Db, env: &str, deployment: &str) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO deployments (env_id, id) VALUES (?1, ?2) ON CONFLICT (env_id, id) DO UPDATE SET retired_at = NULL",
        params![env, deployment],
    )?;
    Ok(())
}

/// The environment's deployments, retired ones left out.
pub fn deployments(conn: &Db, env: &str) -> Result<Vec<String>, StoreError> {
    Ok(conn.query_map(
        "SELECT id FROM deployments WHERE env_id = ?1 AND retired_at IS NULL ORDER BY id",
        params![env],
        |r| r.get(0),
    )?)
}

/// The next sequence number of a deployment.
pub fn next_sequence(conn: &Db, env: &str, deployment: &str) -> Result<u64, StoreError> {
    let max: Option<i64> = conn.query_row(
        "SELECT MAX(sequence) FROM revisions WHERE env_id = ?1 AND deployment = ?2",
        params![env, deployment],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(max.unwrap_or(0)).unwrap_or(0) + 1)
}

pub fn insert_revision(conn: &Db, env: &str, revision: &Revision, at: i64) -> Result<(), StoreError> {
    if find_revision(conn, env, &revision.id)?.is_some() {
        return Err(StoreError::DuplicateRevision(revision.id.clone()));
    }
    conn.execute(
        "INSERT INTO revisions (env_id, id, deployment, sequence, artifact_digest, artifact_location, drain_seconds, settings, created_at, lifecycle)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            env,
            revision.id,
            revision.deployment,
            revision.sequence as i64,
            revision.artifact.digest,
            revision.artifact.location,
            revision.drain_seconds,
            json(&revision.settings),
            at,
            lifecycle::name(revision.lifecycle)
        ],
    )?;
    Ok(())
}

const REVISION_COLUMNS: &str =
    "id, deployment, sequence, artifact_digest, artifact_location, drain_seconds, settings, lifecycle";

fn revision_row(r: &crate::sql::Row) -> Result<Revision, crate::sql::DbError> {
    Ok(Revision {
        id: r.get(0)?,
        deployment: r.get(1)?,
        sequence: {
            let sequence: i64 = r.get(2)?;
            u64::try_from(sequence).map_err(|e| corrupt(2, "revision sequence", &sequence.to_string(), e))?
        },
        artifact: Artifact {
            digest: r.get(3)?,
            location: r.get(4)?,
        },
        drain_seconds: r.get(5)?,
        settings: json_column(r, 6, "revision settings")?,
        lifecycle: {
            let text: String = r.get(7)?;
            lifecycle::parse(&text).ok_or_else(|| corrupt(7, "revision lifecycle", &text, "not a lifecycle state"))?
        },
    })
}

pub fn find_revision(conn: &Db, env: &str, id: &str) -> Result<Option<Revision>, StoreError> {
    let sql = format!("SELECT {REVISION_COLUMNS} FROM revisions WHERE env_id = ?1 AND id = ?2");
    Ok(conn.query_row(&sql, params![env, id], revision_row).optional()?)
}

pub fn revision(conn: &Db, env: &str, id: &str) -> Result<Revision, StoreError> {
    find_revision(conn, env, id)?.ok_or_else(|| StoreError::UnknownRevision {
        env: env.to_string(),
        revision: id.to_string(),
    })
}

/// Revisions of an environment (all, or only those not archived), by deployment and sequence.
pub fn revisions(conn: &Db, env: &str, include_archived: bool) -> Result<Vec<Revision>, StoreError> {
    let filter = if include_archived {
        ""
    } else {
        " AND lifecycle != 'archived'"
    };
    let sql =
        format!("SELECT {REVISION_COLUMNS} FROM revisions WHERE env_id = ?1{filter} ORDER BY deployment, sequence");
    Ok(conn.query_map(&sql, params![env], revision_row)?)
}

/// Moves a revision's lifecycle through the transition table and records the event.
pub fn set_lifecycle(
    conn: &Db,
    env: &str,
    id: &str,
    to: Lifecycle,
    reason: &str,
    actor: &str,
    at: i64,
) -> Result<(), StoreError> {
    let from = revision(conn, env, id)?.lifecycle;
    lifecycle::check(id, from, to)?;
    write_lifecycle(conn, env, id, from, to, reason, actor, at)
}

/// Records a revision `archived` outside the transition table (`revision
/// abandon`): from any state but archived.
pub fn abandon(conn: &Db, env: &str, id: &str, reason: &str, actor: &str, at: i64) -> Result<(), StoreError> {
    let from = revision(conn, env, id)?.lifecycle;
    if !lifecycle::abandonable(from) {
        return Err(StoreError::Invalid(format!("revision {id} is already archived")));
    }
    write_lifecycle(conn, env, id, from, Lifecycle::Archived, reason, actor, at)
}

#[allow(clippy::too_many_arguments)]
fn write_lifecycle(
    conn: &Db,
    env: &str,
    id: &str,
    from: Lifecycle,
    to: Lifecycle,
    reason: &str,
    actor: &str,
    at: i64,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE revisions SET lifecycle = ?3 WHERE env_id = ?1 AND id = ?2",
        params![env, id, lifecycle::name(to)],
    )?;
    conn.execute(
        "INSERT INTO lifecycle_events (env_id, revision_id, from_state, to_state, reason, actor, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![env, id, lifecycle::name(from), lifecycle::name(to), reason, actor, at],
    )?;
    Ok(())
}

/// An event about a revision that does not change its lifecycle (a
/// rollout turning around on it, say).
pub fn note_event(
    conn: &Db,
    env: &str,
    id: &str,
    lifecycle: Lifecycle,
    reason: &str,
    actor: &str,
    at: i64,
) -> Result<(), StoreError> {
    let state = lifecycle::name(lifecycle);
    conn.execute(
        "INSERT INTO lifecycle_events (env_id, revision_id, from_state, to_state, reason, actor, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![env, id, state, state, reason, actor, at],
    )?;
    Ok(())
}

pub fn events(conn: &Db, env: &str, after: i64) -> Result<Vec<Event>, StoreError> {
    Ok(conn.query_map("SELECT seq, revision_id, from_state, to_state, reason, actor, at FROM lifecycle_events WHERE env_id = ?1 AND seq > ?2 ORDER BY seq", params![env, after], |r| {
        Ok(Event {
            seq: r.get(0)?,
            revision: r.get(1)?,
            from: r.get(2)?,
            to: r.get(3)?,
            reason: r.get(4)?,
            actor: r.get(5)?,
            at: r.get(6)?,
        })
    })?)
}

/// A `generation, entries, idempotency_key` row.
fn generation_row(r: &crate::sql::Row) -> Result<Generation, crate::sql::DbError> {
    Ok(Generation {
        generation: r.get(0)?,
        entries: json_column(r, 1, "split entries")?,
        idempotency_key: r.get(2)?,
    })
}

/// Generations at or below a deployment's floor were withdrawn (see
/// [`withdraw_traffic`]): history, not its split.
const ABOVE_FLOOR: &str =
    "generation > COALESCE((SELECT split_floor FROM deployments WHERE env_id = ?1 AND id = ?2), 0)";

/// The number the deployment's next split gets: after every generation,
/// withdrawn ones included, so a pack never sees a generation go back.
pub fn next_generation(conn: &Db, env: &str, deployment: &str) -> Result<i64, StoreError> {
    Ok(conn.query_row(
        "SELECT COALESCE(MAX(generation), 0) + 1 FROM split_generations WHERE env_id = ?1 AND deployment = ?2",
        params![env, deployment],
        |r| r.get(0),
    )?)
}

/// Withdraws a deployment's traffic: it has no split from now on (its
/// generations stay, as history) until one is set again.
pub fn withdraw_traffic(conn: &Db, env: &str, deployment: &str) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deployments SET split_floor =
             (SELECT COALESCE(MAX(generation), 0) FROM split_generations WHERE env_id = ?1 AND deployment = ?2)
         WHERE env_id = ?1 AND id = ?2",
        params![env, deployment],
    )?;
    Ok(())
}

/// The last generation before the deployment's traffic was withdrawn, if
/// it ever was.
pub fn split_floor(conn: &Db, env: &str, deployment: &str) -> Result<Option<i64>, StoreError> {
    let floor: Option<i64> = conn
        .query_row(
            "SELECT split_floor FROM deployments WHERE env_id = ?1 AND id = ?2",
            params![env, deployment],
            |r| r.get(0),
        )
        .optional()?;
    Ok(floor.filter(|f| *f > 0))
}

/// When the deployment was retired, if it is retired now.
pub fn retired_at(conn: &Db, env: &str, deployment: &str) -> Result<Option<i64>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT retired_at FROM deployments WHERE env_id = ?1 AND id = ?2",
            params![env, deployment],
            |r| r.get::<Option<i64>>(0),
        )
        .optional()?
        .flatten())
}

/// Retires a deployment whose revisions are all archived and whose
/// traffic was withdrawn: it is no longer listed, its history is kept.
pub fn retire_deployment(conn: &Db, env: &str, deployment: &str, at: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE deployments SET retired_at = ?3 WHERE env_id = ?1 AND id = ?2",
        params![env, deployment, at],
    )?;
    Ok(())
}

/// The last `count` generations of a deployment's split since its traffic
/// was last withdrawn, newest first.
pub fn generations(conn: &Db, env: &str, deployment: &str, count: i64) -> Result<Vec<Generation>, StoreError> {
    Ok(conn.query_map(&format!(
        "SELECT generation, entries, idempotency_key FROM split_generations WHERE env_id = ?1 AND deployment = ?2 AND {ABOVE_FLOOR} ORDER BY generation DESC LIMIT ?3",
    ), params![env, deployment, count], generation_row)?)
}

/// Generation `generation` of a deployment's split, if it was recorded.
pub fn generation(conn: &Db, env: &str, deployment: &str, generation: i64) -> Result<Option<Generation>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT generation, entries, idempotency_key FROM split_generations WHERE env_id = ?1 AND deployment = ?2 AND generation = ?3",
            params![env, deployment, generation],
            generation_row,
        )
        .optional()?)
}

pub fn current_split(conn: &Db, env: &str, deployment: &str) -> Result<Option<Generation>, StoreError> {
    Ok(generations(conn, env, deployment, 1)?.into_iter().next())
}

/// The generation an idempotency key was used for since the deployment's
/// traffic was last withdrawn, if any.
pub fn generation_by_key(conn: &Db, env: &str, deployment: &str, key: &str) -> Result<Option<Generation>, StoreError> {
    Ok(conn
        .query_row(
            &format!("SELECT generation, entries, idempotency_key FROM split_generations WHERE env_id = ?1 AND deployment = ?2 AND idempotency_key = ?3 AND {ABOVE_FLOOR}"),
            params![env, deployment, key],
            generation_row,
        )
        .optional()?)
}

pub fn insert_generation(
    conn: &Db,
    env: &str,
    deployment: &str,
    entries: &[SplitEntry],
    key: Option<&str>,
    actor: &str,
    at: i64,
) -> Result<i64, StoreError> {
    let generation = next_generation(conn, env, deployment)?;
    conn.execute(
        "INSERT INTO split_generations (env_id, deployment, generation, entries, idempotency_key, actor, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![env, deployment, generation, json(&entries), key, actor, at],
    )?;
    Ok(generation)
}

/// The splits that give `revision` weight, as `deployment gen N: W bps`.
pub fn weight_holders(conn: &Db, env: &str, revision: &Revision) -> Result<Vec<String>, StoreError> {
    let Some(current) = current_split(conn, env, &revision.deployment)? else {
        return Ok(Vec::new());
    };
    Ok(current
        .entries
        .iter()
        .filter(|e| e.revision == revision.id && e.weight_bps > 0)
        .map(|e| {
            format!(
                "{} generation {}: {} bps",
                revision.deployment, current.generation, e.weight_bps
            )
        })
        .collect())
}

/// The environment as packs see it: binding settings and capabilities,
/// current splits, and the revisions a call can need (every revision not
/// archived, every revision a split names, and `extra`), so that loading
/// it does not grow with archived history.
pub fn load_environment(
    conn: &Db,
    env: &str,
    binding: &Binding,
    extra: &[Revision],
    split_override: Option<(&str, &[SplitEntry])>,
) -> Result<Environment, StoreError> {
    let doc = environment_doc(conn, env, binding, extra, split_override)?;
    Environment::from_doc(doc).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn environment_doc(
    conn: &Db,
    env: &str,
    binding: &Binding,
    extra: &[Revision],
    split_override: Option<(&str, &[SplitEntry])>,
) -> Result<EnvironmentDoc, StoreError> {
    let mut by_deployment: BTreeMap<String, Vec<Revision>> = BTreeMap::new();
    let mut seen = std::collections::HashSet::new();
    for r in revisions(conn, env, false)?.into_iter().chain(extra.iter().cloned()) {
        if seen.insert(r.id.clone()) {
            by_deployment.entry(r.deployment.clone()).or_default().push(r);
        }
    }
    let mut names = deployments(conn, env)?;
    names.extend(extra.iter().map(|r| r.deployment.clone()));
    names.sort();
    names.dedup();
    let mut docs = Vec::new();
    for deployment in names {
        let split = match split_override {
            Some((target, entries)) if target == deployment => Some(Generation {
                generation: next_generation(conn, env, &deployment)?,
                entries: entries.to_vec(),
                idempotency_key: None,
            }),
            _ => current_split(conn, env, &deployment)?,
        };
        let mut revisions = by_deployment.remove(&deployment).unwrap_or_default();
        for entry in split.iter().flat_map(|s| &s.entries) {
            if seen.insert(entry.revision.clone())
                && let Some(r) = find_revision(conn, env, &entry.revision)?
            {
                revisions.push(r);
            }
        }
        docs.push(DeploymentDoc {
            id: deployment,
            split: split.map(|g| TrafficSplit {
                generation: u64::try_from(g.generation).unwrap_or(0),
                entries: g.entries,
            }),
            revisions,
        });
    }
    Ok(EnvironmentDoc {
        id: env.to_string(),
        capabilities: binding.capabilities.clone(),
        grants: binding.grants.clone(),
        settings: binding.settings.clone(),
        deployments: docs,
    })
}

#[cfg(test)]
mod machine_tests {
    use super::Binding;

    fn bound_on(machine: &str) -> Binding {
        serde_json::from_value(serde_json::json!({
            "requirement": "a.b@^1", "descriptor": "a.b@1.0.0", "pack_digest": "00",
            "settings": {}, "capabilities": [], "machine": machine,
        }))
        .unwrap()
    }

    #[test]
    fn only_shared_records_send_an_environment_to_another_machine() {
        let here = crate::sql::machine_name();
        let elsewhere = format!("{here}-not");
        assert_eq!(bound_on(&elsewhere).other_machine(true), Some(elsewhere.as_str()));
        // One machine's own records: a renamed host changes nothing.
        assert_eq!(bound_on(&elsewhere).other_machine(false), None);
        assert_eq!(bound_on(&here).other_machine(true), None);
        assert_eq!(bound_on("").other_machine(true), None);
    }
}
