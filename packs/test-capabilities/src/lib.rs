//! `test-capabilities`: a test pack that drives the contract 1.1 capabilities
//! from the environment's settings, so that tests can exercise each one (and
//! each refusal) against real processes and a real HTTP server.
//!
//! - `stage-revision`: with `fetch` set, `fetch-artifact`, then reads the
//!   placed file through `wasi:filesystem` and reports its size;
//! - `warm-revision`: spawns `cmd` with `args` (space-separated; default
//!   `sleep 30`) in `cwd` (settings), `spawn-count` times (default 1), keeps
//!   the last id in kv; a revision whose kept process still runs is warm
//!   already (idempotent); with `wait-ms`, waits and reports the state;
//! - `drain-revision`: TERM to the kept process (or to `signal-id`), then waits;
//! - `archive-revision`: reads secret `secret` and reports only its length;
//! - `probe-revision`: `probe-http` (host:port) with `probe-path`, or `probe-tcp`,
//!   or `wasi-http` (an `http://host:port` origin) with `probe-path` through
//!   `wasi:http` (the `http` capability);
//! - `apply-traffic-split`: echoes the recorded split; `report-runtime-config`: none.
//!
//! Every capability error comes back as `provider("<verb>: <error>")`.

wit_bindgen::generate!({
    path: "../../wit/history/1.1.0",
    world: "pack",
});

use envpack::deployer::environment::Environment;
use envpack::deployer::types::{
    Capability, DeployError, Health, PackInfo, RevisionOutcome, RuntimeConfig, SplitOutcome,
};
use envpack::deployer::{kv, probe, process, secrets};
use exports::envpack::deployer::deployer::Guest;

fn setting(env: &Environment, key: &str) -> Option<String> {
    env.setting(key).filter(|v| !v.is_empty())
}

fn provider(verb: &str, error: impl std::fmt::Debug) -> DeployError {
    DeployError::Provider(format!("{verb}: {error:?}"))
}

fn outcome(env: &Environment, revision: &str, detail: String) -> Result<RevisionOutcome, DeployError> {
    env.revision(revision)
        .ok_or_else(|| DeployError::RevisionNotFound(revision.to_string()))?;
    Ok(RevisionOutcome {
        revision: revision.to_string(),
        detail,
    })
}

