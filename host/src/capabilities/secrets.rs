//! Capability `secrets`: named credentials the operator provides, in
//! `secrets.json` (mode 0600) in the state directory, managed by `host
//! secret set|list|remove`. A pack reads only names granted to its
//! environment; recordings keep the *name*, never the value, and no error
//! message carries a value.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use envpack_model::{Capability, GrantError, Grants, validate_secret_name};

use crate::capabilities::CallEnv;
use crate::capabilities::ledger::Ledger;
use crate::contract::bindings::envpack::deployer::secrets::{Host, SecretError};

/// Where secret values come from.
pub trait SecretStore: Send + Sync {
    fn get(&self, name: &str) -> Option<String>;
}

/// No secrets at all.
pub struct NoSecrets;

impl SecretStore for NoSecrets {
    fn get(&self, _name: &str) -> Option<String> {
        None
    }
}

/// Why the secrets file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("secrets file {path}: {detail}")]
    File { path: String, detail: String },
    #[error(transparent)]
    Name(#[from] GrantError),
    #[error("no secret named {0:?}")]
    Unknown(String),
}

/// `secrets.json` in the state directory: `{name: value}`, mode 0600.
pub struct FileSecrets {
    path: PathBuf,
    values: BTreeMap<String, String>,
    /// Held by [`FileSecrets::open_for_update`] until dropped, so that two
    /// `host secret set` at once do not lose each other's value.
    _lock: Option<std::fs::File>,
}

impl FileSecrets {
    /// Opens the file to change it: an exclusive lock (`secrets.lock`) is
    /// held from the read to the last write.
    pub fn open_for_update(path: &Path, lock_path: &Path) -> Result<Self, SecretsError> {
        use std::os::unix::fs::OpenOptionsExt;
        let fail = |e: std::io::Error| SecretsError::File {
            path: lock_path.display().to_string(),
            detail: e.to_string(),
        };
        let lock = std::fs::File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(lock_path)
            .map_err(fail)?;
        lock.lock().map_err(fail)?;
        let mut secrets = Self::open(path)?;
        secrets._lock = Some(lock);
        Ok(secrets)
    }

    /// Opens the file to read it.
    pub fn open(path: &Path) -> Result<Self, SecretsError> {
        let path = path.to_path_buf();
        let fail = |detail: String| SecretsError::File {
            path: path.display().to_string(),
            detail,
        };
        let values = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| fail(format!("not a JSON object of strings: {e}")))?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(fail(e.to_string())),
        };
        Ok(FileSecrets {
            path,
            values,
            _lock: None,
        })
    }

    /// Secret names, sorted; never values.
    pub fn names(&self) -> Vec<String> {
        self.values.keys().cloned().collect()
    }

    pub fn set(&mut self, name: &str, value: String) -> Result<(), SecretsError> {
        validate_secret_name(name)?;
        self.values.insert(name.to_string(), value);
        self.save()
    }

    pub fn remove(&mut self, name: &str) -> Result<(), SecretsError> {
        if self.values.remove(name).is_none() {
            return Err(SecretsError::Unknown(name.to_string()));
        }
        self.save()
    }

    fn save(&self) -> Result<(), SecretsError> {
        let bytes = serde_json::to_vec_pretty(&self.values).map_err(|e| SecretsError::File {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        })?;
        envpack_model::files::write_atomic(&self.path, &bytes, 0o600).map_err(|e| SecretsError::File {
            path: self.path.display().to_string(),
            detail: e.to_string(),
        })
    }
}

impl SecretStore for FileSecrets {
    fn get(&self, name: &str) -> Option<String> {
        self.values.get(name).cloned()
    }
}

/// The `secrets` capability's part of one call: which names the
/// environment grants, and where the values are.
pub struct SecretsState {
    env_id: String,
    grants: Grants,
    store: Arc<dyn SecretStore>,
}

impl SecretsState {
    pub fn new(env: &CallEnv, store: Arc<dyn SecretStore>) -> Self {
        SecretsState {
            env_id: env.id.clone(),
            grants: env.grants.only(Capability::Secrets),
            store,
        }
    }
}

/// What `secrets` is linked with: its state and the call's ledger.
pub struct SecretsView<'a> {
    pub(crate) state: &'a mut SecretsState,
    pub(crate) ledger: &'a mut Ledger,
}

impl Host for SecretsView<'_> {
    fn get(&mut self, name: String) -> wasmtime::Result<Result<String, SecretError>> {
        self.ledger.call(Capability::Secrets, "secrets.get", name.clone())?;
        if !self.state.grants.secret_allowed(&name) {
            self.ledger.refused(&format!("secret {name:?} is not granted"));
            return Ok(Err(SecretError::NotAllowed(format!(
                "secret {name:?} is not granted to environment {:?}",
                self.state.env_id
            ))));
        }
        Ok(self.state.store.get(&name).ok_or_else(|| {
            SecretError::Missing(format!(
                "secret {name:?} is granted but not set (`host secret set {name}`)"
            ))
        }))
    }
}
