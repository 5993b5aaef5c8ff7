//! The compiled-code cache: components compiled by this host, kept per (pack
//! digest, engine compatibility hash) in a directory only the host writes.
//! Each entry carries a tag, keyed BLAKE3 (with a secret that never leaves
//! the state directory) over its name and bytes, written right after the
//! entry; the host deserializes an entry only if the tag holds, so it never
//! loads bytes it did not produce. Anything stale or corrupt is rebuilt.
//! (Keyed BLAKE3 replaced HMAC-SHA256: the same guarantee at a fraction of
//! a cached load's time; see BENCHMARKS.md.)

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use serde::Serialize;
use wasmtime::Engine;
use wasmtime::component::Component;

use envpack_model::files as fsutil;

/// The extension of an entry's tag file (entries tagged by older hosts,
/// `.cwasm.mac`, have none and are rebuilt once).
const TAG: &str = "cwasm.tag";

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

/// The cache directory and its secret.
pub struct CompileCache {
    dir: PathBuf,
    secret: [u8; 32],
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
        let key_path = dir.join("secret");
        let existing = std::fs::read(&key_path)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok());
        let secret = match existing {
            Some(secret) => secret,
            None => {
                let mut secret = [0u8; 32];
                getrandom::fill(&mut secret).map_err(|e| fail(e.to_string()))?;
                fsutil::write_atomic(&key_path, &secret, 0o600).map_err(|e| fail(e.to_string()))?;
                secret
            }
        };
        Ok(CompileCache {
            dir: dir.to_path_buf(),
            secret,
        })
    }

    fn entry(&self, engine: &Engine, pack_digest: &str) -> (String, PathBuf) {
        let name = format!("{pack_digest}-{:016x}.cwasm", compat_hash(engine));
        let path = self.dir.join(&name);
        (name, path)
    }

    fn tag(&self, name: &str, bytes: &[u8]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.secret);
        hasher.update(name.as_bytes());
        hasher.update(&[0]);
        hasher.update(bytes);
        hasher.finalize()
    }

    /// The verified entry, or why there is none usable.
    fn read_verified(&self, name: &str, path: &Path) -> Result<Vec<u8>, Option<String>> {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(None),
            Err(e) => return Err(Some(format!("unreadable entry: {e}"))),
        };
        let tag = std::fs::read_to_string(path.with_extension(TAG)).map_err(|_| {
            // An older host's entry (HMAC-tagged) is simply compiled anew.
            let older = path.with_extension("cwasm.mac").exists();
            (!older).then(|| "the entry has no record of being written by this host".to_string())
        })?;
        let tag = blake3::Hash::from_hex(tag.trim()).map_err(|_| Some("the entry's record is corrupt".to_string()))?;
        // `blake3::Hash` compares in constant time.
        if self.tag(name, &bytes) != tag {
            return Err(Some("the entry does not match what this host wrote".to_string()));
        }
        Ok(bytes)
    }

    /// The compiled component for a pack, from the cache or freshly compiled.
    /// `compile` runs only when no verified entry exists.
    pub fn load<E>(
        &self,
        engine: &Engine,
        pack_digest: &str,
        compile: impl FnOnce() -> Result<Component, E>,
    ) -> Result<(Component, CacheEvent), E> {
        let (name, path) = self.entry(engine, pack_digest);
        let reason = match self.read_verified(&name, &path) {
            Ok(bytes) => {
                // SAFETY: `bytes` were produced by `Component::serialize` in this
                // host (the tag keyed with the state directory's secret proves
                // it) for an engine with the same compatibility hash.
                match unsafe { Component::deserialize(engine, &bytes) } {
                    Ok(component) => return Ok((component, CacheEvent::Hit)),
                    Err(e) => Some(format!("the engine refused the entry: {e}")),
                }
            }
            Err(reason) => reason,
        };
        let component = compile()?;
        let event = match reason {
            Some(reason) => {
                tracing::warn!(entry = %path.display(), %reason, "rebuilding compiled-code cache entry");
                CacheEvent::Rebuilt(reason)
            }
            None => CacheEvent::Miss,
        };
        if let Err(e) = self.store(&name, &path, &component) {
            tracing::warn!(entry = %path.display(), error = %e, "cannot write compiled-code cache entry");
        }
        Ok((component, event))
    }

    fn store(&self, name: &str, path: &Path, component: &Component) -> wasmtime::Result<()> {
        let bytes = component.serialize()?;
        let tag = self.tag(name, &bytes).to_hex();
        fsutil::write_atomic(path, &bytes, 0o600)?;
        fsutil::write_atomic(&path.with_extension(TAG), tag.as_bytes(), 0o600)?;
        // An older host's record of this entry, if any, no longer applies.
        let _ = std::fs::remove_file(path.with_extension("cwasm.mac"));
        Ok(())
    }
}
