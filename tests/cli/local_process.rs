//! The local-process pack end to end, driven through the operator commands:
//! two revisions of a real HTTP app (`tests/apps/revision_app.py`) behind a
//! real nginx that the pack starts on loopback ports the test chose. Every
//! effect is checked from outside: requests counted through nginx, and
//! processes found by scanning `/proc` for anything whose working directory
//! lies in the test's state directory (not by name, not by the pack's word).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::{
    Rng, Sandbox, free_port, install_signed, json, kill_after, local_process_grants, ok, operator, p,
    revision_app_tarball,
};
use envpack_test_packs::LOCAL_PROCESS;
use sha2::{Digest, Sha256};

/// The app, as the two artifact forms the pack takes.
pub(crate) struct Artifacts {
    pub(crate) tarball: PathBuf,
    pub(crate) executable: PathBuf,
}

pub(crate) fn artifacts(sb: &Sandbox) -> Artifacts {
    let tarball = revision_app_tarball(sb);
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/revision_app.py");
    let executable = sb.dir.path().join("app-single");
    std::fs::copy(&app, &executable).unwrap();
    Artifacts { tarball, executable }
}

fn digest(path: &Path) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(std::fs::read(path).unwrap())))
}

/// `GET path` on `port` (HTTP/1.0, bounded by a timeout): (status, body).
pub(crate) fn get(port: u16, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response.split("\r\n\r\n").nth(1).unwrap_or("").trim().to_string();
    (status, body)
}

/// How many of `n` requests through nginx each revision answered.
pub(crate) fn distribution(port: u16, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let (status, body) = get(port, "/");
        assert_eq!(status, 200, "a request through nginx failed: {body}");
        *seen.entry(body).or_insert(0) += 1;
    }
    seen
}

/// Live processes whose working directory is inside `dir`, as (pid, cwd).
pub(crate) fn processes_under(dir: &Path) -> Vec<(u32, PathBuf)> {
    let dir = dir.canonicalize().unwrap();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        // A zombie has exited; only its parent has not reaped it yet.
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'))
        });
        if let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd"))
            && cwd.starts_with(&dir)
            && !zombie
        {
            found.push((pid, cwd));
        }
    }
    found
}

/// Kills whatever a test left under its state directory, even when it
/// fails half-way (its assertions come before this runs).
pub(crate) struct Reaper(pub(crate) PathBuf);

impl Drop for Reaper {
    fn drop(&mut self) {
        if self.0.exists() {
            for (pid, _) in processes_under(&self.0) {
                // SAFETY: kill(2) on a pid whose cwd lies in this test's directory.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
            }
        }
    }
}

/// 1,100 ports of this test process's own (20000-32099), so that test runs
/// in parallel rarely meet; the pack skips ports something answers on.
/// Slots are 100 ports each and go up to 16 (tests in one process never
/// share a slot); all stay below the kernel's ephemeral range (32768-60999):
/// a client connection's local port there answers nothing, yet nginx
/// cannot bind it.
fn port_base() -> u16 {
    20000 + (std::process::id() % 11) as u16 * 1100
}

fn nginx_installed() {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/sbin")])
        .any(|d| d.join("nginx").is_file());
    assert!(
        found,
        "nginx is not installed: scripts/test installs it (apt-get install nginx-light)"
    );
}

/// An operator state with the local-process pack installed and `dev` bound
/// to it as `site`, granting what it needs; returns (sandbox, nginx's port
/// for `web`, the last port of the range revisions get ports from).
pub(crate) fn local_env(slot: u16) -> (Sandbox, u16, u16) {
    let listen = free_port();
    let (sb, last) = local_env_listening(slot, &format!("listen.web=127.0.0.1:{listen}"));
    (sb, listen, last)
}

