//! Artifacts verified by the host: `process.fetch-artifact` copies a
//! revision's artifact into the content-addressed store (`artifacts/<sha256>`
//! in the state directory), checking its sha256 against the revision's
//! `artifact-digest` *before* anything can use it, then places it at
//! `revisions/<dir>/artifact` in the environment's work directory. A mismatch
//! is refused and nothing is placed. `file://` locations are copied;
//! `http(s)://` ones are downloaded from origins the environment grants
//! (`download`); image references and other schemes are refused by name.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::capabilities::Workspace;
use crate::contract::bindings::envpack::deployer::process::ArtifactError;
use envpack_model::{Environment, Grants, MAX_ARTIFACT_BYTES};

/// Copies `from` to the file `to`, returning the sha256 of what was written.
fn copy_hashed(from: &Path, to: &Path) -> Result<String, ArtifactError> {
    let unavailable = |e: std::io::Error| ArtifactError::Unavailable(format!("{}: {e}", from.display()));
    let mut source = std::fs::File::open(from)
        .map_err(unavailable)?
        .take(MAX_ARTIFACT_BYTES + 1);
    let tmp = to;
    let mut out = std::fs::File::create(tmp).map_err(|e| ArtifactError::Unavailable(format!("store: {e}")))?;
    let mut hasher = Sha256::new();
    let mut total: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = source.read(&mut buf).map_err(unavailable)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > MAX_ARTIFACT_BYTES {
            let _ = std::fs::remove_file(tmp);
            return Err(ArtifactError::Unavailable(format!(
                "{} is larger than {MAX_ARTIFACT_BYTES} bytes",
                from.display()
            )));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| ArtifactError::Unavailable(format!("store: {e}")))?;
    }
    out.sync_all()
        .map_err(|e| ArtifactError::Unavailable(format!("store: {e}")))?;
    Ok(hex::encode(hasher.finalize()))
}

/// Fetches and verifies `revision`'s artifact; returns its path relative
/// to the work directory. `left` is what remains of the call's deadline.
pub async fn fetch(
    env: &Environment,
    workspace: &Workspace,
    grants: &Grants,
    revision: &str,
    left: Duration,
) -> Result<String, ArtifactError> {
    let found = env
        .revision(revision)
        .ok_or_else(|| ArtifactError::RevisionNotFound(revision.to_string()))?;
    let expected = found
        .artifact
        .digest
        .strip_prefix("sha256:")
        .unwrap_or(&found.artifact.digest)
        .to_string();
    let location = &found.artifact.location;
    let stored = workspace.artifact_store.join(&expected);
    if !stored.is_file() {
        let tmp = workspace
            .artifact_store
            .join(format!("incoming-{expected}.tmp-{}", std::process::id()));
        let actual = if let Some(path) = location.strip_prefix("file://") {
            copy_hashed(Path::new(path), &tmp)?
        } else if location.starts_with("http://") || location.starts_with("https://") {
            crate::capabilities::download::download(location, grants, &tmp, left).await?
        } else {
            return Err(ArtifactError::NotAllowed(format!(
                "{location:?} is not a file:// or http(s):// location; image references are not fetched"
            )));
        };
        if actual != expected {
            let _ = std::fs::remove_file(&tmp);
            return Err(ArtifactError::DigestMismatch(format!(
                "{location} has sha256:{actual}, but revision {revision} names sha256:{expected}; nothing was placed"
            )));
        }
        std::fs::rename(&tmp, &stored).map_err(|e| ArtifactError::Unavailable(format!("store: {e}")))?;
    }
    let name = revision_dir_name(revision);
    let dir = workspace.work_dir.join("revisions").join(&name);
    std::fs::create_dir_all(&dir).map_err(|e| ArtifactError::Unavailable(format!("work directory: {e}")))?;
    let placed = dir.join("artifact");
    let tmp = dir.join("artifact.tmp");
    std::fs::copy(&stored, &tmp).map_err(|e| ArtifactError::Unavailable(format!("work directory: {e}")))?;
    // Executable, so that a single-executable artifact can be run as it is.
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(|e| ArtifactError::Unavailable(format!("work directory: {e}")))?;
    std::fs::rename(&tmp, &placed).map_err(|e| ArtifactError::Unavailable(format!("work directory: {e}")))?;
    Ok(format!("revisions/{name}/artifact"))
}

/// The directory name of a revision in the work directory, as the contract
/// defines it: the id with every byte outside `A-Z a-z 0-9 - _` written as
/// `%xx`; when that is longer than 128 bytes, its first 64 bytes, `~`, and
/// the first 32 hex digits of the id's sha256. Any id gives one safe path
/// component, and different ids give different names.
pub fn revision_dir_name(id: &str) -> String {
    let mut escaped = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            escaped.push(char::from(byte));
        } else {
            escaped.push_str(&format!("%{byte:02x}"));
        }
    }
    if escaped.len() <= 128 {
        return escaped;
    }
    let digest = hex::encode(Sha256::digest(id.as_bytes()));
    format!("{}~{}", &escaped[..64], &digest[..32])
}

#[cfg(test)]
mod tests {
    use super::revision_dir_name;

    #[test]
    fn revision_directories_are_one_safe_component() {
        assert_eq!(
            revision_dir_name("01JBW0000000000000000000A1"),
            "01JBW0000000000000000000A1"
        );
        assert_eq!(revision_dir_name("../x"), "%2e%2e%2fx");
        assert_eq!(revision_dir_name("ré"), "r%c3%a9");
        let long = revision_dir_name(&"r".repeat(256));
        assert_eq!(long.len(), 64 + 1 + 32);
        assert!(long.starts_with(&"r".repeat(64)) && long.contains('~'));
        assert_ne!(long, revision_dir_name(&"r".repeat(255)));
    }
}
