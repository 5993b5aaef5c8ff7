//! What an outside operator tripped over, kept fixed: a reader that goes
//! away, a damaged installed pack repaired by reinstalling, files that are
//! not packs, loose input, a pack removed from under its environments,
//! messages that name the wrong thing, and file modes.

use std::process::Stdio;

use crate::common::{DIGEST, Sandbox, json, ok, operator};
use serde_json::Value;

fn run(sb: &Sandbox, args: &[&str]) -> (Option<i32>, String) {
    let out = sb.host().args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn stage(sb: &Sandbox, id: &str) {
    crate::common::stage(sb, "dev", id);
}

#[test]
fn a_reader_that_goes_away_ends_the_command_quietly() {
    let sb = operator();
    stage(&sb, "R1");
    for args in [
        &["events", "dev", "--json"][..],
        &["status", "dev"],
        &["revision", "warm", "dev", "R1"],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = sb
            .state_env(&mut std::process::Command::new(env!("CARGO_BIN_EXE_host")))
            .args(args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(out.status.code(), Some(101), "{args:?}: {stderr}");
    }
    // The warm was done all the same.
    assert_eq!(
        json(&sb, &["revision", "show", "dev", "R1", "--json"])["lifecycle"],
        "ready"
    );
}

#[test]
fn reinstalling_repairs_a_changed_or_missing_installed_file() {
    let sb = operator();
    stage(&sb, "R1");
    let signed = sb.dir.path().join("ledger.wasm");
    let digest = json(&sb, &["pack", "list", "--json"])[0]["digest"]
        .as_str()
        .unwrap()
        .to_string();
    let installed = sb.state_dir().join("packs").join(format!("{digest}.wasm"));
    let original = std::fs::read(&installed).unwrap();
    for damage in ["flip", "delete"] {
        if damage == "flip" {
            let mut bytes = original.clone();
            bytes[100] ^= 0xff;
            std::fs::write(&installed, bytes).unwrap();
        } else {
            std::fs::remove_file(&installed).unwrap();
        }
        let (code, stderr) = run(&sb, &["revision", "warm", "dev", "R1"]);
        assert_eq!(code, Some(6), "{damage}: {stderr}");
        assert!(
            stderr.contains("pack install"),
            "{damage}: the message says how to repair: {stderr}"
        );
        ok(&sb, &["pack", "install", signed.to_str().unwrap()]);
        assert_eq!(
            std::fs::read(&installed).unwrap(),
            original,
            "{damage}: reinstalling restored the file"
        );
    }
    ok(&sb, &["revision", "warm", "dev", "R1"]);
}

#[test]
fn files_that_are_not_packs_are_said_so_on_one_line() {
    let sb = Sandbox::new();
    let pem = sb.dir.path().join("key.pem");
    std::fs::write(
        &pem,
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    for args in [&["inspect"][..], &["pack", "install"], &["verify"]] {
        let mut all: Vec<&str> = args.to_vec();
        all.push(pem.to_str().unwrap());
        let (code, stderr) = run(&sb, &all);
        assert!(stderr.contains("magic bytes"), "{args:?}: {stderr}");
        let error_lines = stderr.lines().filter(|l| l.starts_with("host: error:")).count();
        assert_eq!(error_lines, 1, "{args:?}: {stderr}");
        assert!(!stderr.contains("0x61"), "no debug dump: {stderr}");
        // `verify` judges signatures (a damaged signed file is tampering, 6); the others, packs (3).
        let expected = if args[0] == "verify" { 6 } else { 3 };
        assert_eq!(code, Some(expected), "{args:?}: {stderr}");
    }
}

#[test]
fn loose_input_is_refused_by_name() {
    let sb = operator();
    stage(&sb, "R1");
    stage(&sb, "R2");
    ok(&sb, &["revision", "warm", "dev", "R1"]);
    ok(&sb, &["revision", "archive", "dev", "R2"]);
    for (args, says) in [
        (vec!["traffic", "set", "dev", "web", "R1=+10000"], "whole number"),
        (
            vec!["traffic", "set", "dev", "web", "R1=10000", "R2=0"],
            "R2 is archived",
        ),
        (
            vec!["revision", "stage", "dev", "web", "--digest", DIGEST, "--location", " "],
            "--location is empty",
        ),
        (
            vec![
                "revision",
                "stage",
                "dev",
                "web",
                "--digest",
                DIGEST,
                "--location",
                "x",
                "--setting",
                "=v",
            ],
            "non-empty KEY",
        ),
        (vec!["revision", "warm", "nosuch", "R1"], "no environment \"nosuch\""),
        (
            vec!["traffic", "rollback", "dev", "nosuch"],
            "has no deployment \"nosuch\"",
        ),
        (
            vec!["audit", "verify", "--head", &format!("0:{}", "a".repeat(64))],
            "is not SEQ:HASH",
        ),
        (
            vec!["audit", "verify", "--head", &format!("+1:{}", "a".repeat(64))],
            "is not SEQ:HASH",
        ),
    ] {
        let (code, stderr) = run(&sb, &args);
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
}

#[test]
fn a_pack_bound_by_an_environment_is_not_removed_from_under_it() {
    let sb = operator();
    let (code, stderr) = run(&sb, &["pack", "remove", "envpack.deployer.ledger@1.0.0"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("bound by environment(s) dev"), "{stderr}");
    assert_eq!(json(&sb, &["pack", "list", "--json"]).as_array().unwrap().len(), 1);
    ok(&sb, &["pack", "remove", "envpack.deployer.ledger@1.0.0", "--force"]);
    assert!(json(&sb, &["pack", "list", "--json"]).as_array().unwrap().is_empty());
}

#[test]
fn hints_name_the_environment_and_state_files_are_private() {
    let sb = operator();
    crate::common::hostile_env(&sb, "qa", "normal");
    crate::common::stage(&sb, "qa", "F1");
    ok(
        &sb,
        &[
            "env",
            "bind",
            "qa",
            "--deployer",
            "envpack.test.hostile@^0.1",
            "--setting",
            "mode=trap",
        ],
    );
    let (code, stderr) = run(&sb, &["revision", "warm", "qa", "F1"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("revision F1 is now failed"), "{stderr}");
    assert!(stderr.contains("host revision retry qa F1"), "{stderr}");
    let mode = |path: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
    };
    // (On PostgreSQL neither file exists: the records and locks are the server's.)
    if sb.database.is_none() {
        assert_eq!(mode(&sb.state_dir().join("state.db")), 0o600);
        for lock in std::fs::read_dir(sb.state_dir().join("locks")).unwrap() {
            assert_eq!(mode(&lock.unwrap().path()), 0o600);
        }
    }
    let status: Value = json(&sb, &["status", "qa", "--json"]);
    assert_eq!(status["revisions"][0]["lifecycle"], "failed");
}

#[test]
fn either_allocator_runs_the_same_commands_and_a_bad_one_is_named() {
    let sb = operator();
    stage(&sb, "R1");
    stage(&sb, "R2");
    ok(&sb, &["--allocator", "pooling", "revision", "warm", "dev", "R1"]);
    ok(&sb, &["--allocator", "on-demand", "revision", "warm", "dev", "R2"]);
    ok(
        &sb,
        &[
            "--allocator",
            "pooling",
            "traffic",
            "set",
            "dev",
            "web",
            "R1=9000",
            "R2=1000",
        ],
    );
    let out = sb
        .host()
        .env("ENVPACK_ALLOCATOR", "pooling")
        .args(["traffic", "set", "dev", "web", "R1=10000", "R2=0"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let split = json(&sb, &["traffic", "show", "dev", "--json"]);
    assert_eq!(split.to_string().matches("10000").count(), 1, "{split}");
    let (code, stderr) = run(&sb, &["--allocator", "huge", "status", "dev"]);
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("huge") && stderr.contains("on-demand") && stderr.contains("pooling"),
        "{stderr}"
    );
}

#[test]
fn timings_name_each_phase_of_a_command_in_order() {
    let sb = operator();
    stage(&sb, "R1");
    let file = sb.dir.path().join("timings.jsonl");
    for args in [&["revision", "warm", "dev", "R1"][..], &["status", "dev"]] {
        let out = sb.host().env("ENVPACK_TIMINGS", &file).args(args).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2, "{text}");
    let names = |line: &Value| -> Vec<String> {
        line["marks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m[0].as_str().unwrap().to_string())
            .collect()
    };
    let warm = names(&lines[0]);
    for phase in [
        "args",
        "engine",
        "state-open",
        "verify",
        "cache",
        "describe",
        "load",
        "verb",
        "commit",
        "command",
        "teardown",
    ] {
        assert!(warm.iter().any(|n| n == phase), "{phase} missing from {warm:?}");
    }
    let at = |line: &Value| -> Vec<u64> {
        line["marks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m[1].as_u64().unwrap())
            .collect()
    };
    assert!(at(&lines[0]).windows(2).all(|w| w[0] <= w[1]), "{text}");
    assert_eq!(names(&lines[1]), ["args", "state-open", "command", "teardown"]);
    // Off unless asked for: a command without the variable adds nothing.
    ok(&sb, &["status", "dev"]);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}
