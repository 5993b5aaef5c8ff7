//! The runtime config: the pure projection of an environment's splits and
//! revisions into one JSON document. The host computes it; a pack may report
//! its own view through `report-runtime-config` and the two are compared.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::environment::Environment;

/// Schema id written into every runtime config document.
pub const SCHEMA: &str = "envpack.runtime-config/v1";

/// A revision's artifact, as the runtime sees it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Bundle {
    pub digest: String,
    pub location: String,
}

/// One block per split entry.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RuntimeEntry {
    pub deployment: String,
    pub revision: String,
    pub bundle: Bundle,
    pub refs: BTreeMap<String, String>,
    pub weight_bps: u32,
}

/// The whole document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    pub schema: String,
    pub env: String,
    pub entries: Vec<RuntimeEntry>,
}

impl RuntimeConfig {
    /// Puts entries in canonical order (deployment, then revision) so that
    /// two configs compare equal whatever order they were produced in.
    pub fn canonical(mut self) -> Self {
        self.entries.sort();
        self
    }
}

/// Projects the environment's recorded splits. Costs O(split entries): archived
/// revisions without weight entries are never visited. An entry naming an
/// unknown revision gets an empty bundle, which a pack can never match.
pub fn project(env: &Environment) -> RuntimeConfig {
    let mut entries = Vec::new();
    for deployment in env.deployments() {
        let Some(split) = &deployment.split else {
            continue;
        };
        for entry in &split.entries {
            let revision = env.revision(&entry.revision);
            entries.push(RuntimeEntry {
                deployment: deployment.id.clone(),
                revision: entry.revision.clone(),
                bundle: Bundle {
                    digest: revision.map(|r| r.artifact.digest.clone()).unwrap_or_default(),
                    location: revision.map(|r| r.artifact.location.clone()).unwrap_or_default(),
                },
                refs: revision.map(|r| r.settings.clone()).unwrap_or_default(),
                weight_bps: entry.weight_bps,
            });
        }
    }
    RuntimeConfig {
        schema: SCHEMA.to_string(),
        env: env.id().to_string(),
        entries,
    }
    .canonical()
}
