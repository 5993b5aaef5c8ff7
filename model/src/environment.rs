//! The environment the host hands to packs: its deployments, revisions and
//! traffic splits, indexed for lookups by id, and the grammar of ids.
//!
//! The JSON form (the `--env ENV.json` file) is documented in the README. It
//! is parsed once into an [`Environment`]; every verb call then borrows the
//! same immutable value, so a call never costs more because the environment
//! has a long archived history.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::capability::Capability;
use crate::grants::{GrantError, Grants};
use crate::lifecycle::Lifecycle;

/// Where a revision's artifact lives and what it must hash to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// `sha256:` followed by 64 lowercase hex digits.
    pub digest: String,
    pub location: String,
}

/// One build of a deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    pub id: String,
    /// Filled in from the enclosing deployment when parsed from JSON.
    #[serde(default, skip_serializing)]
    pub deployment: String,
    pub sequence: u64,
    pub lifecycle: Lifecycle,
    pub artifact: Artifact,
    #[serde(default)]
    pub drain_seconds: u32,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
}

/// One `(revision, weight)` entry of a traffic split, in basis points.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitEntry {
    pub revision: String,
    pub weight_bps: u32,
}

/// The recorded traffic split of one deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrafficSplit {
    #[serde(default)]
    pub generation: u64,
    pub entries: Vec<SplitEntry>,
}

/// A long-lived slot with at most one traffic split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deployment {
    pub id: String,
    pub split: Option<TrafficSplit>,
}

/// An environment: its pack settings, granted capabilities, deployments and
/// every revision, indexed by id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    id: String,
    settings: BTreeMap<String, String>,
    capabilities: Vec<Capability>,
    grants: Grants,
    deployments: BTreeMap<String, Deployment>,
    revisions: HashMap<String, Revision>,
}

/// Why an environment document was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read environment file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("environment JSON is malformed: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Grant(GrantError),
    #[error("{what} {value:?} is not a valid id: {reason}")]
    InvalidId {
        what: &'static str,
        value: String,
        reason: &'static str,
    },
    #[error("revision {revision:?} has artifact digest {digest:?}; expected `sha256:` and 64 lowercase hex digits")]
    InvalidDigest { revision: String, digest: String },
    #[error("revision id {0:?} appears more than once")]
    DuplicateRevision(String),
    #[error("deployment id {0:?} appears more than once")]
    DuplicateDeployment(String),
}

/// The longest id the host accepts, in bytes.
pub const MAX_ID_BYTES: usize = 256;

/// How much of a bad id an error quotes, in characters.
const QUOTED_CHARS: usize = 64;

/// Checks the grammar shared by every id: 1..=256 bytes, no whitespace,
/// no control characters, and none of the characters that make text read
/// other than it is (bidirectional overrides and isolates, zero-width
/// characters: the "Trojan Source" class). Other Unicode is allowed.
pub fn validate_id(what: &'static str, value: &str) -> Result<(), ModelError> {
    let reason = if value.is_empty() {
        Some("it is empty")
    } else if value.len() > MAX_ID_BYTES {
        Some("it is longer than 256 bytes")
    } else if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("it contains whitespace or a control character")
    } else if value.chars().any(crate::text::is_deceptive) {
        Some("it contains a bidirectional control or zero-width character")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ModelError::InvalidId {
            what,
            value: quoted(value),
            reason,
        }),
        None => Ok(()),
    }
}

/// A bad input as an error quotes it: its first [`QUOTED_CHARS`]
/// characters, written out (the whole of a 10 KB id helps no one).
pub fn quoted(value: &str) -> String {
    let count = value.chars().count();
    let head: String = value.chars().take(QUOTED_CHARS).collect();
    let head = crate::text::printable(&head).into_owned();
    if count > QUOTED_CHARS {
        format!("{head}… ({count} characters)")
    } else {
        head
    }
}

