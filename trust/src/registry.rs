//! The pack registry: verified packs stored content-addressed by sha256 under
//! `packs/` in the state directory, with an index by descriptor. Resolution of
//! a requirement (`envpack.deployer.ledger@^1`) picks the highest installed
//! version whose file is intact and whose signer is still trusted.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::descriptor::{Descriptor, Requirement};
use crate::manifest::Manifest;
use crate::signature::{self, Keyring, Verified, VerifyError};
use envpack_model::{files as fsutil, sha256_hex};

/// One installed pack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstalledPack {
    /// Hex sha256 of the pack file; also its file name.
    pub digest: String,
    pub descriptor: String,
    pub author: String,
    /// Key ids with a valid signature at install time.
    pub signers: Vec<String>,
    pub size: usize,
    /// Unix seconds.
    pub installed_at: u64,
    /// Installed despite failing admission (`--force`).
    #[serde(default)]
    pub forced: bool,
}

impl InstalledPack {
    fn version(&self) -> Option<Version> {
        self.descriptor.parse::<Descriptor>().ok().map(|d| d.version)
    }

    fn name(&self) -> &str {
        self.descriptor.split('@').next().unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("pack registry: {0}")]
    Io(String),
    #[error("{descriptor} is already installed with different content ({digest}); remove it first")]
    Conflict { descriptor: String, digest: String },
    #[error("no installed pack matches {0:?} (give a descriptor or at least 8 hex digits of a digest)")]
    NotFound(String),
    #[error("{selector:?} matches several packs: {}", matches.join(", "))]
    Ambiguous { selector: String, matches: Vec<String> },
    #[error("no pack named {name} is installed{}", known_list(known))]
    UnknownName { name: String, known: Vec<String> },
    #[error("no installed version of {name} matches {req} (installed: {})", available.join(", "))]
    NoMatchingVersion {
        name: String,
        req: String,
        available: Vec<String>,
    },
    #[error("every installed version of {requirement} that matches is refused; the highest, {descriptor}: {source}")]
    Untrusted {
        requirement: String,
        descriptor: String,
        source: VerifyError,
    },
    #[error(
        "installed file for {descriptor} no longer has digest {digest}: it was changed on disk; `host pack install` the signed pack again to restore it"
    )]
    Changed { descriptor: String, digest: String },
    #[error(
        "installed file for {descriptor} is missing ({path}); `host pack install` the signed pack again to restore it"
    )]
    Missing { descriptor: String, path: String },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "; none are installed (`host pack install PACK`)".to_string()
    } else {
        format!(" (installed: {})", known.join(", "))
    }
}

/// The registry directory and its index.
pub struct Registry {
    dir: PathBuf,
    index: Vec<InstalledPack>,
}

impl Registry {
    /// The registry in directory `dir` (empty if there is none yet).
    pub fn open(dir: &Path) -> Result<Self, RegistryError> {
        let dir = dir.to_path_buf();
        let index = fsutil::read_json(&dir.join("index.json"))
            .map_err(RegistryError::Io)?
            .unwrap_or_default();
        Ok(Registry { dir, index })
    }

    pub fn list(&self) -> &[InstalledPack] {
        &self.index
    }

    /// Where an installed pack's file is.
    pub fn path(&self, pack: &InstalledPack) -> PathBuf {
        self.dir.join(format!("{}.wasm", pack.digest))
    }

    fn save(&self) -> Result<(), RegistryError> {
        let bytes = serde_json::to_vec_pretty(&self.index).map_err(|e| RegistryError::Io(e.to_string()))?;
        fsutil::write_atomic(&self.dir.join("index.json"), &bytes, 0o600).map_err(|e| RegistryError::Io(e.to_string()))
    }

    /// Stores a verified pack. Installing the same content again is a no-op.
    pub fn install(
        &mut self,
        bytes: &[u8],
        manifest: &Manifest,
        verified: &Verified,
        forced: bool,
    ) -> Result<InstalledPack, RegistryError> {
        let digest = sha256_hex(bytes);
        if let Some(existing) = self.index.iter().find(|p| p.descriptor == manifest.descriptor) {
            if existing.digest == digest {
                // Same pack again: make sure the stored file is intact, and
                // rewrite it if it was changed or removed on disk.
                let path = self.path(existing);
                let intact = std::fs::read(&path).is_ok_and(|stored| sha256_hex(&stored) == digest);
                if !intact {
                    fsutil::write_atomic(&path, bytes, 0o600)
                        .map_err(|e| RegistryError::Io(format!("{}: {e}", path.display())))?;
                }
                return Ok(existing.clone());
            }
            return Err(RegistryError::Conflict {
                descriptor: manifest.descriptor.clone(),
                digest: existing.digest.clone(),
            });
        }
        fsutil::create_private_dir(&self.dir).map_err(|e| RegistryError::Io(e.to_string()))?;
        let entry = InstalledPack {
            digest,
            descriptor: manifest.descriptor.clone(),
            author: manifest.author.clone(),
            signers: verified.signers.clone(),
            size: bytes.len(),
            installed_at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            forced,
        };
        // File first, index second: a crash in between leaves an unindexed file, never a dangling entry.
        fsutil::write_atomic(&self.path(&entry), bytes, 0o600).map_err(|e| RegistryError::Io(e.to_string()))?;
        self.index.push(entry.clone());
        self.index.sort_by(|a, b| a.descriptor.cmp(&b.descriptor));
        self.save()?;
        Ok(entry)
    }

