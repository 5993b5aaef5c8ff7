//! The pack registry: verified packs stored content-addressed by sha256 under
//! `packs/` in the state directory, with an index by descriptor. Resolution of
//! a requirement (`envpack.deployer.ledger@^1`) picks the highest installed
//! version whose file is intact and whose signer is still trusted.
//!
//! Checking an installed pack must not cost what its size costs (an
//! interpreter pack is 20 MB): every pack file is stored read-only, and
//! beside it a **seal** — the file's identity ([`FileIdentity`]: device,
//! inode, size, mtime, ctime) when it was last verified, what its
//! signatures cover ([`SignedFacts`]) and its manifest, under a keyed tag
//! ([`SealKey`], the registry's own secret). While the file's identity
//! matches a seal whose tag holds, the file is the one verified, and a
//! check re-verifies only the signatures, against today's trust store,
//! from the facts (a few Ed25519 verifications; no hashing of the file).
//! Any other case — no seal, a wrong tag, a file that changed in any way —
//! reads and hashes the whole file as before, refuses it if its digest
//! changed, and seals it anew if it did not.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use semver::Version;
use serde::{Deserialize, Serialize};

use crate::descriptor::{Descriptor, Requirement};
use crate::manifest::Manifest;
use crate::seal::SealKey;
use crate::signature::{self, Keyring, SignedFacts, Verified, VerifyError};
use envpack_model::files::{self as fsutil, FileIdentity};
use envpack_model::sha256_hex;

/// The mode of an installed pack file: read-only, the owner's.
const PACK_MODE: u32 = 0o400;

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

/// An installed pack, checked: intact, and signed by a key trusted today.
#[derive(Debug)]
pub struct Checked {
    pub verified: Verified,
    /// The pack's sealed manifest.
    pub manifest: Manifest,
    /// The file's bytes, when the check had to read them (no valid seal).
    pub bytes: Option<Vec<u8>>,
}

/// What the registry keeps beside a pack file it verified (`DIGEST.seal`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Seal {
    identity: FileIdentity,
    facts: SignedFacts,
    manifest: Manifest,
    /// Keyed BLAKE3 (hex) over the digest and everything above.
    tag: String,
}

