//! The rollout commands on the operator: `start` writes the plan, `drive`
//! runs its steps until the rollout finishes, pauses or stops (the
//! intents an operator records for it are in `intent.rs`). A step is marked `started` before it acts and `done` after; a
//! step found `started` was interrupted and runs again (every step is
//! idempotent), a soak with only the time it had left.

use std::time::{Duration, Instant};

use crate::sql::Db;
use envpack_model::{Health, Lifecycle, Outcome, Request, validate_id};
use serde_json::json;

use super::gates::{self, Gate, Judgement, Tally};
use super::plan::{self, Action, Phase, Spec};
use super::prometheus::OnInconclusive;
use super::record::{self, Rollout, State, Step};
use crate::error::StoreError;
use crate::ops::{Operator, now};
use crate::{lock, store};

/// What a driver shows while it works; the command layer renders it.
pub trait Progress {
    /// A step begins.
    fn step(&mut self, rollout: &Rollout, step: &Step);
    /// A soak ticks: what is left of it and what each gate saw.
    fn soak(&mut self, label: &str, left: Duration, tallies: &[Tally]);
    /// Something worth a line of its own (a step's result, a rollback).
    fn note(&mut self, text: &str);
}

/// How a step ended, short of an error.
enum Acted {
    Done(String),
    /// A soak that promote or abort skipped while it ran.
    Skipped,
    /// A soak interrupted by `pause`: left `started` with its soaked time.
    Paused,
}

/// Why a step failed: a gate (the revision misbehaving) or the step's own
/// verb; either way a reason for the rollout's record.
enum Failed {
    Step(String),
    /// A lost lock (or session) is no verdict on the step: nothing is
    /// rolled back for it, the driver stops and another resumes.
    LockLost(String),
}

impl From<StoreError> for Failed {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::LockLost(message) => Failed::LockLost(message),
            other => Failed::Step(other.to_string()),
        }
    }
}

/// Runs `change` in one immediate transaction (bookkeeping: no audit row).
fn write<T>(conn: &mut Db, change: impl FnOnce(&Db) -> Result<T, StoreError>) -> Result<T, StoreError> {
    let tx = conn.transaction()?;
    let value = change(&tx)?;
    tx.commit()?;
    Ok(value)
}

/// The lock the process driving rollout `id` holds.
pub fn driver_lock_name(id: &str) -> String {
    // Not a valid environment id, so never an environment's lock.
    format!("rollout {id}")
}

