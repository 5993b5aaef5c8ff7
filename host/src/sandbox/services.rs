//! Services: what the host provides one call beyond the sandbox — where the
//! pack's state lives (kv), the environment's workspace (its work directory,
//! the table of processes it spawned, the artifact store) and its secrets.
//! The operator builds them per command; `host call` has its own.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

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
    /// The workspace of `env` in `scope` (`env` for operator environments,
    /// `call` for `host call`) under `state_dir`; directories are created 0700.
    pub fn for_env(state_dir: &Path, scope: &str, env: &str) -> std::io::Result<Self> {
        let key = format!("{scope}-{}", &hex::encode(Sha256::digest(env.as_bytes()))[..16]);
        let workspace = Workspace {
            work_dir: state_dir.join("work").join(&key),
            process_table: state_dir.join("processes").join(format!("{key}.json")),
            artifact_store: state_dir.join("artifacts"),
        };
        for dir in [
            state_dir.join("work"),
            workspace.work_dir.clone(),
            state_dir.join("processes"),
            workspace.artifact_store.clone(),
        ] {
            crate::fsutil::create_private_dir(&dir)?;
        }
        Ok(workspace)
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
