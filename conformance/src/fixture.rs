//! The fixture environment every check starts from: two deployments (`web`
//! with A1 at 90% and A2 at 10%, `api` with B1 at 100%) and three revisions
//! (A1 and B1 share sequence 1, as the first revisions of two deployments
//! do), plus the variants checks need (bad splits, long ids, a long history,
//! a revision alone).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use envpack_model::{
    Artifact, Capability, DeploymentDoc, Environment, EnvironmentDoc, Lifecycle, Revision, SplitEntry, TrafficSplit,
};

/// What a pack that deploys something real needs in every fixture
/// environment (`host conformance --setting ... --artifact ...`): pack
/// settings, one real artifact for every revision, revision settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inputs {
    /// Pack settings of every fixture environment.
    pub settings: BTreeMap<String, String>,
    /// The artifact every fixture revision names (its real digest).
    pub artifact: Option<Artifact>,
    /// Added to every fixture revision's settings; an empty value removes the key.
    pub revision_settings: BTreeMap<String, String>,
}

impl Inputs {
    /// `path` as the artifact of every fixture revision: `file://` and its sha256.
    pub fn artifact_file(path: &Path) -> Result<Artifact, String> {
        let path = path
            .canonicalize()
            .map_err(|e| format!("artifact {}: {e}", path.display()))?;
        let bytes = std::fs::read(&path).map_err(|e| format!("artifact {}: {e}", path.display()))?;
        Ok(Artifact {
            digest: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            location: format!("file://{}", path.display()),
        })
    }

    pub(crate) fn apply(&self, doc: &mut EnvironmentDoc) {
        doc.settings.extend(self.settings.clone());
        for deployment in &mut doc.deployments {
            for revision in &mut deployment.revisions {
                if let Some(artifact) = &self.artifact {
                    revision.artifact = artifact.clone();
                }
                for (key, value) in &self.revision_settings {
                    if value.is_empty() {
                        revision.settings.remove(key);
                    } else {
                        revision.settings.insert(key.clone(), value.clone());
                    }
                }
            }
        }
    }
}

/// Revision and deployment ids of one fixture.
#[derive(Clone, Debug)]
pub struct Ids {
    pub web: String,
    pub api: String,
    pub a1: String,
    pub a2: String,
    pub b1: String,
}

impl Ids {
    pub fn standard() -> Self {
        Ids {
            web: "web".into(),
            api: "api".into(),
            a1: "01JBW0000000000000000000A1".into(),
            a2: "01JBW0000000000000000000A2".into(),
            b1: "01JBW0000000000000000000B1".into(),
        }
    }

    /// Maximum-length (256 bytes) and unicode ids.
    pub fn unusual() -> Self {
        Ids {
            web: format!("wéb-✓-{}", "d".repeat(245)),
            api: "api-ünïcødé-部署".into(),
            a1: "r".repeat(256),
            a2: "révision-✓-02".into(),
            b1: "ревизия-b1".into(),
        }
    }
}

/// An id for a revision no fixture contains.
pub const UNKNOWN_REVISION: &str = "01JBW00000000000000UNKNOWN";

/// A fixture revision. `number` is unique in the environment and names its
/// artifact and port; `sequence` rises per deployment, so two deployments'
/// revisions share sequences (a pack must not take them for identities).
pub(crate) fn revision(id: &str, number: u64, sequence: u64, lifecycle: Lifecycle) -> Revision {
    Revision {
        id: id.to_string(),
        deployment: String::new(),
        sequence,
        lifecycle,
        artifact: Artifact {
            digest: format!("sha256:{number:064x}"),
            location: format!("file:///builds/{number}.tar.gz"),
        },
        drain_seconds: 5,
        settings: [("PORT".to_string(), format!("{}", 8000 + number))].into(),
    }
}

fn entry(revision: &str, weight_bps: u32) -> SplitEntry {
    SplitEntry {
        revision: revision.to_string(),
        weight_bps,
    }
}

