//! Stateless pack: validates requests, logs, answers from the request alone.
//!
//! Written outside this project from `wit/deployer.wit` and the README
//! alone, as a third-party author would: one of the independent correct
//! packs the conformance corpus must pass (see conformance/README.md).
//! Kept as its author wrote it, only formatted to this repository's style.
wit_bindgen::generate!({ path: "../../wit/history/1.1.0", world: "pack" });

use envpack::deployer::environment::Environment;
use envpack::deployer::log::{Level, log};
use envpack::deployer::types::{
    Capability, DeployError, Health, PackInfo, RevisionOutcome, RuntimeConfig, SplitOutcome,
};
use exports::envpack::deployer::deployer::Guest;

struct Stateless;

fn check_revision(env: &Environment, verb: &str, id: &str) -> Result<(), DeployError> {
    if env.revision(id).is_none() {
        log(Level::Warn, &format!("{verb}: revision {id:?} not found"));
        return Err(DeployError::RevisionNotFound(id.to_string()));
    }
    Ok(())
}

fn rev_verb(env: &Environment, verb: &str, id: String) -> Result<RevisionOutcome, DeployError> {
    check_revision(env, verb, &id)?;
    log(
        Level::Info,
        &format!("{verb}: revision {id:?} (nothing to do, stateless)"),
    );
    Ok(RevisionOutcome {
        revision: id,
        detail: String::new(),
    })
}

impl Guest for Stateless {
    fn describe() -> PackInfo {
        PackInfo {
            descriptor: "indie.deployer.stateless@0.1.0".to_string(),
            contract_version: "1.1.0".to_string(),
            capabilities: vec![Capability::Log],
            description: "Independent stateless pack: validates and logs, keeps no state".to_string(),
        }
    }

    fn stage_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        rev_verb(env, "stage", revision)
    }
    fn warm_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        rev_verb(env, "warm", revision)
    }
    fn drain_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        rev_verb(env, "drain", revision)
    }
    fn archive_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        rev_verb(env, "archive", revision)
    }

    fn apply_traffic_split(env: &Environment, deployment: String) -> Result<SplitOutcome, DeployError> {
        let Some(split) = env.split(&deployment) else {
            log(Level::Warn, &format!("apply: deployment {deployment:?} has no split"));
            return Err(DeployError::SplitNotFound(deployment));
        };
        let mut sum: u64 = 0;
        let mut over = false;
        for e in &split.entries {
            sum += u64::from(e.weight_bps);
            if e.weight_bps > 10000 {
                over = true;
            }
        }
        if over || sum != 10000 {
            log(
                Level::Warn,
                &format!("apply: split of {deployment:?} is invalid (sum {sum})"),
            );
            return Err(DeployError::InvalidSplit(sum));
        }
        log(
            Level::Info,
            &format!(
                "apply: deployment {deployment:?} generation {} ({} entries)",
                split.generation,
                split.entries.len()
            ),
        );
        Ok(SplitOutcome {
            deployment,
            entries: split.entries,
        })
    }

    fn report_runtime_config(_env: &Environment) -> Result<Option<RuntimeConfig>, DeployError> {
        log(Level::Debug, "report: no own view, the host's projection stands");
        Ok(None)
    }

    fn probe_revision(env: &Environment, revision: String) -> Result<Health, DeployError> {
        check_revision(env, "probe", &revision)?;
        log(Level::Debug, &format!("probe: {revision:?}: no way to probe"));
        Ok(Health::Unsupported)
    }
}

export!(Stateless);