/// `local_env` with `listen` (a `listen.web=` or `listen-ports=` setting)
/// for where nginx serves; returns the sandbox and the last revision port.
fn local_env_listening(slot: u16, listen_setting: &str) -> (Sandbox, u16) {
    nginx_installed();
    let sb = operator();
    install_signed(&sb, LOCAL_PROCESS, "packs/local-process/pack.toml", "local-process");
    // A range of its own per test run, so parallel tests rarely meet.
    let first = port_base() + slot * 100;
    let range = format!("{first}-{}", first + 99);
    let (probe, ports_setting) = (format!("127.0.0.1:{range}"), format!("ports={range}"));
    let mut args = vec![
        "env",
        "create",
        "site",
        "--deployer",
        "envpack.deployer.local-process@^1",
        "--capability",
        "log,clock",
        "--allow-probe",
        &probe,
        "--setting",
        listen_setting,
        "--setting",
        &ports_setting,
        "--setting",
        "health-timeout-ms=5000",
    ];
    // nginx's own ports: the one `listen.web` names, or the `listen-ports` range.
    let listen_ports = listen_setting
        .strip_prefix("listen-ports=")
        .or_else(|| listen_setting.rsplit_once(':').map(|(_, port)| port))
        .unwrap_or_default();
    let grants = local_process_grants(&[&range, listen_ports]);
    args.extend(grants.iter().map(String::as_str));
    ok(&sb, &args);
    (sb, first + 99)
}

pub(crate) fn stage(sb: &Sandbox, id: &str, artifact: &Path, settings: &[&str], drain_seconds: &str) {
    stage_for(sb, "web", id, artifact, settings, drain_seconds);
}

pub(crate) fn stage_for(
    sb: &Sandbox,
    deployment: &str,
    id: &str,
    artifact: &Path,
    settings: &[&str],
    drain_seconds: &str,
) {
    let location = format!("file://{}", artifact.display());
    let digest = digest(artifact);
    let mut args = vec![
        "revision",
        "stage",
        "site",
        deployment,
        "--id",
        id,
        "--digest",
        &digest,
        "--location",
        &location,
        "--drain-seconds",
        drain_seconds,
    ];
    for setting in settings {
        args.extend(["--setting", setting]);
    }
    ok(sb, &args);
}

