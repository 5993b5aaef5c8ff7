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

/// The pid of the process holding the lock called `name`; `None` when
/// nobody holds it.
///
/// Whether it is held is asked of the kernel at once, by trying a shared
/// lock on the file (let go straight away): the table of locks
/// (`/proc/locks`) is read a piece at a time while other locks come and go
/// (SQLite takes and drops several per transaction), and a reader of it
/// misses a holder now and then. A holder never waits for a shared lock:
/// [`try_lock_named`] tells a looker's instant from a holder's lock. The
/// pid is the one the holder wrote into the file, else the table's.
pub fn holder(locks: &Path, name: &str) -> Option<u32> {
    let path = lock_path(locks, name);
    let Ok(file) = File::open(&path) else {
        // Missing: nobody holds it; unreadable to us: the table's answer.
        return listed_pid(&path);
    };
    match file.try_lock_shared() {
        Ok(()) => None,
        Err(std::fs::TryLockError::WouldBlock) => Some(written_pid(&file).or_else(|| listed_pid(&path)).unwrap_or(0)),
        // No answer from the lock itself: the table's, as best it can.
        Err(std::fs::TryLockError::Error(_)) => listed_pid(&path),
    }
}

/// The pid a holder wrote into its lock file when it took the lock.
fn written_pid(file: &File) -> Option<u32> {
    use std::os::unix::fs::FileExt;
    let mut buf = [0u8; PID_WIDTH];
    let n = file.read_at(&mut buf, 0).ok()?;
    std::str::from_utf8(&buf[..n]).ok()?.trim().parse().ok()
}

/// Written over the start of the file, never truncated: a reader sees
/// the last holder's pid whole.
const PID_WIDTH: usize = 11;

fn write_pid(file: &File) {
    use std::os::unix::fs::FileExt;
    // Only what `holder` says about who holds it: a full disk changes nothing else.
    let _ = file.write_all_at(format!("{:>10}\n", std::process::id()).as_bytes(), 0);
}

/// The pid the kernel's table of locks gives for the file at `path`.
fn listed_pid(path: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let table = std::fs::read_to_string("/proc/locks").ok()?;
    holder_in(&table, meta.dev(), meta.ino())
}

/// `1: FLOCK  ADVISORY  WRITE 1234 00:2d:5678 0 EOF`: the pid of the
/// flock on inode `inode` of device `dev` (major and minor in hex; a
/// blocked waiter's line, `->`, is not a holder).
fn holder_in(table: &str, dev: u64, inode: u64) -> Option<u32> {
    let device = format!("{:02x}:{:02x}:", libc::major(dev), libc::minor(dev));
    let file = format!("{device}{inode}");
    table.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) != Some(&"FLOCK") || fields.get(5) != Some(&file.as_str()) {
            return None;
        }
        fields.get(4)?.parse().ok()
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
            // process (the agent's prober beside its driver) is no news,
            // nor a look at the lock (`holder`'s instant) or a holder that
            // has just let go: nobody holds it now.
            if let Some(pid) = holder(locks, env).filter(|pid| *pid != std::process::id()) {
                eprintln!("host: waiting for environment {env:?}: process {pid} is changing it");
            }
            file.lock().map_err(|e| fail(e.to_string()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(fail(e.to_string())),
    }
    write_pid(&file);
    Ok(EnvLock {
        _held: Held::File(file),
    })
}

/// Takes the lock called `name` if no one holds it; `None` if someone does.
/// A rollout's driver holds one for as long as it drives, the agent one
/// for as long as it runs.
pub fn try_lock_named(locks: &Path, name: &str) -> Result<Option<EnvLock>, StoreError> {
    let fail = |detail: String| StoreError::Lock {
        env: name.to_string(),
        detail,
    };
    let file = open_lock_file(locks, name).map_err(|e| fail(e.to_string()))?;
    // Refused, it is held by a holder or looked at by `holder` (a shared
    // lock for an instant): a second file of ours gets a shared lock only
    // in the second case, and then we try again. Bounded: lookers come
    // and go, a steady stream of them for a whole second is not expected.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    loop {
        match file.try_lock() {
            Ok(()) => {
                write_pid(&file);
                return Ok(Some(EnvLock {
                    _held: Held::File(file),
                }));
            }
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(fail(e.to_string())),
        }
        let look = File::open(lock_path(locks, name)).map_err(|e| fail(e.to_string()))?;
        match look.try_lock_shared() {
            Ok(()) if std::time::Instant::now() < deadline => {
                drop(look);
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            Ok(()) | Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(fail(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_of_a_lock_and_its_pid_are_found_while_it_holds_it() {
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
        let dev = libc::makedev(0, 0x2d);
        assert_eq!(holder_in(table, dev, 77), None);
        assert_eq!(holder_in(table, dev, 78), Some(11));
        assert_eq!(holder_in(table, dev, 79), None);
        assert_eq!(
            holder_in(table, libc::makedev(0, 0x2e), 78),
            None,
            "another device's file"
        );
    }

    /// The kernel's table of locks is read a piece at a time, and other
    /// processes' locks come and go between the pieces (SQLite takes and
    /// drops several per transaction): a holder must be found all the same.
    #[test]
    fn a_holder_is_found_while_other_locks_come_and_go() {
        let dir = tempfile::tempdir().unwrap();
        let _held = try_lock_named(dir.path(), "host agent").unwrap().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let churn: Vec<_> = (0..4)
            .map(|t| {
                let (dir, stop) = (dir.path().to_path_buf(), stop.clone());
                std::thread::spawn(move || {
                    let files: Vec<File> = (0..40)
                        .map(|i| open_lock_file(&dir, &format!("churn {t} {i}")).unwrap())
                        .collect();
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        for f in &files {
                            f.lock().unwrap();
                        }
                        for f in &files {
                            f.unlock().unwrap();
                        }
                    }
                })
            })
            .collect();
        let missed = (0..500).filter(|_| holder(dir.path(), "host agent").is_none()).count();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in churn {
            t.join().unwrap();
        }
        assert_eq!(missed, 0, "the holder was missed {missed} times of 500");
    }

    /// `holder` looks by taking a shared lock for an instant: a process
    /// taking the lock that instant must not think it held.
    #[test]
    fn a_look_at_a_lock_never_keeps_it_from_being_taken() {
        let dir = tempfile::tempdir().unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let lookers: Vec<_> = (0..2)
            .map(|_| {
                let (dir, stop) = (dir.path().to_path_buf(), stop.clone());
                std::thread::spawn(move || {
                    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                        let _ = holder(&dir, "rollout X");
                    }
                })
            })
            .collect();
        let refused = (0..500)
            .filter(|_| try_lock_named(dir.path(), "rollout X").unwrap().is_none())
            .count();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in lookers {
            t.join().unwrap();
        }
        assert_eq!(
            refused, 0,
            "taking a lock nobody holds was refused {refused} times of 500"
        );
        let held = try_lock_named(dir.path(), "rollout X").unwrap().unwrap();
        assert!(
            try_lock_named(dir.path(), "rollout X").unwrap().is_none(),
            "a holder still keeps it"
        );
        drop(held);
    }
}
