//! The trust store: the public keys an operator trusts to sign packs, kept in
//! `trust.json` in the state directory. Revocation is permanent and recorded;
//! a revoked key stays listed so that packs it signed are refused by name.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::keys::PublicKey;
use crate::signature::VerifyError;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    pub key_id: String,
    pub name: String,
    /// SPKI PEM.
    pub public_key: String,
    /// Unix seconds.
    pub added_at: u64,
    pub revoked_at: Option<u64>,
    /// The pack names this key may sign (`acme.*`, `acme.deployer.web`,
    /// `*`); empty means any. A signature outside them does not count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

impl TrustedKey {
    /// A key given on the command line: trusted for one verification only.
    pub fn explicit(key: &PublicKey) -> Self {
        TrustedKey {
            key_id: key.key_id(),
            name: "given with --key".into(),
            public_key: key.to_pem().unwrap_or_default(),
            added_at: 0,
            revoked_at: None,
            scopes: Vec::new(),
        }
    }

    /// Whether this key may sign packs named `name` (`namespace.name`).
    pub fn covers(&self, name: &str) -> bool {
        self.scopes.is_empty()
            || self.scopes.iter().any(|scope| match scope.strip_suffix('*') {
                Some(prefix) => name.starts_with(prefix),
                None => name == scope,
            })
    }

    pub fn public(&self) -> Result<PublicKey, VerifyError> {
        PublicKey::from_pem(&self.public_key)
            .map_err(|e| VerifyError::BadSection(format!("trust store key {}: {e}", self.key_id)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("trust store: {0}")]
    Io(String),
    #[error("key {key_id} is already trusted as {name:?}")]
    Duplicate { key_id: String, name: String },
    #[error("key {key_id} ({name}) was revoked; revocation is permanent")]
    WasRevoked { key_id: String, name: String },
    #[error("the name {0:?} is already used by another key")]
    NameTaken(String),
    #[error("no trusted key matches {0:?}")]
    NotFound(String),
    #[error("{prefix:?} matches several keys: {}", matches.join(", "))]
    Ambiguous { prefix: String, matches: Vec<String> },
    #[error("key {0} is already revoked")]
    AlreadyRevoked(String),
    #[error("a key name must be 1 to 64 characters without control, bidirectional or zero-width characters")]
    BadName,
    #[error(
        "scope {0:?} is not a pack name pattern: `*`, `NAMESPACE.*` or `NAMESPACE.NAME` (lowercase letters, digits, `-`, `.`)"
    )]
    BadScope(String),
}

/// The keys, loaded from and saved to one file.
#[derive(Debug, Default)]
pub struct TrustStore {
    path: PathBuf,
    keys: Vec<TrustedKey>,
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl TrustStore {
    /// The keyring of this store alone (no key given on the command line).
    pub fn keyring(&self) -> crate::signature::Keyring<'_> {
        crate::signature::Keyring::of(self)
    }

    /// The trust store in the file at `path` (empty if there is none yet).
    pub fn open(path: &Path) -> Result<Self, TrustError> {
        let path = path.to_path_buf();
        let keys = envpack_model::files::read_json(&path)
            .map_err(TrustError::Io)?
            .unwrap_or_default();
        Ok(TrustStore { path, keys })
    }

    /// An empty store that is never saved (for verification with `--key` only).
    pub fn empty() -> Self {
        TrustStore::default()
    }

    pub fn keys(&self) -> &[TrustedKey] {
        &self.keys
    }

    /// Any key with this exact id, revoked or not.
    pub fn get(&self, key_id: &str) -> Option<&TrustedKey> {
        self.keys.iter().find(|k| k.key_id == key_id)
    }

    fn save(&self) -> Result<(), TrustError> {
        let bytes = serde_json::to_vec_pretty(&self.keys).map_err(|e| TrustError::Io(e.to_string()))?;
        envpack_model::files::write_atomic(&self.path, &bytes, 0o600)
            .map_err(|e| TrustError::Io(format!("cannot write {}: {e}", self.path.display())))
    }

    pub fn add(&mut self, key: &PublicKey, name: &str) -> Result<TrustedKey, TrustError> {
        self.add_scoped(key, name, &[])
    }

    /// Trusts `key` as `name` to sign only packs named within `scopes`
    /// (none: any pack).
    pub fn add_scoped(&mut self, key: &PublicKey, name: &str, scopes: &[String]) -> Result<TrustedKey, TrustError> {
        for scope in scopes {
            validate_scope(scope)?;
        }
        if name.is_empty() || name.chars().count() > 64 || name.chars().any(envpack_model::text::is_deceptive) {
            return Err(TrustError::BadName);
        }
        let key_id = key.key_id();
        if let Some(existing) = self.get(&key_id) {
            return Err(match existing.revoked_at {
                Some(_) => TrustError::WasRevoked {
                    key_id,
                    name: existing.name.clone(),
                },
                None => TrustError::Duplicate {
                    key_id,
                    name: existing.name.clone(),
                },
            });
        }
        if self.keys.iter().any(|k| k.name == name) {
            return Err(TrustError::NameTaken(name.to_string()));
        }
        let entry = TrustedKey {
            key_id,
            name: name.to_string(),
            public_key: key.to_pem().map_err(|e| TrustError::Io(e.to_string()))?,
            added_at: now(),
            revoked_at: None,
            scopes: scopes.to_vec(),
        };
        self.keys.push(entry.clone());
        self.save()?;
        Ok(entry)
    }

    /// Revokes the key whose id starts with `prefix` (at least 8 hex digits) or whose name is `prefix`.
    pub fn revoke(&mut self, prefix: &str) -> Result<TrustedKey, TrustError> {
        let matches: Vec<usize> = self
            .keys
            .iter()
            .enumerate()
            .filter(|(_, k)| k.name == prefix || (prefix.len() >= 8 && k.key_id.starts_with(&prefix.to_lowercase())))
            .map(|(i, _)| i)
            .collect();
        let index = match matches.as_slice() {
            [] => return Err(TrustError::NotFound(prefix.to_string())),
            [i] => *i,
            many => {
                return Err(TrustError::Ambiguous {
                    prefix: prefix.to_string(),
                    matches: many.iter().map(|i| self.keys[*i].key_id.clone()).collect(),
                });
            }
        };
        if self.keys[index].revoked_at.is_some() {
            return Err(TrustError::AlreadyRevoked(self.keys[index].key_id.clone()));
        }
        self.keys[index].revoked_at = Some(now());
        self.save()?;
        Ok(self.keys[index].clone())
    }
}

/// `*`, `acme.*`, `acme.deployer.*` or an exact `acme.deployer.web`.
fn validate_scope(scope: &str) -> Result<(), TrustError> {
    let body = scope.strip_suffix(".*").unwrap_or(scope);
    let ok = scope == "*"
        || (!body.is_empty()
            && body.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            }));
    if ok {
        Ok(())
    } else {
        Err(TrustError::BadScope(scope.to_string()))
    }
}
