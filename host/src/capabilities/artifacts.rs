//! Artifacts verified by the host: `process.fetch-artifact` copies a
//! revision's artifact into the content-addressed store (`artifacts/<sha256>`
//! in the state directory), checking its sha256 against the revision's
//! `artifact-digest` *before* anything can use it, then places it at
//! `revisions/<dir>/artifact` in the environment's work directory. A mismatch
//! is refused and nothing is placed. `file://` locations are copied;
//! `http(s)://` ones are downloaded from origins the environment grants
//! (`download`); image references and other schemes are refused by name.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use cap_std::fs::Dir;
use sha2::{Digest, Sha256};

use crate::capabilities::Workspace;
use crate::contract::bindings::envpack::deployer::process::ArtifactError;
use envpack_model::{Environment, Grants, MAX_ARTIFACT_BYTES};

/// Copies `source` into `out`, at most [`MAX_ARTIFACT_BYTES`], returning
/// the sha256 of what was written. `what` names the source in errors.
fn copy_hashed(source: impl Read, out: &mut std::fs::File, what: &str) -> Result<String, ArtifactError> {
    let unavailable = |e: std::io::Error| ArtifactError::Unavailable(format!("{what}: {e}"));
    let mut source = source.take(MAX_ARTIFACT_BYTES + 1);
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
            return Err(ArtifactError::Unavailable(format!(
                "{what} is larger than {MAX_ARTIFACT_BYTES} bytes"
            )));
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(unavailable)?;
    }
    out.sync_all().map_err(unavailable)?;
    Ok(hex::encode(hasher.finalize()))
}

/// Puts the verified bytes of `expected` into the content-addressed store,
/// read-only, if they are not there yet.
async fn store(
    found: &envpack_model::Revision,
    workspace: &Workspace,
    grants: &Grants,
    expected: &str,
    left: Duration,
) -> Result<PathBuf, ArtifactError> {
    let stored = workspace.artifact_store.join(expected);
    if stored.is_file() {
        return Ok(stored);
    }
    let location = &found.artifact.location;
    let tmp = workspace
        .artifact_store
        .join(format!("incoming-{expected}.tmp-{}", std::process::id()));
    let actual = if let Some(path) = location.strip_prefix("file://") {
        let source = std::fs::File::open(path).map_err(|e| ArtifactError::Unavailable(format!("{path}: {e}")))?;
        let mut out = std::fs::File::create(&tmp).map_err(|e| ArtifactError::Unavailable(format!("store: {e}")))?;
        copy_hashed(source, &mut out, path)
    } else if location.starts_with("http://") || location.starts_with("https://") {
        crate::capabilities::download::download(location, grants, &tmp, left).await
    } else {
        return Err(ArtifactError::NotAllowed(format!(
            "{location:?} is not a file:// or http(s):// location; image references are not fetched"
        )));
    };
    let actual = match actual {
        Ok(actual) => actual,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    if actual != expected {
        let _ = std::fs::remove_file(&tmp);
        return Err(ArtifactError::DigestMismatch(format!(
            "{location} has sha256:{actual}, but revision {} names sha256:{expected}; nothing was placed",
            found.id
        )));
    }
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o444))
        .and_then(|()| std::fs::rename(&tmp, &stored))
        .map_err(|e| ArtifactError::Unavailable(format!("store: {e}")))?;
    Ok(stored)
}

/// Fetches and verifies `revision`'s artifact; returns its path relative
/// to the work directory. `left` is what remains of the call's deadline.
///
/// The store's copy is hashed again while it is placed: an entry changed
/// since it was stored is removed, and nothing is placed. Placing goes
/// through the work directory without following links out of it, and
/// creates the file afresh (whatever the pack left at its name is removed).
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
    let stored = store(found, workspace, grants, &expected, left).await?;
    let work_error = |e: std::io::Error| ArtifactError::Unavailable(format!("work directory: {e}"));
    let work = Dir::open_ambient_dir(&workspace.work_dir, cap_std::ambient_authority()).map_err(work_error)?;
    let name = revision_dir_name(revision);
    let dir = Path::new("revisions").join(&name);
    work.create_dir_all(&dir).map_err(work_error)?;
    let (tmp, placed) = (dir.join("artifact.tmp"), dir.join("artifact"));
    match work.symlink_metadata(&tmp) {
        Ok(meta) if meta.is_dir() => work.remove_dir_all(&tmp).map_err(work_error)?,
        Ok(_) => work.remove_file(&tmp).map_err(work_error)?,
        Err(_) => {}
    }
    let mut options = cap_std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    let mut out = work.open_with(&tmp, &options).map_err(work_error)?.into_std();
    let source = std::fs::File::open(&stored).map_err(|e| ArtifactError::Unavailable(format!("store: {e}")))?;
    let actual = copy_hashed(source, &mut out, "the stored artifact")?;
    if actual != expected {
        let _ = work.remove_file(&tmp);
        let _ = std::fs::remove_file(&stored);
        return Err(ArtifactError::DigestMismatch(format!(
            "the stored copy of sha256:{expected} no longer has that digest (it was changed after it was \
             stored); it was removed and nothing was placed: fetch the artifact again"
        )));
    }
    // Executable, so that a single-executable artifact can be run as it is.
    out.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .map_err(work_error)?;
    work.rename(&tmp, &work, &placed).map_err(work_error)?;
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