pub(crate) fn lifecycle(sb: &Sandbox, id: &str) -> String {
    json(sb, &["revision", "show", "site", id, "--json"])["lifecycle"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Asserts a warm fails, leaves the revision `failed` with `expect` in the
/// reason, and leaves none of the revision's processes running.
fn warm_fails(sb: &Sandbox, id: &str, expect: &str) {
    let out = sb.host().args(["revision", "warm", "site", id]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "warm {id} should fail");
    assert!(stderr.contains(expect), "warm {id}: expected {expect:?} in: {stderr}");
    assert_eq!(lifecycle(sb, id), "failed");
    let left: Vec<_> = processes_under(&sb.state_dir())
        .into_iter()
        .filter(|(_, cwd)| cwd.to_string_lossy().contains(&format!("/revisions/{id}/")))
        .collect();
    assert!(
        left.is_empty(),
        "a failed warm of {id} left processes running: {left:?}"
    );
}

#[test]
fn two_revisions_behind_nginx_follow_the_recorded_split() {
    let (sb, listen, _) = local_env(0);
    let _reaper = Reaper(sb.state_dir());
    let art = artifacts(&sb);
    stage(&sb, "R1", &art.tarball, &["run=/usr/bin/python3 app.py"], "30");
    stage(&sb, "R2", &art.executable, &[], "30");
    assert!(processes_under(&sb.state_dir()).is_empty(), "stage must start nothing");
    ok(&sb, &["revision", "warm", "site", "R1"]);
    ok(&sb, &["revision", "warm", "site", "R2"]);
    assert_eq!(processes_under(&sb.state_dir()).len(), 2, "one process per revision");

    // Smooth weighted round-robin in nginx's one worker answers exactly 9 of
    // every 10 consecutive requests from R1 at 9:1; ±2 of 100 leaves room for
    // a request nginx retried on the other upstream after a connect error.
    ok(&sb, &["traffic", "set", "site", "web", "R1=9000", "R2=1000"]);
    let seen = distribution(listen, 100);
    let r1 = seen.get("R1").copied().unwrap_or(0);
    assert!((88..=92).contains(&r1), "90/10 split served {seen:?}");
    assert_eq!(r1 + seen.get("R2").copied().unwrap_or(0), 100, "{seen:?}");

    // 0/100 exactly: a 0-weight revision is not routed at all.
    ok(&sb, &["traffic", "set", "site", "web", "R1=0", "R2=10000"]);
    assert_eq!(distribution(listen, 40), [("R2".to_string(), 40)].into());

    // Rollback restores the previous split, in nginx too.
    ok(&sb, &["traffic", "rollback", "site", "web"]);
    let seen = distribution(listen, 100);
    let r1 = seen.get("R1").copied().unwrap_or(0);
    assert!((88..=92).contains(&r1), "rollback to 90/10 served {seen:?}");

    // A slow request in flight on R1 completes through its drain.
    ok(&sb, &["traffic", "set", "site", "web", "R1=10000", "R2=0"]);
    let slow = std::thread::spawn(move || get(listen, "/slow?ms=1500"));
    crate::common::wait_for("the slow request to reach R1", || {
        crate::common::process_logs(&sb).contains("slow request started (R1)")
    });
    ok(&sb, &["traffic", "set", "site", "web", "R1=0", "R2=10000"]);
    ok(&sb, &["revision", "drain", "site", "R1"]);
    assert_eq!(
        slow.join().unwrap(),
        (200, "R1".to_string()),
        "the in-flight request finished"
    );
    assert_eq!(lifecycle(&sb, "R1"), "inactive");
    let r1_left: Vec<_> = processes_under(&sb.state_dir())
        .into_iter()
        .filter(|(_, cwd)| cwd.to_string_lossy().contains("/revisions/R1/"))
        .collect();
    assert!(r1_left.is_empty(), "drain stopped R1: {r1_left:?}");
    assert_eq!(distribution(listen, 20), [("R2".to_string(), 20)].into());

    ok(&sb, &["revision", "archive", "site", "R1"]);
    assert_eq!(lifecycle(&sb, "R1"), "archived");
    let work = sb.state_dir().join("work");
    assert!(!walk_has(&work, "R1"), "archive deleted R1's directory");

    // What nginx routes, as the pack reads it back, agrees with the record.
    let status = json(&sb, &["status", "site", "--json"]);
    assert!(status.to_string().contains("R2"), "{status}");

    ok(&sb, &["env", "remove", "site", "--force"]);
    let left = processes_under(&sb.state_dir());
    assert!(left.is_empty(), "env remove left processes: {left:?}");
}

/// A port held by a client connection answers no probe, yet nginx cannot
/// bind it: the pack, picking from `listen-ports`, learns it from nginx
/// (on start, and on reload once nginx runs), waits out nginx's own
/// retries and serves on the next port.
#[test]
fn a_listen_port_a_client_connection_holds_is_passed_over_for_the_next() {
    let first = port_base() + 500;
    let listens = format!("listen-ports={first}-{}", first + 9);
    let (sb, _) = local_env_listening(2, &listens);
    let _reaper = Reaper(sb.state_dir());
    let art = artifacts(&sb);
    let server = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let hold = |port: u16| {
        let client = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        let held: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
        client.bind(&held.into()).unwrap();
        client.connect(&server.local_addr().unwrap().into()).unwrap();
        (client, server.accept().unwrap())
    };

    let _first_held = hold(first);
    stage(&sb, "W1", &art.executable, &[], "5");
    ok(&sb, &["revision", "warm", "site", "W1"]);
    ok(&sb, &["traffic", "set", "site", "web", "W1=10000"]);
    let web = [("W1".to_string(), 5)].into();
    assert_eq!(
        distribution(first + 1, 5),
        web,
        "web: started on the port after the held one"
    );

    let _third_held = hold(first + 2);
    stage_for(&sb, "api", "A1", &art.executable, &[], "5");
    ok(&sb, &["revision", "warm", "site", "A1"]);
    ok(&sb, &["traffic", "set", "site", "api", "A1=10000"]);
    assert_eq!(
        distribution(first + 3, 5),
        [("A1".to_string(), 5)].into(),
        "api: reloaded onto the port after the held one"
    );
    assert_eq!(distribution(first + 1, 5), web, "web still served where it was");

    ok(&sb, &["env", "remove", "site", "--force"]);
    let left = processes_under(&sb.state_dir());
    assert!(left.is_empty(), "env remove left processes: {left:?}");
}

/// A canary whose new revision passes its health check but answers users
/// with 500s: the HTTP gate's requests through nginx see them, the
/// rollout rolls back on its own, and nginx sends everything to R1 again.
#[test]
fn an_http_gate_through_nginx_rolls_back_a_canary_that_answers_500() {
    let (sb, listen, _) = local_env(6);
    let _reaper = Reaper(sb.state_dir());
    let art = artifacts(&sb);
    stage(&sb, "R1", &art.executable, &[], "5");
    ok(&sb, &["revision", "warm", "site", "R1"]);
    ok(&sb, &["traffic", "set", "site", "web", "R1=10000"]);
    stage(&sb, "R2", &art.executable, &["env.FAIL_REQUESTS=1"], "5");
    let gate = format!("http=http://127.0.0.1:{listen}/,status=200,max-error-ratio=0.25,requests=20");
    let mut rollout = crate::common::spawn(
        &sb,
        &[
            "rollout",
            "start",
            "site",
            "web",
            "--to",
            "R2",
            "--steps",
            "50,100",
            "--soak",
            "60s",
            "--interval",
            "400ms",
            "--analysis",
            &gate,
        ],
    );
    // While it soaks at 50%, nginx sends users to both revisions.
    let until = std::time::Instant::now() + Duration::from_secs(60);
    while !json(&sb, &["rollout", "status", "site", "web", "--json"])[0]["steps"]
        .as_array()
        .is_some_and(|steps| {
            steps
                .iter()
                .any(|s| s["action"]["kind"] == "soak" && s["state"] == "started")
        })
    {
        assert!(std::time::Instant::now() < until, "the rollout never soaked");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut during = std::collections::BTreeMap::new();
    for _ in 0..6 {
        *during.entry(get(listen, "/")).or_insert(0) += 1;
    }
    assert!(
        during.contains_key(&(500, "R2".to_string())) && during.contains_key(&(200, "R1".to_string())),
        "at 50% nginx serves both: {during:?}"
    );
    let status = rollout.wait().unwrap();
    assert_eq!(status.code(), Some(1), "the rollout rolled back");
    let r = json(&sb, &["rollout", "status", "site", "web", "--json"])[0].clone();
    assert_eq!(r["state"], "rolled-back");
    assert!(r["reason"].as_str().unwrap().contains("answered 500"), "{r:#}");
    // Everything goes to R1 again, and R2's process is gone.
    assert_eq!(distribution(listen, 20), [("R1".to_string(), 20)].into());
    assert_eq!(lifecycle(&sb, "R2"), "inactive");
    let r2_left: Vec<_> = processes_under(&sb.state_dir())
        .into_iter()
        .filter(|(_, cwd)| cwd.to_string_lossy().contains("/revisions/R2/"))
        .collect();
    assert!(r2_left.is_empty(), "R2 was drained: {r2_left:?}");
    ok(&sb, &["env", "remove", "site", "--force"]);
}

fn walk_has(dir: &Path, name: &str) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| e.file_name() == name || (e.file_type().is_ok_and(|t| t.is_dir()) && walk_has(&e.path(), name)))
    })
}

