//! ELBv2: a target group per revision, a listener per deployment on the
//! operator's ALB (found again by its `envpack:owner` tag), whose default
//! action forwards to the routed revisions' target groups by weight.

use roxmltree::{Document, Node};

use crate::aws::{AwsError, Client};
use crate::names;
use crate::settings::Settings;

/// The tag that marks a listener as a deployment's.
const OWNER_TAG: &str = "envpack:owner";

/// A listener of the load balancer.
pub struct Listener {
    pub arn: String,
    pub port: u16,
    /// (target group ARN, weight) of its default forward action; empty
    /// when it forwards nowhere (a fixed response).
    pub forward: Vec<(String, u32)>,
}

/// One target of a target group and its health.
pub struct Target {
    pub id: String,
    pub state: String,
    pub reason: String,
}

/// The response of `action` as an XML document.
fn doc<'x>(xml: &'x str, action: &str) -> Result<Document<'x>, AwsError> {
    Document::parse(xml).map_err(|e| AwsError {
        action: format!("ELBv2 {action}"),
        code: "InvalidResponse".into(),
        message: format!("response is not XML: {e}"),
    })
}

/// Child elements of `node` named `name`.
fn children<'a, 'i>(node: Node<'a, 'i>, name: &'a str) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    node.children()
        .filter(move |n| n.is_element() && n.tag_name().name() == name)
}

fn child<'a, 'i>(node: Node<'a, 'i>, name: &'a str) -> Option<Node<'a, 'i>> {
    children(node, name).next()
}

fn text(node: Node, name: &str) -> String {
    child(node, name).and_then(|n| n.text()).unwrap_or_default().to_string()
}

/// The `member` elements of the list `list` anywhere in the document.
fn members<'a, 'i>(doc: &'a Document<'i>, list: &'a str) -> Vec<Node<'a, 'i>> {
    doc.descendants()
        .filter(|n| n.is_element() && n.tag_name().name() == list)
        .take(1)
        .flat_map(|n| children(n, "member"))
        .collect()
}

fn elb(aws: &Client, action: &str, params: Vec<(String, String)>) -> Result<String, AwsError> {
    aws.elb(action, &params)
}

fn p(key: impl Into<String>, value: impl Into<String>) -> (String, String) {
    (key.into(), value.into())
}

