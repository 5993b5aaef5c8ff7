//! Keyed tags: a secret of the state directory's (32 random bytes, mode
//! 0600, created on first use) and keyed BLAKE3 over length-prefixed
//! parts. The host tags what it verified or produced itself — an installed
//! pack's verification record, a compiled-code cache entry — so that it
//! later trusts only records it wrote, in this state directory.

use std::path::Path;

use envpack_model::files as fsutil;

/// A secret to tag records with.
#[derive(Clone)]
pub struct SealKey([u8; 32]);

impl SealKey {
    /// The secret at `path`, created (0600, its directory 0700) if there is
    /// none or it is not 32 bytes.
    pub fn open_or_create(path: &Path) -> std::io::Result<Self> {
        if let Some(existing) = std::fs::read(path)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
        {
            return Ok(SealKey(existing));
        }
        if let Some(dir) = path.parent() {
            fsutil::create_private_dir(dir)?;
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| std::io::Error::other(e.to_string()))?;
        fsutil::write_atomic(path, &secret, 0o600)?;
        Ok(SealKey(secret))
    }

    /// The secret at `path`, if there is one (a reader never creates it).
    pub fn open(path: &Path) -> Option<Self> {
        let bytes = std::fs::read(path).ok()?;
        <[u8; 32]>::try_from(bytes.as_slice()).ok().map(SealKey)
    }

    /// A key from its bytes (tests).
    pub fn from_bytes(secret: [u8; 32]) -> Self {
        SealKey(secret)
    }

    /// Keyed BLAKE3 over `parts`, each prefixed with its length, so that no
    /// two different lists of parts are tagged alike. `blake3::Hash`
    /// compares in constant time.
    pub fn tag(&self, parts: &[&[u8]]) -> blake3::Hash {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        for part in parts {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hasher.finalize()
    }

    /// A streaming hasher over one long part (a file's bytes) with the
    /// same key; finish it with [`blake3::Hasher::finalize`].
    pub fn hasher(&self) -> blake3::Hasher {
        blake3::Hasher::new_keyed(&self.0)
    }
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_length_prefixed_and_the_key_matters() {
        let key = SealKey::from_bytes([7; 32]);
        assert_ne!(key.tag(&[b"ab", b"c"]), key.tag(&[b"a", b"bc"]));
        assert_eq!(key.tag(&[b"ab", b"c"]), key.tag(&[b"ab", b"c"]));
        assert_ne!(key.tag(&[b"x"]), SealKey::from_bytes([8; 32]).tag(&[b"x"]));
    }

    #[test]
    fn a_secret_is_created_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/secret");
        assert!(SealKey::open(&path).is_none());
        let first = SealKey::open_or_create(&path).unwrap();
        let again = SealKey::open_or_create(&path).unwrap();
        assert_eq!(first.tag(&[b"x"]), again.tag(&[b"x"]));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
