//! ECS: a task definition per revision, a service per deployment (with
//! the EXTERNAL deployment controller, so task sets are ours to manage),
//! a task set per revision. Every `ensure_*` looks up before it creates.

use serde_json::{Value, json};

use crate::aws::{AwsError, Client};
use crate::envpack::deployer::types::Revision;
use crate::names;
use crate::settings::{Settings, is_env_name};

/// A task set as ECS describes it.
pub struct TaskSet {
    pub arn: String,
    pub stability: String,
    pub scale: f64,
    pub running: u64,
    pub desired: u64,
}

impl TaskSet {
    fn from(doc: &Value) -> TaskSet {
        let text = |key: &str| doc.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        let count = |key: &str| doc.get(key).and_then(Value::as_u64).unwrap_or(0);
        TaskSet {
            arn: text("taskSetArn"),
            stability: text("stabilityStatus"),
            scale: doc.pointer("/scale/value").and_then(Value::as_f64).unwrap_or(100.0),
            running: count("runningCount"),
            desired: count("computedDesiredCount"),
        }
    }
}

/// The image of a revision: its `image` setting, else its artifact
/// location, which must then not be a URL.
pub fn image(revision: &Revision) -> Result<String, String> {
    if let Some((_, image)) = revision.settings.iter().find(|(k, _)| k == "image") {
        return Ok(image.clone());
    }
    let location = &revision.artifact_location;
    if location.contains("://") || location.is_empty() {
        return Err(format!(
            "artifact location {location:?} is not a container image reference; give the revision an `image` setting (revision stage --setting image=REPO:TAG)"
        ));
    }
    Ok(location.clone())
}

