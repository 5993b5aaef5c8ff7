//! `envpack.deployer.aws-ecs`: each revision of a deployment is an ECS task
//! set (with its own task definition and ALB target group) on the
//! deployment's service, and the deployment's ALB listener forwards to the
//! revisions' target groups weighted by the recorded split. Everything goes
//! through the AWS APIs over `wasi:http`, signed with SigV4 (`aws.rs`);
//! credentials come from `secrets`, the signing time from `clock`.
//!
//! Every verb looks its resources up by names derived from the
//! environment and the id (`names.rs`) before creating them, so a second
//! call, or a call re-run after a crash between two API calls, makes
//! nothing twice. The ids AWS assigned are kept in kv (`td/`, `tg/`,
//! `ts/<revision>`, `listener/<deployment>`) for operators to read.
//!
//! Contract 1.2: the pack also exports `teardown` (`teardown.rs`), which
//! releases what a deployment holds beyond its revisions (its listener and
//! its service) when the operator tears the environment down.

wit_bindgen::generate!({
    path: "../../wit",
    world: "pack-with-teardown",
});

mod aws;
mod ecs;
mod elb;
mod names;
mod settings;
mod teardown;
mod weights;

use envpack::deployer::clock::{monotonic_ns, sleep_ms};
use envpack::deployer::environment::Environment;
use envpack::deployer::kv;
use envpack::deployer::log::{Level, log};
use envpack::deployer::types::{
    Capability, DeployError, Health, PackInfo, Revision, RevisionOutcome, RuntimeConfig, SplitOutcome,
};
use exports::envpack::deployer::deployer::Guest;
use settings::Settings;

/// The most target groups one ALB forward action takes.
const MAX_FORWARD_GROUPS: usize = 5;

struct AwsEcs;

/// The revision named by a call, or the spec error.
fn revision(env: &Environment, id: &str) -> Result<Revision, DeployError> {
    env.revision(id)
        .ok_or_else(|| DeployError::RevisionNotFound(id.to_string()))
}

fn provider(verb: &str, message: String) -> DeployError {
    log(Level::Error, &format!("{verb}: {message}"));
    DeployError::Provider(format!("{verb}: {message}"))
}

fn done(verb: &str, id: &str, detail: Result<String, String>) -> Result<RevisionOutcome, DeployError> {
    let detail = detail.map_err(|e| provider(verb, e))?;
    log(Level::Info, &format!("{verb} {id}: {detail}"));
    Ok(RevisionOutcome {
        revision: id.to_string(),
        detail,
    })
}

/// The settings and a signed client, or the provider error saying what
/// is missing.
fn connect(verb: &str, env: &Environment) -> Result<(Settings, aws::Client), DeployError> {
    let settings = Settings::read(env).map_err(|e| provider(verb, e))?;
    let client = aws::Client::new(settings.region.clone(), settings.endpoint.clone()).map_err(|e| provider(verb, e))?;
    Ok((settings, client))
}

fn remember(key: String, value: &str) {
    kv::set(&key, value.as_bytes());
}

fn stage(env: &Environment, revision: &Revision, settings: &Settings, aws: &aws::Client) -> Result<String, String> {
    let (arn, registered) = ecs::ensure_task_definition(aws, &env.id(), revision, settings)?;
    remember(format!("td/{}", revision.id), &arn);
    Ok(if registered {
        format!("registered task definition {arn}")
    } else {
        format!("task definition {arn} already registered")
    })
}

fn warm(env: &Environment, revision: &Revision, settings: &Settings, aws: &aws::Client) -> Result<String, String> {
    let env_id = env.id();
    let task_definition = ecs::find_task_definition(aws, &env_id, &revision.id)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("revision {} has no task definition: stage it first", revision.id))?;
    let target_group = elb::ensure_target_group(aws, &env_id, &revision.id, revision.drain_seconds, settings)?;
    remember(format!("tg/{}", revision.id), &target_group);
    let mut set = ecs::ensure_task_set(aws, &env_id, revision, &task_definition, &target_group, settings)?;
    remember(format!("ts/{}", revision.id), &set.arn);
    // Ready when ECS says the task set is steady.
    let started = monotonic_ns();
    while set.stability != "STEADY_STATE" {
        let waited_ms = (monotonic_ns() - started) / 1_000_000;
        if waited_ms >= settings.steady_timeout_ms {
            return Err(format!(
                "task set {} not steady after {waited_ms} ms ({} of {} tasks running, {})",
                set.arn, set.running, set.desired, set.stability
            ));
        }
        sleep_ms(settings.poll_ms);
        set = ecs::find_task_set(aws, &env_id, revision, settings)?
            .ok_or_else(|| format!("task set {} disappeared while warming", set.arn))?;
    }
    Ok(format!(
        "task set {} steady behind target group {target_group}",
        set.arn
    ))
}

