//! The verbs a pack exports, the requests the host accepts for them, and the
//! outcomes it returns after checking what the pack claims.

use std::fmt;

use serde::Serialize;

use crate::environment::SplitEntry;
use crate::runtime_config::RuntimeConfig;

/// One export of the `deployer` interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verb {
    Describe,
    StageRevision,
    WarmRevision,
    DrainRevision,
    ArchiveRevision,
    ApplyTrafficSplit,
    ReportRuntimeConfig,
    ProbeRevision,
    /// Optional (contract 1.2, the `endpoints` export): where one revision
    /// is reached on its own.
    RevisionEndpoint,
    /// Optional (contract 1.2, the `teardown` export): what a deployment
    /// holds beyond its revisions, released.
    ReleaseDeployment,
}

impl Verb {
    pub const ALL: [Verb; 10] = [
        Verb::Describe,
        Verb::StageRevision,
        Verb::WarmRevision,
        Verb::DrainRevision,
        Verb::ArchiveRevision,
        Verb::ApplyTrafficSplit,
        Verb::ReportRuntimeConfig,
        Verb::ProbeRevision,
        Verb::RevisionEndpoint,
        Verb::ReleaseDeployment,
    ];

    /// The WIT name, as packs and operators spell it.
    pub fn name(self) -> &'static str {
        match self {
            Verb::Describe => "describe",
            Verb::StageRevision => "stage-revision",
            Verb::WarmRevision => "warm-revision",
            Verb::DrainRevision => "drain-revision",
            Verb::ArchiveRevision => "archive-revision",
            Verb::ApplyTrafficSplit => "apply-traffic-split",
            Verb::ReportRuntimeConfig => "report-runtime-config",
            Verb::ProbeRevision => "probe-revision",
            Verb::RevisionEndpoint => "revision-endpoint",
            Verb::ReleaseDeployment => "release-deployment",
        }
    }

    pub fn from_name(name: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.name() == name)
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A verb call against one environment, with its target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Stage(String),
    Warm(String),
    Drain(String),
    Archive(String),
    Probe(String),
    ApplyTrafficSplit(String),
    ReportRuntimeConfig,
    Endpoint(String),
    /// A deployment's own resources released (`env remove --teardown`).
    ReleaseDeployment(String),
}

impl Request {
    pub fn verb(&self) -> Verb {
        match self {
            Request::Stage(_) => Verb::StageRevision,
            Request::Warm(_) => Verb::WarmRevision,
            Request::Drain(_) => Verb::DrainRevision,
            Request::Archive(_) => Verb::ArchiveRevision,
            Request::Probe(_) => Verb::ProbeRevision,
            Request::Endpoint(_) => Verb::RevisionEndpoint,
            Request::ReleaseDeployment(_) => Verb::ReleaseDeployment,
            Request::ApplyTrafficSplit(_) => Verb::ApplyTrafficSplit,
            Request::ReportRuntimeConfig => Verb::ReportRuntimeConfig,
        }
    }

    /// The revision a revision verb names.
    pub fn revision(&self) -> Option<&str> {
        match self {
            Request::Stage(id)
            | Request::Warm(id)
            | Request::Drain(id)
            | Request::Archive(id)
            | Request::Probe(id)
            | Request::Endpoint(id) => Some(id),
            Request::ApplyTrafficSplit(_) | Request::ReportRuntimeConfig | Request::ReleaseDeployment(_) => None,
        }
    }
}

/// Health of a revision as the pack reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "message", rename_all = "kebab-case")]
pub enum Health {
    Healthy,
    Unhealthy(String),
    Unsupported,
}

/// What a verb did, after the host checked the pack's claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Outcome {
    /// A revision verb succeeded for exactly the requested revision.
    Revision {
        revision: String,
        detail: String,
    },
    /// The split applied equals the recorded split of the deployment.
    Split {
        deployment: String,
        entries: Vec<SplitEntry>,
    },
    /// The runtime config: the host's projection, and the pack's own view if
    /// it reported one (`drift` is true when the two differ).
    RuntimeConfig {
        host: RuntimeConfig,
        pack: Option<RuntimeConfig>,
        drift: bool,
    },
    Health {
        revision: String,
        health: Health,
    },
    /// Where the revision is reached on its own: `supported` false when the
    /// pack does not export `endpoints` (built against 1.0, 1.1, or without it).
    Endpoint {
        revision: String,
        url: Option<String>,
        supported: bool,
    },
    /// A deployment released: the pack's note, `None` when the pack does
    /// not export `teardown` (its deployment-level resources are left).
    Released {
        deployment: String,
        note: Option<String>,
    },
}