impl Seal {
    fn tag(key: &SealKey, digest: &str, identity: &FileIdentity, facts: &SignedFacts, manifest: &Manifest) -> String {
        let facts = serde_json::to_vec(facts).unwrap_or_default();
        let manifest = serde_json::to_vec(manifest).unwrap_or_default();
        key.tag(&[
            b"envpack pack seal v1",
            digest.as_bytes(),
            &identity.to_bytes(),
            &facts,
            &manifest,
        ])
        .to_hex()
        .to_string()
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
                    fsutil::write_atomic(&path, bytes, PACK_MODE)
                        .map_err(|e| RegistryError::Io(format!("{}: {e}", path.display())))?;
                }
                let existing = existing.clone();
                self.seal(&existing, bytes);
                return Ok(existing);
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
        fsutil::write_atomic(&self.path(&entry), bytes, PACK_MODE).map_err(|e| RegistryError::Io(e.to_string()))?;
        self.seal(&entry, bytes);
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
        let _ = std::fs::remove_file(self.seal_path(&entry));
        let _ = std::fs::remove_file(self.report_path(&entry));
        Ok(entry)
    }

    /// The highest installed version matching `req` that is intact and
    /// signed by a trusted, unrevoked key, with its file's bytes.
    pub fn resolve(&self, req: &Requirement, keyring: &Keyring<'_>) -> Result<(InstalledPack, Checked), RegistryError> {
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
                Ok(checked) => return Ok((pack.clone(), checked)),
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

    /// Checks an installed pack against today's trust store: from its seal
    /// while the file is the one sealed, else by reading, hashing and
    /// verifying the whole file (and sealing it anew if it is intact).
    pub fn check(&self, pack: &InstalledPack, keyring: &Keyring<'_>) -> Result<Checked, RegistryError> {
        let path = self.path(pack);
        let missing = |e: std::io::Error| match e.kind() {
            std::io::ErrorKind::NotFound => RegistryError::Missing {
                descriptor: pack.descriptor.clone(),
                path: path.display().to_string(),
            },
            _ => RegistryError::Io(format!("{}: {e}", path.display())),
        };
        let metadata = std::fs::metadata(&path).map_err(missing)?;
        let untrusted = |source| RegistryError::Untrusted {
            requirement: pack.descriptor.clone(),
            descriptor: pack.descriptor.clone(),
            source,
        };
        if let Some(seal) = self.valid_seal(pack, &FileIdentity::of(&metadata)) {
            let verified = signature::verify_signed(&seal.facts, keyring).map_err(untrusted)?;
            return Ok(Checked {
                verified,
                manifest: seal.manifest,
                bytes: None,
            });
        }
        let bytes = std::fs::read(&path).map_err(missing)?;
        if sha256_hex(&bytes) != pack.digest {
            return Err(RegistryError::Changed {
                descriptor: pack.descriptor.clone(),
                digest: pack.digest.clone(),
            });
        }
        let verified = signature::verify(&bytes, keyring, None).map_err(untrusted)?;
        let manifest = Manifest::read(&bytes)
            .ok()
            .flatten()
            .ok_or_else(|| RegistryError::Io(format!("{}: the installed pack has no manifest", path.display())))?;
        self.seal(pack, &bytes);
        Ok(Checked {
            verified,
            manifest,
            bytes: Some(bytes),
        })
    }

    /// Where the seal of an installed pack is kept.
    fn seal_path(&self, pack: &InstalledPack) -> PathBuf {
        self.dir.join(format!("{}.seal", pack.digest))
    }

    fn seal_key(&self) -> std::io::Result<SealKey> {
        SealKey::open_or_create(&self.dir.join("secret"))
    }

    /// The pack's seal, if it was written by this registry (its tag holds)
    /// for this very file (`identity`).
    fn valid_seal(&self, pack: &InstalledPack, identity: &FileIdentity) -> Option<Seal> {
        let key = SealKey::open(&self.dir.join("secret"))?;
        let seal: Seal = fsutil::read_json(&self.seal_path(pack)).ok().flatten()?;
        let expected = Seal::tag(&key, &pack.digest, &seal.identity, &seal.facts, &seal.manifest);
        let tag = blake3::Hash::from_hex(&seal.tag).ok()?;
        // `blake3::Hash` compares in constant time.
        (blake3::Hash::from_hex(&expected).ok()? == tag && seal.identity == *identity).then_some(seal)
    }

    /// Seals the installed file of `pack`, whose bytes `bytes` were just
    /// verified (or written): best effort, since a missing seal only costs
    /// the next check a full read.
    fn seal(&self, pack: &InstalledPack, bytes: &[u8]) {
        let path = self.path(pack);
        let sealed = (|| -> Result<(), String> {
            let facts = SignedFacts::of(bytes).map_err(|e| e.to_string())?;
            let manifest = Manifest::read(bytes).map_err(|e| e.to_string())?.ok_or("no manifest")?;
            let key = self.seal_key().map_err(|e| e.to_string())?;
            // Read-only for its owner, then the identity it has from now on.
            set_mode(&path, PACK_MODE).map_err(|e| e.to_string())?;
            let identity = FileIdentity::of(&std::fs::metadata(&path).map_err(|e| e.to_string())?);
            // The file must still be what was verified: its digest, read back once.
            let stored = std::fs::read(&path).map_err(|e| e.to_string())?;
            if sha256_hex(&stored) != pack.digest {
                return Err("the file changed while it was being sealed".into());
            }
            let tag = Seal::tag(&key, &pack.digest, &identity, &facts, &manifest);
            let seal = Seal {
                identity,
                facts,
                manifest,
                tag,
            };
            let json = serde_json::to_vec(&seal).map_err(|e| e.to_string())?;
            fsutil::write_atomic(&self.seal_path(pack), &json, 0o600).map_err(|e| e.to_string())
        })();
        if let Err(error) = sealed {
            tracing::warn!(pack = %pack.descriptor, %error, "cannot seal the installed pack; the next check reads it whole");
        }
    }
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    }
    #[cfg(not(unix))]
    let _ = (path, mode);
    Ok(())
}
