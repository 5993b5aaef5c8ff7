//! Capability `process`: long-lived processes in the environment's work
//! directory. Each is started in its own session (so it outlives the `host`
//! command, and a signal reaches its whole process group), with stdin closed,
//! stdout and stderr appended to `logs/<id>.stdout|stderr` in the work
//! directory (each capped by `RLIMIT_FSIZE`), and recorded in the
//! environment's process table — outside the work directory, so a pack
//! cannot add pids to it. A process is "ours" only while its pid still has
//! the start time recorded at spawn (Linux `/proc/PID/stat`), which guards
//! against pid reuse. Exit codes are known to the host command that spawned
//! the process (it holds the child); later commands see `exited(none)`.
//! A record is written before the fork, and every child writes its own pid
//! to `<table>.<id>.pid` between fork and exec: a command killed before it
//! saved the pid leaves a record the next command completes from that file,
//! so no process goes untracked.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use envpack_model::{Capability, Grants, WORK_DIR, is_executable};
use serde::{Deserialize, Serialize};
use wasmtime::component::{Resource, ResourceTable};

use crate::capabilities::CallEnv;
use crate::capabilities::Workspace;
use crate::capabilities::ledger::Ledger;
use crate::contract::bindings::EnvHandle;
use crate::contract::bindings::envpack::deployer::process::{
    ArtifactError, Host, ProcessError, ProcessInfo, ProcessState as RunState, Signal, SpawnRequest,
};

/// Live processes one environment may have at once.
pub const MAX_LIVE: usize = 16;
/// Largest file a spawned process may write (its logs included).
pub const MAX_OUTPUT_BYTES: u64 = 64 << 20;
/// How often `wait` looks.
const POLL: Duration = Duration::from_millis(10);

/// One process in the table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub pid: u32,
    /// Field 22 of `/proc/PID/stat` at spawn: the process's start time.
    pub start_ticks: u64,
    pub command: String,
    pub args: Vec<String>,
    pub started_at_ms: u64,
    pub stdout: String,
    pub stderr: String,
    /// Set once a host command saw it exit.
    pub exit: Option<Option<i32>>,
}

/// Children spawned by this host process, by (table, id): their exit codes.
static CHILDREN: Mutex<BTreeMap<(PathBuf, String), Child>> = Mutex::new(BTreeMap::new());

fn children() -> MutexGuard<'static, BTreeMap<(PathBuf, String), Child>> {
    CHILDREN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The start time of `pid` and whether it is a zombie, from `/proc`.
fn proc_start(pid: u32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let zombie = fields.first() == Some(&"Z");
    let start = fields.get(19)?.parse().ok()?;
    Some((start, zombie))
}

/// The environment's process table, read and written under its own lock.
struct Table {
    path: PathBuf,
    _lock: File,
    records: Vec<Record>,
}

impl Table {
    fn open(path: &Path) -> Result<Table, String> {
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.with_extension("lock"))
            .map_err(|e| format!("process table lock: {e}"))?;
        lock.lock().map_err(|e| format!("process table lock: {e}"))?;
        let records = match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| format!("process table {}: {e}", path.display()))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(format!("process table {}: {e}", path.display())),
        };
        Ok(Table {
            path: path.to_path_buf(),
            _lock: lock,
            records,
        })
    }

    fn save(&self) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(&self.records).map_err(|e| e.to_string())?;
        envpack_model::files::write_atomic(&self.path, &bytes, 0o600).map_err(|e| format!("process table: {e}"))
    }

    fn next_id(&self) -> String {
        let n = self
            .records
            .iter()
            .filter_map(|r| r.id.strip_prefix('p')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        format!("p{}", n + 1)
    }

    /// Brings every record's exit up to date; returns whether any changed.
    fn refresh(&mut self) -> bool {
        let mut changed = false;
        for record in self.records.iter_mut().filter(|r| r.pid == 0 && r.exit.is_none()) {
            // Written just before a spawn whose command died before it could
            // record the pid: the child wrote its pid itself.
            let file = pid_file(&self.path, &record.id);
            match from_pid_file(&file) {
                Some((pid, start)) => (record.pid, record.start_ticks) = (pid, start),
                None => record.exit = Some(None),
            }
            let _ = std::fs::remove_file(file);
            changed = true;
        }
        for record in &mut self.records {
            if record.exit.is_none()
                && let Some(exit) = observe(&self.path, record)
            {
                record.exit = Some(exit);
                changed = true;
            }
        }
        changed
    }

    fn find(&self, id: &str) -> Option<&Record> {
        self.records.iter().find(|r| r.id == id)
    }
}

/// Where a child writes its own pid, from between the fork and the exec:
/// if the spawning command dies before it saves the pid, the next command
/// reads it here.
fn pid_file(table: &Path, id: &str) -> PathBuf {
    table.with_extension(format!("{id}.pid"))
}

