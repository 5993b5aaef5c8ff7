//! The index of installed packs, in the records: which pack (digest,
//! descriptor, signer) was installed on which machine, from where — a file
//! path or an OCI reference pinned by digest. With records shared by
//! several machines it tells a machine that lacks an environment's pinned
//! pack where to get it, and `host pack sync` installs what it lacks from
//! there. The index only points: every machine loads, verifies (digest,
//! signature, its own trust store) and judges its own copy.

use envpack_host::StateDir;
use envpack_trust::{InstalledPack, Registry};
use serde::Serialize;

use crate::db::Location;
use crate::error::StoreError;
use crate::sql::{Db, OptionalExt, params};

/// One pack of the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IndexedPack {
    pub digest: String,
    pub descriptor: String,
    pub signer: String,
    /// Where it was installed from: a path on `machine`, or `oci://...@sha256:...`.
    pub source: String,
    pub machine: String,
    pub installed_at: i64,
}

/// Records that `installed` was installed here from `source`.
pub fn record(state: &StateDir, installed: &InstalledPack, signer: &str, source: &str) -> Result<(), StoreError> {
    let mut db = Location::of(state).open()?;
    let tx = db.transaction()?;
    tx.execute(
        "INSERT INTO installed_packs (digest, descriptor, signer, source, machine, installed_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT (digest) DO UPDATE SET source = ?4, machine = ?5, installed_at = ?6",
        params![
            installed.digest,
            installed.descriptor,
            signer,
            source,
            crate::sql::machine_name(),
            crate::ops::now()
        ],
    )?;
    tx.commit()?;
    Ok(())
}

/// An index row, as [`row`] reads it.
const SELECT: &str = "SELECT digest, descriptor, signer, source, machine, installed_at FROM installed_packs";

/// The index entry of `digest` (hex, as the registry names packs).
pub fn find(db: &Db, digest: &str) -> Result<Option<IndexedPack>, StoreError> {
    Ok(db
        .query_row(
            &format!("{SELECT} WHERE digest = ?1"),
            params![digest.trim_start_matches("sha256:")],
            row,
        )
        .optional()?)
}

fn row(r: &crate::sql::Row) -> Result<IndexedPack, crate::sql::DbError> {
    Ok(IndexedPack {
        digest: r.get(0)?,
        descriptor: r.get(1)?,
        signer: r.get(2)?,
        source: r.get(3)?,
        machine: r.get(4)?,
        installed_at: r.get(5)?,
    })
}

/// The newest pack of the index that `req` accepts and this machine has
/// not installed (another machine's): what a command that found nothing
/// here can point to.
pub fn elsewhere(
    db: &Db,
    registry: &Registry,
    req: &envpack_trust::Requirement,
) -> Result<Option<IndexedPack>, StoreError> {
    let all = db.query_map(&format!("{SELECT} ORDER BY installed_at DESC"), params![], row)?;
    let mut fits: Vec<(envpack_trust::Descriptor, IndexedPack)> = all
        .into_iter()
        .filter(|p| registry.lookup(&p.digest).is_err())
        .filter_map(|p| Some((p.descriptor.parse::<envpack_trust::Descriptor>().ok()?, p)))
        .filter(|(d, _)| d.name == req.name && req.req.matches(&d.version))
        .collect();
    fits.sort_by(|a, b| b.0.version.cmp(&a.0.version));
    Ok(fits.into_iter().next().map(|(_, p)| p))
}

/// Every pack of the index this machine has not installed.
pub fn missing_here(state: &StateDir) -> Result<Vec<IndexedPack>, StoreError> {
    let db = Location::of(state).open_read_only()?;
    let registry = Registry::open(&state.packs())?;
    let all = db.query_map(&format!("{SELECT} ORDER BY descriptor, digest"), params![], row)?;
    Ok(all
        .into_iter()
        .filter(|p| registry.lookup(&p.digest).is_err())
        .collect())
}
