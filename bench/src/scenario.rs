//! The environments and calls the benchmarks run: the reference pack's
//! verbs, each measured in a state where repeating it is valid, in
//! environments of a given size (most revisions archived).

use std::sync::Arc;

use envpack_model::{
    Artifact, Capability, DeploymentDoc, Environment, EnvironmentDoc, Lifecycle, Request, Revision, SplitEntry,
    TrafficSplit,
};

use crate::subject::BenchEnv;

const A1: &str = "01JBWBENCH0000000000000A1";
const A2: &str = "01JBWBENCH0000000000000A2";
const B1: &str = "01JBWBENCH0000000000000B1";
/// Staged, to measure a repeated stage.
const S1: &str = "01JBWBENCH0000000000000S1";
/// Drained, to measure a repeated drain.
const D1: &str = "01JBWBENCH0000000000000D1";
/// Never staged, to measure a repeated archive.
const X1: &str = "01JBWBENCH0000000000000X1";
/// Live (non-archived) revisions of every scenario environment.
pub const LIVE: usize = 6;

fn revision(id: String, sequence: u64, lifecycle: Lifecycle) -> Revision {
    Revision {
        id,
        deployment: String::new(),
        sequence,
        lifecycle,
        artifact: Artifact {
            digest: format!("sha256:{sequence:064x}"),
            location: format!("file:///builds/{sequence}.tar.gz"),
        },
        drain_seconds: 5,
        settings: [("PORT".to_string(), "8080".to_string())].into(),
    }
}

fn entry(revision: &str, weight_bps: u32) -> SplitEntry {
    SplitEntry {
        revision: revision.to_string(),
        weight_bps,
    }
}

/// An environment with `size` revisions for the reference pack (`log`, `kv`).
pub fn environment(id: &str, size: usize) -> Arc<Environment> {
    environment_for(id, size, &[Capability::Log, Capability::Kv], &BenchEnv::default())
}

/// An environment with `size` revisions: the live ones plus archived
/// history, granting `capabilities` with the settings and grants of `env`.
pub fn environment_for(id: &str, size: usize, capabilities: &[Capability], env: &BenchEnv) -> Arc<Environment> {
    let mut web: Vec<Revision> = [
        (A1, Lifecycle::Ready),
        (A2, Lifecycle::Ready),
        (S1, Lifecycle::Staged),
        (D1, Lifecycle::Inactive),
        (X1, Lifecycle::Archived),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (id, l))| revision(id.to_string(), i as u64 + 1, l))
    .collect();
    for n in 0..size.saturating_sub(LIVE) {
        web.push(revision(
            format!("01JBWHIST{n:016}"),
            100 + n as u64,
            Lifecycle::Archived,
        ));
    }
    let doc = EnvironmentDoc {
        grants: env.grants.clone(),
        id: id.to_string(),
        capabilities: capabilities.to_vec(),
        settings: env.settings.clone(),
        deployments: vec![
            DeploymentDoc {
                id: "web".into(),
                split: Some(TrafficSplit {
                    generation: 1,
                    entries: vec![entry(A1, 9000), entry(A2, 1000)],
                }),
                revisions: web,
            },
            DeploymentDoc {
                id: "api".into(),
                split: Some(TrafficSplit {
                    generation: 1,
                    entries: vec![entry(B1, 10_000)],
                }),
                revisions: vec![revision(B1.to_string(), 50, Lifecycle::Ready)],
            },
        ],
    };
    Arc::new(Environment::from_doc(doc).expect("scenario environments are valid"))
}

/// Brings the pack's state to where every measured call is valid.
pub fn setup() -> Vec<Request> {
    let mut requests: Vec<Request> = [A1, A2, B1, S1, D1]
        .iter()
        .map(|id| Request::Stage(id.to_string()))
        .collect();
    requests.extend([A1, A2, B1, D1].iter().map(|id| Request::Warm(id.to_string())));
    requests.push(Request::Drain(D1.into()));
    requests.push(Request::ApplyTrafficSplit("web".into()));
    requests.push(Request::ApplyTrafficSplit("api".into()));
    requests
}

/// Every verb, in a state where calling it again and again is valid.
pub fn measured() -> Vec<(&'static str, Request)> {
    vec![
        ("stage-revision", Request::Stage(S1.into())),
        ("warm-revision", Request::Warm(A1.into())),
        ("drain-revision", Request::Drain(D1.into())),
        ("archive-revision", Request::Archive(X1.into())),
        ("apply-traffic-split", Request::ApplyTrafficSplit("web".into())),
        ("report-runtime-config", Request::ReportRuntimeConfig),
        ("probe-revision", Request::Probe(A1.into())),
    ]
}

/// The mixed load of the throughput figure.
pub fn mix() -> Vec<Request> {
    vec![
        Request::Warm(A1.into()),
        Request::Probe(A1.into()),
        Request::ApplyTrafficSplit("web".into()),
        Request::ReportRuntimeConfig,
    ]
}
