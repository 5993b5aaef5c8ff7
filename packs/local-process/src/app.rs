//! A revision as a local process: staged from its digest-verified artifact
//! (a `.tar.gz` unpacked with `tar`, or a single executable), started on a
//! local port with its settings as environment variables, healthy when its
//! health check answers 2xx/3xx, stopped with TERM then KILL.

use crate::envpack::deployer::environment::Environment;
use crate::envpack::deployer::probe;
use crate::envpack::deployer::process::{self, SpawnRequest};
use crate::envpack::deployer::types::{Health, Revision};
use crate::procs::{self, live};
use crate::settings::{self, Settings};
use crate::state::{self, Intent, Run};

/// How long unpacking may take: under the pack's 60 s stage deadline.
const STAGE_TIMEOUT_MS: u32 = 50_000;

/// Unpacks the revision's artifact into `revisions/<id>/app`; returns a note.
pub fn stage(env: &Environment, revision: &Revision, settings: &Settings) -> Result<String, String> {
    let dir = state::revision_dir(&revision.id);
    let app = format!("{dir}/app");
    if std::fs::metadata(&app).is_ok_and(|m| m.is_dir()) {
        return Ok(format!("already staged in {}", &app[1..]));
    }
    let artifact = process::fetch_artifact(env, &revision.id).map_err(|e| {
        let (what, why) = match e {
            process::ArtifactError::RevisionNotFound(m) => ("the host knows no such revision", m),
            process::ArtifactError::NotAllowed(m) => ("not allowed", m),
            process::ArtifactError::DigestMismatch(m) => ("the bytes do not match the revision's digest", m),
            process::ArtifactError::Unavailable(m) => ("unavailable", m),
        };
        format!("fetching the artifact: {what}: {why}")
    })?;
    if artifact != format!("{}/artifact", &dir[1..]) {
        return Err(format!(
            "the host placed the artifact at {artifact}, not in {dir} as the contract says"
        ));
    }
    let head = read_head(&format!("/{artifact}"))?;
    // Unpack beside, then rename: a crash mid-unpack leaves no half `app`.
    let partial = format!("{dir}/app.partial");
    state::remove_dir(&partial)?;
    std::fs::create_dir_all(&partial).map_err(|e| format!("{partial}: {e}"))?;
    let note = if head.starts_with(&[0x1f, 0x8b]) {
        procs::run(
            &settings.tar,
            &["-xzf", "artifact", "-C", "app.partial", "--no-same-owner"],
            &dir[1..],
            STAGE_TIMEOUT_MS,
        )
        .map_err(|e| format!("unpacking {artifact}: {e}"))?;
        format!("unpacked {artifact} into {}", &app[1..])
    } else {
        format!("{artifact} is a single executable")
    };
    std::fs::rename(&partial, &app).map_err(|e| format!("{app}: {e}"))?;
    Ok(note)
}

fn read_head(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let mut head = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4).read_to_end(&mut head))
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(head)
}

/// The command line that starts the revision: its `run` setting
/// (whitespace-separated; `./x` is relative to the unpacked app), or the
/// artifact itself when it is a single executable.
fn command_line(revision: &Revision) -> Result<(String, Vec<String>), String> {
    let dir = &state::revision_dir(&revision.id)[1..];
    let run = settings::revision_setting(revision, "run");
    let Some(run) = run else {
        let head = read_head(&format!("/{dir}/artifact"))?;
        if head.starts_with(&[0x1f, 0x8b]) {
            return Err(format!(
                "revision {} is a .tar.gz but has no `run` setting (e.g. --setting run=./server)",
                revision.id
            ));
        }
        return Ok((format!("./{dir}/artifact"), Vec::new()));
    };
    let mut words = run.split_whitespace().map(str::to_string);
    let first = words.next().ok_or("the `run` setting is empty")?;
    let command = match first.strip_prefix("./") {
        Some(rest) => format!("./{dir}/app/{rest}"),
        None => first,
    };
    Ok((command, words.collect()))
}