/// Takes the revision's target group out of its deployment's listener.
fn unroute(env: &str, revision: &Revision, settings: &Settings, aws: &aws::Client) -> Result<Option<String>, String> {
    let Some(group) = elb::find_target_group(aws, env, &revision.id).map_err(|e| e.to_string())? else {
        return Ok(None);
    };
    elb::unroute(aws, env, &revision.deployment, &group, settings)?;
    Ok(Some(group))
}

fn drain(env: &Environment, revision: &Revision, settings: &Settings, aws: &aws::Client) -> Result<String, String> {
    let env_id = env.id();
    let group = unroute(&env_id, revision, settings, aws)?;
    if let Some(group) = &group {
        elb::set_deregistration_delay(aws, group, revision.drain_seconds)?;
    }
    let Some(set) = ecs::find_task_set(aws, &env_id, revision, settings)? else {
        return Ok("no task set: nothing to drain".to_string());
    };
    let service = names::service(&env_id, &revision.deployment);
    if set.scale > 0.0 {
        ecs::scale(aws, &service, &set.arn, 0.0, settings)?;
    }
    Ok(format!(
        "out of the listener, task set {} scaled to 0; targets deregister within {} s",
        set.arn, revision.drain_seconds
    ))
}

fn archive(env: &Environment, revision: &Revision, settings: &Settings, aws: &aws::Client) -> Result<String, String> {
    let env_id = env.id();
    let group = unroute(&env_id, revision, settings, aws)?;
    let mut released = Vec::new();
    if let Some(set) = ecs::find_task_set(aws, &env_id, revision, settings)? {
        let service = names::service(&env_id, &revision.deployment);
        ecs::delete_task_set(aws, &service, &set.arn, settings)?;
        released.push(format!("task set {}", set.arn));
    }
    if let Some(group) = group {
        elb::delete_target_group(aws, &group)?;
        released.push(format!("target group {group}"));
    }
    let deregistered = ecs::deregister_task_definitions(aws, &env_id, &revision.id)?;
    if deregistered > 0 {
        released.push(format!("{deregistered} task definition(s)"));
    }
    for prefix in ["td", "tg", "ts"] {
        kv::delete(&format!("{prefix}/{}", revision.id));
    }
    Ok(if released.is_empty() {
        "nothing left to release".to_string()
    } else {
        format!("released {}", released.join(", "))
    })
}

fn apply(
    env: &Environment,
    deployment: &str,
    entries: &[(String, u32)],
    settings: &Settings,
    aws: &aws::Client,
) -> Result<String, String> {
    let env_id = env.id();
    let bps: Vec<u32> = entries.iter().map(|(_, w)| *w).collect();
    let alb = weights::alb_weights(&bps);
    let mut groups = Vec::new();
    for ((revision, _), weight) in entries.iter().zip(alb) {
        if weight == 0 {
            continue;
        }
        let group = elb::find_target_group(aws, &env_id, revision)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("revision {revision} has weight but no target group here (warm it first)"))?;
        groups.push((group, weight));
    }
    if groups.len() > MAX_FORWARD_GROUPS {
        return Err(format!(
            "{} revisions have weight; an ALB forwards to at most {MAX_FORWARD_GROUPS} target groups",
            groups.len()
        ));
    }
    let port = Settings::listen_port(env, deployment)?;
    let listener = elb::ensure_listener(aws, &env_id, deployment, port, settings)?;
    remember(format!("listener/{deployment}"), &listener.arn);
    let mut current = listener.forward;
    current.sort();
    let mut wanted = groups.clone();
    wanted.sort();
    if current == wanted {
        return Ok(format!(
            "listener {} (port {}) already forwards so",
            listener.arn, listener.port
        ));
    }
    elb::set_forward(aws, &listener.arn, &groups)?;
    let shown: Vec<String> = groups.iter().map(|(_, w)| w.to_string()).collect();
    Ok(format!(
        "listener {} (port {}) forwards by ALB weights {}",
        listener.arn,
        listener.port,
        shown.join(":")
    ))
}

