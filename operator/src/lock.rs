//! Serializes mutating commands on one environment across processes: an
//! exclusive advisory lock on `locks/<sha256 of env id>.lock` in the state
//! directory, held for the whole command (pack call included) and released
//! by the kernel if the process dies. A command that finds it held says so
//! on stderr and waits its turn. Read-only commands never take it.

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::StoreError;

/// Holds the lock until dropped.
pub struct EnvLock {
    _file: File,
}

/// `locks/<sha256 of name>.lock`, created if missing.
fn open_lock_file(dir: &Path, name: &str) -> std::io::Result<File> {
    envpack_model::files::create_private_dir(dir)?;
    let hashed = hex::encode(Sha256::digest(name.as_bytes()));
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(dir.join(format!("{hashed}.lock")))
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
            // Another command is working on this environment: say so, then queue.
            eprintln!("host: waiting for environment {env:?}: another command is changing it");
            file.lock().map_err(|e| fail(e.to_string()))?;
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(fail(e.to_string())),
    }
    Ok(EnvLock { _file: file })
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
        Ok(()) => Ok(Some(EnvLock { _file: file })),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(fail(e.to_string())),
    }
}
