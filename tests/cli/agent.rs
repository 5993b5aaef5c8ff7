//! `host agent`: one per state directory; it drives every rollout nobody
//! drives (a CLI that finds it hands over and follows), resumes them after
//! being SIGKILLed, and probes ready revisions so that `status` shows live
//! health. Checked from outside: the split history, the rollout rows and
//! which process holds what.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::rollout::{
    finished, generations, mark_unhealthy, rollout, serving_r1, soaking, stage_ready, start_rollout, wait_for_step,
};
use crate::common::{Sandbox, json, ok, wait_for};

/// A running `host agent`, killed when dropped: a test that fails half-way
/// leaves no agent behind.
struct Agent(Child);

impl Agent {
    fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `host agent` with short intervals, its log in the sandbox (a pipe
/// nobody reads would fill and block it).
fn agent(sb: &Sandbox) -> Agent {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(sb.dir.path().join("agent.log"))
        .unwrap();
    let child = sb
        .state_env(&mut Command::new(env!("CARGO_BIN_EXE_host")))
        .args(["agent", "--probe-interval", "300ms", "--scan-interval", "100ms"])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let pid = child.id();
    let agent = Agent(child);
    wait_for("the agent to claim the state directory", || {
        json(sb, &["status", "dev", "--json"])["agent_pid"] == pid
    });
    agent
}

/// `wait_for`, showing the agent's log when it times out.
fn wait_agent(sb: &Sandbox, what: &str, mut ready: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(60);
    while !ready() {
        assert!(
            Instant::now() < until,
            "timed out waiting for {what}; the agent's log:\n{}",
            std::fs::read_to_string(sb.dir.path().join("agent.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(agent: &mut Agent) {
    agent.0.kill().unwrap();
    agent.0.wait().unwrap();
}

fn health(sb: &Sandbox, id: &str) -> Value {
    json(sb, &["revision", "show", "dev", id, "--json"])["health"].clone()
}

#[test]
fn the_agent_probes_ready_revisions_and_status_shows_their_health() {
    let sb = serving_r1();
    let mut agent = agent(&sb);
    wait_agent(&sb, "R1 probed healthy", || health(&sb, "R1")["status"] == "healthy");
    assert!(health(&sb, "R2").is_null(), "a staged revision is not probed");
    mark_unhealthy(&sb, "R1");
    wait_agent(&sb, "R1 probed unhealthy", || {
        health(&sb, "R1")["status"] == "unhealthy"
    });
    let shown = ok(&sb, &["status", "dev"]);
    assert!(shown.contains("[unhealthy"), "{shown}");
    assert!(shown.contains(&format!("agent: pid {}", agent.id())), "{shown}");
    let events = json(&sb, &["events", "dev", "--json"]);
    assert!(
        events
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["revision"] == "R1" && e["reason"].as_str().unwrap().contains("healthy -> unhealthy")),
        "{events:#}"
    );
    // A second agent for the same directory is refused, naming the first.
    let out = sb.host().args(["agent"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("pid {}", agent.id())), "{stderr}");
    kill(&mut agent);
    let shown = ok(&sb, &["status", "dev"]);
    assert!(shown.contains("agent: none"), "{shown}");
}

#[test]
fn a_rollout_started_with_an_agent_running_is_handed_over_and_followed() {
    let sb = serving_r1();
    let mut agent = agent(&sb);
    let out = sb
        .host()
        .args(["rollout", "start", "dev", "web", "--to", "R2", "--steps", "50,100"])
        .args(["--soak", "300ms", "--interval", "100ms", "--analysis", "probe"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("the agent (pid {}) drives", agent.id())),
        "{stderr}"
    );
    assert!(
        stderr.contains("split R2=10000"),
        "the follower showed the steps: {stderr}"
    );
    assert_eq!(generations(&sb).last().unwrap(), "R2=10000");
    // --detach returns at once; the agent finishes it.
    stage_ready(&sb, "R3");
    let out = ok(
        &sb,
        &[
            "rollout", "start", "dev", "web", "--to", "R3", "--steps", "100", "--soak", "500ms", "--detach",
        ],
    );
    assert!(out.contains("running"), "{out}");
    wait_agent(&sb, "the agent to finish it", || rollout(&sb)["state"] == "succeeded");
    assert_eq!(generations(&sb).last().unwrap(), "R3=10000");
    kill(&mut agent);
}

/// A tiny deterministic generator: the rounds are the same on every run.
fn next(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    *seed >> 33
}

#[test]
fn an_agent_killed_mid_rollout_and_started_again_ends_every_rollout_cleanly() {
    let sb = serving_r1();
    let mut seed = 7u64;
    let mut agent = agent(&sb);
    let mut current = "R1".to_string();
    for round in 3..9 {
        let id = format!("R{round}");
        stage_ready(&sb, &id);
        let before = generations(&sb).last().unwrap().clone();
        // Every third rollout's probe gate fails: it must roll back.
        let bad = round % 3 == 0;
        if bad {
            mark_unhealthy(&sb, &id);
        }
        ok(
            &sb,
            &[
                "rollout",
                "start",
                "dev",
                "web",
                "--to",
                &id,
                "--steps",
                "25,50,100",
                "--soak",
                "400ms",
                "--interval",
                "50ms",
                "--analysis",
                "probe=2",
                "--detach",
            ],
        );
        std::thread::sleep(Duration::from_millis(50 + next(&mut seed) % 1200));
        kill(&mut agent);
        let r = rollout(&sb);
        if r["state"] != "succeeded" && r["state"] != "rolled-back" {
            assert!(r["driver_pid"].is_null(), "the driver died with the agent: {r:#}");
            let shown = ok(&sb, &["rollout", "status", "dev", "web"]);
            assert!(shown.contains("driven by nobody"), "{shown}");
        }
        agent = self::agent(&sb);
        let until = Instant::now() + Duration::from_secs(60);
        let end = loop {
            let r = rollout(&sb);
            if r["state"] == "succeeded" || r["state"] == "rolled-back" {
                break r;
            }
            assert!(
                Instant::now() < until,
                "round {round}: never ended: {r:#}\nthe agent's log:\n{}",
                std::fs::read_to_string(sb.dir.path().join("agent.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        let last = generations(&sb).last().unwrap().clone();
        if bad {
            assert_eq!(end["state"], "rolled-back", "round {round}: {end:#}");
            assert_eq!(last, before, "round {round}: the previous split is back");
            mark_unhealthy(&sb, "");
        } else {
            assert_eq!(end["state"], "succeeded", "round {round}: {end:#}");
            assert_eq!(last, format!("{id}=10000"), "round {round}: the new revision alone");
            let old = json(&sb, &["revision", "show", "dev", &current, "--json"])["lifecycle"].clone();
            assert_eq!(old, "inactive", "round {round}: {current} drained");
            current = id;
        }
    }
    kill(&mut agent);
}

#[test]
fn a_foreground_rollout_stopped_by_ctrl_c_says_how_it_goes_on_and_status_shows_no_driver() {
    let sb = serving_r1();
    let child = start_rollout(&sb, "dev web --to R2 --steps 50,100 --soak 30s --interval 100ms");
    wait_for_step(&sb, "soaking step 1", |s| soaking(s, "step 1"));
    // SAFETY: SIGINT to our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let (code, stderr) = finished(child);
    assert_eq!(code, 130, "{stderr}");
    assert!(stderr.contains("host rollout resume dev web"), "{stderr}");
    let r = rollout(&sb);
    assert_eq!(r["state"], "running");
    assert!(r["driver_pid"].is_null(), "{r:#}");
    assert_eq!(generations(&sb).last().unwrap(), "R2=5000 R1=5000");
    ok(&sb, &["rollout", "promote", "dev", "web"]);
    assert_eq!(rollout(&sb)["state"], "succeeded");
}

/// A rollout the agent drives stops on a step its provider refuses: the
/// agent leaves it alone (no retry loop), the following command returns
/// with the stop, `rollout resume` has the agent retry it, and `rollout
/// cancel` ends it where it stands when it can go neither on nor back.
#[test]
fn a_rollout_stopped_on_a_refused_step_is_left_alone_until_resumed_or_cancelled() {
    let sb = serving_r1();
    ok(&sb, &["revision", "warm", "dev", "R2"]);
    ok(
        &sb,
        &[
            "env",
            "bind",
            "dev",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--setting",
            "refuse-drain=R1",
        ],
    );
    let mut agent = agent(&sb);
    let out = sb
        .host()
        .args([
            "rollout", "start", "dev", "web", "--to", "R2", "--steps", "100", "--soak", "200ms",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the follower returns with the stop: {stderr}"
    );
    assert!(stderr.contains("stopped at drain R1"), "{stderr}");
    // Left alone: the agent does not drive it again on its own.
    let log = || std::fs::read_to_string(sb.dir.path().join("agent.log")).unwrap_or_default();
    let drives = |text: &str| text.matches("driving rollout").count();
    let before = drives(&log());
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(drives(&log()), before, "no retry loop:\n{}", log());
    // Resumed, the agent retries (and stops again: the provider still refuses).
    let out = sb.host().args(["rollout", "resume", "dev", "web"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(drives(&log()) > before, "resume had the agent retry:\n{}", log());
    // Cancelled: it ends where it stands, the traffic as it is.
    sb.host().args(["rollout", "cancel", "dev", "web"]).assert().code(2);
    let out = sb
        .host()
        .args([
            "rollout",
            "cancel",
            "dev",
            "web",
            "--reason",
            "the old host is gone for good",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let r = rollout(&sb);
    assert_eq!(r["state"], "cancelled", "{r:#}");
    assert!(r["reason"].as_str().unwrap().contains("the old host is gone for good"));
    assert_eq!(generations(&sb).last().unwrap(), "R2=10000", "the traffic stays");
    let events = json(&sb, &["events", "dev", "--json"]);
    assert!(
        events.to_string().contains("cancelled by"),
        "the cancel is in the revision's events"
    );
    // The deployment is free again: a new rollout may start.
    stage_ready(&sb, "R3");
    ok(
        &sb,
        &[
            "env",
            "bind",
            "dev",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--unset",
            "refuse-drain",
        ],
    );
    let out = sb
        .host()
        .args([
            "rollout", "start", "dev", "web", "--to", "R3", "--steps", "100", "--soak", "200ms",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    kill(&mut agent);
}

/// A revision already lost when the agent starts gets an event at the
/// agent's first answer, not only at a change.
#[test]
fn a_revision_unhealthy_at_the_first_probe_is_an_event() {
    let sb = serving_r1();
    mark_unhealthy(&sb, "R1");
    let mut agent = agent(&sb);
    wait_agent(&sb, "R1 probed unhealthy", || {
        health(&sb, "R1")["status"] == "unhealthy"
    });
    wait_agent(&sb, "the event", || {
        json(&sb, &["events", "dev", "--json"])
            .to_string()
            .contains("unprobed -> unhealthy")
    });
    kill(&mut agent);
}
