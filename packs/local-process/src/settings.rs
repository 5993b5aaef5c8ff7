//! The pack's settings. Environment (pack) settings:
//!
//! - `listen.<deployment>`: the `host:port` nginx serves the deployment on;
//!   a deployment without one gets a free `127.0.0.1` port from the range
//!   `listen-ports` (say `18000-18099`) if set, kept for as long as it is routed.
//!   Keep both ranges below the kernel's ephemeral ports
//!   (`/proc/sys/net/ipv4/ip_local_port_range`, usually from 32768): a client
//!   connection's port there answers no probe, yet nginx cannot bind it;
//! - `nginx`, `tar`: the commands to run (as granted; default `nginx`, `tar`);
//! - `ports`: the range revisions get ports from (default `20000-20999`;
//!   grant it to `probe`, e.g. `--allow-probe 127.0.0.1:20000-20999`).
//!   Environments warming revisions at the same moment should have ranges
//!   of their own: a port is free when the pack looks, and a revision of
//!   another environment starting on it in that moment can answer this
//!   revision's health check (a probe sees a status, not who answered);
//! - `health-timeout-ms` (default 20000), `drain-wait-ms` (default 10000):
//!   how long warm waits for health and drain for an exit, keep both below
//!   the verbs' deadlines.
//!
//! Revision settings: `run` (the start command line), `health-path`
//! (default `/healthz`), `PORT` (a fixed port, refused at warm when
//! something already listens there); a setting `env.NAME`
//! reaches the process as variable `NAME` — the operator grants each with
//! `--allow-env NAME`, as it does `PORT` and `ENVPACK_REVISION`, which the
//! pack always sets.

use crate::envpack::deployer::environment::Environment;
use crate::envpack::deployer::types::Revision;

pub struct Settings {
    pub nginx: String,
    pub tar: String,
    pub ports: (u16, u16),
    /// The environment's id: where in `ports` its revisions start looking.
    pub environment: String,
    pub health_timeout_ms: u32,
    pub drain_wait_ms: u32,
}

impl Settings {
    pub fn read(env: &Environment) -> Result<Settings, String> {
        let text = |key: &str, default: &str| env.setting(key).unwrap_or_else(|| default.to_string());
        let number = |key: &str, default: u32| -> Result<u32, String> {
            match env.setting(key) {
                None => Ok(default),
                Some(v) => v
                    .parse()
                    .map_err(|_| format!("pack setting {key}={v:?} is not a number of milliseconds")),
            }
        };
        let ports = text("ports", "20000-20999");
        let parsed = ports
            .split_once('-')
            .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
            .filter(|(a, b)| *a > 0 && a <= b)
            .ok_or_else(|| format!("pack setting ports={ports:?} is not a range like 20000-20999"))?;
        Ok(Settings {
            nginx: text("nginx", "nginx"),
            tar: text("tar", "tar"),
            ports: parsed,
            environment: env.id(),
            health_timeout_ms: number("health-timeout-ms", 20_000)?,
            drain_wait_ms: number("drain-wait-ms", 10_000)?,
        })
    }
}

/// The `listen.<deployment>` setting, checked to be a plain `host:port`
/// (it goes into nginx's config, so nothing else may pass); without one,
/// `current` (what the deployment's route listens on now) or a free port of
/// `listen-ports`.
pub fn listen(env: &Environment, deployment: &str, current: Option<&str>, taken: &[String]) -> Result<String, String> {
    let key = format!("listen.{deployment}");
    let value = match (env.setting(&key), current) {
        (Some(value), _) => value,
        (None, Some(current)) => current.to_string(),
        (None, None) => free_listen(env, &key, taken)?,
    };
    let ok = value.rsplit_once(':').is_some_and(|(host, port)| {
        !host.is_empty()
            && port.parse::<u16>().is_ok_and(|p| p > 0)
            && host.bytes().all(|b| b.is_ascii_alphanumeric() || b".-[]:".contains(&b))
    });
    if !ok {
        return Err(format!("pack setting {key}={value:?} is not host:port"));
    }
    Ok(value)
}

fn free_listen(env: &Environment, key: &str, taken: &[String]) -> Result<String, String> {
    let missing = || {
        format!(
            "pack setting {key} is not set (e.g. --setting {key}=127.0.0.1:8080, or a range: listen-ports=18000-18099)"
        )
    };
    let range = env.setting("listen-ports").ok_or_else(missing)?;
    let (first, last) = range
        .split_once('-')
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .filter(|(a, b)| *a > 0 && a <= b)
        .ok_or_else(|| format!("pack setting listen-ports={range:?} is not a range like 18000-18099"))?;
    (first..=last)
        .map(|port| format!("127.0.0.1:{port}"))
        .find(|address| !taken.contains(address) && crate::envpack::deployer::probe::tcp_connect(address, 200).is_err())
        .ok_or_else(|| format!("no free port in listen-ports={range}"))
}

pub fn revision_setting(revision: &Revision, key: &str) -> Option<String> {
    revision
        .settings
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty())
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
/// The variable a revision setting `env.NAME` gives the app, if it is one.
pub fn env_name(key: &str) -> Option<&str> {
    let name = key.strip_prefix("env.")?;
    let mut bytes = name.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    valid.then_some(name)
}
