//! The compiled-code cache: components compiled by this host, kept per (pack
//! digest, engine compatibility hash) in a directory only the host writes
//! (0700; entries read-only, 0400). Beside each entry (`NAME.cwasm`) is its
//! record (`NAME.cwasm.tag`): a keyed BLAKE3 of the entry's bytes, computed
//! from the bytes the host serialized before it wrote them; the entry's
//! file identity (device, inode, size, mtime, ctime) once written; what the
//! pack's `describe` said; and a keyed tag over all of that (the secret
//! never leaves the state directory). The host runs only code it wrote:
//!
//! - **the common case** costs no read of the entry: the record's tag
//!   holds and the open file's identity is the recorded one, so its bytes
//!   are the ones tagged when written; the host then takes a read lease on
//!   it ([`super::lease`]), checks the identity again under the lease, and
//!   maps the file (`Component::deserialize_file`): no copy, and the
//!   pack's memory image is mapped copy-on-write from the file too. A
//!   write to the file while it is mapped stops the process first.
//! - **an entry whose identity changed** (copied, restored, touched) is
//!   read whole and checked against the keyed tag of its bytes; if it
//!   holds, its new identity is recorded (when it did not change during the
//!   read) and it is used from memory; if not, it is rebuilt.
//! - anything else — no record, a record the key did not tag, another
//!   pack's entry under this name — is compiled anew.
//!
//! (Keyed BLAKE3 replaced HMAC-SHA256, and the identity check replaced
//! hashing every entry on every load; see BENCHMARKS.md.)

use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::Component;

use envpack_model::PackInfo;
use envpack_model::files::{self as fsutil, FileIdentity};
use envpack_trust::SealKey;

use crate::sandbox::lease;

/// The extension of an entry's record.
const RECORD: &str = "cwasm.tag";
/// The mode of an entry: read-only, the owner's.
const ENTRY_MODE: u32 = 0o400;

/// What happened when a pack was loaded through the cache.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "cache", content = "reason", rename_all = "kebab-case")]
pub enum CacheEvent {
    /// No cache configured: compiled.
    Disabled,
    /// Loaded from a verified entry.
    Hit,
    /// No entry yet: compiled and stored.
    Miss,
    /// An entry existed but was refused (the reason says why): compiled and stored anew.
    Rebuilt(String),
}

#[derive(Debug, thiserror::Error)]
#[error("compiled-code cache {dir}: {message}")]
pub struct CacheError {
    pub dir: String,
    pub message: String,
}

/// What `describe` said when the entry was written, and the most linear
/// memory its instance held: a load from the cache skips `describe` when
/// that fits the memory budget (the call is pure, so it would say the same).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Described {
    pub info: PackInfo,
    pub peak_memory: usize,
}

/// An entry's record, as written beside it.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    /// Keyed BLAKE3 (hex) of the entry's bytes.
    content: String,
    identity: FileIdentity,
    described: Option<Described>,
    /// Keyed BLAKE3 (hex) over the entry's name and the fields above.
    tag: String,
}

/// A component from the cache.
pub struct Cached {
    pub component: Component,
    pub described: Option<Described>,
    /// The entry, open and leased, when the component runs from its mapping:
    /// keep it as long as the component.
    pub mapping: Option<File>,
}

/// The cache directory and its secret.
pub struct CompileCache {
    dir: PathBuf,
    key: SealKey,
}

fn compat_hash(engine: &Engine) -> u64 {
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.finish()
}

impl CompileCache {
    /// Opens (creating, mode 0700) the cache directory and its secret.
    pub fn open(dir: &Path) -> Result<Self, CacheError> {
        let fail = |message: String| CacheError {
            dir: dir.display().to_string(),
            message,
        };
        fsutil::create_private_dir(dir).map_err(|e| fail(e.to_string()))?;
        let key = SealKey::open_or_create(&dir.join("secret")).map_err(|e| fail(e.to_string()))?;
        Ok(CompileCache {
            dir: dir.to_path_buf(),
            key,
        })
    }

    fn entry(&self, engine: &Engine, pack_digest: &str) -> (String, PathBuf) {
        let name = format!("{pack_digest}-{:016x}.cwasm", compat_hash(engine));
        let path = self.dir.join(&name);
        (name, path)
    }

    fn content_tag(&self, name: &str, bytes: &[u8]) -> blake3::Hash {
        let mut hasher = self.key.hasher();
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(bytes);
        hasher.finalize()
    }

