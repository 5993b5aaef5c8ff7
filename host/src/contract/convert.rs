//! Every conversion between the WIT types `bindgen!` generates and the
//! model's types, in one place: what the host lends a pack (revisions,
//! splits, lifecycles), what a pack returns (outcomes, errors, health,
//! runtime configs, its `describe`), and the size cap on a result, counted
//! on the lifted WIT values before anything is converted or kept.

use envpack_model::{
    Capability, Health, Lifecycle, PackInfo, ProviderCause, ResultCaps, Revision, RuntimeConfig, SplitEntry,
    TrafficSplit, Verb, VerbError,
    outcome::{PackError, Returned, RevisionOutcome, SplitOutcome},
    runtime_config,
    runtime_config::{Bundle, RuntimeEntry},
};

use crate::contract::bindings::wit;

/// A verb's result as lifted from the guest, before any check.
pub(crate) enum Raw {
    Revision(Result<wit::RevisionOutcome, wit::DeployError>),
    /// The deployment the split was applied for, and the result.
    Split(String, Result<wit::SplitOutcome, wit::DeployError>),
    Config(Result<Option<wit::RuntimeConfig>, wit::DeployError>),
    Health(Result<wit::Health, wit::DeployError>),
    /// The answer; `None` when the pack does not export `endpoints`.
    Endpoint(Option<Result<Option<String>, wit::DeployError>>),
    /// The deployment, and the answer; `None` when the pack does not export `teardown`.
    Released(String, Option<Result<String, wit::DeployError>>),
}

// ---- what the host lends a pack ----

pub(crate) fn lifecycle_to_wit(l: Lifecycle) -> wit::Lifecycle {
    match l {
        Lifecycle::Inactive => wit::Lifecycle::Inactive,
        Lifecycle::Staged => wit::Lifecycle::Staged,
        Lifecycle::Warming => wit::Lifecycle::Warming,
        Lifecycle::Ready => wit::Lifecycle::Ready,
        Lifecycle::Draining => wit::Lifecycle::Draining,
        Lifecycle::Failed => wit::Lifecycle::Failed,
        Lifecycle::Archived => wit::Lifecycle::Archived,
    }
}

