//! `test-escape`: a hostile pack. Each `mode` (an environment setting) is
//! one way a pack a stranger wrote could try to reach past its environment
//! through the capabilities it is granted. Written from the containment
//! issue's list of attacks; the tests (`tests/cli/containment.rs`) install
//! it signed, run each mode through the real CLI, and judge from outside
//! (files' bytes and modes, `/proc`, the secrets file, `state.db`) — what
//! this pack reports about itself is never the evidence.
//!
//! `stage-revision` runs the attack; the other verbs succeed, so the
//! revision can be warmed, drained and archived around it. The outcome's
//! detail says what the pack did and what came back, as JSON.
//!
//! Modes and their settings:
//! - `spawn`: first `link` (a path in the work directory) is made a
//!   symbolic link to `to`, and with `fetch=1` the revision's artifact is
//!   fetched; then `cmd` (`artifact` runs the fetched artifact) is spawned
//!   with `args` (a JSON array), `env` (a JSON object) in `cwd`;
//! - `fetch`: `link` → `to` as above, then `fetch-artifact` alone;
//! - `fill`: writes `fill-mb` MiB to `/fill.bin` through wasi:filesystem;
//! - `kv`: writes `kv-key`=`kv-value`, and reports what `read-key` holds;
//! - `signal`: sends `signal` (`term`/`kill`) to process `id`.

wit_bindgen::generate!({
    path: "../../wit/history/1.1.0",
    world: "pack",
});

use envpack::deployer::environment::Environment;
use envpack::deployer::process::{self, Signal, SpawnRequest};
use envpack::deployer::types::{
    Capability, DeployError, Health, PackInfo, RevisionOutcome, RuntimeConfig, SplitOutcome,
};
use envpack::deployer::{kv, log};
use exports::envpack::deployer::deployer::Guest;
use serde_json::{Value, json};

fn setting(env: &Environment, key: &str) -> Option<String> {
    env.setting(key).filter(|v| !v.is_empty())
}

fn outcome(env: &Environment, revision: &str, detail: Value) -> Result<RevisionOutcome, DeployError> {
    env.revision(revision)
        .ok_or_else(|| DeployError::RevisionNotFound(revision.to_string()))?;
    Ok(RevisionOutcome {
        revision: revision.to_string(),
        detail: detail.to_string(),
    })
}

fn make_link(env: &Environment) -> Value {
    let (Some(link), Some(to)) = (setting(env, "link"), setting(env, "to")) else {
        return Value::Null;
    };
    let path = format!("/{link}");
    if let Some(parent) = std::path::Path::new(&path).parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_dir_all(&path);
    json!({ "link": link, "to": to, "made": make_symlink(&to, &path).err() })
}

unsafe extern "C" {
    // wasi-libc's symlink(2), through the preopened work directory: the
    // target is stored as given (a relative `../..` one leads out).
    fn symlink(target: *const core::ffi::c_char, linkpath: *const core::ffi::c_char) -> core::ffi::c_int;
}

fn make_symlink(target: &str, link: &str) -> Result<(), String> {
    let (Ok(t), Ok(l)) = (std::ffi::CString::new(target), std::ffi::CString::new(link)) else {
        return Err("a NUL in the path".into());
    };
    // SAFETY: two NUL-terminated strings that outlive the call.
    match unsafe { symlink(t.as_ptr(), l.as_ptr()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error().to_string()),
    }
}

fn fetch(env: &Environment, revision: &str) -> Result<String, String> {
    process::fetch_artifact(env, revision).map_err(|e| format!("{e:?}"))
}

