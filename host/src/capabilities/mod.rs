//! Capabilities: the host's implementations of the contract's imports.
//! Each owns its part of a call's state and is linked with a view of it
//! plus the call's [`ledger::Ledger`], whose gate decides every call
//! (declared by the pack, granted by the operator) and whose recording
//! keeps it, so the host can later prove what a pack did (or did not do)
//! during a verb. kv has a per-call part ([`kv`]) over a durable store
//! ([`kv_store`]).

pub(crate) mod artifacts;
pub(crate) mod clock;
pub(crate) mod download;
pub(crate) mod environment;
pub(crate) mod http;
pub(crate) mod kv;
pub(crate) mod kv_store;
pub(crate) mod ledger;
pub(crate) mod log;
pub(crate) mod probe;
pub(crate) mod process;
pub(crate) mod secrets;

use std::path::PathBuf;
use std::sync::Arc;

use envpack_model::Grants;

/// The environment a call acts for, as its capabilities see it.
pub struct CallEnv {
    pub id: String,
    pub grants: Grants,
}

/// A live destination for a pack's log lines (level, line).
pub type LogSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

/// One environment's place on the host's disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workspace {
    /// The pack's work directory: processes run here, the pack sees it as `/`.
    pub work_dir: PathBuf,
    /// The table of processes the environment spawned (outside the work
    /// directory, so the pack cannot edit which pids it may signal).
    pub process_table: PathBuf,
    /// The content-addressed store of verified artifacts, shared by all.
    pub artifact_store: PathBuf,
    /// A name unique to this state directory and environment (its control
    /// groups are named by it).
    pub key: String,
    /// The uid and gid its programs run as, when the host runs as root.
    pub identity: Option<process::Identity>,
}

impl Workspace {
    /// Bytes the work directory takes on disk (blocks allocated, links not
    /// followed), counting at most `max_entries` entries: past that, the
    /// count so far and `false`.
    pub fn usage(&self, max_entries: usize) -> (u64, bool) {
        use std::os::unix::fs::MetadataExt;
        let mut total = 0u64;
        let mut seen = 0usize;
        let mut todo = vec![self.work_dir.clone()];
        while let Some(dir) = todo.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                seen += 1;
                if seen > max_entries {
                    return (total, false);
                }
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                total += meta.blocks() * 512;
                if meta.is_dir() {
                    todo.push(entry.path());
                }
            }
        }
        (total, true)
    }

    /// Removes the work directory (after its processes were stopped).
    pub fn remove(&self) -> std::io::Result<()> {
        match std::fs::remove_dir_all(&self.work_dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        match std::fs::remove_file(&self.process_table) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}
