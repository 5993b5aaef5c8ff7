//! The pack's settings (`env create --setting KEY=VALUE`):
//!
//! - `region` (required) and `endpoint` (optional `scheme://host:port`
//!   serving every API, e.g. an emulator; default AWS's regional
//!   endpoints). Grant the origins: `--allow-http https://ecs.<region>.amazonaws.com
//!   --allow-http https://elasticloadbalancing.<region>.amazonaws.com`;
//! - `cluster` (name or ARN), `load-balancer` (ALB ARN), `vpc`, `subnets`
//!   and `security-groups` (comma-separated ids): where revisions run;
//! - `listen.<deployment>`: the ALB port serving that deployment; a
//!   deployment without one gets the first free port of `listen-ports`
//!   (say `8000-8099`), found again later by the listener's tags;
//! - `container-port` (80), `container-name` (`app`), `cpu` (256),
//!   `memory` (512), `desired-count` (1), `launch-type` (`FARGATE`),
//!   `health-path` (`/healthz`), `execution-role` (ARN, optional),
//!   `assign-public-ip` (`DISABLED`), `steady-timeout-ms` (300000, how long
//!   warm waits for ECS to call the task set steady), `poll-ms` (2000).
//!
//! Revision settings: `image` (the container image; default the artifact
//! location, which must then be an image reference, not a URL); every
//! setting whose key is an environment variable name goes into the
//! container's environment.

use crate::envpack::deployer::environment::Environment;

pub struct Settings {
    pub region: String,
    pub endpoint: Option<String>,
    pub cluster: String,
    pub load_balancer: String,
    pub vpc: String,
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
    pub listen_ports: Option<(u16, u16)>,
    pub container_port: u16,
    pub container_name: String,
    pub cpu: String,
    pub memory: String,
    pub desired_count: u32,
    pub launch_type: String,
    pub health_path: String,
    pub execution_role: Option<String>,
    pub assign_public_ip: String,
    pub steady_timeout_ms: u64,
    pub poll_ms: u32,
}

fn missing(key: &str, example: &str) -> String {
    format!("pack setting {key} is not set (env create/bind --setting {key}={example})")
}

impl Settings {
    pub fn read(env: &Environment) -> Result<Settings, String> {
        let required = |key: &str, example: &str| env.setting(key).ok_or_else(|| missing(key, example));
        let text = |key: &str, default: &str| env.setting(key).unwrap_or_else(|| default.to_string());
        let list = |key: &str, example: &str| -> Result<Vec<String>, String> {
            let items: Vec<String> = required(key, example)?
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
            if items.is_empty() {
                return Err(format!("pack setting {key} is empty (e.g. {key}={example})"));
            }
            Ok(items)
        };
        let endpoint = env.setting("endpoint");
        if let Some(e) = &endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            return Err(format!("pack setting endpoint={e:?} is not an http(s):// origin"));
        }
        let listen_ports = env
            .setting("listen-ports")
            .map(|v| port_range("listen-ports", &v))
            .transpose()?;
        Ok(Settings {
            region: required("region", "us-east-1")?,
            endpoint,
            cluster: required("cluster", "my-cluster")?,
            load_balancer: required(
                "load-balancer",
                "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0123456789abcdef",
            )?,
            vpc: required("vpc", "vpc-0123456789abcdef0")?,
            subnets: list("subnets", "subnet-aaa,subnet-bbb")?,
            security_groups: list("security-groups", "sg-0123456789abcdef0")?,
            listen_ports,
            container_port: number(env, "container-port", 80)?,
            container_name: text("container-name", "app"),
            cpu: text("cpu", "256"),
            memory: text("memory", "512"),
            desired_count: number(env, "desired-count", 1)?,
            launch_type: text("launch-type", "FARGATE"),
            health_path: text("health-path", "/healthz"),
            execution_role: env.setting("execution-role"),
            assign_public_ip: text("assign-public-ip", "DISABLED"),
            steady_timeout_ms: number(env, "steady-timeout-ms", 300_000)?,
            poll_ms: number(env, "poll-ms", 2000)?,
        })
    }

    /// The ALB port of `deployment`: its `listen.<deployment>` setting, if any.
    pub fn listen_port(env: &Environment, deployment: &str) -> Result<Option<u16>, String> {
        let key = format!("listen.{deployment}");
        env.setting(&key)
            .map(|v| {
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or_else(|| format!("pack setting {key}={v:?} is not a port"))
            })
            .transpose()
    }
}

fn number<T: std::str::FromStr>(env: &Environment, key: &str, default: T) -> Result<T, String> {
    match env.setting(key) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| format!("pack setting {key}={v:?} is not a number")),
    }
}

fn port_range(key: &str, value: &str) -> Result<(u16, u16), String> {
    value
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .filter(|(a, b)| *a > 0 && a <= b)
        .ok_or_else(|| format!("pack setting {key}={value:?} is not a port range like 8000-8099"))
}

/// Whether `key` can be an environment variable name.
pub fn is_env_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