/// The live process a pid file names: (pid, start time).
fn from_pid_file(path: &Path) -> Option<(u32, u64)> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let (start, zombie) = proc_start(pid)?;
    (!zombie).then_some((pid, start))
}

/// Writes the calling process's pid to `fd`: async-signal-safe (no
/// allocation, one write), for use between fork and exec.
fn write_own_pid(fd: libc::c_int) {
    // SAFETY: getpid and write are async-signal-safe; `buf` is a local array.
    unsafe {
        let mut value = libc::getpid() as u32;
        let mut buf = [0u8; 10];
        let mut at = buf.len();
        loop {
            at -= 1;
            buf[at] = b'0' + (value % 10) as u8;
            value /= 10;
            if value == 0 {
                break;
            }
        }
        libc::write(fd, buf[at..].as_ptr().cast(), buf.len() - at);
    }
}

/// `None` while running; `Some(code)` once exited (code if this process saw it).
fn observe(table: &Path, record: &Record) -> Option<Option<i32>> {
    let key = (table.to_path_buf(), record.id.clone());
    let mut guard = children();
    if let Some(child) = guard.get_mut(&key) {
        let exit = match child.try_wait() {
            Ok(None) => return None,
            Ok(Some(status)) => Some(status.code()),
            Err(_) => Some(None),
        };
        guard.remove(&key);
        return exit;
    }
    match proc_start(record.pid) {
        Some((start, zombie)) if start == record.start_ticks && !zombie => None,
        _ => Some(None),
    }
}

fn info(record: &Record) -> ProcessInfo {
    ProcessInfo {
        id: record.id.clone(),
        pid: record.pid,
        command: record.command.clone(),
        args: record.args.clone(),
        started_at_ms: record.started_at_ms,
        state: match record.exit {
            None => RunState::Running,
            Some(code) => RunState::Exited(code),
        },
        stdout_path: record.stdout.clone(),
        stderr_path: record.stderr.clone(),
    }
}

