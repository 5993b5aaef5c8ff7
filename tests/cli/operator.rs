//! The operator's system of record through the real binary: environments
//! bound to packs by descriptor, the lifecycle and traffic rules, bad input,
//! the audit chain, concurrency across processes, and kill -9 at random points.

use std::path::Path;
use std::time::Duration;

use crate::common::{DIGEST, Sandbox, TEST_HOSTILE, json, ok, operator, p, spawn};
use predicates::str::contains;
use serde_json::Value;

fn stage_ready(sb: &Sandbox, id: &str) {
    crate::common::stage(sb, "dev", id);
    ok(sb, &["revision", "warm", "dev", id]);
}

fn current(sb: &Sandbox) -> Value {
    json(sb, &["traffic", "show", "dev", "--json"])[0]["current"].clone()
}

#[test]
fn the_operator_flow() {
    let sb = operator();
    stage_ready(&sb, "R1");
    stage_ready(&sb, "R2");
    let revisions = json(&sb, &["revision", "list", "dev", "--json"]);
    assert_eq!(revisions[0]["sequence"], 1);
    assert_eq!(revisions[1]["sequence"], 2);
    ok(&sb, &["traffic", "set", "dev", "web", "R1=9000", "R2=1000"]);
    ok(&sb, &["traffic", "set", "dev", "web", "R1=0", "R2=10000"]);
    let rolled = json(&sb, &["traffic", "rollback", "dev", "web", "--json"]);
    assert_eq!(rolled["generation"], 3);
    let split = current(&sb);
    assert_eq!(split["generation"], 3);
    assert_eq!(split["entries"][0]["weight_bps"], 9000);
    sb.host()
        .args(["revision", "drain", "dev", "R2"])
        .assert()
        .code(2)
        .stderr(contains("R2 still has traffic (web generation 3: 1000 bps)"));
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000", "R2=0"]);
    ok(&sb, &["revision", "drain", "dev", "R2"]);
    ok(&sb, &["revision", "archive", "dev", "R2"]);
    let status = json(&sb, &["status", "dev", "--json"]);
    assert_eq!(status["revisions"].as_array().unwrap().len(), 1, "{status:#}");
    let events = json(&sb, &["events", "dev", "--json"]);
    let transitions: Vec<String> = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["revision"] == "R2")
        .map(|e| format!("{}>{}", e["from"].as_str().unwrap(), e["to"].as_str().unwrap()))
        .collect();
    assert_eq!(
        transitions,
        [
            "inactive>staged",
            "staged>warming",
            "warming>ready",
            "ready>draining",
            "draining>inactive",
            "inactive>archived"
        ]
    );
    assert!(ok(&sb, &["audit", "verify"]).contains("audit log intact"));
}