fn validate_digest(revision: &Revision) -> Result<(), ModelError> {
    let hex = revision.artifact.digest.strip_prefix("sha256:");
    let valid =
        hex.is_some_and(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    if valid {
        Ok(())
    } else {
        Err(ModelError::InvalidDigest {
            revision: revision.id.clone(),
            digest: revision.artifact.digest.clone(),
        })
    }
}

fn grants_empty(grants: &Grants) -> bool {
    grants == &Grants::default()
}

/// The JSON document, as written by operators and tests.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentDoc {
    pub id: String,
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Scopes of `process`, `probe`, `http`, `secrets`; each grants its capability.
    #[serde(default, skip_serializing_if = "grants_empty")]
    pub grants: Grants,
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    #[serde(default)]
    pub deployments: Vec<DeploymentDoc>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentDoc {
    pub id: String,
    #[serde(default)]
    pub split: Option<TrafficSplit>,
    #[serde(default)]
    pub revisions: Vec<Revision>,
}

impl Environment {
    /// Reads and validates an environment file.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text)
    }

    /// Parses and validates an environment document.
    pub fn from_json(text: &str) -> Result<Self, ModelError> {
        let doc: EnvironmentDoc = serde_json::from_str(text)?;
        Self::from_doc(doc)
    }

    /// Validates ids and digests and builds the indexes.
    pub fn from_doc(doc: EnvironmentDoc) -> Result<Self, ModelError> {
        validate_id("environment id", &doc.id)?;
        let mut deployments = BTreeMap::new();
        let mut revisions = HashMap::new();
        for dep in doc.deployments {
            validate_id("deployment id", &dep.id)?;
            for mut revision in dep.revisions {
                validate_id("revision id", &revision.id)?;
                validate_digest(&revision)?;
                revision.deployment.clone_from(&dep.id);
                if revisions.contains_key(&revision.id) {
                    return Err(ModelError::DuplicateRevision(revision.id));
                }
                revisions.insert(revision.id.clone(), revision);
            }
            let deployment = Deployment {
                id: dep.id.clone(),
                split: dep.split,
            };
            if deployments.insert(dep.id.clone(), deployment).is_some() {
                return Err(ModelError::DuplicateDeployment(dep.id));
            }
        }
        let grants = doc.grants.resolve().map_err(ModelError::Grant)?;
        let mut capabilities = doc.capabilities;
        capabilities.extend(grants.capabilities());
        capabilities.sort();
        capabilities.dedup();
        Ok(Environment {
            id: doc.id,
            settings: doc.settings,
            capabilities,
            grants,
            deployments,
            revisions,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    /// Capabilities the operator granted to this environment's pack.
    pub fn granted(&self) -> &[Capability] {
        &self.capabilities
    }

    /// The scopes of what is granted.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// The same environment with `grants` added (the bench gives its
    /// fixtures what the author granted on the command line).
    pub fn with_grants(mut self, grants: &Grants) -> Self {
        self.grants.merge(grants.clone());
        self.capabilities.extend(grants.capabilities());
        self.capabilities.sort();
        self.capabilities.dedup();
        self
    }

    /// The environment with `deployment`'s recorded split replaced (for a
    /// caller that plays the host's part, like the bench moving traffic
    /// between verbs). An unknown deployment changes nothing.
    pub fn with_split(mut self, deployment: &str, split: TrafficSplit) -> Self {
        if let Some(found) = self.deployments.get_mut(deployment) {
            found.split = Some(split);
        }
        self
    }

    /// Every revision, whatever its lifecycle, in no particular order.
    pub fn revisions(&self) -> impl Iterator<Item = &Revision> {
        self.revisions.values()
    }

    pub fn revision(&self, id: &str) -> Option<&Revision> {
        self.revisions.get(id)
    }

    pub fn deployment(&self, id: &str) -> Option<&Deployment> {
        self.deployments.get(id)
    }

    /// Deployments in id order.
    pub fn deployments(&self) -> impl Iterator<Item = &Deployment> {
        self.deployments.values()
    }

    pub fn revision_count(&self) -> usize {
        self.revisions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn doc(revisions: &str) -> String {
        format!(r#"{{"id":"dev","deployments":[{{"id":"web","revisions":[{revisions}]}}]}}"#)
    }

    fn rev(id: &str, digest: &str) -> String {
        format!(r#"{{"id":"{id}","sequence":1,"lifecycle":"ready","artifact":{{"digest":"{digest}","location":"x"}}}}"#)
    }

    #[test]
    fn parses_and_indexes() {
        let env = Environment::from_json(&doc(&rev("r1", DIGEST))).unwrap();
        assert_eq!(env.revision("r1").unwrap().deployment, "web");
        assert_eq!(env.revision_count(), 1);
        assert!(env.revision("r2").is_none());
    }

    #[test]
    fn refuses_duplicate_revisions() {
        let text = doc(&format!("{},{}", rev("r1", DIGEST), rev("r1", DIGEST)));
        let err = Environment::from_json(&text).unwrap_err();
        assert!(matches!(err, ModelError::DuplicateRevision(id) if id == "r1"));
    }

    #[test]
    fn refuses_bad_digest() {
        let err = Environment::from_json(&doc(&rev("r1", "md5:abc"))).unwrap_err();
        assert!(err.to_string().contains("md5:abc"), "{err}");
    }

    #[test]
    fn refuses_bad_ids() {
        assert!(validate_id("x", "").is_err());
        assert!(validate_id("x", "a b").is_err());
        assert!(validate_id("x", &"a".repeat(257)).is_err());
        assert!(validate_id("x", "ünïcødé-✓").is_ok());
        assert!(validate_id("x", "deploy\u{202E}gnp").is_err(), "bidi override");
        assert!(validate_id("x", "a\u{200B}b").is_err(), "zero-width space");
        assert!(validate_id("x", "a\u{2066}b").is_err(), "bidi isolate");
        let long = "é".repeat(10_000);
        let message = validate_id("revision id", &long).unwrap_err().to_string();
        assert!(
            message.len() < 300,
            "a bad id is quoted, not echoed whole: {} bytes",
            message.len()
        );
        assert!(message.contains("(10000 characters)"), "{message}");
    }

    #[test]
    fn refuses_unknown_fields() {
        let err = Environment::from_json(r#"{"id":"dev","deploymets":[]}"#).unwrap_err();
        assert!(err.to_string().contains("deploymets"), "{err}");
    }
}
