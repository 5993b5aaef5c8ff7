//! The contract 1.1 capabilities through the real binary, checked from
//! outside: processes found by pid in /proc, requests counted by a loopback
//! HTTP server the test runs, artifacts compared byte for byte, secrets
//! searched for in every output and in the database. Also every refusal
//! (command not granted, paths leaving the work directory, a process the
//! environment did not spawn, an address not granted, a secret not granted,
//! a spawn flood) and the frozen 1.0.0 fixture on the 1.1 host.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::common::{A1, Sandbox, fixture};
use envpack_host::Workspace;
use serde_json::{Value, json};

const CAPS: &str = envpack_test_packs::TEST_CAPABILITIES;

/// The fixture environment with the capability pack's grants and `settings`.
fn env_doc(settings: Value, mut grants: Value) -> Value {
    let mut doc = fixture(settings);
    doc["capabilities"] = json!(["log", "kv"]);
    // The test pack gives what it spawns REVISION.
    if grants.get("process").is_some() {
        grants["env"] = json!(["REVISION"]);
    }
    doc["grants"] = grants;
    doc
}

fn call(sb: &Sandbox, name: &str, doc: &Value, verb: &str) -> (Option<i32>, Value) {
    let path = sb.env_file(name, doc);
    let (out, value) = sb.call(CAPS, verb, &path, &["--revision", A1]);
    (out.status.code(), value)
}

fn detail(value: &Value) -> String {
    value["result"]["ok"]["detail"].as_str().unwrap_or_default().to_string()
}

fn message(value: &Value) -> String {
    value["result"]["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn workspace(sb: &Sandbox) -> Workspace {
    envpack_host::StateDir::at(sb.state_dir())
        .workspace("call", "dev")
        .unwrap()
}

/// Pids of the process table, for checks and for cleanup.
/// The records of the environment's process table (`{next, records}`).
fn table_records(sb: &Sandbox) -> Vec<Value> {
    let bytes = std::fs::read(workspace(sb).process_table).unwrap_or_default();
    let table: Value = serde_json::from_slice(&bytes).unwrap_or_default();
    table["records"].as_array().cloned().unwrap_or_default()
}

fn table_pids(sb: &Sandbox) -> Vec<u32> {
    table_records(sb)
        .iter()
        .filter_map(|r| r["pid"].as_u64())
        .map(|p| p as u32)
        .collect()
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z'))
    })
}

/// Kills whatever the sandbox's environment spawned, whatever the test did.
struct Reaper<'a>(&'a Sandbox);

