//! What an operator asks of a rollout from any terminal (`promote`,
//! `abort`, `pause`, `resume`, `continue`): recorded in the rollout's rows,
//! which the driving process reads at every gate evaluation.

use crate::sql::Db;
use serde_json::json;

use super::drive::{note_on_revision, past_no_return};
use super::plan::{self, Action};
use super::record::{self, Rollout, State};
use crate::error::StoreError;
use crate::ops::{Operator, now};

/// What an operator asks of a running rollout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Intent {
    /// Skip the remaining soaks and steps to full weight.
    Promote,
    /// Back to the previous split, the new revision drained.
    Abort,
    /// Stop at the next gate evaluation, keeping the soak's remaining time.
    Pause,
    /// Go on (after a pause, or after a driver stopped on an error).
    Resume,
    /// End the current soak now, its gates' judgement so far accepted
    /// (what a `manual` gate waits for); the later steps still run.
    Continue,
}

impl Intent {
    fn command(self) -> &'static str {
        match self {
            Intent::Promote => "rollout promote",
            Intent::Abort => "rollout abort",
            Intent::Pause => "rollout pause",
            Intent::Resume => "rollout resume",
            Intent::Continue => "rollout continue",
        }
    }
}

impl Operator<'_> {
    /// Records an operator's intent for the deployment's rollout; the
    /// driving process (or the caller's own `drive_rollout`) acts on it.
    pub fn rollout_intent(&mut self, env: &str, deployment: &str, intent: Intent) -> Result<Rollout, StoreError> {
        self.on_this_machine(env)?;
        let args = json!({ "env": env, "deployment": deployment });
        let none = || StoreError::Invalid(format!("deployment {deployment} has no rollout in progress"));
        let rollout = match self
            .unfinished_rollout(env, deployment)
            .and_then(|r| r.ok_or_else(none))
        {
            Ok(rollout) => rollout,
            Err(e) => return self.failed(intent.command(), &args, e),
        };
        // Resuming a rollout that is neither paused nor stopped on a failed
        // step changes nothing: no audit row for each run of a cron job
        // that resumes it.
        if intent == Intent::Resume && rollout.state != State::Paused && rollout.stopped.is_empty() {
            return Ok(rollout);
        }
        let id = rollout.id.clone();
        let actor = self.actor.clone();
        let mut args = json!({ "env": env, "deployment": deployment, "rollout": id });
        if matches!(intent, Intent::Promote | Intent::Abort | Intent::Continue)
            && let Err(e) = self.authorize(env, intent.command(), &mut args)
        {
            return self.failed(intent.command(), &args, e);
        }
        let changed = self.commit(intent.command(), &args, |tx| {
            let r = record::get(tx, &id)?;
            apply_intent(tx, &r, intent, &actor)
        });
        match changed {
            Ok(()) => record::get(&self.conn, &id),
            Err(e) => self.failed(intent.command(), &args, e),
        }
    }
}

impl Operator<'_> {
    /// Ends the deployment's unfinished rollout where it stands
    /// (`rollout cancel`): no pack call, the traffic left as the current
    /// split, the revisions as they are; recorded with the reason. The way
    /// out of a rollout whose steps can neither go on nor go back (a
    /// rollback onto a revision its provider lost). Refused while a process
    /// drives it.
    pub fn cancel_rollout(&mut self, env: &str, deployment: &str, reason: &str) -> Result<Rollout, StoreError> {
        const COMMAND: &str = "rollout cancel";
        let mut args = json!({ "env": env, "deployment": deployment, "reason": reason });
        let checked = (|| {
            if reason.trim().is_empty() {
                return Err(StoreError::Invalid(
                    "cancelling a rollout needs a --reason: it is recorded with it".into(),
                ));
            }
            let rollout = self
                .unfinished_rollout(env, deployment)?
                .ok_or_else(|| StoreError::Invalid(format!("deployment {deployment} has no rollout in progress")))?;
            if let Some(holder) = crate::ops::agent::driver(&self.state_dir, &self.conn, &rollout.id) {
                return Err(StoreError::Invalid(format!(
                    "{holder} is driving rollout {}: let it stop (`host rollout pause {env} {deployment}` stops a running one) first",
                    rollout.id
                )));
            }
            Ok(rollout)
        })();
        let rollout = match checked.and_then(|r| self.authorize(env, COMMAND, &mut args).map(|()| r)) {
            Ok(rollout) => rollout,
            Err(e) => return self.failed(COMMAND, &args, e),
        };
        let actor = self.actor.clone();
        let why = format!("cancelled by {actor}: {}", reason.trim());
        self.commit(COMMAND, &args, |tx| {
            record::set_state(tx, &rollout.id, State::Cancelled, &why, now())?;
            note_on_revision(tx, &rollout, &format!("rollout {} {why}", rollout.id), &actor)
        })?;
        record::get(&self.conn, &rollout.id)
    }
}

fn apply_intent(tx: &Db, r: &Rollout, intent: Intent, actor: &str) -> Result<(), StoreError> {
    let refuse = |what: &str| Err(StoreError::Invalid(format!("rollout {} is {}: {what}", r.id, r.state)));
    match intent {
        Intent::Promote => {
            if r.state == State::RollingBack {
                return refuse("it cannot be promoted");
            }
            record::promote(tx, &r.id, now())?;
            record::set_state(tx, &r.id, State::Running, &format!("promoted by {actor}"), now())
        }
        Intent::Abort => {
            if r.state == State::RollingBack {
                return refuse("it is already rolling back");
            }
            if past_no_return(tx, &r.id)? {
                return refuse("it is draining the old revisions; there is nothing left to go back to");
            }
            let reason = format!("aborted by {actor}");
            record::roll_back(
                tx,
                &r.id,
                None,
                &reason,
                &plan::compensation(&r.previous, &r.revision),
                now(),
            )?;
            note_on_revision(tx, r, &format!("rollout {} rolling back: {reason}", r.id), actor)
        }
        Intent::Pause => {
            if r.state != State::Running {
                return refuse("only a running rollout can be paused");
            }
            record::set_state(tx, &r.id, State::Paused, &format!("paused by {actor}"), now())
        }
        Intent::Resume => {
            // A stop on a failed step is cleared: the agent (or this
            // command) retries the step.
            if !r.stopped.is_empty() {
                record::set_stopped(tx, &r.id, "", now())?;
            }
            match r.state {
                State::Paused => record::set_state(tx, &r.id, State::Running, &format!("resumed by {actor}"), now()),
                _ => Ok(()),
            }
        }
        Intent::Continue => {
            if r.state != State::Running {
                return refuse("only a running rollout's soak can be continued (resume a paused one)");
            }
            let soaking = record::steps(tx, &r.id)?
                .into_iter()
                .find(|s| s.state == "started" && matches!(s.action, Action::Soak { .. }));
            let Some(step) = soaking else {
                return refuse("no soak is under way to continue");
            };
            record::finish_step(tx, &r.id, step.seq, &format!("continued by {actor}"), now())
        }
    }
}
