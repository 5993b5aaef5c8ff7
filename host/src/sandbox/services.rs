//! Services: what the host provides one call beyond the sandbox — where the
//! pack's state lives (kv), the environment's workspace (its work directory,
//! the table of processes it spawned, the artifact store) and its secrets.
//! The operator builds them per command; `host call` has its own.

use std::path::PathBuf;
use std::sync::Arc;

use crate::capabilities::kv_store::{KvStore, MemoryKv};
use crate::capabilities::secrets::{NoSecrets, SecretStore};

/// What a call can use besides its instance.
#[derive(Clone)]
pub struct Services {
    pub kv: Arc<dyn KvStore>,
    /// None: `process` calls fail with a clear error and no directory is visible.
    pub workspace: Option<Workspace>,
    pub secrets: Arc<dyn SecretStore>,
    /// This call's deadline; `None`: the runtime's default.
    pub deadline: Option<std::time::Duration>,
    /// Where the pack's log lines go as they happen (level, line), besides
    /// the recording and `tracing`.
    pub log_sink: Option<LogSink>,
}

/// A live destination for a pack's log lines.
pub type LogSink = Arc<dyn Fn(&str, &str) + Send + Sync>;

impl Services {
    /// Pack state in `kv`, no workspace, no secrets.
    pub fn with_kv(kv: Arc<dyn KvStore>) -> Self {
        Services {
            kv,
            workspace: None,
            secrets: Arc::new(NoSecrets),
            deadline: None,
            log_sink: None,
        }
    }
}

impl Default for Services {
    fn default() -> Self {
        Services::with_kv(Arc::new(MemoryKv::default()))
    }
}

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
}

impl Workspace {
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
