//! The rollout's rows: one per rollout (its spec, the split it started
//! from, its state) and one per step (written before the step acts, marked
//! `done` after). A step is `pending`, `started` (acting, or interrupted:
//! run it again), `done`, `skipped` (by promote or a rollback) or `failed`
//! (the step that made the rollout roll back).

use crate::sql::{Db, OptionalExt, params};
use envpack_model::SplitEntry;
use serde::Serialize;

use super::plan::{Action, Phase, Spec};
use crate::error::StoreError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Running,
    Paused,
    RollingBack,
    Succeeded,
    RolledBack,
    /// Ended where it stood by `rollout cancel`, its traffic left as it was.
    Cancelled,
}

const STATES: [(State, &str); 6] = [
    (State::Running, "running"),
    (State::Paused, "paused"),
    (State::RollingBack, "rolling-back"),
    (State::Succeeded, "succeeded"),
    (State::RolledBack, "rolled-back"),
    (State::Cancelled, "cancelled"),
];

impl State {
    pub fn name(self) -> &'static str {
        STATES.iter().find(|(s, _)| *s == self).map_or("?", |(_, n)| n)
    }

    fn parse(text: &str) -> Option<State> {
        STATES.iter().find(|(_, n)| *n == text).map(|(s, _)| *s)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, State::Succeeded | State::RolledBack | State::Cancelled)
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Rollout {
    pub id: String,
    pub env: String,
    pub deployment: String,
    pub revision: String,
    pub spec: Spec,
    /// The split the rollout started from, restored by a rollback.
    pub previous: Vec<SplitEntry>,
    pub state: State,
    /// Why it rolled back (or was paused), when it did.
    pub reason: String,
    /// Why the last command driving it stopped short, if it did: `rollout
    /// resume` retries from there.
    pub stopped: String,
    pub actor: String,
    #[serde(serialize_with = "crate::read::json_time::at")]
    pub created_at: i64,
    #[serde(serialize_with = "crate::read::json_time::at")]
    pub updated_at: i64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Step {
    pub seq: i64,
    pub phase: Phase,
    pub action: Action,
    pub state: String,
    pub note: String,
    pub soaked_ms: u64,
    #[serde(serialize_with = "crate::read::json_time::maybe")]
    pub started_at: Option<i64>,
    #[serde(serialize_with = "crate::read::json_time::maybe")]
    pub done_at: Option<i64>,
}

fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn parse<T: for<'de> serde::Deserialize<'de>>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what} {text:?}: {e}")))
}

const COLUMNS: &str =
    "id, env_id, deployment, revision, spec, previous, state, reason, stopped, actor, created_at, updated_at";

type RawRollout = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    i64,
);

fn raw(r: &crate::sql::Row) -> Result<RawRollout, crate::sql::DbError> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
        r.get(10)?,
        r.get(11)?,
    ))
}

fn rollout(raw: RawRollout) -> Result<Rollout, StoreError> {
    let (id, env, deployment, revision, spec, previous, state, reason, stopped, actor, created_at, updated_at) = raw;
    Ok(Rollout {
        spec: parse(&spec, "rollout spec")?,
        previous: parse(&previous, "rollout's previous split")?,
        state: State::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("rollout state {state:?}")))?,
        id,
        env,
        deployment,
        revision,
        reason,
        stopped,
        actor,
        created_at,
        updated_at,
    })
}

/// Writes a new rollout and its forward steps, all `pending`. Fails (on the
/// unique index) if the deployment has an unfinished rollout.
pub fn insert(conn: &Db, r: &Rollout, steps: &[Action]) -> Result<(), StoreError> {
    conn.execute(
        &format!("INSERT INTO rollouts ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"),
        params![
            r.id,
            r.env,
            r.deployment,
            r.revision,
            json(&r.spec),
            json(&r.previous),
            r.state.name(),
            r.reason,
            r.stopped,
            r.actor,
            r.created_at,
            r.updated_at
        ],
    )?;
    append_steps(conn, &r.id, Phase::Forward, steps)
}