#[test]
fn rules_are_enforced_and_refusals_change_nothing() {
    let sb = operator();
    stage_ready(&sb, "R1");
    ok(
        &sb,
        &[
            "revision",
            "stage",
            "dev",
            "web",
            "--digest",
            DIGEST,
            "--location",
            "file:///b/s",
            "--id",
            "S1",
        ],
    );
    ok(
        &sb,
        &["traffic", "set", "dev", "web", "R1=10000", "--idempotency-key", "k1"],
    );
    let before = (
        ok(&sb, &["traffic", "show", "dev", "--json"]),
        ok(&sb, &["revision", "list", "dev", "--all", "--json"]),
    );
    let refuse = |args: &[&str], message: &str| {
        sb.host().args(args).assert().code(2).stderr(contains(message));
    };
    refuse(
        &["traffic", "set", "dev", "web", "R1=5000", "S1=5000"],
        "S1 is staged; only ready revisions may get weight > 0",
    );
    refuse(&["traffic", "set", "dev", "web", "R1=9000"], "weights sum to 9000");
    refuse(
        &["traffic", "set", "dev", "web", "R1=ten"],
        "is not a whole number of basis points",
    );
    refuse(
        &[
            "traffic",
            "set",
            "dev",
            "web",
            "R1=5000",
            "S1=0",
            "--idempotency-key",
            "k1",
        ],
        "idempotency key \"k1\" was already used",
    );
    refuse(
        &["traffic", "set", "dev", "web", "R1=10000", "--idempotency-key", ""],
        "an empty idempotency key names no command",
    );
    refuse(
        &["traffic", "set", "dev", "api", "R1=10000"],
        "has no deployment \"api\"",
    );
    refuse(
        &["traffic", "set", "nope", "web", "R1=10000"],
        "no environment \"nope\"",
    );
    refuse(&["revision", "warm", "dev", "GHOST"], "has no revision \"GHOST\"");
    refuse(&["revision", "archive", "dev", "R1"], "R1 still has traffic");
    refuse(
        &[
            "revision",
            "stage",
            "dev",
            "web",
            "--digest",
            DIGEST,
            "--location",
            "x",
            "--id",
            "R1",
        ],
        "revision \"R1\" already exists",
    );
    refuse(
        &[
            "revision",
            "stage",
            "dev",
            "web",
            "--digest",
            "md5:1",
            "--location",
            "x",
            "--id",
            "R9",
        ],
        "md5:1",
    );
    refuse(
        &[
            "revision",
            "stage",
            "dev",
            "web",
            "--digest",
            DIGEST,
            "--location",
            "x",
            "--id",
            "bad id",
        ],
        "not a valid id",
    );
    refuse(
        &["revision", "warm", "dev", "R1"],
        "R1 is ready; it cannot become warming",
    );
    refuse(
        &["env", "create", "dev", "--deployer", "envpack.deployer.ledger@^1"],
        "already exists",
    );
    refuse(
        &[
            "env",
            "create",
            "qa",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log",
        ],
        "does not grant",
    );
    refuse(
        &["env", "create", "qa", "--deployer", "envpack.deployer.missing@^1"],
        "no pack named",
    );
    let after = (
        ok(&sb, &["traffic", "show", "dev", "--json"]),
        ok(&sb, &["revision", "list", "dev", "--all", "--json"]),
    );
    assert_eq!(before, after, "a refused command changed the state");
    // The same key with the same entries is a no-op.
    let again = ok(
        &sb,
        &["traffic", "set", "dev", "web", "R1=10000", "--idempotency-key", "k1"],
    );
    assert!(again.contains("generation 1"), "{again}");
    // So is the same key with the same entries in another order.
    let first = ok(
        &sb,
        &[
            "traffic",
            "set",
            "dev",
            "web",
            "R1=10000",
            "S1=0",
            "--idempotency-key",
            "k2",
        ],
    );
    assert!(first.contains("generation 2"), "{first}");
    let reordered = ok(
        &sb,
        &[
            "traffic",
            "set",
            "dev",
            "web",
            "S1=0",
            "R1=10000",
            "--idempotency-key",
            "k2",
        ],
    );
    assert!(
        reordered.contains("already") && reordered.contains("generation 2"),
        "{reordered}"
    );
    assert!(ok(&sb, &["audit", "verify"]).contains("intact"));
}

#[test]
fn a_newer_schema_is_refused() {
    let sb = operator();
    sb.sql("PRAGMA user_version = 99", "UPDATE envpack_schema SET version = 99");
    sb.host()
        .args(["status", "dev"])
        .assert()
        .code(5)
        .stderr(contains("schema version 99, written by a newer host"));
}

#[test]
fn an_edited_audit_row_is_detected() {
    let sb = operator();
    stage_ready(&sb, "R1");
    sb.drop_audit_guards();
    let edit = "UPDATE audit SET actor = 'mallory' WHERE seq = 2";
    sb.sql(edit, edit);
    sb.host()
        .args(["audit", "verify"])
        .assert()
        .code(6)
        .stderr(contains("audit row 2 was edited"));
}