/// The ACTIVE task definition of the revision's family, if any: its ARN.
pub fn find_task_definition(aws: &Client, env: &str, revision: &str) -> Result<Option<String>, AwsError> {
    let family = names::family(env, revision);
    match aws.ecs("DescribeTaskDefinition", &json!({ "taskDefinition": family })) {
        Ok(doc) => {
            let def = &doc["taskDefinition"];
            if def["status"].as_str() == Some("ACTIVE") {
                Ok(def["taskDefinitionArn"].as_str().map(str::to_string))
            } else {
                Ok(None)
            }
        }
        // ECS's answer for a family without an ACTIVE revision.
        Err(e) if e.is("ClientException") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Registers the revision's task definition unless its family has one.
/// Returns (ARN, whether it was registered now).
pub fn ensure_task_definition(
    aws: &Client,
    env: &str,
    revision: &Revision,
    settings: &Settings,
) -> Result<(String, bool), String> {
    if let Some(arn) = find_task_definition(aws, env, &revision.id).map_err(|e| e.to_string())? {
        return Ok((arn, false));
    }
    let image = image(revision)?;
    let environment: Vec<Value> = revision
        .settings
        .iter()
        .filter(|(key, _)| is_env_name(key))
        .map(|(key, value)| json!({ "name": key, "value": value }))
        .chain([json!({ "name": "ENVPACK_REVISION", "value": revision.id })])
        .collect();
    let container_memory: u32 = settings
        .memory
        .parse()
        .map_err(|_| format!("pack setting memory={:?} is not a number of MiB", settings.memory))?;
    let mut request = json!({
        "family": names::family(env, &revision.id),
        "networkMode": "awsvpc",
        "requiresCompatibilities": [settings.launch_type],
        "cpu": settings.cpu,
        "memory": settings.memory,
        "containerDefinitions": [{
            "name": settings.container_name,
            "image": image,
            "essential": true,
            // The task's memory is the container's too (some emulators
            // need the container's; AWS takes both).
            "memory": container_memory,
            "portMappings": [{ "containerPort": settings.container_port, "protocol": "tcp" }],
            "environment": environment,
        }],
        "tags": tags(env, "revision", &revision.id, &[("envpack:digest", &revision.artifact_digest)]),
    });
    if let Some(role) = &settings.execution_role {
        request["executionRoleArn"] = json!(role);
    }
    let doc = aws.ecs("RegisterTaskDefinition", &request).map_err(|e| e.to_string())?;
    let arn = doc["taskDefinition"]["taskDefinitionArn"]
        .as_str()
        .ok_or("ECS RegisterTaskDefinition returned no taskDefinitionArn")?;
    Ok((arn.to_string(), true))
}

/// Deregisters every ACTIVE revision of the revision's family; how many.
pub fn deregister_task_definitions(aws: &Client, env: &str, revision: &str) -> Result<usize, String> {
    let mut count = 0;
    // ECS describes the family's latest ACTIVE revision; a second
    // registration (a crash before the first was recorded) is caught too.
    while let Some(arn) = find_task_definition(aws, env, revision).map_err(|e| e.to_string())? {
        aws.ecs("DeregisterTaskDefinition", &json!({ "taskDefinition": arn }))
            .map_err(|e| e.to_string())?;
        count += 1;
        if count > 100 {
            return Err(format!(
                "family {} keeps an ACTIVE revision after 100 deregistrations",
                names::family(env, revision)
            ));
        }
    }
    Ok(count)
}

/// Creates the deployment's service unless it is ACTIVE.
pub fn ensure_service(aws: &Client, env: &str, deployment: &str, settings: &Settings) -> Result<String, String> {
    let name = names::service(env, deployment);
    let doc = aws
        .ecs(
            "DescribeServices",
            &json!({ "cluster": settings.cluster, "services": [name] }),
        )
        .map_err(|e| e.to_string())?;
    let active = doc["services"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["serviceName"].as_str() == Some(&name) && s["status"].as_str() == Some("ACTIVE"));
    if !active {
        aws.ecs(
            "CreateService",
            &json!({
                "cluster": settings.cluster,
                "serviceName": name,
                "desiredCount": settings.desired_count,
                "deploymentController": { "type": "EXTERNAL" },
                "clientToken": &names::key(env, "deployment", deployment)[..32],
                "tags": tags(env, "deployment", deployment, &[]),
            }),
        )
        .map_err(|e| e.to_string())?;
    }
    Ok(name)
}

/// The revision's task set on the deployment's service, if any.
pub fn find_task_set(
    aws: &Client,
    env: &str,
    revision: &Revision,
    settings: &Settings,
) -> Result<Option<TaskSet>, String> {
    let service = names::service(env, &revision.deployment);
    let doc = match aws.ecs(
        "DescribeTaskSets",
        &json!({ "cluster": settings.cluster, "service": service }),
    ) {
        Ok(doc) => doc,
        // No service: no task set.
        Err(e) if e.is("ServiceNotFoundException") => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let external = names::external_id(env, &revision.id);
    Ok(doc["taskSets"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["externalId"].as_str() == Some(&external))
        .map(TaskSet::from))
}

/// Creates the revision's task set (at 100%) unless there is one; scales
/// an existing one back to 100% (a revision warmed again after a drain).
pub fn ensure_task_set(
    aws: &Client,
    env: &str,
    revision: &Revision,
    task_definition: &str,
    target_group: &str,
    settings: &Settings,
) -> Result<TaskSet, String> {
    let service = ensure_service(aws, env, &revision.deployment, settings)?;
    if let Some(set) = find_task_set(aws, env, revision, settings)? {
        if set.scale < 100.0 {
            return scale(aws, &service, &set.arn, 100.0, settings);
        }
        return Ok(set);
    }
    let external = names::external_id(env, &revision.id);
    let doc = aws
        .ecs(
            "CreateTaskSet",
            &json!({
                "cluster": settings.cluster,
                "service": service,
                "taskDefinition": task_definition,
                "externalId": external,
                "launchType": settings.launch_type,
                "networkConfiguration": { "awsvpcConfiguration": {
                    "subnets": settings.subnets,
                    "securityGroups": settings.security_groups,
                    "assignPublicIp": settings.assign_public_ip,
                }},
                "loadBalancers": [{
                    "targetGroupArn": target_group,
                    "containerName": settings.container_name,
                    "containerPort": settings.container_port,
                }],
                "scale": { "unit": "PERCENT", "value": 100.0 },
                "clientToken": &external[..32],
                "tags": tags(env, "revision", &revision.id, &[]),
            }),
        )
        .map_err(|e| e.to_string())?;
    Ok(TaskSet::from(&doc["taskSet"]))
}

/// Sets the task set's scale (percent of the service's desired count).
pub fn scale(
    aws: &Client,
    service: &str,
    task_set: &str,
    percent: f64,
    settings: &Settings,
) -> Result<TaskSet, String> {
    let doc = aws
        .ecs(
            "UpdateTaskSet",
            &json!({
                "cluster": settings.cluster,
                "service": service,
                "taskSet": task_set,
                "scale": { "unit": "PERCENT", "value": percent },
            }),
        )
        .map_err(|e| e.to_string())?;
    Ok(TaskSet::from(&doc["taskSet"]))
}

/// Deletes the task set (scaled down by ECS first, `force` as it may still
/// run tasks when a drain was skipped).
pub fn delete_task_set(aws: &Client, service: &str, task_set: &str, settings: &Settings) -> Result<(), String> {
    match aws.ecs(
        "DeleteTaskSet",
        &json!({ "cluster": settings.cluster, "service": service, "taskSet": task_set, "force": true }),
    ) {
        Ok(_) => Ok(()),
        Err(e) if e.is("TaskSetNotFoundException") => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// ECS tags naming the owner (environment, and the revision or deployment).
fn tags(env: &str, kind: &str, id: &str, extra: &[(&str, &str)]) -> Vec<Value> {
    [
        ("envpack:env", names::tag_value(env)),
        (kind_tag(kind), names::tag_value(id)),
    ]
    .into_iter()
    .chain(extra.iter().map(|(k, v)| (*k, names::tag_value(v))))
    .map(|(key, value)| json!({ "key": key, "value": value }))
    .collect()
}

fn kind_tag(kind: &str) -> &'static str {
    if kind == "deployment" {
        "envpack:deployment"
    } else {
        "envpack:revision"
    }
}

/// One task set of a deployment's service, whatever revision made it.
pub struct ServiceTaskSet {
    pub arn: String,
    pub task_definition: String,
    pub target_groups: Vec<String>,
}

/// Every task set on the deployment's service (none when the service does
/// not exist).
pub fn service_task_sets(aws: &Client, service: &str, settings: &Settings) -> Result<Vec<ServiceTaskSet>, String> {
    let doc = match aws.ecs(
        "DescribeTaskSets",
        &json!({ "cluster": settings.cluster, "service": service }),
    ) {
        Ok(doc) => doc,
        Err(e) if e.is("ServiceNotFoundException") || e.is("ServiceNotActiveException") => return Ok(Vec::new()),
        Err(e) => return Err(e.to_string()),
    };
    let text = |doc: &Value, key: &str| doc.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    Ok(doc["taskSets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|set| ServiceTaskSet {
            arn: text(set, "taskSetArn"),
            task_definition: text(set, "taskDefinition"),
            target_groups: set["loadBalancers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|lb| text(lb, "targetGroupArn"))
                .filter(|arn| !arn.is_empty())
                .collect(),
        })
        .filter(|set| !set.arn.is_empty())
        .collect())
}

/// Deregisters one task definition by ARN if it is still ACTIVE; whether
/// it was.
pub fn deregister_task_definition(aws: &Client, arn: &str) -> Result<bool, String> {
    match aws.ecs("DescribeTaskDefinition", &json!({ "taskDefinition": arn })) {
        Ok(doc) if doc["taskDefinition"]["status"].as_str() == Some("ACTIVE") => {}
        Ok(_) => return Ok(false),
        Err(e) if e.is("ClientException") => return Ok(false),
        Err(e) => return Err(e.to_string()),
    }
    match aws.ecs("DeregisterTaskDefinition", &json!({ "taskDefinition": arn })) {
        Ok(_) => Ok(true),
        Err(e) if e.is("ClientException") || e.is("TaskDefinitionNotFoundException") => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// Deletes the deployment's service (`force`: ECS stops whatever tasks it
/// still runs) unless it is not ACTIVE (gone, or DRAINING or INACTIVE
/// after an earlier delete); whether it deleted.
pub fn delete_service(aws: &Client, service: &str, settings: &Settings) -> Result<bool, String> {
    let doc = aws
        .ecs(
            "DescribeServices",
            &json!({ "cluster": settings.cluster, "services": [service] }),
        )
        .map_err(|e| e.to_string())?;
    let live = doc["services"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["serviceName"].as_str() == Some(service) && s["status"].as_str() == Some("ACTIVE"));
    if !live {
        return Ok(false);
    }
    match aws.ecs(
        "DeleteService",
        &json!({ "cluster": settings.cluster, "service": service, "force": true }),
    ) {
        Ok(_) => Ok(true),
        Err(e) if e.is("ServiceNotFoundException") || e.is("ServiceNotActiveException") => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}
