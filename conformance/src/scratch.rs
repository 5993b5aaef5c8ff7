//! A run's throwaway directory: the fixture environments' work
//! directories, process tables and artifacts. Each run names its own with
//! a fresh nonce (the nonce is also in every fixture environment id, so
//! nothing a killed run left behind is mistaken for this run's) and holds
//! a lock on it while it runs. A run that was killed leaves its directory,
//! and perhaps processes, behind: every run first sweeps the directories
//! whose lock nobody holds, stopping their processes and removing them.

use std::fs::File;
use std::path::{Path, PathBuf};

/// What scratch directories are called: the prefix, then the nonce.
const PREFIX: &str = "envpack-conformance-";
const LOCK: &str = "run.lock";

/// This run's directory, locked while the value lives.
pub(crate) struct Scratch {
    pub dir: PathBuf,
    pub nonce: String,
    /// Held for the run: a sweep by another run skips a locked directory.
    _lock: Option<File>,
}

impl Scratch {
    /// A fresh directory under `base`. It is locked before it gets the
    /// name a sweep looks for, so no sweep can take a starting run for a
    /// dead one. Without a lock (a file system that refuses one) the run
    /// still works; a sweep then removes nothing of it while its lock file
    /// is missing.
    pub fn create(base: &Path) -> Scratch {
        let nonce = nonce();
        let dir = base.join(format!("{PREFIX}{nonce}"));
        let starting = base.join(format!(".{PREFIX}{nonce}.starting"));
        let lock = std::fs::create_dir_all(&starting)
            .and_then(|()| File::create(starting.join(LOCK)))
            .and_then(|file| {
                file.try_lock().map_err(std::io::Error::other)?;
                Ok(file)
            })
            .and_then(|file| std::fs::rename(&starting, &dir).map(|()| file));
        match lock {
            Ok(file) => Scratch {
                dir,
                nonce,
                _lock: Some(file),
            },
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot lock the run's scratch directory");
                let _ = std::fs::remove_dir_all(&starting);
                Scratch {
                    dir,
                    nonce,
                    _lock: None,
                }
            }
        }
    }
}

/// Eight hex digits from the system's randomness (the clock and pid if it
/// has none).
fn nonce() -> String {
    let mut bytes = [0u8; 4];
    if getrandom::fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        bytes = (nanos ^ std::process::id()).to_le_bytes();
    }
    hex::encode(bytes)
}

/// Sweeps up after killed runs under `base`: every scratch directory whose
/// lock nobody holds has its processes stopped and is removed. Returns a
/// line for each directory swept.
pub(crate) fn sweep(base: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(base) else {
        return Vec::new();
    };
    let mut swept = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if !name.starts_with(PREFIX) {
            continue;
        }
        let dir = entry.path();
        if !ours(&dir) {
            continue;
        }
        let Ok(lock) = File::open(dir.join(LOCK)) else { continue };
        if lock.try_lock().is_err() {
            continue; // A run holds it.
        }
        let mut stopped = 0;
        if let Ok(workspaces) = envpack_host::StateDir::at(&dir).workspaces_with_processes() {
            for workspace in workspaces {
                stopped += envpack_host::live_processes(&workspace).len();
                if let Err(e) = envpack_host::stop_processes(&workspace, std::time::Duration::from_secs(2)) {
                    tracing::warn!(error = %e, dir = %dir.display(), "cannot stop a killed run's processes");
                }
            }
        }
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => swept.push(format!(
                "swept {} left by a run that was killed ({stopped} processes stopped)",
                dir.display()
            )),
            Err(e) => tracing::warn!(error = %e, dir = %dir.display(), "cannot remove a killed run's directory"),
        }
    }
    swept
}

/// Whether `dir` is a directory this user made and nobody else can write:
/// a sweep stops the processes its tables name, so one planted in a shared
/// `TMPDIR` by another user must not be taken for a killed run's.
fn ours(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let writable_by_others =
        |path: &Path| std::fs::symlink_metadata(path).map_or(true, |m| m.uid() != me || m.mode() & 0o022 != 0);
    let processes = envpack_host::StateDir::at(dir).processes();
    std::fs::symlink_metadata(dir).is_ok_and(|m| m.is_dir())
        && !writable_by_others(dir)
        && (!processes.exists() || !writable_by_others(&processes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_scratch_is_kept_and_an_abandoned_one_swept() {
        let base = tempfile::tempdir().unwrap();
        let running = Scratch::create(base.path());
        assert!(running.dir.join(LOCK).is_file());
        assert_eq!(running.nonce.len(), 8);
        let abandoned = Scratch::create(base.path());
        let abandoned_dir = abandoned.dir.clone();
        drop(abandoned); // As a killed run's lock goes with its process.
        std::fs::create_dir_all(base.path().join("unrelated")).unwrap();
        let swept = sweep(base.path());
        assert_eq!(swept.len(), 1, "{swept:?}");
        assert!(!abandoned_dir.exists());
        assert!(running.dir.exists(), "a locked directory is another run's");
        assert!(base.path().join("unrelated").exists());
    }

    #[test]
    fn a_directory_others_can_write_is_not_swept() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let planted = Scratch::create(base.path());
        let dir = planted.dir.clone();
        drop(planted);
        // As another user's directory in a shared TMPDIR would be: its
        // process table could name any pid.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(sweep(base.path()).is_empty());
        assert!(dir.exists());
    }
}