#[test]
fn a_revision_that_cannot_serve_ends_failed_with_its_stderr_and_nothing_running() {
    let (sb, _listen, last_port) = local_env(1);
    let _reaper = Reaper(sb.state_dir());
    let art = artifacts(&sb);
    stage(
        &sb,
        "UNHEALTHY",
        &art.tarball,
        &["run=/usr/bin/python3 app.py", "env.FAIL_HEALTH=1"],
        "5",
    );
    stage(&sb, "CRASH", &art.executable, &["env.CRASH=1"], "5");
    let taken = TcpListener::bind(("127.0.0.1", last_port)).unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    stage(&sb, "TAKEN", &art.executable, &[&format!("PORT={port}")], "5");

    warm_fails(&sb, "UNHEALTHY", "health check failing on purpose");
    warm_fails(&sb, "CRASH", "crashing on start, as CRASH asks");
    warm_fails(
        &sb,
        "TAKEN",
        &format!("port {port} (the revision's PORT setting) is already in use"),
    );
    drop(taken);
    // A port held by another server that answers every request with 200:
    // its answers must not make the revision ready.
    let impostor = TcpListener::bind(("127.0.0.1", last_port - 1)).unwrap();
    let impostor_port = impostor.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in impostor.incoming().flatten() {
            // Read the whole request first: closing on unread bytes resets
            // the connection (the client writes it in pieces).
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut request = Vec::new();
            let mut chunk = [0u8; 512];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
        }
    });
    stage(
        &sb,
        "IMPOSTOR",
        &art.executable,
        &[&format!("PORT={impostor_port}")],
        "5",
    );
    warm_fails(
        &sb,
        "IMPOSTOR",
        "another process would answer this revision's health checks",
    );
    assert_eq!(get(impostor_port, "/healthz").0, 200, "the other server still answers");

    for id in ["UNHEALTHY", "CRASH", "TAKEN", "IMPOSTOR"] {
        ok(&sb, &["revision", "archive", "site", id]);
    }
    let left = processes_under(&sb.state_dir());
    assert!(left.is_empty(), "processes left: {left:?}");
}