/// A fixture document, to be adjusted by a check before it becomes an environment.
pub struct Fixture {
    pub ids: Ids,
    pub doc: EnvironmentDoc,
    /// Artifacts set after the bench's inputs: `(revision, location)`.
    locations: Vec<(String, String)>,
}

impl Fixture {
    /// The standard shape with `ids`, in environment `env_id`, granting every capability.
    pub fn new(env_id: &str, ids: Ids) -> Self {
        let web = DeploymentDoc {
            id: ids.web.clone(),
            split: Some(TrafficSplit {
                generation: 1,
                entries: vec![entry(&ids.a1, 9000), entry(&ids.a2, 1000)],
            }),
            revisions: vec![
                revision(&ids.a1, 1, 1, Lifecycle::Ready),
                revision(&ids.a2, 2, 2, Lifecycle::Ready),
            ],
        };
        let api = DeploymentDoc {
            id: ids.api.clone(),
            split: Some(TrafficSplit {
                generation: 1,
                entries: vec![entry(&ids.b1, 10_000)],
            }),
            revisions: vec![revision(&ids.b1, 3, 1, Lifecycle::Ready)],
        };
        let doc = EnvironmentDoc {
            grants: Default::default(),
            id: env_id.to_string(),
            capabilities: Capability::ALL.to_vec(),
            settings: Default::default(),
            deployments: vec![web, api],
        };
        Fixture {
            ids,
            doc,
            locations: Vec::new(),
        }
    }

    /// Replaces web's split entries with `(revision, weight)` pairs.
    pub fn with_web_split(mut self, entries: &[(&str, u32)]) -> Self {
        if let Some(split) = self.doc.deployments[0].split.as_mut() {
            split.generation += 1;
            split.entries = entries.iter().map(|(r, w)| entry(r, *w)).collect();
        }
        self
    }

    /// Adds revision `id` (staged) to api and records api's next split with
    /// it listed at weight 0 beside B1 at 100%.
    pub fn with_api_successor(mut self, id: &str) -> Self {
        let api = &mut self.doc.deployments[1];
        api.revisions.push(revision(id, 4, 2, Lifecycle::Staged));
        if let Some(split) = api.split.as_mut() {
            split.generation += 1;
            split.entries = vec![entry(&self.ids.b1, 10_000), entry(id, 0)];
        }
        self
    }

    /// Removes api's split.
    pub fn without_api_split(mut self) -> Self {
        self.doc.deployments[1].split = None;
        self
    }

    /// Adds `count` archived revisions to web: a long history.
    pub fn with_history(mut self, count: u64) -> Self {
        let revisions = &mut self.doc.deployments[0].revisions;
        for n in 0..count {
            revisions.push(revision(
                &format!("01JBWHIST{n:017}"),
                100 + n,
                100 + n,
                Lifecycle::Archived,
            ));
        }
        self
    }

    /// Only `revision`'s deployment, with only `revision` in it and no split:
    /// the environment of a revision without siblings.
    pub fn alone(mut self, revision: &str) -> Self {
        self.doc.deployments.retain_mut(|d| {
            d.revisions.retain(|r| r.id == revision);
            d.split = None;
            !d.revisions.is_empty()
        });
        self
    }

    /// Gives `revision` an artifact at `location` (whatever the bench's
    /// inputs say), with a digest of the location: one a provider cannot
    /// fetch.
    pub fn with_location(mut self, revision: &str, location: &str) -> Self {
        self.locations.push((revision.to_string(), location.to_string()));
        self
    }

    /// The environment, with the bench's `inputs` applied.
    pub fn build(mut self, inputs: &Inputs) -> Arc<Environment> {
        inputs.apply(&mut self.doc);
        for (id, location) in &self.locations {
            for revision in self.doc.deployments.iter_mut().flat_map(|d| d.revisions.iter_mut()) {
                if &revision.id == id {
                    revision.artifact = Artifact {
                        digest: format!("sha256:{}", hex::encode(Sha256::digest(location.as_bytes()))),
                        location: location.clone(),
                    };
                }
            }
        }
        Arc::new(Environment::from_doc(self.doc).expect("fixtures are valid environments"))
    }
}
