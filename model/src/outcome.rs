//! Checks what a pack claims against what the host recorded: a revision verb
//! must echo its revision, a split outcome must equal the recorded split of
//! its own deployment, and a reported runtime config is compared with the
//! host's projection. The host converts what the pack returned into
//! [`Returned`] (and caps its size) before any of this runs.

use crate::environment::{Environment, SplitEntry};
use crate::error::{Origin, ProviderCause, VerbError};
use crate::preconditions::recorded_split;
use crate::runtime_config::{self, RuntimeConfig};
use crate::verb::{Health, Outcome, Request, Verb};

/// A typed error as the pack returned it (`deploy-error`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PackError {
    RevisionNotFound(String),
    SplitNotFound(String),
    InvalidSplit(u64),
    Provider(String),
}

/// A revision verb's success as the pack returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionOutcome {
    pub revision: String,
    pub detail: String,
}

/// An `apply-traffic-split` success as the pack returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitOutcome {
    pub deployment: String,
    pub entries: Vec<SplitEntry>,
}

/// A verb's result as the pack returned it, before any check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Returned {
    Revision(Result<RevisionOutcome, PackError>),
    /// The deployment the split was applied for, and the result.
    Split(String, Result<SplitOutcome, PackError>),
    /// The pack's runtime config (canonical order), if it reported one.
    Config(Result<Option<RuntimeConfig>, PackError>),
    Health(Result<Health, PackError>),
    /// The revision's own address; `None` when the pack does not export
    /// `endpoints`.
    Endpoint(Option<Result<Option<String>, PackError>>),
    /// The deployment asked about and the pack's note; `None` when the pack
    /// does not export `teardown`.
    Released(String, Option<Result<String, PackError>>),
}

/// The host's error for a typed error the pack returned.
pub fn pack_error(env: &Environment, verb: Verb, error: PackError) -> VerbError {
    match error {
        PackError::RevisionNotFound(revision) => VerbError::RevisionNotFound {
            env: env.id().to_string(),
            revision,
            origin: Origin::Pack,
        },
        PackError::SplitNotFound(deployment) => VerbError::SplitNotFound {
            deployment,
            origin: Origin::Pack,
        },
        PackError::InvalidSplit(sum) => VerbError::InvalidSplit {
            deployment: String::new(),
            sum,
            detail: "reported by the pack".to_string(),
            origin: Origin::Pack,
        },
        PackError::Provider(message) if message.trim().is_empty() => VerbError::Provider {
            verb,
            cause: ProviderCause::EmptyMessage,
        },
        PackError::Provider(message) => VerbError::Provider {
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

fn check_split(env: &Environment, deployment: &str, outcome: SplitOutcome) -> Result<Outcome, VerbError> {
    let expected = recorded_split(env, deployment)?;
    if outcome.deployment != deployment || outcome.entries != expected.entries {
        return Err(VerbError::CrossDeploymentInterference {
            verb: Verb::ApplyTrafficSplit,
            deployment: deployment.to_string(),
            expected: format_entries(deployment, &expected.entries),
            got: format_entries(&outcome.deployment, &outcome.entries),
        });
    }
    Ok(Outcome::Split {
        deployment: outcome.deployment,
        entries: outcome.entries,
    })
}

/// Turns what the pack returned into the host's verdict.
/// With `verify_outcome` off (the conformance bench), echoes are reported as
/// the pack made them instead of being refused.
pub fn verdict(
    env: &Environment,
    request: &Request,
    returned: Returned,
    verify_outcome: bool,
) -> Result<Outcome, VerbError> {
    let verb = request.verb();
    let requested = request.revision().unwrap_or_default();
    match returned {
        Returned::Revision(r) => {
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
        Returned::Split(deployment, r) => {
            let outcome = r.map_err(|e| pack_error(env, verb, e))?;
            if verify_outcome {
                return check_split(env, &deployment, outcome);
            }
            Ok(Outcome::Split {
                deployment: outcome.deployment,
                entries: outcome.entries,
            })
        }
        Returned::Config(r) => {
            let pack = r.map_err(|e| pack_error(env, verb, e))?;
            let host = runtime_config::project(env);
            let drift = pack.as_ref().is_some_and(|p| *p != host);
            Ok(Outcome::RuntimeConfig { host, pack, drift })
        }
        Returned::Health(r) => Ok(Outcome::Health {
            revision: requested.to_string(),
            health: r.map_err(|e| pack_error(env, verb, e))?,
        }),
        Returned::Released(deployment, r) => Ok(Outcome::Released {
            deployment,
            note: r.transpose().map_err(|e| pack_error(env, verb, e))?,
        }),
        Returned::Endpoint(None) => Ok(Outcome::Endpoint {
            revision: requested.to_string(),
            url: None,
            supported: false,
        }),
        Returned::Endpoint(Some(r)) => {
            let url = r.map_err(|e| pack_error(env, verb, e))?;
            if let Some(url) = &url
                && verify_outcome
                && !(url.starts_with("http://") || url.starts_with("https://"))
            {
                return Err(VerbError::OutcomeMismatch {
                    verb,
                    expected: "an http:// or https:// URL".into(),
                    got: url.clone(),
                });
            }
            Ok(Outcome::Endpoint {
                revision: requested.to_string(),
                url,
                supported: true,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Environment {
        Environment::from_json(&format!(
            r#"{{"id":"dev","deployments":[{{"id":"web","split":{{"entries":[{{"revision":"r1","weight_bps":10000}}]}},
                "revisions":[{{"id":"r1","sequence":1,"lifecycle":"ready","artifact":{{"digest":"sha256:{}","location":"x"}}}}]}}]}}"#,
            "a".repeat(64)
        ))
        .unwrap()
    }

    #[test]
    fn an_echo_of_another_revision_or_split_is_refused() {
        let env = env();
        let wrong = Returned::Revision(Ok(RevisionOutcome {
            revision: "r2".into(),
            detail: String::new(),
        }));
        let err = verdict(&env, &Request::Warm("r1".into()), wrong.clone(), true).unwrap_err();
        assert!(matches!(err, VerbError::OutcomeMismatch { .. }), "{err}");
        assert!(verdict(&env, &Request::Warm("r1".into()), wrong, false).is_ok());
        let other = Returned::Split(
            "web".into(),
            Ok(SplitOutcome {
                deployment: "api".into(),
                entries: vec![SplitEntry {
                    revision: "r1".into(),
                    weight_bps: 10_000,
                }],
            }),
        );
        let err = verdict(&env, &Request::ApplyTrafficSplit("web".into()), other, true).unwrap_err();
        assert!(
            err.to_string()
                .contains("returned api: [r1=10000], but the recorded split is web: [r1=10000]"),
            "{err}"
        );
    }

    #[test]
    fn an_empty_provider_message_is_named_as_such() {
        let err = pack_error(&env(), Verb::WarmRevision, PackError::Provider("  ".into()));
        assert!(matches!(
            err,
            VerbError::Provider {
                cause: ProviderCause::EmptyMessage,
                ..
            }
        ));
    }
}