pub(crate) fn pairs(map: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

pub(crate) fn revision_to_wit(r: &Revision) -> wit::Revision {
    wit::Revision {
        id: r.id.clone(),
        deployment: r.deployment.clone(),
        sequence: r.sequence,
        lifecycle: lifecycle_to_wit(r.lifecycle),
        artifact_digest: r.artifact.digest.clone(),
        artifact_location: r.artifact.location.clone(),
        drain_seconds: r.drain_seconds,
        settings: pairs(&r.settings),
    }
}

pub(crate) fn split_to_wit(deployment: &str, s: &TrafficSplit) -> wit::TrafficSplit {
    wit::TrafficSplit {
        deployment: deployment.to_string(),
        generation: s.generation,
        entries: s
            .entries
            .iter()
            .map(|e| wit::SplitEntry {
                revision: e.revision.clone(),
                weight_bps: e.weight_bps,
            })
            .collect(),
    }
}

// ---- what a pack returns ----

pub(crate) fn capability_from_wit(c: wit::Capability) -> Capability {
    match c {
        wit::Capability::Log => Capability::Log,
        wit::Capability::Kv => Capability::Kv,
        wit::Capability::Clock => Capability::Clock,
        wit::Capability::Process => Capability::Process,
        wit::Capability::Probe => Capability::Probe,
        wit::Capability::Http => Capability::Http,
        wit::Capability::Secrets => Capability::Secrets,
    }
}

pub(crate) fn pack_info_from_wit(info: wit::PackInfo) -> PackInfo {
    let mut capabilities: Vec<Capability> = info.capabilities.into_iter().map(capability_from_wit).collect();
    capabilities.sort();
    capabilities.dedup();
    PackInfo {
        descriptor: info.descriptor,
        contract_version: info.contract_version,
        capabilities,
        description: info.description,
    }
}

fn error_from_wit(e: wit::DeployError) -> PackError {
    match e {
        wit::DeployError::RevisionNotFound(s) => PackError::RevisionNotFound(s),
        wit::DeployError::SplitNotFound(s) => PackError::SplitNotFound(s),
        wit::DeployError::InvalidSplit(sum) => PackError::InvalidSplit(sum),
        wit::DeployError::Provider(s) => PackError::Provider(s),
    }
}

fn entry_from_wit(e: wit::SplitEntry) -> SplitEntry {
    SplitEntry {
        revision: e.revision,
        weight_bps: e.weight_bps,
    }
}

fn config_from_wit(config: wit::RuntimeConfig) -> RuntimeConfig {
    RuntimeConfig {
        schema: runtime_config::SCHEMA.to_string(),
        env: config.env,
        entries: config
            .entries
            .into_iter()
            .map(|e| RuntimeEntry {
                deployment: e.deployment,
                revision: e.revision,
                bundle: Bundle {
                    digest: e.bundle_digest,
                    location: e.bundle_location,
                },
                refs: e.refs.into_iter().collect(),
                weight_bps: e.weight_bps,
            })
            .collect(),
    }
    .canonical()
}

fn health_from_wit(h: wit::Health) -> Health {
    match h {
        wit::Health::Healthy => Health::Healthy,
        wit::Health::Unhealthy(m) => Health::Unhealthy(m),
        wit::Health::Unsupported => Health::Unsupported,
    }
}

/// What the pack returned, in the model's terms.
pub(crate) fn returned(raw: Raw) -> Returned {
    match raw {
        Raw::Revision(r) => Returned::Revision(
            r.map(|o| RevisionOutcome {
                revision: o.revision,
                detail: o.detail,
            })
            .map_err(error_from_wit),
        ),
        Raw::Split(deployment, r) => Returned::Split(
            deployment,
            r.map(|o| SplitOutcome {
                deployment: o.deployment,
                entries: o.entries.into_iter().map(entry_from_wit).collect(),
            })
            .map_err(error_from_wit),
        ),
        Raw::Config(r) => Returned::Config(r.map(|c| c.map(config_from_wit)).map_err(error_from_wit)),
        Raw::Health(r) => Returned::Health(r.map(health_from_wit).map_err(error_from_wit)),
        Raw::Endpoint(r) => Returned::Endpoint(r.map(|r| r.map_err(error_from_wit))),
        Raw::Released(deployment, r) => Returned::Released(deployment, r.map(|r| r.map_err(error_from_wit))),
    }
}

// ---- the size cap on a result ----

/// Bytes the host prints for one list element beyond its strings (field
/// names, quotes, a weight): an empty entry is not free to show.
const ELEMENT_BYTES: usize = 128;

/// A string as the host will print it (escapes written out).
fn text(s: &str) -> usize {
    envpack_model::text::printed_len(s)
}

fn pairs_size(pairs: &[(String, String)]) -> usize {
    pairs.iter().map(|(k, v)| text(k) + text(v) + ELEMENT_BYTES / 4).sum()
}

fn entries_size(entries: &[wit::SplitEntry]) -> usize {
    entries.iter().map(|e| text(&e.revision) + ELEMENT_BYTES).sum()
}

fn error_size(e: &wit::DeployError) -> usize {
    match e {
        wit::DeployError::RevisionNotFound(s) | wit::DeployError::SplitNotFound(s) | wit::DeployError::Provider(s) => {
            text(s)
        }
        wit::DeployError::InvalidSplit(_) => 8,
    }
}

/// Bytes the host will hold or print for the result: its strings as printed
/// (escapes written out) and a fixed cost per list element.
fn raw_size(raw: &Raw) -> (&'static str, usize) {
    fn either<T>(r: &Result<T, wit::DeployError>, ok: impl Fn(&T) -> usize) -> usize {
        r.as_ref().map_or_else(error_size, ok)
    }
    match raw {
        Raw::Revision(r) => ("a revision outcome", either(r, |o| text(&o.revision) + text(&o.detail))),
        Raw::Split(_, r) => (
            "a split outcome",
            either(r, |o| text(&o.deployment) + entries_size(&o.entries)),
        ),
        Raw::Config(r) => (
            "a runtime config",
            either(r, |c| {
                c.as_ref().map_or(0, |c| {
                    text(&c.env)
                        + c.entries
                            .iter()
                            .map(|e| {
                                text(&e.deployment)
                                    + text(&e.revision)
                                    + text(&e.bundle_digest)
                                    + text(&e.bundle_location)
                                    + pairs_size(&e.refs)
                                    + ELEMENT_BYTES
                            })
                            .sum::<usize>()
                })
            }),
        ),
        Raw::Health(r) => (
            "a health report",
            either(r, |h| match h {
                wit::Health::Unhealthy(m) => text(m),
                _ => 0,
            }),
        ),
        Raw::Released(_, r) => ("a release note", r.as_ref().map_or(0, |r| either(r, |note| text(note)))),
        Raw::Endpoint(r) => (
            "an endpoint",
            r.as_ref()
                .map_or(0, |r| either(r, |url| url.as_deref().map_or(0, text))),
        ),
    }
}

/// Refuses a result larger than the caps, before it is converted or kept.
pub(crate) fn check_size(raw: &Raw, caps: ResultCaps, verb: Verb) -> Result<(), VerbError> {
    let (what, size) = raw_size(raw);
    if size > caps.bytes {
        return Err(VerbError::Provider {
            verb,
            cause: ProviderCause::ResultTooLarge {
                what,
                size,
                cap: caps.bytes,
            },
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_entry() -> wit::RuntimeEntry {
        wit::RuntimeEntry {
            deployment: String::new(),
            revision: String::new(),
            bundle_digest: String::new(),
            bundle_location: String::new(),
            refs: Vec::new(),
            weight_bps: 0,
        }
    }

    #[test]
    fn empty_entries_count_what_printing_them_costs() {
        // 200,000 empty entries are 42 MB printed: over the 1 MiB cap.
        let config = wit::RuntimeConfig {
            env: String::new(),
            entries: vec![empty_entry(); 200_000],
        };
        let (_, size) = raw_size(&Raw::Config(Ok(Some(config))));
        assert!(size > ResultCaps::default().bytes, "{size}");
        // A realistic config stays far below it.
        let config = wit::RuntimeConfig {
            env: "prod".into(),
            entries: vec![empty_entry(); 20],
        };
        let (_, size) = raw_size(&Raw::Config(Ok(Some(config))));
        assert!(size < 8 << 10, "{size}");
    }

    #[test]
    fn escaped_text_counts_as_printed() {
        let outcome = wit::RevisionOutcome {
            revision: "r".into(),
            detail: "\u{1b}".repeat(1000),
        };
        let (_, size) = raw_size(&Raw::Revision(Ok(outcome)));
        assert_eq!(size, 1 + 6 * 1000);
    }
}