fn probe(env: &Environment, revision: &Revision, settings: &Settings, aws: &aws::Client) -> Result<Health, String> {
    let env_id = env.id();
    let Some(group) = elb::find_target_group(aws, &env_id, &revision.id).map_err(|e| e.to_string())? else {
        return Ok(Health::Unhealthy("no target group: the revision is not warm".into()));
    };
    let Some(set) = ecs::find_task_set(aws, &env_id, revision, settings)? else {
        return Ok(Health::Unhealthy("no task set: the revision is not warm".into()));
    };
    let targets = elb::target_health(aws, &group)?;
    if targets.is_empty() {
        return Ok(Health::Unhealthy(format!(
            "no target registered in {group} yet ({} of {} tasks running, {})",
            set.running, set.desired, set.stability
        )));
    }
    if targets.iter().any(|t| t.state == "healthy") {
        return Ok(Health::Healthy);
    }
    let states: Vec<String> = targets
        .iter()
        .map(|t| format!("{} {} {}", t.id, t.state, t.reason).trim().to_string())
        .collect();
    Ok(Health::Unhealthy(format!("no healthy target: {}", states.join("; "))))
}

impl Guest for AwsEcs {
    fn describe() -> PackInfo {
        PackInfo {
            descriptor: "envpack.deployer.aws-ecs@1.0.0".to_string(),
            contract_version: "1.2.0".to_string(),
            capabilities: vec![
                Capability::Log,
                Capability::Kv,
                Capability::Clock,
                Capability::Http,
                Capability::Secrets,
            ],
            description: "Revisions as AWS ECS task sets behind ALB weighted target groups".to_string(),
        }
    }

    fn stage_revision(env: &Environment, id: String) -> Result<RevisionOutcome, DeployError> {
        let revision = revision(env, &id)?;
        let (settings, aws) = connect("stage", env)?;
        done("stage", &id, stage(env, &revision, &settings, &aws))
    }

    fn warm_revision(env: &Environment, id: String) -> Result<RevisionOutcome, DeployError> {
        let revision = revision(env, &id)?;
        let (settings, aws) = connect("warm", env)?;
        done("warm", &id, warm(env, &revision, &settings, &aws))
    }

    fn drain_revision(env: &Environment, id: String) -> Result<RevisionOutcome, DeployError> {
        let revision = revision(env, &id)?;
        let (settings, aws) = connect("drain", env)?;
        done("drain", &id, drain(env, &revision, &settings, &aws))
    }

    fn archive_revision(env: &Environment, id: String) -> Result<RevisionOutcome, DeployError> {
        let revision = revision(env, &id)?;
        let (settings, aws) = connect("archive", env)?;
        done("archive", &id, archive(env, &revision, &settings, &aws))
    }

    fn apply_traffic_split(env: &Environment, deployment: String) -> Result<SplitOutcome, DeployError> {
        let split = env
            .split(&deployment)
            .ok_or_else(|| DeployError::SplitNotFound(deployment.clone()))?;
        let sum: u64 = split.entries.iter().map(|e| u64::from(e.weight_bps)).sum();
        if sum != 10_000 || split.entries.iter().any(|e| e.weight_bps > 10_000) {
            return Err(DeployError::InvalidSplit(sum));
        }
        let (settings, aws) = connect("apply-traffic-split", env)?;
        let entries: Vec<(String, u32)> = split
            .entries
            .iter()
            .map(|e| (e.revision.clone(), e.weight_bps))
            .collect();
        let note =
            apply(env, &deployment, &entries, &settings, &aws).map_err(|e| provider("apply-traffic-split", e))?;
        log(Level::Info, &format!("apply-traffic-split {deployment}: {note}"));
        Ok(SplitOutcome {
            deployment,
            entries: split.entries,
        })
    }

    fn report_runtime_config(_env: &Environment) -> Result<Option<RuntimeConfig>, DeployError> {
        // ALB weights are a rounding of the split (weights.rs), so the
        // pack's view would not be the host's projection: accept the host's.
        Ok(None)
    }

    fn probe_revision(env: &Environment, id: String) -> Result<Health, DeployError> {
        let revision = revision(env, &id)?;
        let (settings, aws) = connect("probe", env)?;
        probe(env, &revision, &settings, &aws).map_err(|e| provider("probe", e))
    }
}

impl exports::envpack::deployer::teardown::Guest for AwsEcs {
    fn release_deployment(env: &Environment, deployment: String) -> Result<String, DeployError> {
        // No spec error applies: a deployment the pack never set up (or
        // released already) is released, so an unknown id is no error.
        let (settings, aws) = connect("release-deployment", env)?;
        let note =
            teardown::release(env, &deployment, &settings, &aws).map_err(|e| provider("release-deployment", e))?;
        log(Level::Info, &format!("release-deployment {deployment}: {note}"));
        Ok(note)
    }
}

export!(AwsEcs);