/// The arguments of `host conformance` of the sealed local-process pack
/// with the grants, settings and artifact it needs. (Run it with TMPDIR in
/// the sandbox, so that a /proc scan sees anything a run leaves.)
fn bench_args(sb: &Sandbox, slot: u16, format: &str) -> Vec<String> {
    let art = artifacts(sb);
    // The bench keeps every check's processes until the run ends: room for them.
    let first = port_base() + slot;
    let (ports, listens) = (
        format!("{first}-{}", first + 99),
        format!("{}-{}", first + 100, first + 199),
    );
    // Sealed with its manifest, as it ships: its `[deadlines]` set the
    // deadlines the bench judges it by, as production would.
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/local-process/pack.toml");
    let sealed = sb.dir.path().join("local-process.wasm");
    ok(
        sb,
        &[
            "pack",
            "seal",
            LOCAL_PROCESS,
            "--manifest",
            &p(&manifest),
            "-o",
            &p(&sealed),
        ],
    );
    let mut args: Vec<String> = ["conformance", &p(&sealed), "--profile", "extended", "--format", format]
        .map(String::from)
        .to_vec();
    args.extend(local_process_grants(&[&ports, &listens]));
    for (flag, value) in [
        ("--allow-probe", format!("127.0.0.1:{ports}")),
        ("--allow-probe", format!("127.0.0.1:{listens}")),
        ("--setting", format!("ports={ports}")),
        ("--setting", format!("listen-ports={listens}")),
        ("--artifact", p(&art.tarball)),
        ("--revision-setting", "run=/usr/bin/python3 app.py".to_string()),
        ("--revision-setting", "PORT=".to_string()),
    ] {
        args.extend([flag.to_string(), value]);
    }
    args
}