/// The revision's target group ARN, if it exists.
pub fn find_target_group(aws: &Client, env: &str, revision: &str) -> Result<Option<String>, AwsError> {
    let name = names::target_group(env, revision);
    match elb(aws, "DescribeTargetGroups", vec![p("Names.member.1", name)]) {
        Ok(xml) => {
            let doc = doc(&xml, "DescribeTargetGroups")?;
            Ok(members(&doc, "TargetGroups")
                .first()
                .map(|tg| text(*tg, "TargetGroupArn"))
                .filter(|arn| !arn.is_empty()))
        }
        Err(e) if e.is("TargetGroupNotFound") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Creates the revision's target group unless it exists, and sets its
/// deregistration delay to the revision's drain time.
pub fn ensure_target_group(
    aws: &Client,
    env: &str,
    revision: &str,
    drain_seconds: u32,
    settings: &Settings,
) -> Result<String, String> {
    let arn = match find_target_group(aws, env, revision).map_err(|e| e.to_string())? {
        Some(arn) => arn,
        None => {
            let xml = elb(
                aws,
                "CreateTargetGroup",
                vec![
                    p("Name", names::target_group(env, revision)),
                    p("Protocol", "HTTP"),
                    p("Port", settings.container_port.to_string()),
                    p("VpcId", settings.vpc.clone()),
                    p("TargetType", "ip"),
                    p("HealthCheckPath", settings.health_path.clone()),
                    p("Tags.member.1.Key", "envpack:env"),
                    p("Tags.member.1.Value", names::tag_value(env)),
                    p("Tags.member.2.Key", "envpack:revision"),
                    p("Tags.member.2.Value", names::tag_value(revision)),
                ],
            )
            .map_err(|e| e.to_string())?;
            let doc = doc(&xml, "CreateTargetGroup").map_err(|e| e.to_string())?;
            members(&doc, "TargetGroups")
                .first()
                .map(|tg| text(*tg, "TargetGroupArn"))
                .filter(|arn| !arn.is_empty())
                .ok_or("ELBv2 CreateTargetGroup returned no TargetGroupArn")?
        }
    };
    set_deregistration_delay(aws, &arn, drain_seconds)?;
    Ok(arn)
}

/// How long the ALB lets a deregistered target finish (0–3600 s).
pub fn set_deregistration_delay(aws: &Client, target_group: &str, seconds: u32) -> Result<(), String> {
    elb(
        aws,
        "ModifyTargetGroupAttributes",
        vec![
            p("TargetGroupArn", target_group),
            p("Attributes.member.1.Key", "deregistration_delay.timeout_seconds"),
            p("Attributes.member.1.Value", seconds.min(3600).to_string()),
        ],
    )
    .map(drop)
    .map_err(|e| e.to_string())
}

pub fn delete_target_group(aws: &Client, arn: &str) -> Result<(), String> {
    match elb(aws, "DeleteTargetGroup", vec![p("TargetGroupArn", arn)]) {
        Ok(_) => Ok(()),
        Err(e) if e.is("TargetGroupNotFound") => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// Every listener of the load balancer.
fn listeners(aws: &Client, settings: &Settings) -> Result<Vec<Listener>, String> {
    let mut found = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut params = vec![p("LoadBalancerArn", settings.load_balancer.clone())];
        if let Some(m) = &marker {
            params.push(p("Marker", m.clone()));
        }
        let xml = elb(aws, "DescribeListeners", params).map_err(|e| e.to_string())?;
        let doc = doc(&xml, "DescribeListeners").map_err(|e| e.to_string())?;
        for member in members(&doc, "Listeners") {
            found.push(Listener {
                arn: text(member, "ListenerArn"),
                port: text(member, "Port").parse().unwrap_or(0),
                forward: forward_of(member),
            });
        }
        marker = doc
            .descendants()
            .find(|n| n.is_element() && n.tag_name().name() == "NextMarker")
            .and_then(|n| n.text())
            .map(str::to_string)
            .filter(|m| !m.is_empty());
        if marker.is_none() {
            return Ok(found);
        }
    }
}

/// The weighted target groups of a listener's default forward action.
fn forward_of(listener: Node) -> Vec<(String, u32)> {
    let Some(actions) = child(listener, "DefaultActions") else {
        return Vec::new();
    };
    let mut forward = Vec::new();
    for action in children(actions, "member").filter(|a| text(*a, "Type") == "forward") {
        let groups = child(action, "ForwardConfig").and_then(|c| child(c, "TargetGroups"));
        match groups {
            Some(groups) => forward.extend(
                children(groups, "member").map(|g| (text(g, "TargetGroupArn"), text(g, "Weight").parse().unwrap_or(1))),
            ),
            None => forward.push((text(action, "TargetGroupArn"), 1)),
        }
    }
    forward
}

/// The deployment's listener, found by its owner tag.
pub fn find_listener(
    aws: &Client,
    env: &str,
    deployment: &str,
    settings: &Settings,
) -> Result<Option<Listener>, String> {
    let all = listeners(aws, settings)?;
    Ok(owned(aws, all, &names::key(env, "deployment", deployment))?.0)
}

/// The listener of `all` tagged as `owner`'s, and the ports of all.
fn owned(aws: &Client, mut all: Vec<Listener>, owner: &str) -> Result<(Option<Listener>, Vec<u16>), String> {
    let ports = all.iter().map(|l| l.port).collect();
    for chunk in all.chunks(20) {
        let mut params = Vec::new();
        for (i, listener) in chunk.iter().enumerate() {
            params.push(p(format!("ResourceArns.member.{}", i + 1), listener.arn.clone()));
        }
        let xml = elb(aws, "DescribeTags", params).map_err(|e| e.to_string())?;
        let doc = doc(&xml, "DescribeTags").map_err(|e| e.to_string())?;
        let tagged = members(&doc, "TagDescriptions").into_iter().find(|d| {
            child(*d, "Tags").is_some_and(|tags| {
                children(tags, "member").any(|t| text(t, "Key") == OWNER_TAG && text(t, "Value") == owner)
            })
        });
        if let Some(tagged) = tagged {
            let arn = text(tagged, "ResourceArn");
            let index = all.iter().position(|l| l.arn == arn);
            return Ok((index.map(|i| all.swap_remove(i)), ports));
        }
    }
    Ok((None, ports))
}

/// How many times a port picked from `listen-ports` is picked again when
/// another environment took it between the look and the create.
const PICK_ATTEMPTS: usize = 5;

/// The deployment's listener, created (answering 503 until a split is
/// applied) on its `listen.<deployment>` port or the first free port of
/// `listen-ports` when it has none.
pub fn ensure_listener(
    aws: &Client,
    env: &str,
    deployment: &str,
    port: Option<u16>,
    settings: &Settings,
) -> Result<Listener, String> {
    let owner = names::key(env, "deployment", deployment);
    for _ in 0..PICK_ATTEMPTS {
        let (found, taken) = owned(aws, listeners(aws, settings)?, &owner)?;
        if let Some(listener) = found {
            if let Some(port) = port
                && port != listener.port
            {
                return Err(format!(
                    "deployment {deployment:?} is served on port {} of the load balancer, not {port} as listen.{deployment} says; delete that listener to move it",
                    listener.port
                ));
            }
            return Ok(listener);
        }
        let chosen = choose_port(deployment, port, &taken, settings)?;
        match create_listener(aws, env, deployment, chosen, settings) {
            Ok(listener) => return Ok(listener),
            Err(e) if port.is_none() && e.is("DuplicateListener") => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "the ports of listen-ports were taken by others {PICK_ATTEMPTS} times while creating deployment {deployment:?}'s listener"
    ))
}

/// The port a new listener for `deployment` takes.
fn choose_port(deployment: &str, port: Option<u16>, taken: &[u16], settings: &Settings) -> Result<u16, String> {
    match (port, settings.listen_ports) {
        (Some(port), _) if taken.contains(&port) => Err(format!(
            "port {port} of the load balancer already has a listener that is not deployment {deployment:?}'s"
        )),
        (Some(port), _) => Ok(port),
        (None, Some((first, last))) => (first..=last)
            .find(|p| !taken.contains(p))
            .ok_or_else(|| format!("every port of listen-ports {first}-{last} has a listener")),
        (None, None) => Err(format!(
            "pack setting listen.{deployment} is not set (the ALB port for this deployment), nor listen-ports (a range to pick from, e.g. 8000-8099)"
        )),
    }
}

fn create_listener(
    aws: &Client,
    env: &str,
    deployment: &str,
    port: u16,
    settings: &Settings,
) -> Result<Listener, AwsError> {
    let xml = elb(
        aws,
        "CreateListener",
        vec![
            p("LoadBalancerArn", settings.load_balancer.clone()),
            p("Protocol", "HTTP"),
            p("Port", port.to_string()),
            p("DefaultActions.member.1.Type", "fixed-response"),
            p("DefaultActions.member.1.FixedResponseConfig.StatusCode", "503"),
            p("DefaultActions.member.1.FixedResponseConfig.ContentType", "text/plain"),
            p(
                "DefaultActions.member.1.FixedResponseConfig.MessageBody",
                "no revision is routed",
            ),
            p("Tags.member.1.Key", OWNER_TAG),
            p("Tags.member.1.Value", names::key(env, "deployment", deployment)),
            p("Tags.member.2.Key", "envpack:deployment"),
            p("Tags.member.2.Value", names::tag_value(deployment)),
        ],
    )?;
    let doc = doc(&xml, "CreateListener")?;
    let arn = members(&doc, "Listeners")
        .first()
        .map(|l| text(*l, "ListenerArn"))
        .filter(|arn| !arn.is_empty())
        .ok_or_else(|| AwsError {
            action: "ELBv2 CreateListener".into(),
            code: "InvalidResponse".into(),
            message: "no ListenerArn in the response".into(),
        })?;
    Ok(Listener {
        arn,
        port,
        forward: Vec::new(),
    })
}

/// Makes the listener forward to `groups` by weight; to nothing (503)
/// when `groups` is empty.
pub fn set_forward(aws: &Client, listener: &str, groups: &[(String, u32)]) -> Result<(), String> {
    let mut params = vec![p("ListenerArn", listener)];
    if groups.is_empty() {
        params.extend([
            p("DefaultActions.member.1.Type", "fixed-response"),
            p("DefaultActions.member.1.FixedResponseConfig.StatusCode", "503"),
            p("DefaultActions.member.1.FixedResponseConfig.ContentType", "text/plain"),
            p(
                "DefaultActions.member.1.FixedResponseConfig.MessageBody",
                "no revision is routed",
            ),
        ]);
    } else {
        params.push(p("DefaultActions.member.1.Type", "forward"));
        for (i, (arn, weight)) in groups.iter().enumerate() {
            let prefix = format!("DefaultActions.member.1.ForwardConfig.TargetGroups.member.{}", i + 1);
            params.push(p(format!("{prefix}.TargetGroupArn"), arn.clone()));
            params.push(p(format!("{prefix}.Weight"), weight.to_string()));
        }
    }
    elb(aws, "ModifyListener", params).map(drop).map_err(|e| e.to_string())
}

/// Takes `target_group` out of the deployment's listener, if it is in it;
/// whether the listener changed.
pub fn unroute(
    aws: &Client,
    env: &str,
    deployment: &str,
    target_group: &str,
    settings: &Settings,
) -> Result<bool, String> {
    let Some(listener) = find_listener(aws, env, deployment, settings)? else {
        return Ok(false);
    };
    if !listener.forward.iter().any(|(arn, _)| arn == target_group) {
        return Ok(false);
    }
    let rest: Vec<(String, u32)> = listener
        .forward
        .into_iter()
        .filter(|(arn, weight)| arn != target_group && *weight > 0)
        .collect();
    set_forward(aws, &listener.arn, &rest)?;
    Ok(true)
}

/// The targets of a target group and their health.
pub fn target_health(aws: &Client, target_group: &str) -> Result<Vec<Target>, String> {
    let xml = elb(aws, "DescribeTargetHealth", vec![p("TargetGroupArn", target_group)]).map_err(|e| e.to_string())?;
    let doc = doc(&xml, "DescribeTargetHealth").map_err(|e| e.to_string())?;
    Ok(members(&doc, "TargetHealthDescriptions")
        .into_iter()
        .map(|d| {
            let health = child(d, "TargetHealth");
            Target {
                id: child(d, "Target").map(|t| text(t, "Id")).unwrap_or_default(),
                state: health.map(|h| text(h, "State")).unwrap_or_default(),
                reason: health.map(|h| text(h, "Reason")).unwrap_or_default(),
            }
        })
        .collect())
}

/// Deletes a listener (its rules go with it); whether it was there.
pub fn delete_listener(aws: &Client, arn: &str) -> Result<bool, String> {
    match elb(aws, "DeleteListener", vec![p("ListenerArn", arn)]) {
        Ok(_) => Ok(true),
        Err(e) if e.is("ListenerNotFound") => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}
