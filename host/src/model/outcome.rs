//! Checks what a pack claims against what the host recorded: a revision verb
//! must echo its revision, a split outcome must equal the recorded split of
//! its own deployment, a reported runtime config is compared with the host's
//! projection, and no result may exceed the caps.

use crate::contract::bindings::wit;
use crate::contract::verb::{Health, Outcome, Request, Verb};
use crate::error::{Origin, ProviderCause, VerbError};
use crate::model::preconditions::recorded_split;
use crate::model::runtime_config::{self, Bundle, RuntimeConfig, RuntimeEntry};
use crate::model::{Environment, SplitEntry};
use crate::sandbox::limits::ResultCaps;

/// A verb's result as lifted from the guest, before any check.
pub(crate) enum Raw {
    Revision(Result<wit::RevisionOutcome, wit::DeployError>),
    /// The deployment the split was applied for, and the result.
    Split(String, Result<wit::SplitOutcome, wit::DeployError>),
    Config(Result<Option<wit::RuntimeConfig>, wit::DeployError>),
    Health(Result<wit::Health, wit::DeployError>),
}

/// Bytes the host prints for one list element beyond its strings (field
/// names, quotes, a weight): an empty entry is not free to show.
const ELEMENT_BYTES: usize = 128;

/// A string as the host will print it (escapes written out).
fn text(s: &str) -> usize {
    crate::text::printed_len(s)
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
    }
}

/// Converts a typed error the pack returned.
pub(crate) fn pack_error(env: &Environment, verb: Verb, error: wit::DeployError) -> VerbError {
    match error {
        wit::DeployError::RevisionNotFound(revision) => VerbError::RevisionNotFound {
            env: env.id().to_string(),
            revision,
            origin: Origin::Pack,
        },
        wit::DeployError::SplitNotFound(deployment) => VerbError::SplitNotFound {
            deployment,
            origin: Origin::Pack,
        },
        wit::DeployError::InvalidSplit(sum) => VerbError::InvalidSplit {
            deployment: String::new(),
            sum,
            detail: "reported by the pack".to_string(),
            origin: Origin::Pack,
        },
        wit::DeployError::Provider(message) if message.trim().is_empty() => VerbError::Provider {
            verb,
            cause: ProviderCause::EmptyMessage,
        },
        wit::DeployError::Provider(message) => VerbError::Provider {
            verb,
            cause: ProviderCause::Reported(message),
        },
    }
}

fn format_entries(deployment: &str, entries: &[SplitEntry]) -> String {
    let list: Vec<String> = entries
        .iter()
        .map(|e| format!("{}={}", e.revision, e.weight_bps))
        .collect();
    format!("{deployment}: [{}]", list.join(", "))
}

fn check_split(env: &Environment, deployment: &str, outcome: wit::SplitOutcome) -> Result<Outcome, VerbError> {
    let expected = recorded_split(env, deployment)?;
    let got: Vec<SplitEntry> = outcome.entries.into_iter().map(entry_from_wit).collect();
    if outcome.deployment != deployment || got != expected.entries {
        return Err(VerbError::CrossDeploymentInterference {
            verb: Verb::ApplyTrafficSplit,
            deployment: deployment.to_string(),
            expected: format_entries(deployment, &expected.entries),
            got: format_entries(&outcome.deployment, &got),
        });
    }
    Ok(Outcome::Split {
        deployment: outcome.deployment,
        entries: got,
    })
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

/// Turns a lifted result into the host's verdict.
/// With `verify_outcome` off (the conformance bench), echoes are reported as
/// the pack made them instead of being refused.
pub(crate) fn verdict(
    env: &Environment,
    request: &Request,
    raw: Raw,
    caps: ResultCaps,
    verify_outcome: bool,
) -> Result<Outcome, VerbError> {
    let verb = request.verb();
    let (what, size) = raw_size(&raw);
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
    let requested = request.revision().unwrap_or_default();
    match raw {
        Raw::Revision(r) => {
            let outcome = r.map_err(|e| pack_error(env, verb, e))?;
            if verify_outcome && outcome.revision != requested {
                return Err(VerbError::OutcomeMismatch {
                    verb,
                    expected: requested.to_string(),
                    got: outcome.revision,
                });
            }
            Ok(Outcome::Revision {
                revision: outcome.revision,
                detail: outcome.detail,
            })
        }
        Raw::Split(deployment, r) => {
            let outcome = r.map_err(|e| pack_error(env, verb, e))?;
            if verify_outcome {
                return check_split(env, &deployment, outcome);
            }
            Ok(Outcome::Split {
                deployment: outcome.deployment,
                entries: outcome.entries.into_iter().map(entry_from_wit).collect(),
            })
        }
        Raw::Config(r) => {
            let pack = r.map_err(|e| pack_error(env, verb, e))?.map(config_from_wit);
            let host = runtime_config::project(env);
            let drift = pack.as_ref().is_some_and(|p| *p != host);
            Ok(Outcome::RuntimeConfig { host, pack, drift })
        }
        Raw::Health(r) => Ok(Outcome::Health {
            revision: requested.to_string(),
            health: health_from_wit(r.map_err(|e| pack_error(env, verb, e))?),
        }),
    }
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
