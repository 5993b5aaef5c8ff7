//! The process table: which processes an environment spawned, kept outside
//! its work directory (so a pack cannot add pids to it), read and written
//! under its own lock. A process is "ours" only while its pid still has the
//! start time recorded at spawn (Linux `/proc/PID/stat`), which guards
//! against pid reuse. Exit codes are known to the host command that spawned
//! the process (it holds the child); later commands see `exited(none)`.
//!
//! A record is written before the fork, and every child writes its own pid
//! to `<table>.<id>.pid` between fork and exec: a command killed before it
//! saved the pid leaves a record the next command completes from that file,
//! so no process goes untracked. Ids rise and are never reused; exited
//! records beyond the newest [`KEEP_EXITED`] are pruned.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::contract::bindings::envpack::deployer::process::{ProcessInfo, ProcessState as RunState};

/// Exited records kept in a table; older ones are pruned.
pub const KEEP_EXITED: usize = 64;

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
    /// The revision directory (`revisions/<dir>`) it was started in, if
    /// any: it dies when that revision is archived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision_dir: Option<String>,
}

/// The file's form: records, and the next id to give.
#[derive(Default, Serialize, Deserialize)]
struct Stored {
    next: u64,
    records: Vec<Record>,
}

/// Children spawned by this host process, by (table, id): their exit codes.
static CHILDREN: Mutex<BTreeMap<(PathBuf, String), Child>> = Mutex::new(BTreeMap::new());

pub fn children() -> MutexGuard<'static, BTreeMap<(PathBuf, String), Child>> {
    CHILDREN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The start time of `pid` and whether it is a zombie, from `/proc`.
pub fn proc_start(pid: u32) -> Option<(u64, bool)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let zombie = fields.first() == Some(&"Z");
    let start = fields.get(19)?.parse().ok()?;
    Some((start, zombie))
}

/// An environment's process table, locked while open.
pub struct Table {
    path: PathBuf,
    _lock: File,
    next: u64,
    pub records: Vec<Record>,
}

impl Table {
    pub fn open(path: &Path) -> Result<Table, String> {
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(path.with_extension("lock"))
            .map_err(|e| format!("process table lock: {e}"))?;
        lock.lock().map_err(|e| format!("process table lock: {e}"))?;
        let stored = match std::fs::read(path) {
            // An older host kept the records alone, as an array.
            Ok(bytes) => serde_json::from_slice::<Stored>(&bytes)
                .or_else(|_| serde_json::from_slice::<Vec<Record>>(&bytes).map(|records| Stored { next: 0, records }))
                .map_err(|e| format!("process table {}: {e}", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => return Err(format!("process table {}: {e}", path.display())),
        };
        let highest = stored
            .records
            .iter()
            .filter_map(|r| r.id.strip_prefix('p')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        Ok(Table {
            path: path.to_path_buf(),
            _lock: lock,
            next: stored.next.max(highest + 1),
            records: stored.records,
        })
    }

    pub fn save(&mut self) -> Result<(), String> {
        self.prune();
        let stored = Stored {
            next: self.next,
            records: std::mem::take(&mut self.records),
        };
        let bytes = serde_json::to_vec_pretty(&stored).map_err(|e| e.to_string());
        self.records = stored.records;
        envpack_model::files::write_atomic(&self.path, &bytes?, 0o600).map_err(|e| format!("process table: {e}"))
    }

    /// Drops exited records beyond the newest [`KEEP_EXITED`].
    fn prune(&mut self) {
        let exited = self.records.iter().filter(|r| r.exit.is_some()).count();
        let mut drop = exited.saturating_sub(KEEP_EXITED);
        self.records.retain(|r| {
            if drop > 0 && r.exit.is_some() {
                drop -= 1;
                return false;
            }
            true
        });
    }

    /// A fresh id; never one the table gave before.
    pub fn next_id(&mut self) -> String {
        let id = format!("p{}", self.next);
        self.next += 1;
        id
    }

    /// Brings every record's exit up to date; returns whether any changed.
    pub fn refresh(&mut self) -> bool {
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

    pub fn find(&self, id: &str) -> Option<&Record> {
        self.records.iter().find(|r| r.id == id)
    }
}

/// Where a child writes its own pid, from between the fork and the exec:
/// if the spawning command dies before it saves the pid, the next command
/// reads it here.
pub fn pid_file(table: &Path, id: &str) -> PathBuf {
    table.with_extension(format!("{id}.pid"))
}

/// The live process a pid file names: (pid, start time).
fn from_pid_file(path: &Path) -> Option<(u32, u64)> {
    let pid: u32 = std::fs::read_to_string(path).ok()?.trim().parse().ok()?;
    let (start, zombie) = proc_start(pid)?;
    (!zombie).then_some((pid, start))
}

/// `None` while running; `Some(code)` once exited (code if this process saw it).
pub fn observe(table: &Path, record: &Record) -> Option<Option<i32>> {
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

pub fn info(record: &Record) -> ProcessInfo {
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

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    use super::*;
    use crate::capabilities::process::confine::write_own_pid;

    fn record(id: &str) -> Record {
        Record {
            id: id.into(),
            pid: 0,
            start_ticks: 0,
            command: "sleep".into(),
            args: vec!["30".into()],
            started_at_ms: 0,
            stdout: String::new(),
            stderr: String::new(),
            exit: None,
            revision_dir: None,
        }
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
    fn ids_are_never_reused_and_exited_records_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("table.json");
        let mut table = Table::open(&path).unwrap();
        for _ in 0..(KEEP_EXITED + 10) {
            let id = table.next_id();
            let mut r = record(&id);
            r.exit = Some(Some(0));
            table.records.push(r);
        }
        table.save().unwrap();
        drop(table);
        let mut table = Table::open(&path).unwrap();
        assert_eq!(table.records.len(), KEEP_EXITED, "the oldest exited records are pruned");
        assert_eq!(table.records[0].id, "p11");
        assert_eq!(table.next_id(), format!("p{}", KEEP_EXITED + 11));
        // A table an older host wrote (a bare array) still reads.
        drop(table);
        std::fs::write(&path, serde_json::to_vec(&vec![record("p7")]).unwrap()).unwrap();
        let mut table = Table::open(&path).unwrap();
        assert_eq!(table.next_id(), "p8");
    }

    #[test]
    fn proc_start_reads_this_process() {
        let (start, zombie) = proc_start(std::process::id()).unwrap();
        assert!(start > 0);
        assert!(!zombie);
        assert!(proc_start(u32::MAX).is_none());
    }
}
