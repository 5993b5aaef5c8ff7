//! `host rollout`: start a canary or blue-green rollout and drive it in the
//! foreground — or, when `host agent` runs for the state directory, hand it
//! to the agent and follow it (`--detach`: return at once); show it;
//! promote, abort, pause, resume or continue it from any terminal. A driver
//! that dies (a closed terminal, SIGKILL) leaves the rollout in its rows:
//! `host rollout resume` (by hand, or from cron) or the agent continues it
//! from its last completed step.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use envpack_host::StateDir;
use envpack_model::text::printable;
use envpack_operator::rollout::{GATES_HELP, Gate, Intent, Progress, Rollout, Spec, State, Step, Strategy, Tally};
use envpack_operator::{Operator, Reader, RolloutView, agent};

use crate::context::Context;
use crate::error::{CliError, exit};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Start a rollout of a revision and drive it to its end in the foreground.
    Start(StartArgs),
    /// Show rollouts: each unfinished one and each deployment's last, with their steps.
    Status {
        env: String,
        deployment: Option<String>,
        /// Keep showing it as it changes, until every rollout shown has finished.
        #[arg(long)]
        watch: bool,
        #[arg(long)]
        json: bool,
    },
    /// Skip the remaining soaks and steps: the new revision gets all traffic now.
    Promote(Target),
    /// Go back to the split the rollout started from; the new revision is drained.
    Abort(Target),
    /// Stop at the next gate evaluation; the soak keeps its remaining time.
    Pause(Target),
    /// Continue a paused rollout, or one whose driver died or stopped on an error.
    Resume(Target),
    /// End the current soak now (what a `manual` gate holds for); the later steps still run.
    Continue(Target),
    /// End the rollout where it stands, with a reason: no pack call, the traffic and the revisions
    /// left as they are. For a rollout whose steps can neither go on nor go back (a rollback onto
    /// a revision its provider lost); then set traffic, drain and retire by hand.
    Cancel {
        env: String,
        deployment: String,
        /// Why, recorded with the rollout, in the revision's events and the audit log.
        #[arg(long, value_name = "TEXT")]
        reason: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct StartArgs {
    env: String,
    deployment: String,
    /// The revision to roll out (staged or ready).
    #[arg(long, value_name = "REVISION")]
    to: String,
    /// canary (weight in steps) or blue-green (checked at 0%, switched at once).
    #[arg(long, default_value = "canary", value_parser = Strategy::parse)]
    strategy: Strategy,
    /// Canary: the new revision's weight at each step, in percent, ending at 100 (default
    /// 10,25,50,100); refused for blue-green.
    #[arg(long, value_delimiter = ',', value_name = "PERCENT,...")]
    steps: Option<Vec<u32>>,
    /// How long each soak lasts, at every weight reached (100% included), gates evaluated throughout (e.g. 30s, 5m).
    #[arg(long, default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    soak: Duration,
    /// How long to stay at 100% after the last soak, the old revisions warm and the gates on (a failure still
    /// rolls back), before draining them. Default: 5m for blue-green, 0s for canary. `--keep-old` is an alias.
    #[arg(long, alias = "keep-old", value_parser = parse_duration, value_name = "DURATION")]
    bake: Option<Duration>,
    /// How often the gates are evaluated during a soak.
    #[arg(long, default_value = "1s", value_parser = parse_duration, value_name = "DURATION")]
    interval: Duration,
    #[arg(long, value_parser = Gate::parse, value_name = "GATE", help = "A gate (repeatable)", long_help = GATES_HELP)]
    analysis: Vec<Gate>,
    /// Record the rollout and return without driving it (`rollout resume` drives it).
    #[arg(long)]
    no_drive: bool,
    /// With `host agent` running: hand the rollout over and return at once instead of following it.
    #[arg(long)]
    detach: bool,
    /// Print the rollout as JSON when the command ends.
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct Target {
    env: String,
    deployment: String,
    /// With `host agent` running: record the intent and return at once instead of following the rollout.
    #[arg(long)]
    detach: bool,
    #[arg(long)]
    json: bool,
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let parsed: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 30s, 500ms, 5m, 1h)"))?;
    Duration::try_from(parsed).map_err(|_| format!("{text:?} is negative"))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub async fn run(ctx: &mut Context, command: Command) -> Result<i32, CliError> {
    let actor = ctx.actor();
    match command {
        Command::Start(args) => {
            if args.strategy == Strategy::BlueGreen && args.steps.is_some() {
                return Err(CliError::input(
                    "--steps is for canary rollouts: blue-green checks the new revision at 0% and switches at once",
                ));
            }
            let spec = Spec {
                strategy: args.strategy,
                steps: args.steps.unwrap_or_else(|| vec![10, 25, 50, 100]),
                soak_ms: millis(args.soak),
                bake_ms: args.bake.map_or(
                    match args.strategy {
                        Strategy::BlueGreen => envpack_operator::rollout::BLUE_GREEN_BAKE_MS,
                        Strategy::Canary => 0,
                    },
                    millis,
                ),
                interval_ms: millis(args.interval),
                gates: args.analysis,
            };
            let dir = ctx.state_dir()?.clone();
            let mut operator = ctx.operator(actor)?;
            let rollout = operator
                .start_rollout(&args.env, &args.deployment, &args.to, spec)
                .await?;
            eprintln!(
                "host: rollout {} of {} to {}/{} started",
                rollout.id, rollout.revision, rollout.env, rollout.deployment
            );
            if rollout.previous.is_empty() && args.bake.is_some() {
                eprintln!(
                    "host: a first deploy has no split to bake against: its gates run before any traffic, and --bake does not apply"
                );
            }
            if args.no_drive {
                return finish(&rollout, args.json, false);
            }
            drive_or_follow(&dir, &mut operator, &rollout, args.detach, args.json).await
        }
        Command::Status {
            env,
            deployment,
            watch,
            json,
        } => status(ctx, &env, deployment.as_deref(), watch, json).await,
        Command::Promote(t) => intent(ctx, actor, t, Intent::Promote).await,
        Command::Abort(t) => intent(ctx, actor, t, Intent::Abort).await,
        Command::Pause(t) => intent(ctx, actor, t, Intent::Pause).await,
        Command::Resume(t) => intent(ctx, actor, t, Intent::Resume).await,
        Command::Continue(t) => intent(ctx, actor, t, Intent::Continue).await,
        Command::Cancel {
            env,
            deployment,
            reason,
            json,
        } => {
            let rollout = ctx
                .operator_without_runtime(actor)?
                .cancel_rollout(&env, &deployment, &reason)?;
            eprintln!(
                "host: the traffic stays as it is (`host traffic show {env}`); set it, drain and retire with the usual commands"
            );
            finish(&rollout, json, false)
        }
    }
}

/// Records the intent, then drives the rollout unless another process
/// does (or the intent is a pause).
async fn intent(ctx: &mut Context, actor: String, t: Target, intent: Intent) -> Result<i32, CliError> {
    let dir = ctx.state_dir()?.clone();
    let mut operator = ctx.operator(actor)?;
    // `resume` is safe to run from a timer: with nothing to resume it says so and exits 0.
    if intent == Intent::Resume && operator.unfinished_rollout(&t.env, &t.deployment)?.is_none() {
        eprintln!(
            "host: {}/{} has no rollout in progress; nothing to resume",
            t.env, t.deployment
        );
        return Ok(exit::OK);
    }
    let rollout = operator.rollout_intent(&t.env, &t.deployment, intent)?;
    if intent == Intent::Pause {
        eprintln!(
            "host: rollout {} paused; `host rollout resume {} {}` continues it",
            rollout.id, t.env, t.deployment
        );
        return finish(&rollout, t.json, false);
    }
    let code = drive_or_follow(&dir, &mut operator, &rollout, t.detach, t.json).await?;
    // Rolled back is what an abort asks for.
    Ok(if intent == Intent::Abort && code == exit::VERB_FAILED {
        exit::OK
    } else {
        code
    })
}

/// Drives the rollout here, in the foreground; or, when `host agent` runs,
/// leaves it to the agent and follows it (unless `detach`). Ctrl-C stops
/// this command, saying where the rollout stands and how it goes on.
async fn drive_or_follow(
    dir: &StateDir,
    operator: &mut Operator<'_>,
    rollout: &Rollout,
    detach: bool,
    json: bool,
) -> Result<i32, CliError> {
    if let Some(pid) = agent::running(dir) {
        eprintln!(
            "host: the agent (pid {pid}) drives rollout {}{}",
            rollout.id,
            if detach {
                "; `host rollout status` shows it"
            } else {
                "; following it (Ctrl-C stops following, not the rollout)"
            }
        );
        if detach {
            return finish(rollout, json, false);
        }
        return follow(dir, rollout, json).await;
    }
    let mut display = Display::new();
    let driven = tokio::select! {
        driven = operator.drive_rollout(&rollout.id, &mut display) => driven?,
        _ = tokio::signal::ctrl_c() => {
            eprintln!(
                "\nhost: interrupted: rollout {} stays where it is (its split and its steps are recorded); \
                 `host rollout resume {} {}` goes on, `host rollout abort {} {}` goes back",
                rollout.id, rollout.env, rollout.deployment, rollout.env, rollout.deployment
            );
            return Ok(exit::INTERRUPTED);
        }
    };
    match driven {
        Some(driven) => finish(&driven, json, true),
        None => {
            eprintln!(
                "host: recorded; the process driving rollout {} acts on it at its next gate evaluation",
                rollout.id
            );
            finish(rollout, json, false)
        }
    }
}

/// Prints the steps of a rollout the agent drives as they change, until it
/// finishes or pauses; the exit code as if this command had driven it.
async fn follow(dir: &StateDir, rollout: &Rollout, json: bool) -> Result<i32, CliError> {
    let reader = Reader::open(dir)?;
    let mut seen: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let mut orphaned_since: Option<Instant> = None;
    loop {
        let view = reader
            .rollouts(&rollout.env, Some(&rollout.deployment))?
            .into_iter()
            .find(|v| v.rollout.id == rollout.id)
            .ok_or_else(|| CliError::State(format!("rollout {} is gone from the state directory", rollout.id)))?;
        for step in &view.steps {
            if seen.get(&step.seq) != Some(&step.state) && step.state != "pending" {
                // A failed step's note starts with the step itself.
                let described = format!("{} {}: ", step.action.describe(), step.state);
                let note = match step.note.strip_prefix(&described) {
                    _ if step.note.is_empty() => String::new(),
                    Some(rest) => format!(": {}", printable(rest)),
                    None => format!(": {}", printable(&step.note)),
                };
                eprintln!(
                    "host: rollout {}: {} {}{note}",
                    rollout.id,
                    step.action.describe(),
                    step.state
                );
            }
            seen.insert(step.seq, step.state.clone());
        }
        let r = &view.rollout;
        if r.state.is_finished() || r.state == State::Paused {
            return finish(r, json, true);
        }
        // Its driver stopped on a failed step: nobody retries it until
        // `rollout resume` (the agent leaves stopped rollouts alone).
        if !r.stopped.is_empty() && view.driver_pid.is_none() {
            eprintln!(
                "host: rollout {} stopped at {}; `host rollout resume {} {}` retries from there",
                r.id,
                printable(&r.stopped),
                r.env,
                r.deployment
            );
            return Ok(exit::VERB_FAILED);
        }
        // Running, yet no agent and no driver for a while: it died.
        if view.driver_pid.is_none() && agent::running(dir).is_none() {
            let since = *orphaned_since.get_or_insert_with(Instant::now);
            if since.elapsed() > Duration::from_secs(5) {
                eprintln!(
                    "host: the agent stopped and nothing drives rollout {}: start the agent again or run `host rollout resume {} {}`",
                    r.id, r.env, r.deployment
                );
                return Ok(exit::UNFINISHED);
            }
        } else {
            orphaned_since = None;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = tokio::signal::ctrl_c() => {
                eprintln!(
                    "\nhost: stopped following; the agent goes on with rollout {} (`host rollout status {} {}`)",
                    r.id, r.env, r.deployment
                );
                return Ok(exit::INTERRUPTED);
            }
        }
    }
}

/// Says how the rollout stands; exit 1 if it rolled back, 7 if this
/// command `driven` it and it stopped short of its end (paused).
fn finish(rollout: &Rollout, as_json: bool, driven: bool) -> Result<i32, CliError> {
    if as_json {
        println!(
            "{}",
            serde_json::to_string_pretty(rollout).map_err(|e| CliError::State(e.to_string()))?
        );
    } else {
        let reason = if rollout.reason.is_empty() {
            String::new()
        } else {
            format!(": {}", printable(&rollout.reason))
        };
        println!(
            "rollout {} of {} to {}/{}: {}{reason}",
            rollout.id, rollout.revision, rollout.env, rollout.deployment, rollout.state
        );
    }
    Ok(match rollout.state {
        State::RolledBack => exit::VERB_FAILED,
        State::Succeeded => exit::OK,
        // Followed or driven to its end, it did not reach it.
        State::Cancelled if driven => exit::VERB_FAILED,
        State::Cancelled => exit::OK,
        _ if driven => {
            eprintln!(
                "host: rollout {} is {}, not finished: `host rollout resume {} {}` goes on",
                rollout.id, rollout.state, rollout.env, rollout.deployment
            );
            exit::UNFINISHED
        }
        _ => exit::OK,
    })
}

async fn status(
    ctx: &mut Context,
    env: &str,
    deployment: Option<&str>,
    watch: bool,
    as_json: bool,
) -> Result<i32, CliError> {
    let reader = crate::show::reader(ctx)?;
    let mut shown = String::new();
    loop {
        let rollouts = reader.rollouts(env, deployment)?;
        let text = if as_json {
            serde_json::to_string_pretty(&rollouts).map_err(|e| CliError::State(e.to_string()))?
        } else {
            render(&rollouts)
        };
        if text != shown {
            println!("{text}");
            shown = text;
        }
        if !watch || rollouts.iter().all(|r| r.rollout.state.is_finished()) {
            return Ok(exit::OK);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn render(rollouts: &[RolloutView]) -> String {
    if rollouts.is_empty() {
        return "no rollouts".into();
    }
    let mut out = String::new();
    for view in rollouts {
        let r = &view.rollout;
        out.push_str(&format!(
            "rollout {}  {} -> {}/{}  {}  {}",
            r.id,
            r.revision,
            r.env,
            r.deployment,
            r.spec.strategy.name(),
            r.state
        ));
        if !r.reason.is_empty() {
            out.push_str(&format!(": {}", printable(&r.reason)));
        }
        out.push('\n');
        if !r.stopped.is_empty() {
            out.push_str(&format!(
                "  stopped: {} (`host rollout resume` retries)\n",
                printable(&r.stopped)
            ));
        }
        if matches!(r.state, State::Running | State::RollingBack) {
            match view.driver_pid {
                Some(pid) => match &view.driver_machine {
                    Some(machine) => out.push_str(&format!("  driven by pid {pid} on {machine}\n")),
                    None => out.push_str(&format!("  driven by pid {pid}\n")),
                },
                None => out.push_str(&format!(
                    "  driven by nobody (its driver stopped, or none started: --no-drive); {}`host rollout resume {} {}` (or `host agent`) goes on\n",
                    view.drive_on.as_ref().map(|m| format!("on {m}, ")).unwrap_or_default(),
                    r.env,
                    r.deployment
                )),
            }
        }
        for step in &view.steps {
            out.push_str(&format!(
                "  {:>3} {:<8} {}",
                step.seq,
                step.state,
                step.action.describe()
            ));
            if let envpack_operator::rollout::Action::Soak { ms, .. } = step.action
                && step.state == "started"
            {
                if step.soaked_ms >= ms && r.state == State::Running {
                    out.push_str(&format!(
                        ", held by its gates (a manual gate, or a metric gate short of samples): \
                         `host rollout continue {} {}` ends it",
                        r.env, r.deployment
                    ));
                } else {
                    out.push_str(&format!(
                        ", {} left",
                        left_text(Duration::from_millis(ms.saturating_sub(step.soaked_ms)))
                    ));
                }
            }
            if !step.note.is_empty() {
                out.push_str(&format!(": {}", printable(&step.note)));
            }
            out.push('\n');
        }
    }
    out.trim_end().to_string()
}

fn left_text(left: Duration) -> String {
    let s = left.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", left.as_secs_f64())
    }
}

/// The driver's progress on stderr: on a terminal, a soak redraws one line
/// in place; otherwise plain lines, a soak's at most every 10 seconds or
/// when what the gates saw changes.
struct Display {
    terminal: bool,
    /// A soak line is on screen without its newline.
    open: bool,
    last_plain: Option<(Instant, String)>,
}

impl Display {
    fn new() -> Display {
        Display {
            terminal: std::io::stderr().is_terminal(),
            open: false,
            last_plain: None,
        }
    }

    fn line(&mut self, text: &str) {
        if self.open {
            eprintln!();
            self.open = false;
        }
        eprintln!("host: {}", printable(text));
    }
}

impl Progress for Display {
    fn step(&mut self, rollout: &Rollout, step: &Step) {
        let again = if step.state == "started" {
            " (again: it was interrupted)"
        } else {
            ""
        };
        self.line(&format!("rollout {}: {}{again}", rollout.id, step.action.describe()));
    }

    fn soak(&mut self, label: &str, left: Duration, tallies: &[Tally]) {
        let gates: Vec<String> = tallies.iter().map(Tally::summary).collect();
        let seen = if gates.is_empty() {
            "no gates".to_string()
        } else {
            gates.join("; ")
        };
        let text = format!("soak ({label}): {} left; {}", left_text(left), printable(&seen));
        if self.terminal {
            eprint!("\r\x1b[2Khost: {text}");
            let _ = std::io::stderr().flush();
            self.open = true;
            return;
        }
        let due = self
            .last_plain
            .as_ref()
            .is_none_or(|(at, gates)| at.elapsed() >= Duration::from_secs(10) || *gates != seen);
        if due {
            eprintln!("host: {text}");
            self.last_plain = Some((Instant::now(), seen));
        }
    }

    fn note(&mut self, text: &str) {
        self.line(text);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert!(parse_duration("soon").unwrap_err().contains("not a duration"));
        assert!(parse_duration("-5s").is_err());
    }
}