fn append_steps(conn: &Db, id: &str, phase: Phase, steps: &[Action]) -> Result<(), StoreError> {
    let next: i64 = conn.query_row(
        "SELECT COALESCE(MAX(seq), 0) + 1 FROM rollout_steps WHERE rollout_id = ?1",
        params![id],
        |r| r.get(0),
    )?;
    for (offset, action) in steps.iter().enumerate() {
        conn.execute(
            "INSERT INTO rollout_steps (rollout_id, seq, phase, action, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
            params![id, next + offset as i64, json(&phase).trim_matches('"'), json(action)],
        )?;
    }
    Ok(())
}

pub fn get(conn: &Db, id: &str) -> Result<Rollout, StoreError> {
    find(conn, id)?.ok_or_else(|| StoreError::Invalid(format!("no rollout {id:?}")))
}

/// The rollout `id`, if it exists.
pub fn find(conn: &Db, id: &str) -> Result<Option<Rollout>, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM rollouts WHERE id = ?1"),
        params![id],
        raw,
    )
    .optional()?
    .map(rollout)
    .transpose()
}

/// The deployment's unfinished rollout, if it has one.
pub fn unfinished(conn: &Db, env: &str, deployment: &str) -> Result<Option<Rollout>, StoreError> {
    conn.query_row(
        &format!(
            "SELECT {COLUMNS} FROM rollouts WHERE env_id = ?1 AND deployment = ?2 AND state IN ('running', 'paused', 'rolling-back')"
        ),
        params![env, deployment],
        raw,
    )
    .optional()?
    .map(rollout)
    .transpose()
}

/// The environment's rollouts (of one deployment if given), newest first:
/// every unfinished one and the last finished one per deployment.
/// Every rollout a driver should be moving (not paused, not finished),
/// across every environment.
/// Rollouts that should be moving: running or rolling back, and not stopped
/// on a failed step (those wait for `rollout resume`, which clears the stop).
pub fn driving_ids(conn: &Db) -> Result<Vec<String>, StoreError> {
    Ok(conn.query_map(
        "SELECT id FROM rollouts WHERE state IN ('running', 'rolling-back') AND stopped = '' ORDER BY id",
        params![],
        |r| r.get::<String>(0),
    )?)
}

pub fn latest(conn: &Db, env: &str, deployment: Option<&str>) -> Result<Vec<Rollout>, StoreError> {
    let rows = conn.query_map(
        &format!(
            "SELECT {COLUMNS} FROM rollouts r WHERE env_id = ?1 AND (CAST(?2 AS TEXT) IS NULL OR deployment = ?2)
         AND (state IN ('running', 'paused', 'rolling-back')
              OR id = (SELECT MAX(id) FROM rollouts o WHERE o.env_id = r.env_id AND o.deployment = r.deployment))
         ORDER BY id DESC"
        ),
        params![env, deployment],
        raw,
    )?;
    rows.into_iter().map(rollout).collect()
}

pub fn steps(conn: &Db, id: &str) -> Result<Vec<Step>, StoreError> {
    let rows = conn.query_map(
        "SELECT seq, phase, action, state, note, soaked_ms, started_at, done_at FROM rollout_steps WHERE rollout_id = ?1 ORDER BY seq",
        params![id],
        |r| {
        Ok((
            r.get::<i64>(0)?,
            r.get::<String>(1)?,
            r.get::<String>(2)?,
            r.get::<String>(3)?,
            r.get::<String>(4)?,
            r.get::<i64>(5)?,
            r.get::<Option<i64>>(6)?,
            r.get::<Option<i64>>(7)?,
        ))
        },
    )?;
    rows.into_iter()
        .map(|row| {
            let (seq, phase, action, state, note, soaked_ms, started_at, done_at) = row;
            Ok(Step {
                seq,
                phase: parse(&format!("\"{phase}\""), "rollout step phase")?,
                action: parse(&action, "rollout step")?,
                state,
                note,
                soaked_ms: u64::try_from(soaked_ms).unwrap_or(0),
                started_at,
                done_at,
            })
        })
        .collect()
}

/// The step to run next: the first `started` (interrupted) or `pending` one.
pub fn next_step(conn: &Db, id: &str) -> Result<Option<Step>, StoreError> {
    Ok(steps(conn, id)?
        .into_iter()
        .find(|s| s.state == "started" || s.state == "pending"))
}