    /// The installed pack `selector` names (descriptor or digest prefix).
    pub fn lookup(&self, selector: &str) -> Result<&InstalledPack, RegistryError> {
        Ok(&self.index[self.select(selector)?])
    }

    fn select(&self, selector: &str) -> Result<usize, RegistryError> {
        let matches: Vec<usize> = self
            .index
            .iter()
            .enumerate()
            .filter(|(_, p)| p.descriptor == selector || (selector.len() >= 8 && p.digest.starts_with(selector)))
            .map(|(i, _)| i)
            .collect();
        match matches.as_slice() {
            [] => Err(RegistryError::NotFound(selector.to_string())),
            [i] => Ok(*i),
            many => Err(RegistryError::Ambiguous {
                selector: selector.to_string(),
                matches: many.iter().map(|i| self.index[*i].descriptor.clone()).collect(),
            }),
        }
    }

    /// Where the last admission report of an installed pack is kept.
    pub fn report_path(&self, pack: &InstalledPack) -> PathBuf {
        self.dir.join(format!("{}.report.json", pack.digest))
    }

    /// Keeps `report` (JSON) as the pack's last admission report.
    pub fn save_report(&self, pack: &InstalledPack, report: &[u8]) -> Result<(), RegistryError> {
        fsutil::write_atomic(&self.report_path(pack), report, 0o600).map_err(|e| RegistryError::Io(e.to_string()))
    }

    /// The pack's last admission report, if one was kept.
    pub fn report(&self, pack: &InstalledPack) -> Option<serde_json::Value> {
        fsutil::read_json(&self.report_path(pack)).ok().flatten()
    }

    /// Removes an installed pack by descriptor or digest prefix.
    pub fn remove(&mut self, selector: &str) -> Result<InstalledPack, RegistryError> {
        let index = self.select(selector)?;
        let entry = self.index.remove(index);
        // Index first, file second: a crash in between leaves an unindexed file only.
        self.save()?;
        let _ = std::fs::remove_file(self.path(&entry));
        let _ = std::fs::remove_file(self.report_path(&entry));
        Ok(entry)
    }

    /// The highest installed version matching `req` that is intact and
    /// signed by a trusted, unrevoked key, with its file's bytes.
    pub fn resolve(
        &self,
        req: &Requirement,
        keyring: &Keyring<'_>,
    ) -> Result<(InstalledPack, Verified, Vec<u8>), RegistryError> {
        let named: Vec<&InstalledPack> = self.index.iter().filter(|p| p.name() == req.name).collect();
        if named.is_empty() {
            return Err(RegistryError::UnknownName {
                name: req.name.clone(),
                known: self.index.iter().map(|p| p.descriptor.clone()).collect(),
            });
        }
        let mut matching: Vec<(&InstalledPack, Version)> = named
            .iter()
            .filter_map(|p| p.version().map(|v| (*p, v)))
            .filter(|(_, v)| req.req.matches(v))
            .collect();
        if matching.is_empty() {
            return Err(RegistryError::NoMatchingVersion {
                name: req.name.clone(),
                req: req.req.to_string(),
                available: named.iter().map(|p| p.descriptor.clone()).collect(),
            });
        }
        matching.sort_by(|a, b| b.1.cmp(&a.1));
        let mut first_refusal = None;
        for (pack, _) in matching {
            match self.check(pack, keyring) {
                Ok((verified, bytes)) => return Ok((pack.clone(), verified, bytes)),
                Err(e) => {
                    first_refusal.get_or_insert((pack.descriptor.clone(), e));
                }
            }
        }
        let (descriptor, error) = first_refusal.expect("at least one version matched");
        match error {
            RegistryError::Untrusted { source, .. } => Err(RegistryError::Untrusted {
                requirement: req.to_string(),
                descriptor,
                source,
            }),
            other => Err(other),
        }
    }

    /// Re-reads and re-verifies an installed pack against today's trust store.
    pub fn check(&self, pack: &InstalledPack, keyring: &Keyring<'_>) -> Result<(Verified, Vec<u8>), RegistryError> {
        let path = self.path(pack);
        let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RegistryError::Missing {
                descriptor: pack.descriptor.clone(),
                path: path.display().to_string(),
            },
            _ => RegistryError::Io(format!("{}: {e}", path.display())),
        })?;
        if sha256_hex(&bytes) != pack.digest {
            return Err(RegistryError::Changed {
                descriptor: pack.descriptor.clone(),
                digest: pack.digest.clone(),
            });
        }
        let verified = signature::verify(&bytes, keyring, None).map_err(|source| RegistryError::Untrusted {
            requirement: pack.descriptor.clone(),
            descriptor: pack.descriptor.clone(),
            source,
        })?;
        Ok((verified, bytes))
    }
}