    fn record_tag(&self, name: &str, content: &str, identity: &FileIdentity, described: Option<&Described>) -> String {
        let described = serde_json::to_vec(&described).unwrap_or_default();
        self.key
            .tag(&[
                b"envpack cache record v2",
                name.as_bytes(),
                content.as_bytes(),
                &identity.to_bytes(),
                &described,
            ])
            .to_hex()
            .to_string()
    }

    /// The entry's record, if this host wrote it for this name.
    fn read_record(&self, name: &str, path: &Path) -> Result<Record, Option<String>> {
        let text = match std::fs::read(path.with_extension(RECORD)) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // An entry without a record was not written by this host (no
                // entry at all is a plain miss; an older host's HMAC record,
                // `.cwasm.mac`, is compiled anew quietly).
                let older = path.with_extension("cwasm.mac").exists();
                return Err((path.exists() && !older)
                    .then(|| "the entry has no record of being written by this host".to_string()));
            }
            Err(e) => return Err(Some(format!("unreadable record: {e}"))),
        };
        let Ok(record) = serde_json::from_slice::<Record>(&text) else {
            // An older host's record (a bare tag): compiled anew, quietly.
            return Err(None);
        };
        let expected = self.record_tag(name, &record.content, &record.identity, record.described.as_ref());
        let same = match (blake3::Hash::from_hex(&expected), blake3::Hash::from_hex(&record.tag)) {
            // `blake3::Hash` compares in constant time.
            (Ok(expected), Ok(found)) => expected == found,
            _ => false,
        };
        if !same {
            return Err(Some("the entry's record was not written by this host".to_string()));
        }
        Ok(record)
    }

    /// The verified entry of a pack, or why there is none usable (`None`:
    /// simply not cached yet).
    pub fn lookup(&self, engine: &Engine, pack_digest: &str) -> Result<Cached, Option<String>> {
        let (name, path) = self.entry(engine, pack_digest);
        let record = self.read_record(&name, &path)?;
        match map_recorded(engine, &path, record)? {
            Ok(cached) => Ok(cached),
            Err(record) => self.read_whole(engine, &name, &path, record),
        }
    }

    /// The entry, only if it can be had cheaply: its record intact and its
    /// file the one recorded, mapped as it is (a few system calls; no read
    /// of its code). `None` otherwise: [`Self::lookup`] says why, or reads
    /// it whole.
    pub fn lookup_mapped(&self, engine: &Engine, pack_digest: &str) -> Option<Cached> {
        let (name, path) = self.entry(engine, pack_digest);
        let record = self.read_record(&name, &path).ok()?;
        map_recorded(engine, &path, record).ok()?.ok()
    }

    /// The slow way: the whole entry read and checked against the keyed
    /// tag of its bytes, then used from memory; its identity is recorded
    /// anew if it did not change while it was read.
    fn read_whole(&self, engine: &Engine, name: &str, path: &Path, record: Record) -> Result<Cached, Option<String>> {
        let unreadable = |e: std::io::Error| Some(format!("unreadable entry: {e}"));
        let mut file = File::open(path).map_err(unreadable)?;
        let before = FileIdentity::of_file(&file).map_err(unreadable)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(unreadable)?;
        let after = FileIdentity::of_file(&file).map_err(unreadable)?;
        let content =
            blake3::Hash::from_hex(&record.content).map_err(|_| Some("the entry's record is corrupt".to_string()))?;
        if self.content_tag(name, &bytes) != content {
            return Err(Some("the entry does not match what this host wrote".to_string()));
        }
        // SAFETY: `bytes` are in this process's memory, and their keyed tag
        // proves that this host produced them with `Component::serialize`
        // for an engine with the same compatibility hash.
        let component = unsafe { Component::deserialize(engine, &bytes) }
            .map_err(|e| Some(format!("the engine refused the entry: {e}")))?;
        if before == after && before != record.identity {
            self.write_record(name, path, &record.content, &before, record.described.as_ref());
        }
        Ok(Cached {
            component,
            described: record.described,
            mapping: None,
        })
    }

    /// Stores a freshly compiled component (with what `describe` said, if
    /// known); `serialized` is its serialized form if the compile made it
    /// already (a worker's answer, deserialized into `component`). A failure
    /// to write is only logged: the next load compiles.
    pub fn store(
        &self,
        engine: &Engine,
        pack_digest: &str,
        component: &Component,
        serialized: Option<&[u8]>,
        described: Option<&Described>,
    ) {
        let (name, path) = self.entry(engine, pack_digest);
        let stored = (|| -> Result<(), String> {
            let owned;
            let bytes = match serialized {
                Some(bytes) => bytes,
                None => {
                    owned = component.serialize().map_err(|e| e.to_string())?;
                    &owned[..]
                }
            };
            let content = self.content_tag(&name, bytes).to_hex().to_string();
            fsutil::write_atomic(&path, bytes, ENTRY_MODE).map_err(|e| e.to_string())?;
            // The identity the entry has from now on; the record is written
            // only if the file still holds exactly the bytes tagged.
            let file = File::open(&path).map_err(|e| e.to_string())?;
            let identity = FileIdentity::of_file(&file).map_err(|e| e.to_string())?;
            let mut written = Vec::with_capacity(bytes.len());
            (&file).read_to_end(&mut written).map_err(|e| e.to_string())?;
            if written != bytes || FileIdentity::of_file(&file).map_err(|e| e.to_string())? != identity {
                return Err("the entry changed while it was written".into());
            }
            self.write_record(&name, &path, &content, &identity, described);
            Ok(())
        })();
        if let Err(error) = stored {
            tracing::warn!(entry = %path.display(), %error, "cannot write compiled-code cache entry");
        }
    }

    /// Records what `describe` said in an entry's record (an entry that a
    /// load could not describe from the cache).
    pub fn remember_described(&self, engine: &Engine, pack_digest: &str, described: &Described) {
        let (name, path) = self.entry(engine, pack_digest);
        if let Ok(record) = self.read_record(&name, &path) {
            self.write_record(&name, &path, &record.content, &record.identity, Some(described));
        }
    }

    fn write_record(
        &self,
        name: &str,
        path: &Path,
        content: &str,
        identity: &FileIdentity,
        described: Option<&Described>,
    ) {
        let record = Record {
            content: content.to_string(),
            identity: *identity,
            described: described.cloned(),
            tag: self.record_tag(name, content, identity, described),
        };
        let written = serde_json::to_vec(&record).map_err(|e| e.to_string()).and_then(|json| {
            fsutil::write_atomic(&path.with_extension(RECORD), &json, 0o600).map_err(|e| e.to_string())
        });
        if let Err(error) = written {
            tracing::warn!(entry = %path.display(), %error, "cannot write compiled-code cache record");
        }
        // An older host's record of this entry, if any, no longer applies.
        let _ = std::fs::remove_file(path.with_extension("cwasm.mac"));
    }
}

