//! `host agent`: one long-running process per state directory that drives
//! every rollout nobody drives (resuming interrupted ones on start) and
//! probes ready revisions on an interval, so that `status` shows live
//! health and rollouts go on after the terminal that started them closed.
//! It stops on SIGTERM or Ctrl-C; rollouts stay in their rows and go on
//! when an agent (or `host rollout resume`) drives them again.
//!
//! Each rollout is driven, and the probes run, on a thread of its own: a
//! pack call waits for its environment's lock like any command, and that
//! wait must not stop the agent's other work.

use std::collections::HashSet;
use std::time::Duration;

use envpack_host::{Runtime, StateDir};
use envpack_model::text::printable;
use envpack_operator::rollout::{Progress, Rollout, Step, Tally};
use envpack_operator::{Operator, StoreError, agent};

use crate::context::Context;
use crate::error::{CliError, exit};

/// The actor of what the agent records itself (step bookkeeping, probes).
const ACTOR: &str = "host-agent";

#[derive(clap::Args)]
pub struct Args {
    /// How often to probe every ready revision (through its pack's probe-revision).
    #[arg(long, default_value = "30s", value_parser = crate::rollout_cmd::parse_duration, value_name = "DURATION")]
    probe_interval: Duration,
    /// How often to look for rollouts nobody drives (new ones, resumed ones, ones whose driver died).
    #[arg(long, default_value = "1s", value_parser = crate::rollout_cmd::parse_duration, value_name = "DURATION")]
    scan_interval: Duration,
}

/// What finished among the agent's concurrent work.
enum Done {
    Rollout(String, Box<Result<Option<Rollout>, StoreError>>),
    Probes(Result<Vec<agent::Checked>, StoreError>),
}

pub async fn run(ctx: &mut Context, args: Args) -> Result<i32, CliError> {
    let dir = ctx.state_dir()?.clone();
    let _claimed = match agent::claim(&dir)? {
        Ok(held) => held,
        Err(pid) => {
            return Err(CliError::Input {
                message: format!("an agent already runs for {} (pid {pid})", dir.root().display()),
                hint: Some(
                    "one agent per state directory: stop that one first (e.g. systemctl stop envpack-agent)".into(),
                ),
            });
        }
    };
    if args.probe_interval.is_zero() || args.scan_interval.is_zero() {
        return Err(CliError::Input {
            message: "--probe-interval and --scan-interval must be above 0".into(),
            hint: None,
        });
    }
    let runtime = ctx.process_runtime()?;
    eprintln!(
        "host: agent (pid {}) for {}: looks for rollouts every {:?}, probes ready revisions every {:?}",
        std::process::id(),
        dir.root().display(),
        args.scan_interval,
        args.probe_interval
    );
    let (finished, mut done) = tokio::sync::mpsc::unbounded_channel::<Done>();
    let mut driving: HashSet<String> = HashSet::new();
    let mut probing = false;
    let mut scan = tokio::time::interval(args.scan_interval);
    let mut probe = tokio::time::interval(args.probe_interval);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| CliError::State(format!("cannot watch for SIGTERM: {e}")))?;
    loop {
        tokio::select! {
            _ = scan.tick() => {
                match Operator::open(&dir, ACTOR.into(), runtime).and_then(|op| op.undriven_rollouts()) {
                    Ok(ids) => {
                        for id in ids {
                            if driving.insert(id.clone()) {
                                eprintln!("host: agent: driving rollout {id}");
                                let dir = dir.clone();
                                on_thread(&finished, move || drive(dir, runtime, id))?;
                            }
                        }
                    }
                    Err(e) => eprintln!("host: agent: cannot list rollouts: {}", printable(&e.to_string())),
                }
            }
            _ = probe.tick(), if !probing => {
                probing = true;
                let dir = dir.clone();
                on_thread(&finished, move || probe_all(dir, runtime))?;
            }
            Some(done) = done.recv() => match done {
                Done::Rollout(id, result) => {
                    driving.remove(&id);
                    match *result {
                        Ok(Some(r)) => eprintln!("host: agent: rollout {id} is {}{}", r.state, reason(&r)),
                        Ok(None) => {}
                        Err(e) => eprintln!("host: agent: rollout {id} stopped: {}", printable(&e.to_string())),
                    }
                }
                Done::Probes(result) => {
                    probing = false;
                    match result {
                        Ok(checked) => {
                            for c in checked.iter().filter(|c| c.changed_from.is_some()) {
                                eprintln!(
                                    "host: agent: {}/{} is {}{}",
                                    c.env,
                                    c.revision,
                                    c.health.status,
                                    if c.health.message.is_empty() { String::new() } else { format!(": {}", printable(&c.health.message)) }
                                );
                            }
                        }
                        Err(e) => eprintln!("host: agent: probing stopped: {}", printable(&e.to_string())),
                    }
                }
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    eprintln!(
        "host: agent stopping; {} rollout(s) it drove stay in their rows and go on when an agent or `host rollout resume` drives them",
        driving.len()
    );
    Ok(exit::OK)
}

fn reason(r: &Rollout) -> String {
    if r.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", printable(&r.reason))
    }
}

/// Runs `work` on a thread of its own (with a runtime of its own), its
/// result sent to the agent's loop.
fn on_thread<F: std::future::Future<Output = Done>>(
    finished: &tokio::sync::mpsc::UnboundedSender<Done>,
    work: impl FnOnce() -> F + Send + 'static,
) -> Result<(), CliError> {
    let finished = finished.clone();
    std::thread::Builder::new()
        .name("agent-work".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
            match runtime {
                Ok(runtime) => {
                    let _ = finished.send(runtime.block_on(work()));
                }
                Err(e) => eprintln!("host: agent: cannot start a worker: {e}"),
            }
        })
        .map(|_| ())
        .map_err(|e| CliError::State(format!("cannot start a thread: {e}")))
}

async fn drive(dir: StateDir, runtime: &Runtime, id: String) -> Done {
    let result = match Operator::open(&dir, ACTOR.into(), runtime) {
        Ok(mut op) => op.drive_rollout(&id, &mut AgentLog).await,
        Err(e) => Err(e),
    };
    Done::Rollout(id, Box::new(result))
}

/// Probes every ready revision of every environment, one after another.
async fn probe_all(dir: StateDir, runtime: &Runtime) -> Done {
    let probed = async {
        let mut op = Operator::open(&dir, ACTOR.into(), runtime)?;
        let mut checked = Vec::new();
        for (env, revision) in op.ready_revisions()? {
            match op.check_health(&env, &revision).await {
                Ok(c) => checked.push(c),
                // Removed or drained meanwhile: the next round will not list it.
                Err(e) => eprintln!("host: agent: probing {env}/{revision}: {}", printable(&e.to_string())),
            }
        }
        Ok(checked)
    };
    Done::Probes(probed.await)
}

/// The agent's log of a rollout it drives: steps and notes, not soak ticks.
struct AgentLog;

impl Progress for AgentLog {
    fn step(&mut self, rollout: &Rollout, step: &Step) {
        eprintln!(
            "host: agent: rollout {} ({}/{}): {}",
            rollout.id,
            rollout.env,
            rollout.deployment,
            printable(&step.action.describe())
        );
    }

    fn soak(&mut self, _label: &str, _left: Duration, _tallies: &[Tally]) {}

    fn note(&mut self, text: &str) {
        eprintln!("host: agent: {}", printable(text));
    }
}
