//! Services: what the host provides one call beyond the sandbox — where the
//! pack's state lives (kv), the environment's workspace (its work directory,
//! the table of processes it spawned, the artifact store) and its secrets.
//! The operator builds them per command; `host call` has its own.

use std::sync::Arc;

use crate::capabilities::kv_store::{KvStore, MemoryKv};
use crate::capabilities::secrets::{NoSecrets, SecretStore};
use crate::capabilities::{LogSink, Workspace};

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