#[test]
fn the_pack_passes_the_extended_bench_and_leaves_nothing_running() {
    nginx_installed();
    let sb = Sandbox::new();
    let _reaper = Reaper(sb.dir.path().to_path_buf());
    let out = sb
        .host()
        .env("TMPDIR", sb.dir.path())
        .args(bench_args(&sb, 300, "json"))
        .timeout(Duration::from_secs(300))
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    let failed: Vec<String> = report["checks"]
        .as_array()
        .unwrap_or_else(|| panic!("a report with checks: {report}"))
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| format!("{}: {}", c["id"], c["message"]))
        .collect();
    assert!(
        failed.is_empty(),
        "the local-process pack failed the bench: {failed:#?}"
    );
    // A contract 1.2 pack with `endpoints`: that check ran, not skipped.
    let endpoint = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "endpoint.truthful")
        .cloned()
        .unwrap_or_default();
    assert_eq!(endpoint["status"], "pass", "{endpoint}");
    // And with `teardown`: releasing a deployment it never set up is judged.
    let teardown = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "teardown.idempotent")
        .cloned()
        .unwrap_or_default();
    assert_eq!(teardown["status"], "pass", "{teardown}");
    // Where the run's time went: its calls started real programs, and the
    // time inside the pack is part of the calls' own, which is part of the run's.
    let calls = &report["calls"];
    let ms = |v: &serde_json::Value| v.as_f64().unwrap_or_else(|| panic!("a number: {calls}"));
    assert!(calls["programs"].as_u64().unwrap_or(0) > 0, "{calls}");
    assert!(calls["count"].as_u64().unwrap_or(0) > 100, "{calls}");
    assert!(ms(&calls["slept_ms"]) <= ms(&calls["in_pack_ms"]), "{calls}");
    assert!(ms(&calls["in_pack_ms"]) <= ms(&calls["elapsed_ms"]), "{calls}");
    assert!(ms(&calls["elapsed_ms"]) <= ms(&report["elapsed_ms"]), "{calls}");
    // Which programs, by file name, adding up to all of them; and the
    // signals sent, by the program they went to (TERM to drain an app, HUP
    // to reload nginx).
    let count = |v: &serde_json::Value| v.as_u64().unwrap_or_else(|| panic!("a count: {calls}"));
    let started = calls["started"]
        .as_object()
        .unwrap_or_else(|| panic!("programs by name: {calls}"));
    assert_eq!(
        started.values().map(count).sum::<u64>(),
        count(&calls["programs"]),
        "{calls}"
    );
    for program in ["tar", "nginx", "python3"] {
        assert!(started.get(program).is_some_and(|n| count(n) > 0), "{program}: {calls}");
    }
    for signal in ["term python3", "hup nginx"] {
        assert!(count(&calls["signals"][signal]) > 0, "{signal}: {calls}");
    }
    assert!(out.status.success());
    let left = processes_under(sb.dir.path());
    assert!(left.is_empty(), "the bench left processes running: {left:?}");
    // Progress went to stderr, a plain line per check (not a terminal).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[1/") && stderr.contains("] model.sequences"),
        "{stderr}"
    );
}