pub fn step_state(conn: &Db, id: &str, seq: i64) -> Result<String, StoreError> {
    Ok(conn.query_row(
        "SELECT state FROM rollout_steps WHERE rollout_id = ?1 AND seq = ?2",
        params![id, seq],
        |r| r.get(0),
    )?)
}

/// Marks the step `started` (kept as it was if it is already).
pub fn start_step(conn: &Db, id: &str, seq: i64, at: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE rollout_steps SET state = 'started', started_at = COALESCE(started_at, ?3)
         WHERE rollout_id = ?1 AND seq = ?2 AND state IN ('pending', 'started')",
        params![id, seq, at],
    )?;
    Ok(())
}

/// Marks a started step `done` with a note; a step skipped meanwhile stays skipped.
pub fn finish_step(conn: &Db, id: &str, seq: i64, note: &str, at: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE rollout_steps SET state = 'done', note = ?3, done_at = ?4 WHERE rollout_id = ?1 AND seq = ?2 AND state = 'started'",
        params![id, seq, note, at],
    )?;
    Ok(())
}

/// How much of a soak has passed, kept so that a restart soaks only the rest.
pub fn soaked(conn: &Db, id: &str, seq: i64, ms: u64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE rollout_steps SET soaked_ms = ?3 WHERE rollout_id = ?1 AND seq = ?2",
        params![id, seq, i64::try_from(ms).unwrap_or(i64::MAX)],
    )?;
    Ok(())
}

pub fn set_state(conn: &Db, id: &str, state: State, reason: &str, at: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE rollouts SET state = ?2, reason = ?3, updated_at = ?4 WHERE id = ?1",
        params![id, state.name(), reason, at],
    )?;
    Ok(())
}

pub fn set_stopped(conn: &Db, id: &str, stopped: &str, at: i64) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE rollouts SET stopped = ?2, updated_at = ?3 WHERE id = ?1",
        params![id, stopped, at],
    )?;
    Ok(())
}

/// Turns the rollout around: `failed` (the step that found the problem, if
/// one did) marked so, every forward step not done skipped, `compensation`
/// appended, the state `rolling-back` with `reason`.
pub fn roll_back(
    conn: &Db,
    id: &str,
    failed: Option<i64>,
    reason: &str,
    compensation: &[Action],
    at: i64,
) -> Result<(), StoreError> {
    if let Some(seq) = failed {
        conn.execute(
            "UPDATE rollout_steps SET state = 'failed', note = ?3, done_at = ?4 WHERE rollout_id = ?1 AND seq = ?2",
            params![id, seq, reason, at],
        )?;
    }
    conn.execute(
        "UPDATE rollout_steps SET state = 'skipped', done_at = ?2 WHERE rollout_id = ?1 AND phase = 'forward' AND state IN ('pending', 'started')",
        params![id, at],
    )?;
    append_steps(conn, id, Phase::Compensate, compensation)?;
    set_state(conn, id, State::RollingBack, reason, at)
}

/// Skips what stands between the rollout and full weight: every soak not
/// done (the one soaking now too) and every split but the last.
pub fn promote(conn: &Db, id: &str, at: i64) -> Result<usize, StoreError> {
    let steps = steps(conn, id)?;
    let last_split = steps
        .iter()
        .filter(|s| matches!(s.action, Action::Split { .. }) && s.phase == Phase::Forward)
        .map(|s| s.seq)
        .max();
    let mut skipped = 0;
    for step in &steps {
        let open = step.state == "pending" || (step.state == "started" && matches!(step.action, Action::Soak { .. }));
        let passable = match step.action {
            Action::Soak { .. } => true,
            Action::Split { .. } => Some(step.seq) != last_split,
            _ => false,
        };
        if open && passable && step.phase == Phase::Forward {
            skipped += conn.execute(
                "UPDATE rollout_steps SET state = 'skipped', note = 'promoted', done_at = ?3 WHERE rollout_id = ?1 AND seq = ?2",
                params![id, step.seq, at],
            )?;
        }
    }
    Ok(skipped)
}