impl Drop for Reaper<'_> {
    fn drop(&mut self) {
        for pid in table_pids(self.0) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

fn recording_refused(value: &Value) -> Vec<String> {
    value["recording"]["calls"]
        .as_array()
        .map(|calls| {
            calls
                .iter()
                .filter(|c| c["allowed"] == false)
                .map(|c| format!("{} {}", c["operation"], c["detail"]))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_spawned_process_outlives_its_command_and_is_found_again() {
    let sb = Sandbox::new();
    let _reaper = Reaper(&sb);
    let settings = json!({ "cmd": "sleep", "args": "30" });
    let doc = env_doc(settings.clone(), json!({ "process": ["sleep {number}"] }));
    let (code, warmed) = call(&sb, "warm", &doc, "warm-revision");
    assert_eq!(code, Some(0), "{warmed:#}");
    assert!(detail(&warmed).starts_with("p1 pid "), "{warmed:#}");
    let pids = table_pids(&sb);
    assert_eq!(pids.len(), 1);
    // The host command has exited; the process has not.
    assert!(alive(pids[0]), "pid {} should outlive `host call`", pids[0]);
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pids[0])).unwrap();
    let fields: Vec<&str> = stat.rsplit_once(')').unwrap().1.split_whitespace().collect();
    // After ')': state, ppid, pgrp, session.
    assert_eq!(fields[2], pids[0].to_string(), "it leads its own process group");
    assert_eq!(fields[3], pids[0].to_string(), "it leads its own session");
    // A later command finds it by id, signals it and sees it end.
    let (code, drained) = call(&sb, "drain", &doc, "drain-revision");
    assert_eq!(code, Some(0), "{drained:#}");
    assert!(detail(&drained).starts_with("p1 exited"), "{drained:#}");
    assert!(!alive(pids[0]), "TERM reached the process");
    let logs = workspace(&sb).work_dir.join("logs");
    assert!(logs.join("p1.stdout").is_file() && logs.join("p1.stderr").is_file());
}

#[test]
fn process_refusals_are_clear_and_recorded() {
    let sb = Sandbox::new();
    let _reaper = Reaper(&sb);
    let granted = json!({ "process": ["sleep {number}"] });
    // A command that is not granted.
    let doc = env_doc(json!({ "cmd": "sh", "args": "-c true" }), granted.clone());
    let (code, value) = call(&sb, "not-granted", &doc, "warm-revision");
    assert_eq!(code, Some(1));
    assert!(message(&value).contains("NotAllowed"), "{value:#}");
    assert!(message(&value).contains("not granted"), "{value:#}");
    assert_eq!(recording_refused(&value).len(), 1, "{value:#}");
    // Working directories that leave the work directory: `..`, absolute, a symlink.
    let work = workspace(&sb).work_dir;
    std::os::unix::fs::symlink("/tmp", work.join("escape")).unwrap();
    for cwd in ["..", "/tmp", "escape", "revisions/../../x"] {
        let doc = env_doc(json!({ "cmd": "sleep", "args": "1", "cwd": cwd }), granted.clone());
        let (code, value) = call(&sb, "escape", &doc, "warm-revision");
        assert_eq!(code, Some(1), "cwd {cwd:?}: {value:#}");
        assert!(message(&value).contains("BadPath"), "cwd {cwd:?}: {value:#}");
    }
    // Signalling a process this environment did not spawn.
    let doc = env_doc(json!({ "signal-id": "p999" }), granted.clone());
    let (code, value) = call(&sb, "foreign", &doc, "drain-revision");
    assert_eq!(code, Some(1));
    assert!(message(&value).contains("UnknownProcess"), "{value:#}");
    // A flood of spawns stops at the limit, and the host is unharmed.
    let doc = env_doc(
        json!({ "cmd": "sleep", "args": "30", "spawn-count": "40" }),
        granted.clone(),
    );
    // 40 confined spawns take seconds on a loaded machine: a deadline
    // that leaves the limit, not the clock, to stop the flood.
    let path = sb.env_file("flood", &doc);
    let (out, value) = sb.call(
        CAPS,
        "warm-revision",
        &path,
        &["--revision", A1, "--deadline-ms", "30000"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(message(&value).contains("Limit"), "{value:#}");
    let live = table_pids(&sb).into_iter().filter(|p| alive(*p)).count();
    assert_eq!(live, envpack_host::MAX_LIVE);
    // Without any `process` grant the capability is refused outright.
    let doc = env_doc(json!({ "cmd": "sleep", "args": "1" }), json!({}));
    let (code, value) = call(&sb, "ungranted", &doc, "warm-revision");
    assert_eq!(code, Some(1));
    assert!(message(&value).contains("not granted"), "{value:#}");
}

/// A loopback HTTP server answering `status` to every request, counting them.
fn http_server(status: u16) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            if Instant::now() > deadline {
                break;
            }
        }
    });
    (address, count)
}

/// A loopback HTTP server answering one request with `bytes` of body and
/// no `Content-Length` (the length is only known as it streams).
fn streaming_server(bytes: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        let Ok((mut stream, _)) = listener.accept() else { return };
        let mut buf = [0u8; 1024];
        let _ = stream.read(&mut buf);
        let _ = write!(stream, "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n");
        let chunk = vec![b'x'; 64 * 1024];
        let mut sent = 0;
        while sent < bytes {
            let n = chunk.len().min(bytes - sent);
            if stream.write_all(&chunk[..n]).is_err() {
                break;
            }
            sent += n;
        }
    });
    address
}

