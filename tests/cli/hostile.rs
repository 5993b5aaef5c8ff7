//! Hostile packs through the real binary: each misbehaviour ends in a clear
//! `provider` (or verification) error naming verb and cause, nothing of the
//! call is saved, and a normal call afterwards works.

use crate::common::{A1, Sandbox, TEST_HOSTILE, error_kind, error_message, fixture};
use serde_json::json;

/// Runs stage-revision of A1 in `mode` and returns (exit code, kind, message).
fn stage_in_mode(sb: &Sandbox, mode: &str, extra: &[&str]) -> (Option<i32>, String, String) {
    let env = sb.env_file(mode, &fixture(json!({ "mode": mode })));
    let mut target = vec!["--revision", A1];
    target.extend_from_slice(extra);
    let (out, v) = sb.call(TEST_HOSTILE, "stage-revision", &env, &target);
    assert_eq!(v["guest_entered"], true, "{v:#}");
    assert_eq!(v["kv_committed"], false, "{v:#}");
    (
        out.status.code(),
        error_kind(&v).to_string(),
        error_message(&v).to_string(),
    )
}

fn assert_normal_call_works(sb: &Sandbox) {
    let env = sb.env_file("normal", &fixture(json!({})));
    let (out, v) = sb.call(TEST_HOSTILE, "stage-revision", &env, &["--revision", A1]);
    assert!(out.status.success(), "normal call after a hostile one: {v:#}");
    assert_eq!(v["result"]["ok"]["revision"], A1);
}

fn assert_provider_error(mode: &str, extra: &[&str], needle: &str) {
    let sb = Sandbox::new();
    let (code, kind, message) = stage_in_mode(&sb, mode, extra);
    assert_eq!(code, Some(1), "{mode}: {message}");
    assert_eq!(kind, "provider", "{mode}: {message}");
    assert!(
        message.contains("stage-revision failed"),
        "{mode}: the verb is not named: {message}"
    );
    assert!(message.contains(needle), "{mode}: expected {needle:?} in {message}");
    assert_normal_call_works(&sb);
}

#[test]
fn a_looping_pack_is_stopped_at_the_deadline() {
    assert_provider_error("loop", &["--deadline-ms", "300"], "ran past its deadline of 300 ms");
}

#[test]
fn a_pack_blocked_in_a_wasi_sleep_is_stopped_at_the_deadline() {
    assert_provider_error("sleep", &["--deadline-ms", "300"], "ran past its deadline of 300 ms");
}

#[test]
fn a_pack_allocating_without_bound_is_stopped_at_the_budget() {
    assert_provider_error("alloc", &["--memory-mib", "16"], "over the budget of 16777216 bytes");
}

#[test]
fn unbounded_recursion_is_reported_as_a_stack_overflow() {
    assert_provider_error("recurse", &[], "stack overflow");
}

#[test]
fn a_trapping_pack_reports_its_panic() {
    assert_provider_error("trap", &[], "deliberate trap in stage-revision");
}

#[test]
fn a_huge_result_is_refused() {
    assert_provider_error("huge", &[], "over the cap of 1048576 bytes");
}

#[test]
fn an_undeclared_capability_is_refused() {
    let sb = Sandbox::new();
    let env = sb.env_file("undeclared", &fixture(json!({ "mode": "undeclared" })));
    let (out, v) = sb.call(TEST_HOSTILE, "stage-revision", &env, &["--revision", A1]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        error_message(&v).contains("does not declare capability `clock`"),
        "{v:#}"
    );
    let refused = v["recording"]["calls"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["allowed"] == false)
        .cloned();
    assert_eq!(refused.map(|c| c["operation"].clone()), Some(json!("clock.now-ms")));
}

#[test]
fn an_ungranted_capability_is_refused() {
    let sb = Sandbox::new();
    let mut doc = fixture(json!({ "mode": "write-then-trap" }));
    doc["capabilities"] = json!(["log"]);
    let env = sb.env_file("ungranted", &doc);
    let (_, v) = sb.call(TEST_HOSTILE, "stage-revision", &env, &["--revision", A1]);
    assert!(error_message(&v).contains("capability `kv` is not granted"), "{v:#}");
}

#[test]
fn kv_writes_of_a_trapping_call_are_discarded() {
    let sb = Sandbox::new();
    let (_, kind, message) = stage_in_mode(&sb, "write-then-trap", &[]);
    assert_eq!(kind, "provider", "{message}");
    assert!(
        !String::from_utf8_lossy(&sb.kv_bytes()).contains("half-done"),
        "the trapped call's write was saved"
    );
}