/// `GET <origin><path>` through `wasi:http`, reading the whole body
/// (counted, not kept); the response status.
fn wasi_http_get(origin: &str, path: &str) -> Result<u16, String> {
    use wasip2::http::outgoing_handler::handle;
    use wasip2::http::types::{Fields, Method, OutgoingRequest, Scheme};
    let (scheme, authority) = origin.split_once("://").ok_or("origin has no scheme")?;
    let request = OutgoingRequest::new(Fields::new());
    request.set_method(&Method::Get).map_err(|()| "method")?;
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    request.set_scheme(Some(&scheme)).map_err(|()| "scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "path")?;
    let future = handle(request, None).map_err(|e| format!("{e:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("{e:?}"))?;
    let status = response.status();
    let body = response.consume().map_err(|()| "body taken")?;
    let stream = body.stream().map_err(|()| "stream taken")?;
    let mut read = 0usize;
    loop {
        match stream.blocking_read(1 << 16) {
            Ok(chunk) => read += chunk.len(),
            Err(wasip2::io::streams::StreamError::Closed) => break,
            Err(wasip2::io::streams::StreamError::LastOperationFailed(e)) => {
                let code = wasip2::http::types::http_error_code(&e);
                return Err(format!(
                    "body read failed after {read} bytes: {code:?} {}",
                    e.to_debug_string()
                ));
            }
        }
    }
    Ok(status)
}

fn state_name(state: &process::ProcessState) -> String {
    match state {
        process::ProcessState::Running => "running".into(),
        process::ProcessState::Exited(code) => format!("exited({code:?})"),
    }
}

struct Capabilities;

impl Guest for Capabilities {
    fn describe() -> PackInfo {
        PackInfo {
            descriptor: "envpack.test.capabilities@0.1.0".to_string(),
            contract_version: "1.1.0".to_string(),
            capabilities: vec![
                Capability::Log,
                Capability::Kv,
                Capability::Process,
                Capability::Probe,
                Capability::Http,
                Capability::Secrets,
            ],
            description: "Test pack that drives the 1.1 capabilities from its settings".to_string(),
        }
    }

    fn stage_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        env.revision(&revision)
            .ok_or_else(|| DeployError::RevisionNotFound(revision.clone()))?;
        if setting(env, "fetch").is_none() {
            return outcome(env, &revision, "staged".into());
        }
        let path = process::fetch_artifact(env, &revision).map_err(|e| provider("fetch-artifact", e))?;
        let bytes = std::fs::read(format!("/{path}")).map_err(|e| provider("read artifact", e.to_string()))?;
        outcome(env, &revision, format!("{path} ({} bytes)", bytes.len()))
    }

    fn warm_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        env.revision(&revision)
            .ok_or_else(|| DeployError::RevisionNotFound(revision.clone()))?;
        if setting(env, "spawn-count").is_none()
            && let Some(id) = kv::get(&format!("proc/{revision}"))
            && let Ok(info) = process::status(&String::from_utf8_lossy(&id))
            && matches!(info.state, process::ProcessState::Running)
        {
            return outcome(env, &revision, format!("{} pid {} already running", info.id, info.pid));
        }
        let request = process::SpawnRequest {
            command: setting(env, "cmd").unwrap_or_else(|| "sleep".into()),
            args: setting(env, "args")
                .unwrap_or_else(|| "30".into())
                .split(' ')
                .map(str::to_string)
                .collect(),
            env: vec![("REVISION".to_string(), revision.clone())],
            cwd: setting(env, "cwd").unwrap_or_default(),
        };
        let count: u32 = setting(env, "spawn-count").and_then(|c| c.parse().ok()).unwrap_or(1);
        let mut last = None;
        for _ in 0..count {
            let info = process::spawn(&request).map_err(|e| provider("spawn", e))?;
            kv::set(&format!("proc/{revision}"), info.id.as_bytes());
            last = Some(info);
        }
        let Some(mut info) = last else {
            return outcome(env, &revision, "spawned nothing".into());
        };
        if let Some(ms) = setting(env, "wait-ms").and_then(|m| m.parse().ok()) {
            info = process::wait(&info.id, ms).map_err(|e| provider("wait", e))?;
        }
        outcome(
            env,
            &revision,
            format!("{} pid {} {}", info.id, info.pid, state_name(&info.state)),
        )
    }

    fn drain_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        env.revision(&revision)
            .ok_or_else(|| DeployError::RevisionNotFound(revision.clone()))?;
        let id = match setting(env, "signal-id") {
            Some(id) => id,
            None => match kv::get(&format!("proc/{revision}")) {
                Some(v) => String::from_utf8_lossy(&v).into_owned(),
                None => return outcome(env, &revision, "nothing running".into()),
            },
        };
        process::send_signal(&id, process::Signal::Term).map_err(|e| provider("send-signal", e))?;
        let info = process::wait(&id, 2_000).map_err(|e| provider("wait", e))?;
        let listed = process::processes().len();
        outcome(
            env,
            &revision,
            format!("{id} {} ({listed} tracked)", state_name(&info.state)),
        )
    }

    fn archive_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        env.revision(&revision)
            .ok_or_else(|| DeployError::RevisionNotFound(revision.clone()))?;
        let detail = match setting(env, "secret") {
            Some(name) => {
                let value = secrets::get(&name).map_err(|e| provider("secrets.get", e))?;
                format!("secret {name} has {} bytes", value.len())
            }
            None => "archived".into(),
        };
        outcome(env, &revision, detail)
    }

    fn apply_traffic_split(env: &Environment, deployment: String) -> Result<SplitOutcome, DeployError> {
        let split = env
            .split(&deployment)
            .ok_or_else(|| DeployError::SplitNotFound(deployment.clone()))?;
        // A fault on demand: routing one deployment stops every process,
        // the other deployment's too.
        if setting(env, "apply-kills").is_some() {
            for info in process::processes() {
                let _ = process::send_signal(&info.id, process::Signal::Kill);
            }
        }
        Ok(SplitOutcome {
            deployment,
            entries: split.entries,
        })
    }

    fn report_runtime_config(_env: &Environment) -> Result<Option<RuntimeConfig>, DeployError> {
        Ok(None)
    }

    fn probe_revision(env: &Environment, revision: String) -> Result<Health, DeployError> {
        env.revision(&revision)
            .ok_or_else(|| DeployError::RevisionNotFound(revision.clone()))?;
        if let Some(address) = setting(env, "probe-http") {
            let path = setting(env, "probe-path").unwrap_or_else(|| "/".into());
            let response = probe::http_get(&address, &path, 1_000).map_err(|e| provider("http-get", e))?;
            return Ok(if response.status == 200 {
                Health::Healthy
            } else {
                Health::Unhealthy(format!("status {}", response.status))
            });
        }
        if let Some(origin) = setting(env, "wasi-http") {
            let path = setting(env, "probe-path").unwrap_or_else(|| "/".into());
            // Reads around the request, to see it recorded in its place.
            let _ = kv::get("order/before-http");
            let status = wasi_http_get(&origin, &path).map_err(|e| provider("wasi-http", e))?;
            let _ = kv::get("order/after-http");
            return Ok(if status == 200 {
                Health::Healthy
            } else {
                Health::Unhealthy(format!("status {status}"))
            });
        }
        if let Some(address) = setting(env, "probe-tcp") {
            probe::tcp_connect(&address, 1_000).map_err(|e| provider("tcp-connect", e))?;
            return Ok(Health::Healthy);
        }
        Ok(Health::Unsupported)
    }
}

export!(Capabilities);