#[test]
fn probes_reach_granted_addresses_only() {
    let sb = Sandbox::new();
    let (up, up_count) = http_server(200);
    let (down, _) = http_server(503);
    let grants = json!({ "probe": [up.clone(), down.clone()] });
    let doc = env_doc(json!({ "probe-http": up, "probe-path": "/healthz" }), grants.clone());
    let (code, value) = call(&sb, "up", &doc, "probe-revision");
    assert_eq!(code, Some(0), "{value:#}");
    assert_eq!(value["result"]["ok"]["health"]["status"], "healthy", "{value:#}");
    assert_eq!(
        up_count.load(Ordering::SeqCst),
        1,
        "exactly one request reached the server"
    );
    let doc = env_doc(json!({ "probe-http": down }), grants.clone());
    let (_, value) = call(&sb, "down", &doc, "probe-revision");
    assert!(value["result"]["ok"].to_string().contains("status 503"), "{value:#}");
    let doc = env_doc(json!({ "probe-tcp": up }), grants.clone());
    let (code, value) = call(&sb, "tcp", &doc, "probe-revision");
    assert_eq!(code, Some(0), "{value:#}");
    // An address that is not granted: refused before any connection.
    let (other, other_count) = http_server(200);
    let doc = env_doc(json!({ "probe-http": other }), grants);
    let (code, value) = call(&sb, "other", &doc, "probe-revision");
    assert_eq!(code, Some(1));
    assert!(message(&value).contains("NotAllowed"), "{value:#}");
    assert_eq!(
        other_count.load(Ordering::SeqCst),
        0,
        "nothing reached the ungranted server"
    );
}

#[test]
fn outbound_http_goes_to_granted_origins_only() {
    let sb = Sandbox::new();
    let (up, up_count) = http_server(200);
    let origin = format!("http://{up}");
    let doc = env_doc(
        json!({ "wasi-http": origin, "probe-path": "/status" }),
        json!({ "http": [origin] }),
    );
    let (code, value) = call(&sb, "http", &doc, "probe-revision");
    assert_eq!(code, Some(0), "{value:#}");
    assert_eq!(value["result"]["ok"]["health"]["status"], "healthy", "{value:#}");
    assert_eq!(
        up_count.load(Ordering::SeqCst),
        1,
        "the request reached the server once"
    );
    let recorded = value["recording"]["calls"].to_string();
    assert!(recorded.contains(&format!("GET {origin}/status -> 200")), "{recorded}");
    // The request is recorded in its place: after the read before it,
    // before the read after it.
    let calls: Vec<String> = value["recording"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.to_string())
        .collect();
    let at = |needle: &str| calls.iter().position(|c| c.contains(needle)).unwrap_or(usize::MAX);
    assert!(
        at("order/before-http") < at("http.request") && at("http.request") < at("order/after-http"),
        "recording out of order: {calls:#?}"
    );
    // Another origin: denied in the host, nothing reaches the server.
    let (other, other_count) = http_server(200);
    let doc = env_doc(
        json!({ "wasi-http": format!("http://{other}") }),
        json!({ "http": [origin.clone()] }),
    );
    let (code, value) = call(&sb, "denied", &doc, "probe-revision");
    assert_eq!(code, Some(1), "{value:#}");
    assert!(message(&value).contains("HttpRequestDenied"), "{value:#}");
    assert!(
        recording_refused(&value).iter().any(|r| r.contains("not granted")),
        "{value:#}"
    );
    assert_eq!(other_count.load(Ordering::SeqCst), 0);
    // `http` not granted at all: every request fails with the same clear error.
    let doc = env_doc(json!({ "wasi-http": origin }), json!({ "probe": ["127.0.0.1:9"] }));
    let (code, value) = call(&sb, "ungranted", &doc, "probe-revision");
    assert_eq!(code, Some(1), "{value:#}");
    assert!(message(&value).contains("HttpRequestDenied"), "{value:#}");
    assert_eq!(up_count.load(Ordering::SeqCst), 1, "still only the first request");
}