fn spawn(env: &Environment, revision: &str) -> Value {
    let link = make_link(env);
    let fetched = (setting(env, "fetch").as_deref() == Some("1")).then(|| fetch(env, revision));
    let parse = |key: &str, default: Value| -> Value {
        setting(env, key)
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or(default)
    };
    let args: Vec<String> = parse("args", json!([]))
        .as_array()
        .map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect())
        .unwrap_or_default();
    let vars: Vec<(String, String)> = parse("env", json!({}))
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default();
    let mut command = setting(env, "cmd").unwrap_or_else(|| "true".into());
    if command == "artifact"
        && let Some(Ok(path)) = &fetched
    {
        command = format!("./{path}");
    }
    let request = SpawnRequest {
        command: command.clone(),
        args,
        env: vars,
        cwd: setting(env, "cwd").unwrap_or_default(),
    };
    let spawned = process::spawn(&request);
    let (id, error) = match &spawned {
        Ok(info) => (Some(info.id.clone()), None),
        Err(e) => (None, Some(format!("{e:?}"))),
    };
    let waited = match (&id, setting(env, "wait-ms")) {
        (Some(id), Some(ms)) => process::wait(id, ms.parse().unwrap_or(1000))
            .ok()
            .map(|info| format!("{:?}", info.state)),
        _ => None,
    };
    json!({
        "mode": "spawn", "command": command, "link": link,
        "fetched": fetched.map(|f| f.map_err(|e| e.to_string())),
        "id": id, "pid": spawned.as_ref().ok().map(|i| i.pid),
        "error": error, "waited": waited,
    })
}

fn fill(env: &Environment) -> Value {
    use std::io::Write;
    let mib: usize = setting(env, "fill-mb").and_then(|v| v.parse().ok()).unwrap_or(1);
    let chunk = vec![0x41u8; 1 << 20];
    let mut written = 0usize;
    let result = std::fs::File::create("/fill.bin").and_then(|mut f| {
        for _ in 0..mib {
            f.write_all(&chunk)?;
            written += 1;
        }
        f.sync_all()
    });
    json!({ "mode": "fill", "written-mib": written, "error": result.err().map(|e| e.to_string()) })
}

fn kv_mode(env: &Environment) -> Value {
    if let (Some(key), Some(value)) = (setting(env, "kv-key"), setting(env, "kv-value")) {
        kv::set(&key, value.as_bytes());
    }
    let read = setting(env, "read-key").map(|key| {
        kv::get(&key)
            .map(|v| String::from_utf8_lossy(&v).into_owned())
            .unwrap_or_default()
    });
    json!({ "mode": "kv", "read": read })
}

fn signal(env: &Environment) -> Value {
    let id = setting(env, "id").unwrap_or_default();
    let signal = match setting(env, "signal").as_deref() {
        Some("kill") => Signal::Kill,
        _ => Signal::Term,
    };
    let sent = process::send_signal(&id, signal).map_err(|e| format!("{e:?}"));
    json!({ "mode": "signal", "id": id, "sent": sent.err() })
}

struct Escape;

impl Guest for Escape {
    fn describe() -> PackInfo {
        PackInfo {
            descriptor: "envpack.test.escape@0.1.0".into(),
            contract_version: "1.1.0".into(),
            capabilities: vec![Capability::Log, Capability::Kv, Capability::Process],
            description: "Hostile test pack: tries to reach past its environment through its capabilities".into(),
        }
    }

    fn stage_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let mode = setting(env, "mode").unwrap_or_default();
        let detail = match mode.as_str() {
            "spawn" => spawn(env, &revision),
            "fetch" => {
                let link = make_link(env);
                json!({ "mode": "fetch", "link": link, "fetched": fetch(env, &revision) })
            }
            "fill" => fill(env),
            "kv" => kv_mode(env),
            "signal" => signal(env),
            _ => json!({ "mode": "none" }),
        };
        log::log(log::Level::Info, &format!("{mode}: {detail}"));
        outcome(env, &revision, detail)
    }

    fn warm_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        outcome(env, &revision, json!({}))
    }

    fn drain_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        outcome(env, &revision, json!({}))
    }

    fn archive_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        outcome(env, &revision, json!({}))
    }

    fn apply_traffic_split(env: &Environment, deployment: String) -> Result<SplitOutcome, DeployError> {
        let split = env
            .split(&deployment)
            .ok_or_else(|| DeployError::SplitNotFound(deployment.clone()))?;
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
        Ok(Health::Unsupported)
    }
}

export!(Escape);
