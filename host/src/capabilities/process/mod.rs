//! Capability `process`: long-lived programs in the environment's work
//! directory, confined. Each spawn is checked against the environment's
//! grants (program, argument patterns, environment variables) and runs
//! confined — its own session and control group, its own uid when the host
//! is root, Landlock, rlimits, no inherited descriptors (see `spawn` and
//! `confine`) — with stdout and stderr in `logs/<id>.stdout|stderr` of the
//! work directory. Each is recorded in the environment's process table
//! (`table`), outside the work directory. TERM and HUP reach the process
//! group; KILL, an archive, and removing the environment reach the whole
//! tree through its control group (`cgroup`).

mod cgroup;
pub(crate) mod confine;
mod exit_watch;
mod spawn;
mod table;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use envpack_model::{Capability, Grants};
use wasmtime::component::{Resource, ResourceTable};

use self::cgroup::Cgroups;
use self::exit_watch::ExitWatch;
use self::spawn::SpawnScope;
use self::table::Table;
pub(crate) use self::table::info;
use crate::capabilities::CallEnv;
use crate::capabilities::Workspace;
use crate::capabilities::ledger::Ledger;
use crate::contract::bindings::EnvHandle;
use crate::contract::bindings::envpack::deployer::process::{
    ArtifactError, Host, ProcessError, ProcessInfo, ProcessState as RunState, Signal, SpawnRequest,
};

pub use self::confine::Identity;

/// Live processes one environment may have at once.
pub const MAX_LIVE: usize = 16;
/// How often `wait` looks.
const POLL: Duration = Duration::from_millis(10);

/// Current info of one process of the environment.
fn status(workspace: &Workspace, id: &str) -> Result<ProcessInfo, ProcessError> {
    let mut table = Table::open(&workspace.process_table).map_err(ProcessError::Failed)?;
    if table.refresh() {
        table.save().map_err(ProcessError::Failed)?;
    }
    table
        .find(id)
        .map(info)
        .ok_or_else(|| ProcessError::UnknownProcess(format!("this environment spawned no process {id:?}")))
}

fn send_signal(workspace: &Workspace, id: &str, signal: Signal) -> Result<(), ProcessError> {
    let current = status(workspace, id)?;
    if !matches!(current.state, RunState::Running) {
        return Ok(()); // Already gone: signalling it again changes nothing.
    }
    let number = match signal {
        Signal::Term => libc::SIGTERM,
        Signal::Kill => libc::SIGKILL,
        Signal::Hup => libc::SIGHUP,
    };
    if matches!(signal, Signal::Kill) && kill_tree(workspace, id) > 0 {
        return Ok(());
    }
    let pid = libc::pid_t::try_from(current.pid).map_err(|e| ProcessError::Failed(e.to_string()))?;
    // The whole process group: the process leads its own session.
    // SAFETY: kill(2) with a pid the table proved is ours (start time checked just above).
    let result = unsafe { libc::kill(-pid, number) };
    if result < 0 {
        let error = std::io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ESRCH) {
            return Err(ProcessError::Failed(format!("signal {id}: {error}")));
        }
    }
    Ok(())
}

fn list(workspace: &Workspace) -> Result<Vec<ProcessInfo>, String> {
    let mut table = Table::open(&workspace.process_table)?;
    if table.refresh() {
        table.save()?;
    }
    Ok(table.records.iter().map(info).collect())
}

/// Every process a workspace's table records, running or ended, by id:
/// its command.
pub fn recorded(workspace: &Workspace) -> BTreeMap<String, String> {
    list(workspace).map_or_else(
        |_| BTreeMap::new(),
        |all| all.into_iter().map(|p| (p.id, p.command)).collect(),
    )
}

/// The processes of a workspace that run now, as (id, command).
pub fn live(workspace: &Workspace) -> Vec<(String, String)> {
    list(workspace).map_or_else(
        |_| Vec::new(),
        |all| {
            all.into_iter()
                .filter(|p| matches!(p.state, RunState::Running))
                .map(|p| (p.id, p.command))
                .collect()
        },
    )
}

/// Stops every live process of a workspace (TERM, then KILL after `grace`);
/// used when an environment is removed.
pub fn stop_all(workspace: &Workspace, grace: Duration) -> Result<usize, String> {
    let live: Vec<ProcessInfo> = list(workspace)?
        .into_iter()
        .filter(|p| matches!(p.state, RunState::Running))
        .collect();
    for p in &live {
        let _ = send_signal(workspace, &p.id, Signal::Term);
    }
    let until = Instant::now() + grace;
    // Most programs end within milliseconds of TERM: look soon, then less often.
    let mut pause = Duration::from_millis(1);
    while Instant::now() < until && list(workspace)?.iter().any(|p| matches!(p.state, RunState::Running)) {
        std::thread::sleep(pause);
        pause = (pause * 2).min(POLL);
    }
    for p in &live {
        let _ = send_signal(workspace, &p.id, Signal::Kill);
    }
    // Whatever is left in the environment's groups (a daemon whose
    // parent exited) goes with them.
    if let Some(cgroups) = Cgroups::detect() {
        cgroups.workspace(&workspace.key).kill();
    }
    Ok(live.len())
}

/// Kills the whole tree of process `id` through its control group; how
/// many processes it held (0 where there are no control groups).
fn kill_tree(workspace: &Workspace, id: &str) -> usize {
    Cgroups::detect().map_or(0, |cgroups| cgroups.workspace(&workspace.key).child(id).kill())
}

