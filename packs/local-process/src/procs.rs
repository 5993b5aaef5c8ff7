//! Running commands through the host's `process` capability: one-shot
//! commands waited for (tar, `nginx -t`), and stopping long-lived ones.

use crate::envpack::deployer::clock;
use crate::envpack::deployer::process::{self, ProcessInfo, ProcessState, Signal, SpawnRequest};

pub fn running(info: &ProcessInfo) -> bool {
    matches!(info.state, ProcessState::Running)
}

/// The process with this id, if the environment still tracks it and it runs.
pub fn live(id: &str) -> Option<ProcessInfo> {
    process::status(id).ok().filter(running)
}

pub fn describe(error: &process::ProcessError) -> String {
    match error {
        process::ProcessError::NotAllowed(m) => format!("not allowed: {m}"),
        process::ProcessError::BadPath(m) => format!("bad path: {m}"),
        process::ProcessError::UnknownProcess(m) => format!("unknown process: {m}"),
        process::ProcessError::Limit(m) => format!("limit: {m}"),
        process::ProcessError::Failed(m) => m.clone(),
    }
}

/// A probe's failure as a sentence.
pub fn describe_probe(error: &crate::envpack::deployer::probe::ProbeError) -> String {
    match error {
        crate::envpack::deployer::probe::ProbeError::NotAllowed(m) => format!("not allowed: {m}"),
        crate::envpack::deployer::probe::ProbeError::Timeout(ms) => format!("no answer within {ms} ms"),
        crate::envpack::deployer::probe::ProbeError::Failed(m) => m.clone(),
    }
}

/// How a process ended, as words.
pub fn describe_state(state: &ProcessState) -> String {
    match state {
        ProcessState::Running => "still running".into(),
        ProcessState::Exited(Some(code)) => format!("exit code {code}"),
        ProcessState::Exited(None) => "ended by a signal".into(),
    }
}

/// Runs `command args` in `cwd` to completion (at most `timeout_ms`); Ok
/// with its stderr tail when it exits 0, Err naming it otherwise.
pub fn run(command: &str, args: &[&str], cwd: &str, timeout_ms: u32) -> Result<String, String> {
    let request = SpawnRequest {
        command: command.to_string(),
        args: args.iter().map(|a| a.to_string()).collect(),
        env: Vec::new(),
        cwd: cwd.to_string(),
    };
    let line = format!("{command} {}", args.join(" "));
    let info = process::spawn(&request).map_err(|e| format!("{line}: {}", describe(&e)))?;
    let done = process::wait(&info.id, timeout_ms).map_err(|e| format!("{line}: {}", describe(&e)))?;
    let stderr = crate::state::tail(&format!("/{}", done.stderr_path), 8);
    match done.state {
        ProcessState::Exited(Some(0)) => Ok(stderr),
        ProcessState::Exited(code) => Err(format!(
            "{line} failed ({}): {stderr}",
            describe_state(&ProcessState::Exited(code))
        )),
        ProcessState::Running => {
            let _ = process::send_signal(&info.id, Signal::Kill);
            Err(format!("{line} did not finish within {timeout_ms} ms"))
        }
    }
}

/// TERM, up to `grace_ms` for it to exit, then KILL. Returns whether it
/// exited within the grace period.
pub fn stop(id: &str, grace_ms: u32) -> Result<bool, String> {
    if live(id).is_none() {
        return Ok(true);
    }
    process::send_signal(id, Signal::Term).map_err(|e| describe(&e))?;
    let info = process::wait(id, grace_ms).map_err(|e| describe(&e))?;
    if !running(&info) {
        return Ok(true);
    }
    kill(id)?;
    Ok(false)
}

/// KILL, then wait (briefly) until it is gone.
pub fn kill(id: &str) -> Result<(), String> {
    process::send_signal(id, Signal::Kill).map_err(|e| describe(&e))?;
    let info = process::wait(id, 5000).map_err(|e| describe(&e))?;
    if running(&info) {
        return Err(format!("process {id} (pid {}) survived SIGKILL for 5 s", info.pid));
    }
    Ok(())
}

pub fn now_ms() -> u64 {
    clock::now_ms()
}

pub fn sleep_ms(ms: u32) {
    clock::sleep_ms(ms);
}
