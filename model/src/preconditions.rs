//! Host-side preconditions: everything the contract lets the host decide
//! before any guest code runs. A call that fails here never instantiates the
//! pack, so the pack cannot have performed any side effect.

use crate::environment::{Environment, TrafficSplit};
use crate::error::{Origin, VerbError};
use crate::split::{sum_bps, validate_weights};
use crate::verb::Request;

/// Checks `request` against `env`; `Ok` means the pack may be called.
pub fn check(env: &Environment, request: &Request) -> Result<(), VerbError> {
    if let Some(revision) = request.revision() {
        return require_revision(env, revision);
    }
    if let Request::ApplyTrafficSplit(deployment) = request {
        let split = recorded_split(env, deployment)?;
        return check_split(env, deployment, split);
    }
    Ok(())
}

fn require_revision(env: &Environment, revision: &str) -> Result<(), VerbError> {
    match env.revision(revision) {
        Some(_) => Ok(()),
        None => Err(VerbError::RevisionNotFound {
            env: env.id().to_string(),
            revision: revision.to_string(),
            origin: Origin::Host,
        }),
    }
}

/// The split recorded for `deployment`, or `SplitNotFound`.
pub fn recorded_split<'e>(env: &'e Environment, deployment: &str) -> Result<&'e TrafficSplit, VerbError> {
    env.deployment(deployment)
        .and_then(|d| d.split.as_ref())
        .ok_or_else(|| VerbError::SplitNotFound {
            deployment: deployment.to_string(),
            origin: Origin::Host,
        })
}

fn check_split(env: &Environment, deployment: &str, split: &TrafficSplit) -> Result<(), VerbError> {
    if let Err(error) = validate_weights(&split.entries) {
        return Err(VerbError::invalid_split(
            deployment,
            sum_bps(&split.entries),
            &error,
            Origin::Host,
        ));
    }
    for entry in &split.entries {
        let Some(revision) = env.revision(&entry.revision) else {
            return require_revision(env, &entry.revision);
        };
        if revision.deployment != deployment {
            return Err(VerbError::ForeignRevision {
                deployment: deployment.to_string(),
                revision: entry.revision.clone(),
                owner: revision.deployment.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(split: &str) -> Environment {
        let rev = |id: &str| {
            format!(
                r#"{{"id":"{id}","sequence":1,"lifecycle":"ready","artifact":{{"digest":"sha256:{}","location":"x"}}}}"#,
                "a".repeat(64)
            )
        };
        Environment::from_json(&format!(
            r#"{{"id":"dev","deployments":[
                {{"id":"web","split":{split},"revisions":[{},{}]}},
                {{"id":"api","revisions":[{}]}}]}}"#,
            rev("r1"),
            rev("r2"),
            rev("r3")
        ))
        .unwrap()
    }

    const GOOD: &str =
        r#"{"generation":1,"entries":[{"revision":"r1","weight_bps":9000},{"revision":"r2","weight_bps":1000}]}"#;

    #[test]
    fn unknown_revision_refused() {
        let err = check(&env(GOOD), &Request::Stage("nope".into())).unwrap_err();
        assert!(
            matches!(err, VerbError::RevisionNotFound { ref revision, origin: Origin::Host, .. } if revision == "nope")
        );
        assert!(err.is_precondition());
    }

    #[test]
    fn missing_split_refused() {
        let err = check(&env(GOOD), &Request::ApplyTrafficSplit("api".into())).unwrap_err();
        assert!(matches!(err, VerbError::SplitNotFound { .. }));
        let err = check(&env(GOOD), &Request::ApplyTrafficSplit("ghost".into())).unwrap_err();
        assert!(matches!(err, VerbError::SplitNotFound { .. }));
    }

    #[test]
    fn bad_sum_refused_with_sum() {
        let split = r#"{"entries":[{"revision":"r1","weight_bps":9000},{"revision":"r2","weight_bps":1001}]}"#;
        let err = check(&env(split), &Request::ApplyTrafficSplit("web".into())).unwrap_err();
        assert!(matches!(err, VerbError::InvalidSplit { sum: 10_001, .. }), "{err}");
    }

    #[test]
    fn foreign_revision_refused() {
        let split = r#"{"entries":[{"revision":"r1","weight_bps":9000},{"revision":"r3","weight_bps":1000}]}"#;
        let err = check(&env(split), &Request::ApplyTrafficSplit("web".into())).unwrap_err();
        assert!(
            matches!(err, VerbError::ForeignRevision { ref owner, .. } if owner == "api"),
            "{err}"
        );
    }

    #[test]
    fn good_calls_pass() {
        assert_eq!(check(&env(GOOD), &Request::ApplyTrafficSplit("web".into())), Ok(()));
        assert_eq!(check(&env(GOOD), &Request::Warm("r3".into())), Ok(()));
        assert_eq!(check(&env(GOOD), &Request::ReportRuntimeConfig), Ok(()));
    }
}