impl Operator<'_> {
    /// Checks and records a rollout of `revision` to `deployment`: its
    /// forward steps written, all pending. [`Self::drive_rollout`] runs them.
    pub async fn start_rollout(
        &mut self,
        env: &str,
        deployment: &str,
        revision: &str,
        spec: Spec,
    ) -> Result<Rollout, StoreError> {
        // Refused before anything is recorded on a machine that may not run it.
        self.on_this_machine(env)?;
        let mut args = json!({ "env": env, "deployment": deployment, "revision": revision, "spec": spec });
        let authorized = self.authorize(env, "rollout start", &mut args);
        // Gates are checked against the pack and Prometheus only for a
        // command that may start the rollout.
        // The pinned pack must load here before anything is recorded (a
        // machine without it would record a rollout only to roll it back).
        let checked = match authorized {
            Ok(()) => match self.bound(env).await {
                Ok(_) => self.check_gates(env, deployment, revision, &spec).await,
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        let planned = checked.and_then(|()| self.plan_rollout(env, deployment, revision, spec));
        match planned {
            Ok((rollout, steps)) => {
                let r = rollout.clone();
                let started = self.commit("rollout start", &args, |tx| {
                    if let Some(other) = record::unfinished(tx, env, deployment)? {
                        return Err(busy(&other));
                    }
                    record::insert(tx, &r, &steps)
                });
                match started {
                    Ok(()) => Ok(rollout),
                    // Another start won the race between the plan and the commit.
                    Err(e) => self.failed("rollout start", &args, e),
                }
            }
            Err(e) => self.failed("rollout start", &args, e),
        }
    }

    /// What a gate needs that only asking can tell: a pack that says where
    /// the canary is (for `{{canary}}`), and a query Prometheus accepts
    /// (asked only of an origin the environment may reach; the plan
    /// refuses the others by name).
    async fn check_gates(
        &mut self,
        env: &str,
        deployment: &str,
        revision: &str,
        spec: &Spec,
    ) -> Result<(), StoreError> {
        let aims_at_canary = spec
            .gates
            .iter()
            .any(|g| matches!(g, Gate::Http { url, .. } if url.starts_with(gates::CANARY)));
        if aims_at_canary {
            self.require_endpoints(env).await?;
        }
        let grants = store::binding(&self.conn, env).map(|b| b.grants).unwrap_or_default();
        for gate in &spec.gates {
            if let Gate::Prometheus(metric) = gate
                && gates::reachable("Prometheus gate", &metric.url, &grants).is_ok()
                && let Some(why) = metric
                    .refused(&metric.query_for(env, deployment, revision), gates::GATE_CALL_LIMIT)
                    .await
            {
                return Err(StoreError::Invalid(why));
            }
        }
        Ok(())
    }

    fn plan_rollout(
        &self,
        env: &str,
        deployment: &str,
        revision: &str,
        spec: Spec,
    ) -> Result<(Rollout, Vec<Action>), StoreError> {
        self.require_deployment(env, deployment)?;
        validate_id("revision id", revision).map_err(|e| StoreError::Invalid(e.to_string()))?;
        spec.check().map_err(StoreError::Invalid)?;
        let binding = store::binding(&self.conn, env)?;
        let gates = spec
            .gates
            .iter()
            .cloned()
            .map(|g| g.allowed(&binding.grants))
            .collect::<Result<Vec<Gate>, String>>()
            .map_err(StoreError::Invalid)?;
        let target = store::revision(&self.conn, env, revision)?;
        if target.deployment != deployment {
            return Err(envpack_model::SplitError::ForeignRevision {
                revision: revision.to_string(),
                deployment: deployment.to_string(),
                owner: target.deployment,
            }
            .into());
        }
        if !matches!(
            target.lifecycle,
            Lifecycle::Staged | Lifecycle::Warming | Lifecycle::Ready
        ) {
            return Err(StoreError::Invalid(format!(
                "revision {revision} is {}; a rollout needs a staged or ready revision",
                target.lifecycle
            )));
        }
        // No split yet: a first deploy, checked before any traffic.
        let current = store::current_split(&self.conn, env, deployment)?
            .map(|s| s.entries)
            .unwrap_or_default();
        // The split to come back to: an archived revision left at 0 bps
        // could not be applied again, and routed nothing.
        let previous = self.replayable(env, &current);
        if !previous.is_empty() && plan::old_revisions(&previous, revision).is_empty() {
            return Err(StoreError::Invalid(format!(
                "revision {revision} already has all of {deployment}'s traffic: there is nothing to roll out"
            )));
        }
        if let Some(other) = record::unfinished(&self.conn, env, deployment)? {
            return Err(busy(&other));
        }
        let spec = Spec { gates, ..spec };
        let steps = plan::forward(&spec, &previous, revision);
        let rollout = Rollout {
            id: ulid::Ulid::new().to_string(),
            env: env.to_string(),
            deployment: deployment.to_string(),
            revision: revision.to_string(),
            spec,
            previous,
            state: State::Running,
            reason: String::new(),
            stopped: String::new(),
            actor: self.actor.clone(),
            created_at: now(),
            updated_at: now(),
        };
        Ok((rollout, steps))
    }

    /// The deployment's unfinished rollout, if it has one.
    pub fn unfinished_rollout(&self, env: &str, deployment: &str) -> Result<Option<Rollout>, StoreError> {
        self.require_deployment(env, deployment)?;
        record::unfinished(&self.conn, env, deployment)
    }

    /// Runs the rollout's steps until it finishes, pauses, or a step it
    /// cannot get past stops it (recorded; `rollout resume` retries). Returns
    /// `None` when another process is driving it.
    pub async fn drive_rollout(
        &mut self,
        id: &str,
        progress: &mut dyn Progress,
    ) -> Result<Option<Rollout>, StoreError> {
        // Another machine's environment: its steps would be refused here
        // one by one (and a refused step rolls back): refuse the whole drive.
        // Nor may a machine without the environment's pinned pack (its
        // steps would fail here and turn a healthy rollout around).
        if let Some(rollout) = record::find(&self.conn, id)? {
            self.on_this_machine(&rollout.env)?;
            self.bound(&rollout.env).await?;
        }
        let Some(_driver) = lock::try_lock_shared(&self.state_dir, &driver_lock_name(id))? else {
            return Ok(None);
        };
        write(&mut self.conn, |tx| record::set_stopped(tx, id, "", now()))?;
        loop {
            let rollout = match record::find(&self.conn, id)? {
                Some(rollout) => rollout,
                None => return Err(gone(id)),
            };
            if rollout.state.is_finished() || rollout.state == State::Paused {
                return Ok(Some(rollout));
            }
            let Some(step) = record::next_step(&self.conn, id)? else {
                self.finish_rollout(&rollout)?;
                continue;
            };
            write(&mut self.conn, |tx| record::start_step(tx, id, step.seq, now()))?;
            progress.step(&rollout, &step);
            match self.act(&rollout, &step, progress).await {
                Ok(Acted::Done(note)) => {
                    progress.note(&format!("{}: {note}", step.action.describe()));
                    write(&mut self.conn, |tx| record::finish_step(tx, id, step.seq, &note, now()))?;
                }
                Ok(Acted::Skipped | Acted::Paused) => {}
                // Its environment removed (`env remove --force`) under it.
                Err(_) if record::find(&self.conn, id)?.is_none() => return Err(gone(id)),
                Err(Failed::LockLost(reason)) => return Err(StoreError::LockLost(reason)),
                Err(Failed::Step(reason)) => self.step_failed(&rollout, &step, reason, progress)?,
            }
        }
    }

    fn finish_rollout(&mut self, rollout: &Rollout) -> Result<(), StoreError> {
        let (state, command) = match rollout.state {
            State::RollingBack => (State::RolledBack, "rollout rolled back"),
            _ => (State::Succeeded, "rollout succeeded"),
        };
        let args = json!({ "env": rollout.env, "deployment": rollout.deployment, "rollout": rollout.id,
                           "revision": rollout.revision, "reason": rollout.reason });
        self.commit(command, &args, |tx| {
            record::set_state(tx, &rollout.id, state, &rollout.reason, now())
        })
    }

    /// A forward step before the point of no return turns the rollout
    /// around; any other failure stops the driver, recorded, for `resume`.
    fn step_failed(
        &mut self,
        rollout: &Rollout,
        step: &Step,
        reason: String,
        progress: &mut dyn Progress,
    ) -> Result<(), StoreError> {
        let reversible = step.phase == Phase::Forward
            && rollout.state == State::Running
            && !past_no_return(&self.conn, &rollout.id)?;
        if !reversible {
            let stopped = format!("{}: {reason}", step.action.describe());
            write(&mut self.conn, |tx| {
                record::set_stopped(tx, &rollout.id, &stopped, now())
            })?;
            // A drain or archive the provider refuses for good is left by
            // abandoning the revision (draining, it gets no traffic again).
            let then = match &step.action {
                Action::Drain { revision } | Action::Archive { revision } => format!(
                    " (if its provider will never let go of {revision}: `host revision abandon {} {revision} --reason TEXT`, then resume)",
                    rollout.env
                ),
                // A split it cannot apply (its revision taken down meanwhile)
                // fails the same way on every resume: say how to end it.
                _ => format!(
                    " (if it cannot get past this step: `host rollout cancel {} {} --reason TEXT` ends it where it stands)",
                    rollout.env, rollout.deployment
                ),
            };
            return Err(StoreError::RolloutStopped {
                id: rollout.id.clone(),
                reason: stopped,
                then,
            });
        }
        let why = format!("{} failed: {reason}", step.action.describe());
        progress.note(&format!("rolling back: {why}"));
        let compensation = plan::compensation(&rollout.previous, &rollout.revision);
        let args =
            json!({ "env": rollout.env, "deployment": rollout.deployment, "rollout": rollout.id, "reason": why });
        let actor = self.actor.clone();
        self.commit("rollout rollback", &args, |tx| {
            record::roll_back(tx, &rollout.id, Some(step.seq), &why, &compensation, now())?;
            note_on_revision(
                tx,
                rollout,
                &format!("rollout {} rolling back: {why}", rollout.id),
                &actor,
            )
        })
    }

    async fn act(&mut self, rollout: &Rollout, step: &Step, progress: &mut dyn Progress) -> Result<Acted, Failed> {
        let env = rollout.env.as_str();
        match &step.action {
            Action::Warm { revision } => {
                if store::revision(&self.conn, env, revision)?.lifecycle == Lifecycle::Ready {
                    return Ok(Acted::Done("already ready".into()));
                }
                self.warm(env, revision).await?;
                Ok(Acted::Done("ready".into()))
            }
            Action::Split { entries } => {
                // A rollout recorded before a revision of its split was
                // archived at 0 bps still moves (and rolls back).
                let entries = &self.replayable(env, entries);
                let current = store::current_split(&self.conn, env, &rollout.deployment)?;
                if current.is_some_and(|c| envpack_model::split::same_split(&c.entries, entries)) {
                    return Ok(Acted::Done("already the split".into()));
                }
                let key = format!("rollout:{}:{}", rollout.id, step.seq);
                let applied = self
                    .apply_recorded_split("rollout step", env, &rollout.deployment, entries, Some(key))
                    .await?;
                Ok(Acted::Done(format!("generation {}", applied.generation)))
            }
            Action::Soak { ms, label } => self.soak(rollout, step, *ms, label, progress).await,
            Action::Drain { revision } => {
                let lifecycle = store::revision(&self.conn, env, revision)?.lifecycle;
                let weighted = rollout
                    .previous
                    .iter()
                    .any(|e| &e.revision == revision && e.weight_bps > 0);
                if step.phase == Phase::Compensate && weighted {
                    return Ok(Acted::Done("serves the previous split: kept".into()));
                }
                if !matches!(lifecycle, Lifecycle::Ready | Lifecycle::Draining) {
                    return Ok(Acted::Done(format!("nothing to drain: {lifecycle}")));
                }
                self.drain_as(env, revision, false).await?;
                Ok(Acted::Done("inactive".into()))
            }
            Action::Archive { revision } => {
                if store::revision(&self.conn, env, revision)?.lifecycle == Lifecycle::Archived {
                    return Ok(Acted::Done("already archived".into()));
                }
                self.archive_as(env, revision, false).await?;
                Ok(Acted::Done("archived".into()))
            }
        }
    }

    /// Waits out what is left of the soak, evaluating every gate each
    /// interval and keeping the time soaked in the step's row.
    async fn soak(
        &mut self,
        rollout: &Rollout,
        step: &Step,
        ms: u64,
        label: &str,
        progress: &mut dyn Progress,
    ) -> Result<Acted, Failed> {
        let mut tallies: Vec<Tally> = rollout.spec.gates.iter().map(Tally::new).collect();
        let mut soaked = step.soaked_ms;
        let mut last = Instant::now();
        loop {
            if record::get(&self.conn, &rollout.id)?.state == State::Paused {
                return Ok(Acted::Paused);
            }
            if record::step_state(&self.conn, &rollout.id, step.seq)? != "started" {
                return Ok(Acted::Skipped);
            }
            soaked += last.elapsed().as_millis() as u64;
            last = Instant::now();
            let time_up = soaked >= ms;
            for (gate, tally) in rollout.spec.gates.iter().zip(tallies.iter_mut()) {
                match self.evaluate(rollout, gate, tally, time_up).await? {
                    Judgement::Fine => {}
                    Judgement::Failed(failure) => return Err(Failed::Step(failure)),
                    Judgement::Inconclusive(why) => {
                        let Gate::Prometheus(metric) = gate else {
                            return Err(Failed::Step(why));
                        };
                        if metric.on_inconclusive == OnInconclusive::Rollback {
                            return Err(Failed::Step(why));
                        }
                        return self.pause_inconclusive(rollout, step, soaked.min(ms), &why, progress);
                    }
                }
            }
            write(&mut self.conn, |tx| {
                record::soaked(tx, &rollout.id, step.seq, soaked.min(ms))
            })?;
            let left = ms.saturating_sub(soaked);
            progress.soak(label, Duration::from_millis(left), &tallies);
            let held = rollout
                .spec
                .gates
                .iter()
                .zip(&tallies)
                .any(|(gate, tally)| !tally.lets_soak_end(gate));
            if left == 0 && !held {
                let seen: Vec<String> = tallies.iter().map(Tally::summary).collect();
                return Ok(Acted::Done(if seen.is_empty() {
                    "soaked".into()
                } else {
                    seen.join("; ")
                }));
            }
            let wait = if left == 0 {
                rollout.spec.interval_ms
            } else {
                left.min(rollout.spec.interval_ms)
            };
            tokio::time::sleep(Duration::from_millis(wait)).await;
        }
    }

    /// Too many inconclusive results: the rollout pauses where it is, its
    /// soak's time kept, with the reason and the way on recorded.
    fn pause_inconclusive(
        &mut self,
        rollout: &Rollout,
        step: &Step,
        soaked: u64,
        why: &str,
        progress: &mut dyn Progress,
    ) -> Result<Acted, Failed> {
        let reason = format!("{} paused: {why}", step.action.describe());
        progress.note(&format!(
            "pausing: {reason}; `host rollout resume {} {}` goes on",
            rollout.env, rollout.deployment
        ));
        let args =
            json!({ "env": rollout.env, "deployment": rollout.deployment, "rollout": rollout.id, "reason": reason });
        let actor = self.actor.clone();
        self.commit("rollout pause", &args, |tx| {
            record::soaked(tx, &rollout.id, step.seq, soaked)?;
            record::set_state(tx, &rollout.id, State::Paused, &reason, now())?;
            note_on_revision(tx, rollout, &format!("rollout {} {reason}", rollout.id), &actor)
        })?;
        Ok(Acted::Paused)
    }

    /// One evaluation of one gate. `time_up`: the soak's time has passed
    /// (a manual gate holds from there).
    async fn evaluate(
        &mut self,
        rollout: &Rollout,
        gate: &Gate,
        tally: &mut Tally,
        time_up: bool,
    ) -> Result<Judgement, Failed> {
        let failure = match gate {
            Gate::Probe { unhealthy } => {
                let answer = match self.probe(&rollout.env, &rollout.revision).await? {
                    Health::Healthy => None,
                    Health::Unhealthy(why) => Some(why),
                    Health::Unsupported => {
                        return Err(Failed::Step(
                            "probe: the pack cannot probe revisions; drop the probe gate".into(),
                        ));
                    }
                };
                tally.probe(answer, *unhealthy)
            }
            Gate::Http {
                url,
                status,
                max_error_ratio,
                requests,
            } => {
                if tally.sent >= *requests {
                    return Ok(Judgement::Fine);
                }
                let answer = match self.gate_url(rollout, url).await? {
                    Ok(url) => gates::http_once(&url, *status).await,
                    Err(why) => Err(why),
                };
                tally.http(answer, *max_error_ratio, *requests)
            }
            Gate::Command { command, args } => match gates::command_once(command, args).await {
                Ok(()) => {
                    tally.last = "exit 0".into();
                    None
                }
                Err(why) => Some(format!("command: {why}")),
            },
            Gate::Prometheus(metric) => {
                let query = metric.query_for(&rollout.env, &rollout.deployment, &rollout.revision);
                let reading = metric.read(&query, gates::GATE_CALL_LIMIT).await;
                return Ok(tally.metric(reading, metric));
            }
            Gate::Manual => {
                tally.last = if time_up {
                    format!(
                        "holding: `host rollout continue {} {}` goes on",
                        rollout.env, rollout.deployment
                    )
                } else {
                    "holds once the soak's time is up".into()
                };
                None
            }
        };
        Ok(failure.map_or(Judgement::Fine, Judgement::Failed))
    }

    /// The URL an HTTP gate requests: `url` itself, or, aimed at the canary,
    /// the canary's own address (from its pack) with `url`'s path; `Err`
    /// (an error answer) when the canary has no address now, or one the
    /// pack itself could not reach.
    async fn gate_url(&mut self, rollout: &Rollout, url: &str) -> Result<Result<String, String>, Failed> {
        let Some(path) = url.strip_prefix(gates::CANARY) else {
            return Ok(Ok(url.to_string()));
        };
        let Some(base) = self.revision_endpoint(&rollout.env, &rollout.revision).await? else {
            return Ok(Err(format!("{} has no address of its own now", rollout.revision)));
        };
        let full = format!("{}{path}", base.trim_end_matches('/'));
        let grants = store::binding(&self.conn, &rollout.env)?.grants;
        Ok(gates::pack_may_reach(&full, &grants).map(|()| full))
    }

    /// `probe-revision`, read-only.
    pub(crate) async fn probe(&mut self, env: &str, revision: &str) -> Result<Health, StoreError> {
        match self.read_only_verb(env, &Request::Probe(revision.to_string())).await? {
            (Outcome::Health { health, .. }, _) => Ok(health),
            (other, _) => Err(StoreError::Invalid(format!("probe-revision answered {other:?}"))),
        }
    }
}

/// The error of a driver whose rollout was removed with its environment.
fn gone(id: &str) -> StoreError {
    StoreError::Invalid(format!(
        "rollout {id} is gone: its environment was removed while it ran (`env remove --force`); there is nothing left to drive"
    ))
}

fn busy(other: &Rollout) -> StoreError {
    StoreError::Invalid(format!(
        "deployment {} already has rollout {} ({}, to {}); promote, abort or resume it first",
        other.deployment, other.id, other.state, other.revision
    ))
}

/// Whether a drain or archive of the forward plan has begun: from there
/// the previous split cannot come back.
pub(super) fn past_no_return(conn: &Db, id: &str) -> Result<bool, StoreError> {
    Ok(record::steps(conn, id)?.iter().any(|s| {
        s.phase == Phase::Forward && s.action.is_point_of_no_return() && s.state != "pending" && s.state != "skipped"
    }))
}

pub(super) fn note_on_revision(conn: &Db, rollout: &Rollout, reason: &str, actor: &str) -> Result<(), StoreError> {
    let lifecycle = store::revision(conn, &rollout.env, &rollout.revision)?.lifecycle;
    store::note_event(conn, &rollout.env, &rollout.revision, lifecycle, reason, actor, now())
}