/// `text` as an SQL string literal.
fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[test]
fn swapping_the_pack_by_descriptor_keeps_the_commands() {
    let sb = operator();
    stage_ready(&sb, "R1");
    // Install the hostile test pack (it fails conformance: forced, and recorded).
    let key = sb.dir.path().join("key");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/test-hostile/pack.toml");
    let pack = sb.dir.path().join("hostile.wasm");
    ok(
        &sb,
        &[
            "pack",
            "seal",
            TEST_HOSTILE,
            "--manifest",
            &p(&manifest),
            "-o",
            &p(&pack),
        ],
    );
    ok(&sb, &["sign", &p(&pack), "--key", &p(&key)]);
    ok(&sb, &["pack", "install", "--force", &p(&pack)]);

    // R1 is the ledger's: the move retires it through the ledger first.
    ok(
        &sb,
        &[
            "env",
            "bind",
            "dev",
            "--deployer",
            "envpack.test.hostile@^0.1",
            "--setting",
            "mode=normal",
            "--teardown",
        ],
    );
    let r1 = json(&sb, &["revision", "show", "dev", "R1", "--json"]);
    assert_eq!(r1["lifecycle"], "archived");
    ok(
        &sb,
        &[
            "revision",
            "stage",
            "dev",
            "web",
            "--digest",
            DIGEST,
            "--location",
            "x",
            "--id",
            "R2",
        ],
    );
    ok(
        &sb,
        &[
            "env",
            "bind",
            "dev",
            "--deployer",
            "envpack.test.hostile@^0.1",
            "--setting",
            "mode=trap",
        ],
    );
    let failed = sb.host().args(["revision", "warm", "dev", "R2"]).output().unwrap();
    assert_eq!(failed.status.code(), Some(1));
    let r2 = json(&sb, &["revision", "show", "dev", "R2", "--json"]);
    assert_eq!(r2["lifecycle"], "failed");
    let events = ok(&sb, &["events", "dev"]);
    assert!(
        events.contains("warming -> failed") && events.contains("deliberate trap"),
        "{events}"
    );

    ok(
        &sb,
        &[
            "env",
            "bind",
            "dev",
            "--deployer",
            "envpack.test.hostile@^0.1",
            "--setting",
            "mode=normal",
        ],
    );
    ok(&sb, &["revision", "retry", "dev", "R2"]);
    ok(&sb, &["revision", "warm", "dev", "R2"]);
    ok(&sb, &["traffic", "set", "dev", "web", "R2=10000"]);
    ok(
        &sb,
        &[
            "env",
            "bind",
            "dev",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--teardown",
        ],
    );
    let status = json(&sb, &["status", "dev", "--json"]);
    assert_eq!(status["binding"]["descriptor"], "envpack.deployer.ledger@1.0.0");
}

#[test]
fn concurrent_traffic_sets_are_both_applied_in_order() {
    let sb = operator();
    stage_ready(&sb, "R1");
    stage_ready(&sb, "R2");
    let a = spawn(&sb, &["traffic", "set", "dev", "web", "R1=9000", "R2=1000"]);
    let b = spawn(&sb, &["traffic", "set", "dev", "web", "R1=1000", "R2=9000"]);
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let shown = json(&sb, &["traffic", "show", "dev", "--json"]);
    assert_eq!(
        shown[0]["current"]["generation"], 2,
        "both sets must be recorded: {shown:#}"
    );
    assert_ne!(shown[0]["current"]["entries"], shown[0]["previous"]["entries"]);
}

/// Invariants that must hold whatever point a process was killed at.
fn assert_invariants(sb: &Sandbox, round: usize) {
    let shown = json(sb, &["traffic", "show", "dev", "--json"]);
    for deployment in shown.as_array().unwrap() {
        if let Some(entries) = deployment["current"]["entries"].as_array() {
            let sum: u64 = entries.iter().map(|e| e["weight_bps"].as_u64().unwrap()).sum();
            assert_eq!(sum, 10_000, "round {round}: {deployment:#}");
        }
    }
    for revision in json(sb, &["revision", "list", "dev", "--all", "--json"])
        .as_array()
        .unwrap()
    {
        let lifecycle = revision["lifecycle"].as_str().unwrap();
        assert!(
            [
                "inactive", "staged", "warming", "ready", "draining", "failed", "archived"
            ]
            .contains(&lifecycle)
        );
    }
    let events = json(sb, &["events", "dev", "--json"]);
    for event in events.as_array().unwrap() {
        let pair = (
            event["from"].as_str().unwrap().to_string(),
            event["to"].as_str().unwrap().to_string(),
        );
        let from = envpack_model::lifecycle::parse(&pair.0).unwrap();
        let to = envpack_model::lifecycle::parse(&pair.1).unwrap();
        assert!(
            envpack_model::lifecycle::allowed(from, to),
            "round {round}: invalid event {pair:?}"
        );
    }
    assert!(ok(sb, &["audit", "verify"]).contains("intact"), "round {round}");
}

