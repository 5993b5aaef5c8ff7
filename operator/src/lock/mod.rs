//! Serializes mutating commands on one environment across processes: an
//! exclusive advisory lock on `locks/<sha256 of env id>.lock` in the state
//! directory, held for the whole command (pack call included) and released
//! by the kernel if the process dies. A command that finds it held says so
//! on stderr and waits its turn. Read-only commands never take it.
//!
//! With the records on PostgreSQL the environment's lock and a rollout's
//! driver lock are the server's advisory locks instead ([`postgres`]), so
//! they hold across machines; the agent's lock stays a file (one agent per
//! machine).

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use envpack_host::StateDir;
use sha2::{Digest, Sha256};

use crate::error::StoreError;
use crate::sql::Db;

mod postgres;

/// Holds the lock until dropped.
pub struct EnvLock {
    _held: Held,
}

enum Held {
    File(#[allow(dead_code)] File),
    Postgres(#[allow(dead_code)] postgres::PgLock),
}

/// The environment `env`'s lock, waited for (saying so) if another
/// command holds it. On PostgreSQL it is held on `session` if one is
/// given (the command's own connection, never a pooled one), else on a new one.
pub fn lock_env(state_dir: &StateDir, env: &str, session: Option<crate::sql::PgClient>) -> Result<EnvLock, StoreError> {
    match state_dir.database_url() {
        Some(url) => postgres::lock(url, env, session).map(|held| EnvLock {
            _held: Held::Postgres(held),
        }),
        None => lock(&state_dir.locks(), env),
    }
}

/// The lock called `name` (a rollout's driver's), shared by every machine
/// when the records are: `None` if someone holds it.
pub fn try_lock_shared(state_dir: &StateDir, name: &str) -> Result<Option<EnvLock>, StoreError> {
    match state_dir.database_url() {
        Some(url) => Ok(postgres::try_lock(url, name)?.map(|held| EnvLock {
            _held: Held::Postgres(held),
        })),
        None => try_lock_named(&state_dir.locks(), name),
    }
}

/// The pid of the process holding the shared lock `name`, asked through
/// `db` on PostgreSQL (of whichever machine it runs on).
pub fn shared_holder(state_dir: &StateDir, db: &Db, name: &str) -> Option<LockHolder> {
    match db.is_postgres() {
        true => postgres::holder(db, name).ok().flatten().map(|h| LockHolder {
            pid: h.pid,
            machine: Some(h.machine),
        }),
        false => holder(&state_dir.locks(), name).map(|pid| LockHolder { pid, machine: None }),
    }
}

/// The process holding a lock: its pid, and its machine when the records
/// are shared by several (a pid alone would name a process of any).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockHolder {
    pub pid: u32,
    pub machine: Option<String>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.machine {
            Some(machine) => write!(f, "process {} on {machine}", self.pid),
            None => write!(f, "process {}", self.pid),
        }
    }
}

fn lock_path(dir: &Path, name: &str) -> std::path::PathBuf {
    dir.join(format!("{}.lock", hex::encode(Sha256::digest(name.as_bytes()))))
}

/// `locks/<sha256 of name>.lock`, created if missing.
fn open_lock_file(dir: &Path, name: &str) -> std::io::Result<File> {
    envpack_model::files::create_private_dir(dir)?;
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(lock_path(dir, name))
}

/// The pid of the process holding the lock called `name`, read from the
/// kernel's table of locks (`/proc/locks`) without taking it — taking it
/// to look would make a driver starting that instant think another one
/// drives. `None` when nobody holds it (or there is no such table).
pub fn holder(locks: &Path, name: &str) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(lock_path(locks, name)).ok()?.ino();
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&table, inode)
}

/// `1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF`: the pid of the
/// flock on inode `inode` (a blocked waiter's line, `->`, is not a holder).
fn holder_in(table: &str, inode: u64) -> Option<u32> {
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let file_inode = fields.get(5)?.rsplit(':').next()?.parse::<u64>().ok()?;
        (file_inode == inode).then(|| fields.get(4)?.parse().ok()).flatten()
    })
}

pub fn lock(locks: &Path, env: &str) -> Result<EnvLock, StoreError> {
    let fail = |detail: String| StoreError::Lock {
        env: env.to_string(),
        detail,
    };
    let file = open_lock_file(locks, env).map_err(|e| fail(e.to_string()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            // Another command is working on this environment: say so (who,
            // when the kernel says), then queue. Another thread of this
            // process (the agent's prober beside its driver) is no news.
            match holder(locks, env) {
                Some(pid) if pid == std::process::id() => {}
                Some(pid) => eprintln!("host: waiting for environment {env:?}: process {pid} is changing it"),
                None => eprintln!("host: waiting for environment {env:?}: another command is changing it"),
            }
            file.lock().map_err(|e| fail(e.to_string()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(fail(e.to_string())),
    }
    Ok(EnvLock {
        _held: Held::File(file),
    })
}

/// Takes the lock called `name` if no one holds it; `None` if someone does.
/// A rollout's driver holds one for as long as it drives.
pub fn try_lock_named(locks: &Path, name: &str) -> Result<Option<EnvLock>, StoreError> {
    let fail = |detail: String| StoreError::Lock {
        env: name.to_string(),
        detail,
    };
    let file = open_lock_file(locks, name).map_err(|e| fail(e.to_string()))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(EnvLock {
            _held: Held::File(file),
        })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(fail(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_of_a_lock_is_read_without_taking_it() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(holder(dir.path(), "rollout X"), None, "no lock file yet");
        let held = try_lock_named(dir.path(), "rollout X").unwrap().unwrap();
        assert_eq!(holder(dir.path(), "rollout X"), Some(std::process::id()));
        assert!(try_lock_named(dir.path(), "rollout X").unwrap().is_none());
        drop(held);
        assert_eq!(holder(dir.path(), "rollout X"), None);
        assert!(try_lock_named(dir.path(), "rollout X").unwrap().is_some());
    }

    #[test]
    fn waiters_and_other_kinds_of_lock_are_not_holders() {
        let table = "1: POSIX  ADVISORY  WRITE 10 00:2d:77 0 EOF\n\
                     2: FLOCK  ADVISORY  WRITE 11 00:2d:78 0 EOF\n\
                     2: -> FLOCK  ADVISORY  WRITE 12 00:2d:78 0 EOF\n";
        assert_eq!(holder_in(table, 77), None);
        assert_eq!(holder_in(table, 78), Some(11));
        assert_eq!(holder_in(table, 79), None);
    }
}