/// The directory `relative` names inside `work_dir`, refusing anything that
/// leaves it: absolute paths, `..`, and symlinks pointing outside.
pub fn inside(work_dir: &Path, relative: &str) -> Result<PathBuf, String> {
    let path = Path::new(relative);
    if path.is_absolute()
        || path
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::Prefix(_)))
    {
        return Err(format!("{relative:?} is not a path inside the work directory"));
    }
    let root = work_dir
        .canonicalize()
        .map_err(|e| format!("the work directory: {e}"))?;
    let full = root
        .join(path)
        .canonicalize()
        .map_err(|e| format!("{relative:?}: {e}"))?;
    if !full.starts_with(&root) {
        return Err(format!("{relative:?} leaves the work directory (through a symlink)"));
    }
    Ok(full)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn spawn(workspace: &Workspace, program: &Path, request: &SpawnRequest) -> Result<ProcessInfo, ProcessError> {
    let cwd = inside(&workspace.work_dir, &request.cwd).map_err(ProcessError::BadPath)?;
    if !cwd.is_dir() {
        return Err(ProcessError::BadPath(format!("{:?} is not a directory", request.cwd)));
    }
    let mut table = Table::open(&workspace.process_table).map_err(ProcessError::Failed)?;
    table.refresh();
    let live = table.records.iter().filter(|r| r.exit.is_none()).count();
    if live >= MAX_LIVE {
        return Err(ProcessError::Limit(format!(
            "the environment already has {live} live processes (at most {MAX_LIVE})"
        )));
    }
    let id = table.next_id();
    let logs = workspace.work_dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(|e| ProcessError::Failed(format!("logs directory: {e}")))?;
    let open_log = |name: &str| {
        File::options()
            .create(true)
            .append(true)
            .open(logs.join(name))
            .map_err(|e| ProcessError::Failed(format!("log file {name}: {e}")))
    };
    let (stdout, stderr) = (format!("{id}.stdout"), format!("{id}.stderr"));
    // Recorded before it exists, without a pid: if this command dies
    // between the fork and the save below, the next one finds the child by
    // its marker instead of losing track of it.
    let mut record = Record {
        id: id.clone(),
        pid: 0,
        start_ticks: 0,
        command: request.command.clone(),
        args: request.args.clone(),
        started_at_ms: now_ms(),
        stdout: format!("logs/{stdout}"),
        stderr: format!("logs/{stderr}"),
        exit: None,
    };
    table.records.push(record.clone());
    table.save().map_err(ProcessError::Failed)?;
    let pid_path = pid_file(&workspace.process_table, &id);
    let pid_out = File::create(&pid_path).map_err(|e| ProcessError::Failed(format!("pid file: {e}")))?;
    let pid_fd = std::os::fd::AsRawFd::as_raw_fd(&pid_out);
    let mut command = Command::new(program);
    command
        .args(&request.args)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &workspace.work_dir)
        .env("ENVPACK_WORK_DIR", &workspace.work_dir)
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::from(open_log(&stdout)?))
        .stderr(Stdio::from(open_log(&stderr)?));
    // SAFETY: only async-signal-safe calls (setsid, setrlimit) between fork and exec.
    unsafe {
        command.pre_exec(move || {
            write_own_pid(pid_fd);
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let limit = libc::rlimit {
                rlim_cur: MAX_OUTPUT_BYTES,
                rlim_max: MAX_OUTPUT_BYTES,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            let _ = std::fs::remove_file(&pid_path);
            table.records.retain(|r| r.id != id);
            table.save().map_err(ProcessError::Failed)?;
            return Err(ProcessError::Failed(format!("cannot start {}: {e}", program.display())));
        }
    };
    record.pid = child.id();
    record.start_ticks = proc_start(record.pid).map_or(0, |(start, _)| start);
    children().insert((workspace.process_table.clone(), id.clone()), child);
    if let Some(slot) = table.records.iter_mut().find(|r| r.id == id) {
        *slot = record.clone();
    }
    table.save().map_err(ProcessError::Failed)?;
    drop(pid_out);
    let _ = std::fs::remove_file(&pid_path);
    Ok(info(&record))
}

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
    while Instant::now() < until && list(workspace)?.iter().any(|p| matches!(p.state, RunState::Running)) {
        std::thread::sleep(POLL);
    }
    for p in &live {
        let _ = send_signal(workspace, &p.id, Signal::Kill);
    }
    Ok(live.len())
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

    /// The program a spawn request names: a granted command, or with the
    /// [`WORK_DIR`] grant an executable file `./path` inside the work directory.
    fn program(&self, workspace: &Workspace, command: &str) -> Result<PathBuf, ProcessError> {
        if let Some(granted) = self.grants.command(command) {
            return Ok(granted.path.clone());
        }
        if let Some(relative) = command.strip_prefix("./")
            && self.grants.work_dir_allowed()
        {
            let path = inside(&workspace.work_dir, relative).map_err(ProcessError::BadPath)?;
            if !is_executable(&path) {
                return Err(ProcessError::Failed(format!("{command:?} is not an executable file")));
            }
            return Ok(path);
        }
        let hint = if command.starts_with("./") {
            format!("programs in the work directory need --allow-run {WORK_DIR}")
        } else {
            "grant it with --allow-run".to_string()
        };
        Err(ProcessError::NotAllowed(format!(
            "command {command:?} is not granted to environment {:?} ({hint})",
            self.env_id
        )))
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
            let program = self.state.program(&w, &request.command)?;
            spawn(&w, &program, &request)
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
        loop {
            let current = status(&workspace, &id);
            match &current {
                Ok(info) if matches!(info.state, RunState::Running) && Instant::now() < until => {}
                _ => return Ok(current),
            }
            tokio::time::sleep(POLL).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_work_directory() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        std::fs::create_dir_all(work.join("revisions/r1")).unwrap();
        std::os::unix::fs::symlink("/etc", work.join("out")).unwrap();
        assert!(inside(&work, "").is_ok());
        assert!(inside(&work, "revisions/r1").is_ok());
        assert!(inside(&work, "../").is_err());
        assert!(inside(&work, "revisions/../../x").is_err());
        assert!(inside(&work, "/etc").is_err());
        let escaped = inside(&work, "out").unwrap_err();
        assert!(escaped.contains("leaves the work directory"), "{escaped}");
    }

    #[test]
    fn a_spawn_recorded_without_its_pid_is_found_by_the_pid_its_child_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let table_path = dir.path().join("table.json");
        // The child writes its own pid between fork and exec, as spawn's children do.
        let out = File::create(pid_file(&table_path, "p1")).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&out);
        let mut command = Command::new("sleep");
        command.arg("30");
        // SAFETY: write_own_pid is async-signal-safe.
        unsafe {
            command.pre_exec(move || {
                write_own_pid(fd);
                Ok(())
            });
        }
        let mut child = command.spawn().unwrap();
        drop(out);
        // What a command killed between the fork and its save leaves: records without pids.
        let record = |id: &str| Record {
            id: id.into(),
            pid: 0,
            start_ticks: 0,
            command: "sleep".into(),
            args: vec!["30".into()],
            started_at_ms: 0,
            stdout: String::new(),
            stderr: String::new(),
            exit: None,
        };
        let mut table = Table::open(&table_path).unwrap();
        table.records = vec![record("p1"), record("p2")];
        assert!(table.refresh());
        assert_eq!(
            table.records[0].pid,
            child.id(),
            "p1 adopted from the pid its child wrote"
        );
        assert!(table.records[0].exit.is_none());
        assert_eq!(table.records[1].exit, Some(None), "p2 never started: exited");
        assert!(!pid_file(&table_path, "p1").exists(), "the pid file is gone once used");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn proc_start_reads_this_process() {
        let (start, zombie) = proc_start(std::process::id()).unwrap();
        assert!(start > 0);
        assert!(!zombie);
        assert!(proc_start(u32::MAX).is_none());
    }
}