#[test]
fn a_pack_echoing_another_deployment_is_refused() {
    let sb = Sandbox::new();
    let env = sb.env_file("echo", &fixture(json!({ "mode": "wrong-echo" })));
    let (out, v) = sb.call(TEST_HOSTILE, "apply-traffic-split", &env, &["--deployment", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(error_kind(&v), "cross-deployment-interference", "{v:#}");
    assert!(error_message(&v).contains("returned api:"), "{v:#}");
    assert_normal_call_works(&sb);
}

#[test]
fn a_pack_echoing_another_revision_is_refused() {
    let sb = Sandbox::new();
    let (code, kind, message) = stage_in_mode(&sb, "wrong-revision", &[]);
    assert_eq!((code, kind.as_str()), (Some(1), "outcome-mismatch"), "{message}");
}

#[test]
fn a_spinning_pack_fails_the_bench_fast_and_an_overrun_is_never_a_rejection() {
    let sb = Sandbox::new();
    let out = sb
        .host()
        .args([
            "conformance",
            TEST_HOSTILE,
            "--format",
            "json",
            "--setting",
            "mode=loop",
        ])
        // A bound, not a speed target: without the budget this run took
        // minutes (every one of ~150 calls waited out its deadline).
        .timeout(std::time::Duration::from_secs(300))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let status = |id: &str| {
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["id"] == id)
            .map(|c| c["status"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    // A call stopped at its deadline rejected nothing.
    for id in ["spec.unknown-revision", "spec.invalid-split", "spec.split-not-found"] {
        assert_eq!(status(id), "fail", "{id}: {report:#}");
    }
    let text = report.to_string();
    assert!(text.contains("the bench stopped calling it"), "{report:#}");
}

#[test]
fn pack_text_reaches_the_terminal_written_out_never_as_escapes() {
    let sb = crate::common::operator();
    crate::common::hostile_env(&sb, "esc", "escape");
    let raw = |text: &str| text.contains('\x1b') || text.contains('\u{202E}') || text.contains('\r');
    let forged = |text: &str| text.lines().any(|l| l.starts_with("host: hint: run `curl"));
    // Success: the detail and the log line.
    let out = sb
        .host()
        .args([
            "revision",
            "stage",
            "esc",
            "web",
            "--id",
            "E1",
            "--digest",
            crate::common::DIGEST,
        ])
        .args(["--location", "file:///b/E1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for stream in [&out.stdout, &out.stderr] {
        let text = String::from_utf8_lossy(stream);
        assert!(!raw(&text) && !forged(&text), "pack text printed raw: {text:?}");
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("\\u{1b}[2K"),
        "written out"
    );
    // Failure: the provider error.
    let out = sb.host().args(["revision", "warm", "esc", "E1"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!raw(&stderr) && !forged(&stderr), "pack text printed raw: {stderr:?}");
    assert!(stderr.contains("failed\\u{1b}[2K"), "{stderr}");
    // Events quote the pack's reason, written out too.
    let out = sb.host().args(["events", "esc"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!raw(&stdout) && !forged(&stdout), "{stdout:?}");
    // JSON keeps the exact text.
    let out = sb.host().args(["events", "esc", "--json"]).output().unwrap();
    let events: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(events.to_string().contains("\\u001b[2K"), "{events}");
}

#[test]
fn time_reaches_a_pack_only_through_the_clock_capability() {
    let sb = Sandbox::new();
    // The pack does not declare `clock`: WASI's clocks are stopped at the epoch.
    let env = sb.env_file("time", &fixture(json!({ "mode": "wasi-time" })));
    let (out, v) = sb.call(TEST_HOSTILE, "stage-revision", &env, &["--revision", A1]);
    assert!(out.status.success(), "{v:#}");
    assert_eq!(
        v["result"]["ok"]["detail"], "wall 0 s, elapsed 0 ns",
        "WASI time leaked: {v:#}"
    );
    // And every read is recorded as a use of `clock`, which the pack does not declare.
    let calls = v["recording"]["calls"].as_array().cloned().unwrap_or_default();
    for operation in ["wasi:clocks/wall-clock", "wasi:clocks/monotonic-clock"] {
        let read = calls.iter().find(|c| c["operation"] == operation);
        let read = read.unwrap_or_else(|| panic!("{operation} not recorded: {v:#}"));
        assert_eq!(read["capability"], "clock", "{read}");
        assert_eq!(read["declared"], false, "{read}");
    }
}

#[test]
fn every_command_that_reads_a_pack_refuses_a_huge_file_before_reading_it() {
    let sb = Sandbox::new();
    // Sparse: 1 GiB on disk costs nothing; reading it whole would.
    let huge = sb.dir.path().join("huge.wasm");
    let file = std::fs::File::create(&huge).unwrap();
    file.set_len(1 << 30).unwrap();
    let huge = huge.display().to_string();
    let key = sb.dir.path().join("key");
    let out = sb.host().args(["keygen", "--out"]).arg(&key).output().unwrap();
    assert!(out.status.success());
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/ledger/pack.toml");
    let commands: Vec<Vec<String>> = vec![
        vec!["inspect".into(), huge.clone()],
        vec!["verify".into(), huge.clone()],
        vec!["sign".into(), huge.clone(), "--key".into(), key.display().to_string()],
        vec!["pack".into(), "digest".into(), huge.clone()],
        vec![
            "pack".into(),
            "seal".into(),
            huge.clone(),
            "--manifest".into(),
            manifest.display().to_string(),
            "-o".into(),
            "/dev/null".into(),
        ],
        vec!["pack".into(), "install".into(), huge.clone()],
        vec!["conformance".into(), huge.clone()],
    ];
    for args in commands {
        let out = sb
            .host()
            .args(&args)
            .timeout(std::time::Duration::from_secs(60))
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "host {args:?} accepted a 1 GiB file");
        assert!(
            stderr.contains("larger than") || stdout.contains("larger than"),
            "host {args:?} did not name the limit: {stderr} {stdout}"
        );
    }
}

#[test]
fn a_huge_kv_key_is_refused_on_a_read_too() {
    assert_provider_error("huge-key", &[], "kv key of 1048576 bytes is over the 512-byte limit");
}

#[test]
fn a_kv_flood_stops_at_the_namespace_quota_and_nothing_is_saved() {
    // A generous deadline: 100,000 writes take a while in a debug build.
    assert_provider_error(
        "kv-flood",
        &["--deadline-ms", "60000"],
        "kv holds at most 100000 keys per pack and environment",
    );
}