/// The entry at `path` mapped as it is when its file is the one `record`
/// names; else the record back (the entry must be read whole). `Err(None)`:
/// there is no entry.
fn map_recorded(engine: &Engine, path: &Path, record: Record) -> Result<Result<Cached, Record>, Option<String>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
        Err(e) => return Err(Some(format!("unreadable entry: {e}"))),
    };
    let identity = FileIdentity::of_file(&file).map_err(|e| Some(format!("unreadable entry: {e}")))?;
    if identity == record.identity {
        match map(engine, file, &record.identity) {
            Ok((component, file)) => {
                return Ok(Ok(Cached {
                    component,
                    described: record.described,
                    mapping: Some(file),
                }));
            }
            Err(reason) => tracing::debug!(entry = %path.display(), %reason, "cannot map the entry; reading it"),
        }
    }
    Ok(Err(record))
}

/// Maps an entry whose identity matched its record: lease, identity again
/// under the lease (a write between the first check and the lease would
/// show), then wasmtime maps the very file open here (through
/// `/proc/self/fd`, not the path, which could name another file by now).
fn map(engine: &Engine, file: File, expected: &FileIdentity) -> Result<(Component, File), String> {
    use std::os::fd::AsRawFd;
    lease::take(&file).map_err(|e| format!("no read lease: {e}"))?;
    let identity = FileIdentity::of_file(&file).map_err(|e| e.to_string())?;
    if identity != *expected {
        return Err("the entry changed before it was leased".into());
    }
    let fd_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    // SAFETY: the file's identity is the one recorded when this host wrote
    // it, right after checking that it held exactly the bytes this host
    // serialized (`Component::serialize`, an engine of the same
    // compatibility hash, which wasmtime checks again); the record's keyed
    // tag proves the host wrote the record. The read lease held by `file`
    // (kept with the component) stops this process before anyone can open
    // the file for writing or truncate it, so the mapping never changes
    // while it can run.
    let component = unsafe { Component::deserialize_file(engine, &fd_path) }.map_err(|e| format!("{e:#}"))?;
    Ok((component, file))
}
