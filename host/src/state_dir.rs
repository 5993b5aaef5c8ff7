//! The state directory, and the one place its layout is written down.
//!
//! ```text
//! state.db            the operator's database (SQLite, WAL), unless it is
//!                     on a PostgreSQL server (`--database postgres://...`)
//! trust.json          the trust store
//! packs/              installed packs, content-addressed, and their reports
//! cache/              compiled code, keyed by pack digest and engine
//! secrets.json        named secrets packs may read when granted (0600)
//! locks/              one lock file per environment and rollout
//! work/SCOPE-HASH/    an environment's work directory (what a pack sees as `/`)
//! processes/          the tables of processes each environment spawned
//! artifacts/          verified artifacts, content-addressed, shared
//! ```
//!
//! It is `--state-dir`, else `$ENVPACK_STATE_DIR`, else
//! `$XDG_DATA_HOME/envpack`, else `~/.local/share/envpack`, created with
//! mode 0700: it holds pack state and secrets that only the host writes.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::capabilities::Workspace;
use crate::capabilities::kv_store::KvStore;
use crate::capabilities::secrets::{FileSecrets, SecretsError};
use crate::sandbox::services::Services;

mod identities;

/// A state directory and its layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
    /// The operator's database when it is not `state.db` here: a
    /// PostgreSQL URL (`--database`, `$ENVPACK_DATABASE_URL`).
    database_url: Option<String>,
}

impl StateDir {
    /// The state directory at `root` (nothing is created).
    pub fn at(root: impl Into<PathBuf>) -> Self {
        StateDir {
            root: root.into(),
            database_url: None,
        }
    }

    /// `flag` (the flag or `$ENVPACK_STATE_DIR`, as the caller read them),
    /// else `$XDG_DATA_HOME/envpack`, else `~/.local/share/envpack`.
    pub fn resolve(flag: Option<PathBuf>) -> Result<Self, String> {
        if let Some(dir) = flag {
            return Ok(Self::at(dir));
        }
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return Ok(Self::at(PathBuf::from(xdg).join("envpack")));
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => Ok(Self::at(PathBuf::from(home).join(".local/share/envpack"))),
            None => Err("cannot choose a state directory: neither HOME nor XDG_DATA_HOME is set".into()),
        }
    }

    /// Creates the directory (mode 0700) if it does not exist.
    pub fn ensure(&self) -> std::io::Result<()> {
        envpack_model::files::create_private_dir(&self.root)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite database, when no database URL is given.
    pub fn database(&self) -> PathBuf {
        self.root.join("state.db")
    }

    /// The operator's records on a shared PostgreSQL server instead of
    /// `state.db` (every other file stays in this directory, per machine).
    pub fn with_database_url(mut self, url: Option<String>) -> Self {
        self.database_url = url.filter(|u| !u.is_empty());
        self
    }

    pub fn database_url(&self) -> Option<&str> {
        self.database_url.as_deref()
    }

    /// Where an older host kept pack state, imported once into the database.
    pub fn legacy_kv(&self) -> PathBuf {
        self.root.join("kv.json")
    }

    pub fn trust_store(&self) -> PathBuf {
        self.root.join("trust.json")
    }

    pub fn packs(&self) -> PathBuf {
        self.root.join("packs")
    }

    pub fn cache(&self) -> PathBuf {
        self.root.join("cache")
    }

    pub fn secrets(&self) -> PathBuf {
        self.root.join("secrets.json")
    }

    /// The secrets file, read.
    pub fn open_secrets(&self) -> Result<FileSecrets, SecretsError> {
        FileSecrets::open(&self.secrets())
    }

    /// The secrets file, locked against other writers until dropped.
    pub fn open_secrets_for_update(&self) -> Result<FileSecrets, SecretsError> {
        FileSecrets::open_for_update(&self.secrets(), &self.root.join("secrets.lock"))
    }

    pub fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }

    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    pub fn processes(&self) -> PathBuf {
        self.root.join("processes")
    }

    pub fn artifacts(&self) -> PathBuf {
        self.root.join("artifacts")
    }

    /// Packs pulled from a registry while `pack install` judges them; each
    /// is removed when its install ends.
    pub fn incoming(&self) -> PathBuf {
        self.root.join("incoming")
    }

    /// The workspace of `env` in `scope` (`env` for operator environments,
    /// `call` for `host call`, the conformance runner's own scopes for its
    /// fixtures); its directories are created 0700.
    ///
    /// When the host runs as root, the environment's programs run as a uid
    /// of their own (see [`identities`]), so the directories on the way to
    /// its work directory are made traversable (0711: no listing, and every
    /// file in them stays 0600) and the work directory itself 0711.
    pub fn workspace(&self, scope: &str, env: &str) -> std::io::Result<Workspace> {
        let name = format!("{scope}-{}", &hex::encode(Sha256::digest(env.as_bytes()))[..16]);
        self.workspace_named(&name)
    }

    /// Every workspace of this state directory that has spawned a process
    /// (it has a process table): what a sweep of an abandoned directory
    /// must stop before it removes it.
    pub fn workspaces_with_processes(&self) -> std::io::Result<Vec<Workspace>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(self.processes()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            {
                out.push(self.workspace_named(name)?);
            }
        }
        Ok(out)
    }

    fn workspace_named(&self, name: &str) -> std::io::Result<Workspace> {
        let root_dir = self.root.canonicalize().unwrap_or_else(|_| self.root.clone());
        let key = format!(
            "{}-{name}",
            &hex::encode(Sha256::digest(root_dir.as_os_str().as_encoded_bytes()))[..12]
        );
        for dir in [self.work(), self.processes(), self.artifacts()] {
            envpack_model::files::create_private_dir(&dir)?;
        }
        let work_dir = self.work().join(name);
        envpack_model::files::create_private_dir(&work_dir)?;
        let identity = if identities::running_as_root() {
            for dir in [self.root.as_path(), &self.work(), &work_dir] {
                std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o711))?;
            }
            Some(identities::of(&self.work(), name)?)
        } else {
            None
        };
        Ok(Workspace {
            work_dir,
            process_table: self.processes().join(format!("{name}.json")),
            artifact_store: self.artifacts(),
            key,
            identity,
        })
    }

    /// What a call of environment `env` in `scope` uses on this machine:
    /// its workspace and the operator's secrets, with pack state in `kv`
    /// (the runtime's default deadline, no log sink: the caller sets those).
    pub fn services(&self, scope: &str, env: &str, kv: Arc<dyn KvStore>) -> Result<Services, String> {
        let workspace = self
            .workspace(scope, env)
            .map_err(|e| format!("work directory under {}: {e}", self.work().display()))?;
        let secrets = self.open_secrets().map_err(|e| e.to_string())?;
        Ok(Services {
            kv,
            workspace: Some(workspace),
            secrets: Arc::new(secrets),
            deadline: None,
            log_sink: None,
        })
    }
}