/// Starts the revision (or adopts its process) and waits for its health check.
pub fn warm(revision: &Revision, settings: &Settings) -> Result<String, String> {
    let dir = state::revision_dir(&revision.id);
    if !std::fs::metadata(format!("{dir}/app")).is_ok_and(|m| m.is_dir()) {
        return Err(format!("revision {} is not staged here (run stage first)", revision.id));
    }
    let health = settings::revision_setting(revision, "health-path").unwrap_or_else(|| "/healthz".into());
    if let Some(run) = adopt(revision)? {
        // A warm that never passes is killed, adopted (an interrupted
        // warm's process) or not: a failed revision runs nothing.
        if let Err(error) = wait_healthy(&run, &health, settings) {
            let _ = procs::kill(&run.process);
            state::remove(&state::run_path(&revision.id))?;
            state::remove(&state::intent_path(&revision.id))?;
            return Err(error);
        }
        return Ok(format!(
            "{} pid {} already running on port {}",
            run.process, run.pid, run.port
        ));
    }
    let (command, args) = command_line(revision)?;
    let fixed = settings::revision_setting(revision, "PORT").map(|p| {
        p.parse::<u16>()
            .map_err(|_| format!("revision setting PORT={p:?} is not a port number"))
    });
    let mut tried = Vec::new();
    for _attempt in 0..3 {
        let (port, fixed_port) = match &fixed {
            Some(port) => (port.clone()?, true),
            None => (free_port(&revision.id, settings, &tried)?, false),
        };
        tried.push(port);
        if fixed_port {
            pinned_port_free(port)?;
        }
        let run = start(revision, &command, &args, port)?;
        match wait_healthy(&run, &health, settings) {
            Ok(()) => {
                state::remove(&state::intent_path(&revision.id))?;
                return Ok(format!("{} pid {} healthy on port {port}", run.process, run.pid));
            }
            Err(error) => {
                let _ = procs::kill(&run.process);
                state::remove(&state::run_path(&revision.id))?;
                state::remove(&state::intent_path(&revision.id))?;
                // A port the pack picked may have been taken in between: try another.
                if fixed_port || !error.to_ascii_lowercase().contains("in use") {
                    return Err(error);
                }
            }
        }
    }
    Err(format!(
        "no free port for revision {} after trying {tried:?}",
        revision.id
    ))
}

/// The revision's process if it still runs: from `run.json`, or after a
/// crash between spawn and `run.json`, the one process spawned after the
/// recorded intent with the same command line that no revision claims.
fn adopt(revision: &Revision) -> Result<Option<Run>, String> {
    if let Some(run) = state::read::<Run>(&state::run_path(&revision.id))? {
        if live(&run.process).is_some() {
            return Ok(Some(run));
        }
        state::remove(&state::run_path(&revision.id))?;
    }
    let Some(intent) = state::read::<Intent>(&state::intent_path(&revision.id))? else {
        return Ok(None);
    };
    let claimed: Vec<String> = state::runs().into_iter().map(|(_, r)| r.process).collect();
    let found = process::processes().into_iter().find(|p| {
        procs::running(p)
            && p.started_at_ms + 1000 >= intent.at_ms
            && p.command == intent.command
            && p.args == intent.args
            && !claimed.contains(&p.id)
    });
    let Some(info) = found else {
        state::remove(&state::intent_path(&revision.id))?;
        return Ok(None);
    };
    let run = Run {
        process: info.id,
        pid: info.pid,
        port: intent.port,
        kill_at_ms: None,
        revision: revision.id.clone(),
        deployment: revision.deployment.clone(),
    };
    state::write(&state::run_path(&revision.id), &run)?;
    Ok(Some(run))
}

