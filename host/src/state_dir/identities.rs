//! The uid (and gid, the same number) each environment's programs run as
//! when the host runs as root: one per environment, never 0, never an
//! account of the system's (`/etc/passwd`), never another environment's of
//! this state directory. Chosen by hashing the environment's workspace name
//! into [`FIRST`]..[`FIRST`]+[`COUNT`], probing past taken ones, and
//! recorded in `work/identities.json` (0600) under a lock, so it stays the
//! same for the environment's whole life.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::capabilities::process::Identity;

/// The first uid given to an environment.
pub const FIRST: u32 = 200_000;
/// How many uids environments are given from.
pub const COUNT: u32 = 800_000;

pub fn running_as_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The uids the system's accounts use (`/etc/passwd`).
fn system_uids() -> Vec<u32> {
    std::fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect()
}

/// The identity of workspace `name`, allocated on first use.
pub fn of(work: &Path, name: &str) -> std::io::Result<Identity> {
    let lock = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(work.join("identities.lock"))?;
    lock.lock()?;
    let path = work.join("identities.json");
    let mut known: BTreeMap<String, u32> = envpack_model::files::read_json(&path)
        .map_err(std::io::Error::other)?
        .unwrap_or_default();
    if let Some(uid) = known.get(name) {
        return Ok(Identity { uid: *uid, gid: *uid });
    }
    let taken: Vec<u32> = known.values().copied().chain(system_uids()).collect();
    let hash = Sha256::digest(name.as_bytes());
    let start = u32::from_be_bytes([hash[0], hash[1], hash[2], hash[3]]) % COUNT;
    let uid = (0..COUNT)
        .map(|i| FIRST + (start + i) % COUNT)
        .find(|uid| !taken.contains(uid))
        .ok_or_else(|| std::io::Error::other("no uid left for a new environment"))?;
    known.insert(name.to_string(), uid);
    let bytes = serde_json::to_vec_pretty(&known).map_err(std::io::Error::other)?;
    envpack_model::files::write_atomic(&path, &bytes, 0o600)?;
    Ok(Identity { uid, gid: uid })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_workspace_keeps_its_own_uid() {
        let dir = tempfile::tempdir().unwrap();
        let a = of(dir.path(), "env-a").unwrap();
        let b = of(dir.path(), "env-b").unwrap();
        assert_ne!(a.uid, b.uid);
        assert_eq!(of(dir.path(), "env-a").unwrap(), a, "stable");
        assert!((FIRST..FIRST + COUNT).contains(&a.uid));
        assert!(!system_uids().contains(&a.uid));
    }
}