#[test]
fn a_response_streamed_past_the_cap_is_cut_off() {
    let sb = Sandbox::new();
    let cap = envpack_host::MAX_RESPONSE_BYTES as usize;
    // Under the cap, without a length: read to the end.
    let small = format!("http://{}", streaming_server(1 << 20));
    let doc = env_doc(json!({ "wasi-http": small }), json!({ "http": [small] }));
    let (code, value) = call(&sb, "small", &doc, "probe-revision");
    assert_eq!(code, Some(0), "{value:#}");
    // Past it: the body read fails in the pack, and the recording says why.
    let big = format!("http://{}", streaming_server(cap + (4 << 20)));
    let doc = env_doc(json!({ "wasi-http": big }), json!({ "http": [big] }));
    let (code, value) = call(&sb, "big", &doc, "probe-revision");
    assert_eq!(code, Some(1), "{value:#}");
    assert!(message(&value).contains("body read failed"), "{value:#}");
    assert!(value["recording"]["calls"].to_string().contains("cut off"), "{value:#}");
}

#[test]
fn secrets_are_read_by_granted_name_and_never_shown() {
    let sb = Sandbox::new();
    let value = "s3cr3t-Value-that-must-not-leak";
    let out = sb
        .host()
        .args(["secret", "set", "TOKEN"])
        .write_stdin(format!("{value}\n"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut outputs = vec![out.stdout, out.stderr];
    let listed = sb.host().args(["secret", "list", "--json"]).output().unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&listed.stdout).unwrap(),
        json!(["TOKEN"])
    );
    outputs.extend([listed.stdout, listed.stderr]);
    let doc = env_doc(json!({ "secret": "TOKEN" }), json!({ "secrets": ["TOKEN"] }));
    let path = sb.env_file("secret", &doc);
    for json_flag in [true, false] {
        let mut cmd = sb.host();
        cmd.args(["call", CAPS, "archive-revision", "--env"])
            .arg(&path)
            .args(["--revision", A1]);
        if json_flag {
            cmd.arg("--json");
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("has {} bytes", value.len())));
        outputs.extend([out.stdout, out.stderr]);
    }
    // Not granted: refused by name, and the value still never shows.
    let doc = env_doc(json!({ "secret": "TOKEN" }), json!({ "secrets": ["OTHER"] }));
    let (code, refused) = call(&sb, "refused", &doc, "archive-revision");
    assert_eq!(code, Some(1));
    assert!(message(&refused).contains("NotAllowed"), "{refused:#}");
    outputs.push(refused.to_string().into_bytes());
    for output in &outputs {
        assert!(!String::from_utf8_lossy(output).contains(value), "the value leaked");
    }
    let db = std::fs::read(sb.state_dir().join("state.db")).unwrap_or_default();
    assert!(
        !db.windows(value.len()).any(|w| w == value.as_bytes()),
        "the value is in state.db"
    );
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(sb.state_dir().join("secrets.json"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

fn artifact(dir: &Path, content: &[u8]) -> (PathBuf, String) {
    use sha2::Digest;
    let path = dir.join("build.tar.gz");
    std::fs::write(&path, content).unwrap();
    (path, format!("sha256:{}", hex::encode(sha2::Sha256::digest(content))))
}

#[test]
fn artifacts_are_verified_by_the_host_before_the_pack_sees_them() {
    let sb = Sandbox::new();
    let content = b"pretend this is a tarball";
    let (path, digest) = artifact(sb.dir.path(), content);
    let mut doc = env_doc(json!({ "fetch": "1" }), json!({ "process": ["sleep {number}"] }));
    doc["deployments"][0]["revisions"][0]["artifact"] =
        json!({ "digest": digest, "location": format!("file://{}", path.display()) });
    let (code, value) = call(&sb, "good", &doc, "stage-revision");
    assert_eq!(code, Some(0), "{value:#}");
    assert_eq!(
        detail(&value),
        format!("revisions/{A1}/artifact ({} bytes)", content.len())
    );
    let placed = workspace(&sb).work_dir.join(format!("revisions/{A1}/artifact"));
    assert_eq!(std::fs::read(&placed).unwrap(), content);
    // A digest that does not match: refused, and nothing placed.
    std::fs::remove_file(&placed).unwrap();
    let wrong = format!("sha256:{}", "0".repeat(64));
    doc["deployments"][0]["revisions"][0]["artifact"]["digest"] = json!(wrong);
    let (code, value) = call(&sb, "bad", &doc, "stage-revision");
    assert_eq!(code, Some(1));
    assert!(message(&value).contains("DigestMismatch"), "{value:#}");
    assert!(!placed.exists(), "a mismatching artifact must not be placed");
    // Not a file:// location: refused by name.
    doc["deployments"][0]["revisions"][0]["artifact"]["location"] = json!("registry.example/web:1");
    let (_, value) = call(&sb, "image", &doc, "stage-revision");
    assert!(message(&value).contains("NotAllowed"), "{value:#}");
}

/// A loopback HTTP server answering every request with `body`, counting them.
fn file_server(body: &'static [u8]) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(20) {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 2048];
            let _ = stream.read(&mut buf);
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    (origin, count)
}

#[test]
fn artifacts_over_http_come_from_granted_origins_only_and_are_verified() {
    let sb = Sandbox::new();
    let content: &'static [u8] = b"a tarball served over http";
    let (_, digest) = artifact(sb.dir.path(), content);
    let (origin, count) = file_server(content);
    let url = format!("{origin}/builds/web.tar.gz");
    let mut doc = env_doc(
        json!({ "fetch": "1" }),
        json!({ "process": ["sleep {number}"], "http": [origin] }),
    );
    doc["deployments"][0]["revisions"][0]["artifact"] = json!({ "digest": digest, "location": url });
    let (code, value) = call(&sb, "http", &doc, "stage-revision");
    assert_eq!(code, Some(0), "{value:#}");
    let placed = workspace(&sb).work_dir.join(format!("revisions/{A1}/artifact"));
    assert_eq!(std::fs::read(&placed).unwrap(), content);
    assert_eq!(count.load(Ordering::SeqCst), 1, "one download");
    // Stored by digest: a second stage places it again without a download.
    std::fs::remove_file(&placed).unwrap();
    let (code, _) = call(&sb, "again", &doc, "stage-revision");
    assert_eq!(code, Some(0));
    assert!(placed.exists());
    assert_eq!(count.load(Ordering::SeqCst), 1, "the store answered, not the server");
    // A digest the bytes do not have: downloaded, refused, nothing placed.
    std::fs::remove_file(&placed).unwrap();
    doc["deployments"][0]["revisions"][0]["artifact"]["digest"] = json!(format!("sha256:{}", "1".repeat(64)));
    let (_, value) = call(&sb, "mismatch", &doc, "stage-revision");
    assert!(message(&value).contains("DigestMismatch"), "{value:#}");
    assert!(!placed.exists());
    // An origin the environment does not grant: refused before any connection.
    let before = count.load(Ordering::SeqCst);
    let mut ungranted = env_doc(json!({ "fetch": "1" }), json!({ "process": ["sleep {number}"] }));
    ungranted["deployments"][0]["revisions"][0]["artifact"] =
        json!({ "digest": format!("sha256:{}", "2".repeat(64)), "location": url });
    let (_, value) = call(&sb, "ungranted", &ungranted, "stage-revision");
    assert!(message(&value).contains("--allow-http"), "{value:#}");
    assert_eq!(
        count.load(Ordering::SeqCst),
        before,
        "no request to an origin not granted"
    );
}

#[test]
fn a_pack_built_against_contract_1_0_0_still_loads_runs_and_conforms() {
    let sb = Sandbox::new();
    let fixture_pack = envpack_test_packs::LEDGER_1_0_0;
    let inspected = sb.host().args(["inspect", fixture_pack, "--json"]).output().unwrap();
    assert!(
        inspected.status.success(),
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );
    let v: Value = serde_json::from_slice(&inspected.stdout).unwrap();
    assert_eq!(v["contract_version"], "1.0.0");
    let imports = v["imports"].to_string();
    assert!(imports.contains("@1.0.0"), "it imports the 1.0.0 interfaces: {imports}");
    let out = sb
        .host()
        .args(["conformance", fixture_pack, "--profile", "extended", "--format", "json"])
        .output()
        .unwrap();
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{report:#}");
    assert_eq!(report["summary"]["failed"], 0, "{report:#}");
    assert!(report["summary"]["passed"].as_u64().unwrap() >= 14, "{report:#}");
}

#[test]
fn grants_are_part_of_the_binding_and_required_at_bind_time() {
    let sb = crate::common::operator();
    crate::common::install_signed(&sb, CAPS, "packs/test-capabilities/pack.toml", "caps");
    let refused = sb
        .host()
        .args([
            "env",
            "create",
            "qa",
            "--deployer",
            "envpack.test.capabilities@^0.1",
            "--capability",
            "log,kv",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("process, probe, http, secrets"), "{stderr}");
    let created = crate::common::json(
        &sb,
        &[
            "env",
            "create",
            "qa",
            "--deployer",
            "envpack.test.capabilities@^0.1",
            "--capability",
            "log,kv",
            "--allow-run",
            "sleep {number}",
            "--allow-env",
            "REVISION",
            "--allow-probe",
            "127.0.0.1:9",
            "--allow-http",
            "http://127.0.0.1:9",
            "--allow-secret",
            "TOKEN",
            "--json",
        ],
    );
    assert_eq!(created["id"], "qa");
    let grants = &created["binding"]["grants"];
    assert_eq!(grants["process"][0]["name"], "sleep");
    assert!(grants["process"][0]["path"].as_str().unwrap().starts_with('/'));
    assert_eq!(
        created["binding"]["capabilities"],
        json!(["log", "kv", "process", "probe", "http", "secrets"])
    );
    let shown = crate::common::ok(&sb, &["env", "show", "qa"]);
    assert!(shown.contains("scopes: run 'sleep {number}' (/"), "{shown}");
    let bad = sb
        .host()
        .args([
            "env",
            "bind",
            "qa",
            "--deployer",
            "envpack.test.capabilities@^0.1",
            "--allow-probe",
            "nowhere",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("expected host:port"));
}

/// Pids of live processes whose environment names `dir` (they were started
/// by a host whose temp directory is `dir`).
fn processes_under(dir: &Path) -> Vec<u32> {
    let needle = format!("ENVPACK_WORK_DIR={}", dir.display());
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| String::from_utf8_lossy(&env).contains(&needle))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

#[test]
fn the_bench_runs_process_packs_in_a_throwaway_directory_and_leaves_nothing_running() {
    let sb = Sandbox::new();
    let scratch = sb.dir.path().join("tmp");
    std::fs::create_dir_all(&scratch).unwrap();
    let bench = |grants: &[&str]| {
        let out = sb
            .host()
            .env("TMPDIR", &scratch)
            .args(["conformance", CAPS, "--format", "json", "--cases", "4"])
            .args(grants)
            .output()
            .unwrap();
        serde_json::from_slice::<Value>(&out.stdout)
            .unwrap_or_else(|e| panic!("no report ({e}): {}", String::from_utf8_lossy(&out.stderr)))
    };
    let check = |report: &Value, id: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap()
    };
    // Without a grant the pack cannot spawn: its happy path fails, by name.
    let refused = bench(&[]);
    let happy = check(&refused, "verbs.happy-path");
    assert_eq!(happy["status"], "fail", "{happy:#}");
    assert!(happy["message"].to_string().contains("not granted"), "{happy:#}");
    // With it, the pack's verbs run real processes, and none outlives the run.
    let grants = [
        "--allow-run",
        "sleep {number}",
        "--allow-env",
        "REVISION",
        "--allow-probe",
        "127.0.0.1:9",
        "--allow-http",
        "http://127.0.0.1:9",
        "--allow-secret",
        "TOKEN",
    ];
    let granted = bench(&grants);
    let happy = check(&granted, "verbs.happy-path");
    assert_eq!(happy["status"], "pass", "{happy:#}");
    // Idempotency is judged by effects: this pack's warm adopts its running
    // process, so a second warm spawns nothing...
    let idempotent = check(&granted, "idempotency");
    assert_eq!(idempotent["status"], "pass", "{idempotent:#}");
    // ...but with `spawn-count` it spawns on every warm, and the bench sees it.
    let spawning = bench(&[&grants[..], &["--setting", "spawn-count=1"]].concat());
    let idempotent = check(&spawning, "idempotency");
    assert_eq!(idempotent["status"], "fail", "{idempotent:#}");
    assert!(
        idempotent["message"].to_string().contains("processes running"),
        "{idempotent:#}"
    );
    // Isolation is judged on processes too: routing web must not stop
    // what runs (api's revision above all).
    let isolated = check(&granted, "split.isolation");
    assert_eq!(isolated["status"], "pass", "{isolated:#}");
    let killing = bench(&[&grants[..], &["--setting", "apply-kills=1"]].concat());
    let isolated = check(&killing, "split.isolation");
    assert_eq!(isolated["status"], "fail", "{isolated:#}");
    assert!(
        isolated["message"].to_string().contains("stopped process"),
        "{isolated:#}"
    );
    assert!(processes_under(&scratch).is_empty(), "the bench left processes running");
    let left: Vec<_> = std::fs::read_dir(&scratch).unwrap().collect();
    assert!(left.is_empty(), "the bench left its scratch directory behind: {left:?}");
}

#[test]
fn concurrent_commands_spawn_into_one_process_table_without_losing_any() {
    let sb = Sandbox::new();
    let _reaper = Reaper(&sb);
    let doc = env_doc(
        json!({ "cmd": "sleep", "args": "30" }),
        json!({ "process": ["sleep {number}"] }),
    );
    let path = sb.env_file("warm", &doc);
    // Four `host call`s at once on one environment, each warming another revision.
    let revisions = [
        crate::common::A1,
        crate::common::A2,
        crate::common::B1,
        crate::common::A1,
    ];
    let children: Vec<_> = revisions
        .iter()
        .map(|revision| {
            // Two of them warm A1: a race the pack's own idempotency may or may not win.
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_host"));
            cmd.env("ENVPACK_STATE_DIR", sb.state_dir())
                .args(["call", CAPS, "warm-revision", "--json", "--env"])
                .arg(&path)
                .args(["--revision", revision])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            cmd.spawn().unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let pids = table_pids(&sb);
    let live: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    let records = table_records(&sb);
    let mut ids: Vec<&str> = records.iter().filter_map(|r| r["id"].as_str()).collect();
    ids.sort();
    ids.dedup();
    // Every spawned process is in the table once, with its own id, and running.
    assert!(pids.len() >= 3, "{records:#?}");
    assert_eq!(ids.len(), pids.len(), "ids are unique: {records:#?}");
    assert_eq!(live.len(), pids.len(), "every recorded process runs");
}

#[test]
fn concurrent_secret_sets_keep_every_value() {
    let sb = Sandbox::new();
    let names: Vec<String> = (0..6).map(|i| format!("S{i}")).collect();
    let children: Vec<_> = names
        .iter()
        .map(|name| {
            std::process::Command::new(env!("CARGO_BIN_EXE_host"))
                .env("ENVPACK_STATE_DIR", sb.state_dir())
                .env("VALUE", format!("value-of-{name}"))
                .args(["secret", "set", name, "--from-env", "VALUE"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let listed = sb.host().args(["secret", "list", "--json"]).output().unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&listed.stdout).unwrap(), json!(names));
}