fn start(revision: &Revision, command: &str, args: &[String], port: u16) -> Result<Run, String> {
    let dir = state::revision_dir(&revision.id);
    let intent = Intent {
        at_ms: procs::now_ms(),
        port,
        command: command.to_string(),
        args: args.to_vec(),
    };
    state::write(&state::intent_path(&revision.id), &intent)?;
    let mut vars: Vec<(String, String)> = revision
        .settings
        .iter()
        .filter_map(|(k, v)| Some((settings::env_name(k)?.to_string(), v.clone())))
        .collect();
    vars.retain(|(k, _)| k != "PORT");
    vars.push(("PORT".into(), port.to_string()));
    vars.push(("ENVPACK_REVISION".into(), revision.id.clone()));
    let request = SpawnRequest {
        command: command.to_string(),
        args: args.to_vec(),
        env: vars,
        cwd: format!("{}/app", &dir[1..]),
    };
    let info = process::spawn(&request).map_err(|e| format!("starting {command}: {}", procs::describe(&e)))?;
    let run = Run {
        process: info.id,
        pid: info.pid,
        port,
        kill_at_ms: None,
        revision: revision.id.clone(),
        deployment: revision.deployment.clone(),
    };
    state::write(&state::run_path(&revision.id), &run)?;
    Ok(run)
}

/// Refuses a pinned port that something already listens on: whatever
/// holds it would answer the revision's health checks for it.
fn pinned_port_free(port: u16) -> Result<(), String> {
    match probe::tcp_connect(&format!("127.0.0.1:{port}"), 200) {
        Ok(_) => Err(format!(
            "port {port} (the revision's PORT setting) is already in use on 127.0.0.1: another process would answer this revision's health checks; stop it or pin another PORT"
        )),
        Err(probe::ProbeError::NotAllowed(m)) => Err(format!("cannot check port {port}: {m}")),
        Err(_) => Ok(()),
    }
}

/// A port in the pack's range that no revision here holds and nothing answers on.
fn free_port(revision: &str, settings: &Settings, tried: &[u16]) -> Result<u16, String> {
    let (first, last) = settings.ports;
    let span = u32::from(last - first) + 1;
    let held: Vec<u16> = state::runs().into_iter().map(|(_, r)| r.port).collect();
    // Start where the environment and revision hash to, so environments
    // spread out: one revision id warmed in two environments sharing the
    // range at once (staging and production) would otherwise look at the
    // same port first, both find it free, and one start in the other's.
    let start = settings
        .environment
        .bytes()
        .chain([0])
        .chain(revision.bytes())
        .fold(2166136261u32, |h, b| (h ^ u32::from(b)).wrapping_mul(16777619))
        % span;
    for i in 0..span {
        let port = first + u16::try_from((start + i) % span).unwrap_or(0);
        if held.contains(&port) || tried.contains(&port) {
            continue;
        }
        match probe::tcp_connect(&format!("127.0.0.1:{port}"), 200) {
            Err(probe::ProbeError::NotAllowed(m)) => {
                return Err(format!(
                    "cannot check port {port}: {m} (grant the pack's range: --allow-probe 127.0.0.1:{first}-{last})"
                ));
            }
            Err(_) => return Ok(port),
            Ok(_) => {} // Something answers there.
        }
    }
    Err(format!("every port in {first}-{last} is taken"))
}

/// Polls the health check until it passes, the process exits, or the
/// pack's health timeout runs out.
fn wait_healthy(run: &Run, path: &str, settings: &Settings) -> Result<(), String> {
    let address = format!("127.0.0.1:{}", run.port);
    let until = procs::now_ms() + u64::from(settings.health_timeout_ms);
    // Most apps answer within tens of milliseconds of starting: poll every
    // 5 ms for the first 100 ms, then back off to every 100 ms.
    let started = procs::now_ms();
    let mut pause = 5;
    loop {
        let info = process::status(&run.process).map_err(|e| procs::describe(&e))?;
        if !procs::running(&info) {
            let stderr = state::tail(&format!("/{}", info.stderr_path), 10);
            return Err(format!(
                "the process exited ({}) before its health check passed; stderr: {stderr}",
                procs::describe_state(&info.state)
            ));
        }
        let last = match probe::http_get(&address, path, 1000) {
            // Only while the revision's own process runs: one that died
            // right after the look above leaves its port to whoever takes it.
            Ok(r) if (200..400).contains(&r.status) => {
                let after = process::status(&run.process).map_err(|e| procs::describe(&e))?;
                if procs::running(&after) {
                    return Ok(());
                }
                continue;
            }
            Ok(r) => format!("GET {path} answered {}", r.status),
            Err(probe::ProbeError::NotAllowed(m)) => {
                return Err(format!("cannot probe {address}: {m}"));
            }
            Err(e) => format!("GET {path}: {}", procs::describe_probe(&e)),
        };
        if procs::now_ms() >= until {
            let stderr = state::tail(&format!("/{}", info.stderr_path), 10);
            return Err(format!(
                "health check on {address} did not pass within {} ms ({last}); stderr: {stderr}",
                settings.health_timeout_ms
            ));
        }
        procs::sleep_ms(pause);
        if procs::now_ms() >= started + 100 {
            pause = (pause * 2).min(100);
        }
    }
}