#[test]
fn kill_9_at_random_points_never_leaves_a_mix() {
    let sb = operator();
    stage_ready(&sb, "R1");
    stage_ready(&sb, "R2");
    ok(&sb, &["traffic", "set", "dev", "web", "R1=5000", "R2=5000"]);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    eprintln!("kill -9 loop seed {seed}");
    let mut rng = seed | 1;
    let mut next = move |bound: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % bound
    };
    for round in 0..12 {
        let weight = 1000 + next(8000);
        let command: Vec<String> = match round % 3 {
            0 => vec![
                "traffic".into(),
                "set".into(),
                "dev".into(),
                "web".into(),
                format!("R1={weight}"),
                format!("R2={}", 10_000 - weight),
            ],
            1 => vec!["traffic".into(), "rollback".into(), "dev".into(), "web".into()],
            _ => vec![
                "revision".into(),
                "stage".into(),
                "dev".into(),
                "web".into(),
                "--digest".into(),
                DIGEST.into(),
                "--location".into(),
                "x".into(),
                "--id".into(),
                format!("K{round}"),
            ],
        };
        let mut child = spawn(&sb, &command);
        std::thread::sleep(Duration::from_millis(next(120)));
        let _ = child.kill();
        let _ = child.wait();
        assert_invariants(&sb, round);
    }
}

/// An RFC 3339 time in UTC, as every JSON view writes times.
fn is_utc_time(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.len() >= 20 && s.ends_with('Z') && s.as_bytes()[4] == b'-' && s.as_bytes()[10] == b'T')
}

#[test]
fn json_times_are_rfc3339_in_every_listing() {
    let sb = operator();
    let packs = json(&sb, &["pack", "list", "--json"]);
    assert!(!packs.as_array().unwrap().is_empty(), "{packs:#}");
    for pack in packs.as_array().unwrap() {
        assert!(is_utc_time(&pack["installed_at"]), "{pack:#}");
    }
    let keys = json(&sb, &["trust", "list", "--json"]);
    assert!(!keys.as_array().unwrap().is_empty(), "{keys:#}");
    for key in keys.as_array().unwrap() {
        assert!(is_utc_time(&key["added_at"]), "{key:#}");
        assert!(key["revoked_at"].is_null(), "{key:#}");
    }
    stage_ready(&sb, "R1");
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000"]);
    stage_ready(&sb, "R2");
    let started = json(
        &sb,
        &[
            "rollout", "start", "dev", "web", "--to", "R2", "--steps", "100", "--json",
        ],
    );
    for field in ["created_at", "updated_at"] {
        assert!(is_utc_time(&started[field]), "{field}: {started:#}");
    }
    let status = json(&sb, &["rollout", "status", "dev", "web", "--json"]);
    let rollout = &status.as_array().map_or(&status, |a| &a[0]);
    let steps = rollout["steps"].as_array().unwrap_or_else(|| panic!("{status:#}"));
    assert!(!steps.is_empty(), "{status:#}");
    assert!(
        steps
            .iter()
            .all(|s| is_utc_time(&s["started_at"]) && is_utc_time(&s["done_at"])),
        "{status:#}"
    );
}

#[test]
fn audit_show_prints_every_command_and_refusal_readably() {
    let sb = operator();
    stage_ready(&sb, "R1");
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000"]);
    sb.host()
        .args(["traffic", "set", "dev", "web", "R1=9000"])
        .assert()
        .code(2);
    let rows = json(&sb, &["audit", "show", "--json"]);
    let rows = rows.as_array().unwrap();
    let seqs: Vec<i64> = rows.iter().map(|r| r["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "every row, oldest first"
    );
    assert!(rows.iter().all(|r| is_utc_time(&r["at"])), "{rows:#?}");
    let last = rows.last().unwrap();
    assert_eq!(last["command"], "traffic set");
    assert_eq!(last["arguments"]["env"], "dev");
    assert!(last["outcome"].as_str().unwrap().contains("9000"), "{last:#}");
    // One environment's last two rows, one line each, in text.
    let text = ok(&sb, &["audit", "show", "--env", "dev", "--last", "2"]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].contains("traffic set") && lines[0].contains("ok"), "{text}");
    assert!(lines[1].contains("traffic set") && lines[1].contains("9000"), "{text}");
    let none = ok(&sb, &["audit", "show", "--env", "nosuch"]);
    assert!(none.contains("no rows for environment nosuch"), "{none}");
    // A refused id is recorded too.
    sb.host()
        .args(["env", "create", "bad id", "--deployer", "envpack.deployer.ledger@^1"])
        .assert()
        .code(2);
    let rows = json(&sb, &["audit", "show", "--last", "1", "--json"]);
    let last = &rows[0];
    assert_eq!(
        (last["command"].as_str(), last["arguments"]["env"].as_str()),
        (Some("env create"), Some("bad id")),
        "{rows:#}"
    );
    assert!(last["outcome"].as_str().unwrap().starts_with("error:"), "{rows:#}");
}