/// Kills every process tree started in revision directory `dir`
/// (`revisions/<dir>`), live or not: what an archive releases. Returns how
/// many processes it killed.
pub fn stop_revision(workspace: &Workspace, dir: &str) -> Result<usize, String> {
    let mut table = Table::open(&workspace.process_table)?;
    table.refresh();
    let wanted = format!("revisions/{dir}");
    let mut killed = 0;
    for record in table
        .records
        .iter()
        .filter(|r| r.revision_dir.as_deref() == Some(wanted.as_str()))
    {
        killed += kill_tree(workspace, &record.id);
        if record.exit.is_none() {
            // Without control groups: the process group, at least.
            // SAFETY: kill(2) of a group the table proved is ours.
            unsafe { libc::kill(-(record.pid as libc::pid_t), libc::SIGKILL) };
            killed += 1;
        }
    }
    table.refresh();
    table.save()?;
    Ok(killed)
}

/// The `process` capability's part of one call: the environment's
/// workspace and what it grants (commands to spawn; origins artifacts may
/// be downloaded from).
pub struct ProcessState {
    env_id: String,
    grants: Grants,
    workspace: Option<Workspace>,
}

impl ProcessState {
    pub fn new(env: &CallEnv, workspace: Option<Workspace>) -> Self {
        let mut grants = env.grants.only(Capability::Process);
        grants.merge(env.grants.only(Capability::Http));
        ProcessState {
            env_id: env.id.clone(),
            grants,
            workspace,
        }
    }

    fn workspace(&self) -> Result<Workspace, ProcessError> {
        self.workspace
            .clone()
            .ok_or_else(|| ProcessError::Failed("this host command gives the environment no work directory".into()))
    }
}

/// What `process` is linked with: its state, the call's ledger, and the
/// resource table (where the environment `fetch-artifact` names is lent).
pub struct ProcessView<'a> {
    pub(crate) state: &'a mut ProcessState,
    pub(crate) ledger: &'a mut Ledger,
    pub(crate) table: &'a mut ResourceTable,
}

impl Host for ProcessView<'_> {
    fn spawn(&mut self, request: SpawnRequest) -> wasmtime::Result<Result<ProcessInfo, ProcessError>> {
        let detail = format!("{} {}", request.command, request.args.join(" "));
        self.ledger
            .call(Capability::Process, "process.spawn", detail.trim_end().to_string())?;
        let result = self.state.workspace().and_then(|w| {
            let scope = SpawnScope {
                env_id: &self.state.env_id,
                grants: &self.state.grants,
                workspace: &w,
            };
            spawn::spawn(&scope, &request)
        });
        if let Err(e) = &result {
            self.ledger.refused(&format!("{e:?}"));
        }
        Ok(result)
    }

    fn send_signal(&mut self, id: String, signal: Signal) -> wasmtime::Result<Result<(), ProcessError>> {
        self.ledger
            .call(Capability::Process, "process.send-signal", format!("{id} {signal:?}"))?;
        Ok(self.state.workspace().and_then(|w| send_signal(&w, &id, signal)))
    }

    async fn wait(&mut self, id: String, timeout_ms: u32) -> wasmtime::Result<Result<ProcessInfo, ProcessError>> {
        self.ledger
            .call(Capability::Process, "process.wait", format!("{id} {timeout_ms} ms"))?;
        let workspace = match self.state.workspace() {
            Ok(w) => w,
            Err(e) => return Ok(Err(e)),
        };
        // Leave the pack a little time to act on the answer before its deadline.
        let budget = Duration::from_millis(u64::from(timeout_ms)).min(self.ledger.remaining().saturating_sub(POLL * 5));
        let until = Instant::now() + budget;
        // Woken when the process ends; opened after a look that found it
        // running, and trusted only once the next look (its start time
        // checked) still does: the pid was then this process's when opened.
        let mut watch: Option<ExitWatch> = None;
        let mut opened = false;
        loop {
            let current = status(&workspace, &id);
            match &current {
                Ok(info) if matches!(info.state, RunState::Running) && Instant::now() < until => {
                    if !opened {
                        opened = true;
                        watch = ExitWatch::open(info.pid);
                        continue;
                    }
                }
                _ => return Ok(current),
            }
            let left = until.saturating_duration_since(Instant::now());
            match watch.take() {
                // Once woken, polled: a process that ended stays readable.
                Some(watch) => {
                    watch.ended_within(left).await;
                }
                None => tokio::time::sleep(POLL.min(left)).await,
            }
        }
    }

    fn status(&mut self, id: String) -> wasmtime::Result<Result<ProcessInfo, ProcessError>> {
        self.ledger.call(Capability::Process, "process.status", id.clone())?;
        Ok(self.state.workspace().and_then(|w| status(&w, &id)))
    }

    fn processes(&mut self) -> wasmtime::Result<Vec<ProcessInfo>> {
        self.ledger
            .call(Capability::Process, "process.processes", String::new())?;
        match self.state.workspace() {
            Ok(w) => list(&w).map_err(|e| wasmtime::Error::msg(format!("the process table failed: {e}"))),
            Err(_) => Ok(Vec::new()),
        }
    }

    async fn fetch_artifact(
        &mut self,
        env: Resource<EnvHandle>,
        revision: String,
    ) -> wasmtime::Result<Result<String, ArtifactError>> {
        self.ledger
            .call(Capability::Process, "process.fetch-artifact", revision.clone())?;
        let environment = self.table.get(&env)?.0.clone();
        let result = match self.state.workspace.clone() {
            Some(workspace) => {
                let left = self.ledger.remaining().saturating_sub(POLL * 5);
                crate::capabilities::artifacts::fetch(&environment, &workspace, &self.state.grants, &revision, left)
                    .await
            }
            None => Err(ArtifactError::Unavailable(
                "this host command gives the environment no work directory".into(),
            )),
        };
        if let Err(e) = &result {
            self.ledger.refused(&format!("{e:?}"));
        }
        Ok(result)
    }
}
