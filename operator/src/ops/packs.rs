//! Removing an installed pack: refused while an environment is bound to it
//! (its commands would stop working), unless forced.

use envpack_host::StateDir;
use envpack_trust::{InstalledPack, Registry};

use crate::error::StoreError;
use crate::read::Reader;

/// Removes the pack `selector` names (descriptor or digest prefix).
pub fn remove_pack(state: &StateDir, selector: &str, force: bool) -> Result<InstalledPack, StoreError> {
    let _span = tracing::info_span!("pack remove", selector).entered();
    let mut registry = Registry::open(&state.packs())?;
    let pack = registry.lookup(selector)?.clone();
    let bound: Vec<String> = Reader::open(state)?
        .environments()?
        .into_iter()
        .filter(|e| e.binding.pack_digest == pack.digest || e.binding.descriptor == pack.descriptor)
        .map(|e| e.id)
        .collect();
    if !bound.is_empty() && !force {
        return Err(StoreError::PackInUse {
            descriptor: pack.descriptor,
            environments: bound,
        });
    }
    Ok(registry.remove(selector)?)
}