/// The audit chain's hash of a row, as the host computes it: SHA-256 over
/// the previous hash and the row's fields, each followed by a zero byte.
pub fn chain_hash(prev: &str, seq: i64, at: i64, actor: &str, command: &str, arguments: &str, outcome: &str) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for part in [
        prev,
        &seq.to_string(),
        &at.to_string(),
        actor,
        command,
        arguments,
        outcome,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

#[test]
fn an_audit_sink_finds_rows_forged_with_a_recomputed_hash() {
    let sb = operator();
    let elsewhere = tempfile::tempdir().unwrap();
    let sink = elsewhere.path().join("audit-heads");
    let host = |args: &[&str]| {
        let mut cmd = sb.host();
        cmd.env("ENVPACK_AUDIT_SINK", &sink).args(args);
        cmd
    };
    crate::common::stage(&sb, "dev", "R1");
    for args in [
        &["revision", "warm", "dev", "R1"][..],
        &["traffic", "set", "dev", "web", "R1=10000"],
    ] {
        host(args).assert().success();
    }
    host(&["traffic", "set", "dev", "web", "R1=9000"]).assert().code(2);
    // Six processes at once: every row they commit is exported once.
    let children: Vec<std::process::Child> = (1..=6)
        .map(|i| {
            let id = format!("C{i}");
            sb.state_env(&mut std::process::Command::new(env!("CARGO_BIN_EXE_host")))
                .env("ENVPACK_AUDIT_SINK", &sink)
                .args([
                    "revision",
                    "stage",
                    "dev",
                    "web",
                    "--digest",
                    DIGEST,
                    "--location",
                    "file:///b/c",
                    "--id",
                    &id,
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let exported = std::fs::read_to_string(&sink).unwrap();
    let seqs: std::collections::BTreeSet<&str> = exported.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        seqs.len(),
        exported.lines().count(),
        "each row exported once: {exported}"
    );
    assert!(exported.lines().count() >= 9, "{exported}");
    host(&["audit", "verify"]).assert().success().stdout(contains("intact"));
    let head = ok(&sb, &["audit", "verify"]);
    let head = head
        .split("head ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .to_string();

    // Someone who can write state.db appends a row with a recomputed hash.
    let last = sb.sql_rows("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1");
    let (seq, prev): (i64, String) = (last[0][0].parse().unwrap(), last[0][1].clone());
    let (at, args, outcome) = (1_900_000_000, r#"{"env":"dev"}"#, "ok");
    let hash = chain_hash(&prev, seq + 1, at, "mallory", "traffic set", args, outcome);
    let forge = format!(
        "INSERT INTO audit (seq, at, actor, command, arguments, outcome, prev_hash, hash) \
         VALUES ({}, {at}, 'mallory', 'traffic set', {}, {}, {}, {})",
        seq + 1,
        quoted(args),
        quoted(outcome),
        quoted(&prev),
        quoted(&hash)
    );
    sb.sql(&forge, &forge);
    // The chain alone, and a recorded head, cannot tell.
    ok(&sb, &["audit", "verify"]);
    ok(&sb, &["audit", "verify", "--head", &head]);
    // The sink can.
    host(&["audit", "verify"])
        .assert()
        .code(6)
        .stderr(contains(format!("audit row {} was never exported", seq + 1)));

    // Rewriting an exported row, every later hash recomputed, is found too.
    sb.drop_audit_guards();
    let delete = format!("DELETE FROM audit WHERE seq = {}", seq + 1);
    sb.sql(&delete, &delete);
    let rows = sb.sql_rows("SELECT seq, at, actor, command, arguments, outcome FROM audit ORDER BY seq");
    let mut prev = "0".repeat(64);
    let mut rewrite = String::new();
    for row in rows {
        let (seq, at): (i64, i64) = (row[0].parse().unwrap(), row[1].parse().unwrap());
        let actor = if seq == 2 { "mallory" } else { row[2].as_str() };
        let hash = chain_hash(&prev, seq, at, actor, &row[3], &row[4], &row[5]);
        rewrite.push_str(&format!(
            "UPDATE audit SET actor = {}, prev_hash = {}, hash = {} WHERE seq = {seq};\n",
            quoted(actor),
            quoted(&prev),
            quoted(&hash)
        ));
        prev = hash;
    }
    sb.sql(&rewrite, &rewrite);
    ok(&sb, &["audit", "verify"]);
    host(&["audit", "verify"])
        .assert()
        .code(6)
        .stderr(contains("differs from the head exported to the sink"));
}