/// TERM, then KILL after `drain-seconds` — or, when that is longer than the
/// pack waits in one call, leaves the process finishing its in-flight work
/// and records when a later verb of this revision must KILL it.
pub fn drain(revision: &Revision, settings: &Settings) -> Result<String, String> {
    let path = state::run_path(&revision.id);
    let Some(mut run) = state::read::<Run>(&path)? else {
        return Ok("no process to stop".into());
    };
    if live(&run.process).is_none() {
        state::remove(&path)?;
        return Ok(format!("{} had already exited", run.process));
    }
    let now = procs::now_ms();
    let kill_at = run.kill_at_ms.unwrap_or(now + u64::from(revision.drain_seconds) * 1000);
    if now >= kill_at {
        procs::kill(&run.process)?;
        state::remove(&path)?;
        return Ok(format!("{} killed: drain-seconds ran out", run.process));
    }
    if run.kill_at_ms.is_none() {
        run.kill_at_ms = Some(kill_at);
        state::write(&path, &run)?;
    }
    process::send_signal(&run.process, process::Signal::Term).map_err(|e| procs::describe(&e))?;
    let wait = (kill_at - now).min(u64::from(settings.drain_wait_ms));
    let info = process::wait(&run.process, u32::try_from(wait).unwrap_or(u32::MAX)).map_err(|e| procs::describe(&e))?;
    if !procs::running(&info) {
        state::remove(&path)?;
        return Ok(format!("{} stopped after TERM", run.process));
    }
    if procs::now_ms() >= kill_at {
        procs::kill(&run.process)?;
        state::remove(&path)?;
        return Ok(format!(
            "{} killed after drain-seconds ({} s)",
            run.process, revision.drain_seconds
        ));
    }
    Ok(format!(
        "{} is finishing in-flight work after TERM; archive (or drain again) KILLs it from {} ms since the epoch",
        run.process, kill_at
    ))
}

/// Stops whatever is left and deletes the revision's directory.
pub fn archive(revision: &Revision) -> Result<String, String> {
    // Its process from run.json, or one a crashed warm spawned but never recorded.
    let mut note = String::from("nothing was running");
    if let Some(run) = adopt(revision)? {
        let graceful = procs::stop(&run.process, 2000)?;
        note = format!("{} {}", run.process, if graceful { "stopped" } else { "killed" });
    }
    state::remove_dir(&state::revision_dir(&revision.id))?;
    Ok(format!("{note}; removed {}", &state::revision_dir(&revision.id)[1..]))
}

/// The revision's health check, read-only.
pub fn probe_health(revision: &Revision) -> Result<Health, String> {
    let Some(run) = state::read::<Run>(&state::run_path(&revision.id))? else {
        return Ok(Health::Unhealthy("not running".into()));
    };
    let info = match process::status(&run.process) {
        Ok(info) => info,
        Err(e) => return Ok(Health::Unhealthy(procs::describe(&e))),
    };
    if !procs::running(&info) {
        let stderr = state::tail(&format!("/{}", info.stderr_path), 5);
        return Ok(Health::Unhealthy(format!("the process exited; stderr: {stderr}")));
    }
    let path = settings::revision_setting(revision, "health-path").unwrap_or_else(|| "/healthz".into());
    Ok(match probe::http_get(&format!("127.0.0.1:{}", run.port), &path, 2000) {
        Ok(r) if (200..400).contains(&r.status) => Health::Healthy,
        Ok(r) => Health::Unhealthy(format!("GET {path} answered {}", r.status)),
        Err(e) => Health::Unhealthy(format!("GET {path}: {}", procs::describe_probe(&e))),
    })
}
