//! `release-deployment` (contract 1.2, the `teardown` export): what a
//! deployment holds beyond its revisions, released when the operator tears
//! the environment down (`host env remove --teardown`): the deployment's
//! ALB listener (its rules go with it), its ECS service, and the kv entry
//! naming it (`listener/<deployment>`).
//!
//! The host calls it after archiving every revision of the deployment, so
//! per-revision resources should be gone already; whatever an archive left
//! (a task set still on the service, a target group the listener still
//! forwards to, a revision whose ids kv still keeps) is released here too.
//! Everything is found the way the other verbs find it (the listener by
//! its owner tag, the service by its name, `names.rs`), so a second call,
//! or a call for a deployment the pack never set up, finds nothing and
//! releases nothing.

use crate::aws::Client;
use crate::envpack::deployer::environment::Environment;
use crate::envpack::deployer::kv;
use crate::settings::Settings;
use crate::{ecs, elb, names};

/// The kv prefixes that key a revision's AWS ids.
const REVISION_KEYS: [&str; 3] = ["td", "tg", "ts"];

/// Releases the deployment's resources; a note saying what was released.
pub fn release(env: &Environment, deployment: &str, settings: &Settings, aws: &Client) -> Result<String, String> {
    let env_id = env.id();
    let mut released = Vec::new();
    let mut groups = Vec::new();

    // The listener first: ELB keeps a target group a listener forwards to.
    if let Some(listener) = elb::find_listener(aws, &env_id, deployment, settings)? {
        groups.extend(listener.forward.iter().map(|(arn, _)| arn.clone()));
        if elb::delete_listener(aws, &listener.arn)? {
            released.push(format!("listener {} (port {})", listener.arn, listener.port));
        }
    }

    // Every task set on the deployment's service is one of its revisions'.
    let service = names::service(&env_id, deployment);
    let mut definitions = Vec::new();
    for set in ecs::service_task_sets(aws, &service, settings)? {
        ecs::delete_task_set(aws, &service, &set.arn, settings)?;
        released.push(format!("task set {}", set.arn));
        groups.extend(set.target_groups);
        if !set.task_definition.is_empty() {
            definitions.push(set.task_definition);
        }
    }
    if ecs::delete_service(aws, &service, settings)? {
        released.push(format!("service {service}"));
    }

    // Revisions of the deployment whose ids kv still keeps: an archive
    // that did not finish.
    let leftover = kept_revisions(env, deployment);
    for revision in &leftover {
        if let Some(group) = elb::find_target_group(aws, &env_id, revision).map_err(|e| e.to_string())? {
            groups.push(group);
        }
    }
    groups.sort();
    groups.dedup();
    for group in groups {
        elb::delete_target_group(aws, &group)?;
        released.push(format!("target group {group}"));
    }
    for arn in definitions {
        if ecs::deregister_task_definition(aws, &arn)? {
            released.push(format!("task definition {arn}"));
        }
    }
    for revision in &leftover {
        let deregistered = ecs::deregister_task_definitions(aws, &env_id, revision)?;
        if deregistered > 0 {
            released.push(format!("{deregistered} task definition(s) of revision {revision}"));
        }
        for prefix in REVISION_KEYS {
            kv::delete(&format!("{prefix}/{revision}"));
        }
    }
    kv::delete(&format!("listener/{deployment}"));

    Ok(if released.is_empty() {
        format!("deployment {deployment:?}: nothing left to release")
    } else {
        format!("deployment {deployment:?}: released {}", released.join(", "))
    })
}

/// The revisions of `deployment` that kv still keeps AWS ids of, sorted.
fn kept_revisions(env: &Environment, deployment: &str) -> Vec<String> {
    let mut ids: Vec<String> = REVISION_KEYS
        .iter()
        .flat_map(|prefix| {
            let prefix = format!("{prefix}/");
            kv::list_keys(&prefix)
                .into_iter()
                .filter_map(move |key| key.strip_prefix(&prefix).map(str::to_string))
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids.retain(|id| env.revision(id).is_some_and(|r| r.deployment == deployment));
    ids
}