#[test]
fn a_run_killed_midway_is_swept_up_by_the_next() {
    nginx_installed();
    let sb = Sandbox::new();
    let _reaper = Reaper(sb.dir.path().to_path_buf());
    let mut child = sb
        .state_env(&mut std::process::Command::new(env!("CARGO_BIN_EXE_host")))
        .env("TMPDIR", sb.dir.path())
        .args(bench_args(&sb, 500, "json"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // A served revision or nginx: tar and `nginx -t` end by themselves, so
    // seeing only them says nothing about what a kill leaves.
    crate::common::wait_for("the bench's first app or nginx", || {
        processes_under(sb.dir.path()).iter().any(|(pid, _)| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c).contains("app.py") || String::from_utf8_lossy(&c).contains("daemon off")
            })
        })
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let scratch = |sb: &Sandbox| -> Vec<PathBuf> {
        std::fs::read_dir(sb.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("envpack-conformance-"))
            })
            .collect()
    };
    let left = processes_under(sb.dir.path());
    assert!(!left.is_empty(), "a killed run leaves its processes: nothing to sweep");
    assert_eq!(scratch(&sb).len(), 1, "the killed run's directory");

    // The next run, of any pack, sweeps first.
    let out = sb
        .host()
        .env("TMPDIR", sb.dir.path())
        .args(["conformance", envpack_test_packs::LEDGER])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("note: swept") && stdout.contains("left by a run that was killed"),
        "{stdout}"
    );
    let still: Vec<u32> = left
        .iter()
        .map(|(pid, _)| *pid)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
                s.rsplit_once(')')
                    .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
        })
        .collect();
    assert!(
        still.is_empty(),
        "the sweep left processes of the killed run: {still:?}"
    );
    assert!(
        scratch(&sb).is_empty(),
        "the sweep removed the killed run's directory: {:?}",
        scratch(&sb)
    );
}

/// Processes under `dir` whose parent is not under it too: the app
/// processes and nginx's master, not its workers.
fn leaders_under(dir: &Path) -> Vec<(u32, PathBuf)> {
    let all = processes_under(dir);
    let pids: Vec<u32> = all.iter().map(|(pid, _)| *pid).collect();
    all.into_iter()
        .filter(|(pid, _)| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok())
                .unwrap_or(0);
            !pids.contains(&ppid)
        })
        .collect()
}

#[test]
fn verbs_killed_at_random_points_are_finished_by_running_them_again() {
    let (sb, listen, _) = local_env(2);
    let _reaper = Reaper(sb.state_dir());
    let art = artifacts(&sb);
    let mut rng = Rng::new();
    let revisions = ["K1", "K2", "K3"];
    for (n, id) in revisions.iter().enumerate() {
        stage(&sb, id, &art.tarball, &["run=/usr/bin/python3 app.py"], "5");
        // Killed somewhere between the host starting and the app healthy.
        kill_after(&sb, &["revision", "warm", "site", id], 50 + rng.below(900));
        if lifecycle(&sb, id) != "ready" {
            ok(&sb, &["revision", "warm", "site", id]);
        }
        let apps = leaders_under(&sb.state_dir())
            .into_iter()
            .filter(|(_, cwd)| cwd.to_string_lossy().contains(&format!("/revisions/{id}/")))
            .count();
        assert_eq!(
            apps, 1,
            "revision {id} (round {n}) runs exactly one process after the crash and re-run"
        );
    }
    for weights in [["K1=5000", "K2=5000", "K3=0"], ["K1=0", "K2=2000", "K3=8000"]] {
        let mut args = vec!["traffic", "set", "site", "web"];
        args.extend(weights);
        kill_after(&sb, &args, 20 + rng.below(600));
        ok(&sb, &args);
        let masters = leaders_under(&sb.state_dir())
            .into_iter()
            .filter(|(_, cwd)| cwd.ends_with("nginx"))
            .count();
        assert_eq!(masters, 1, "one nginx after a killed and re-run traffic set");
        let seen = distribution(listen, 40);
        let expected: std::collections::BTreeMap<String, usize> = weights
            .iter()
            .filter_map(|w| {
                let (id, bps) = w.split_once('=')?;
                let bps: usize = bps.parse().ok()?;
                (bps > 0).then(|| (id.to_string(), 40 * bps / 10_000))
            })
            .collect();
        // One worker's smooth weighted round-robin: exact over whole cycles (10 requests here).
        assert_eq!(seen, expected, "nginx serves {weights:?} after the re-run");
    }
    ok(&sb, &["env", "remove", "site", "--force"]);
    let left = processes_under(&sb.state_dir());
    assert!(left.is_empty(), "processes left: {left:?}");
}
