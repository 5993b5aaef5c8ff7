//! Snapshots of what users read: every command's `--help`, the conformance
//! reports in their three formats, and the exit code and first error line
//! of a fixed set of inputs. Taken before the library was split into
//! crates, they hold its observable behaviour still; a change here is a
//! change users see, reviewed in the snapshot's diff (`cargo insta review`,
//! or `INSTA_UPDATE=always` and `git diff`).

use std::path::Path;

use crate::common::{LEDGER, Sandbox, ok, p};
use envpack_test_packs::FAULTY;

/// Every command path, found by walking `--help`'s "Commands:" sections
/// (so a new command is snapshotted without editing this list).
fn command_paths(sb: &Sandbox) -> Vec<Vec<String>> {
    let mut found = vec![Vec::new()];
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let out = sb.host().args(&path).arg("--help").output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let mut in_commands = false;
        for line in text.lines() {
            if line.starts_with("Commands:") {
                in_commands = true;
                continue;
            }
            if in_commands {
                if !line.starts_with("  ") {
                    in_commands = false;
                    continue;
                }
                if line.starts_with("   ") {
                    continue; // a wrapped description
                }
                let Some(name) = line.split_whitespace().next() else {
                    continue;
                };
                if name == "help" {
                    continue;
                }
                let mut child = path.clone();
                child.push(name.to_string());
                found.push(child.clone());
                todo.push(child);
            }
        }
    }
    found.sort();
    found
}

#[test]
fn every_commands_help() {
    let sb = Sandbox::new();
    let paths = command_paths(&sb);
    assert!(paths.len() > 40, "the walk found only {} commands", paths.len());
    let mut all = String::new();
    for path in paths {
        // As a user with nothing set sees it: clap shows an option's
        // environment variable with its value when it is set.
        let out = sb
            .host()
            .env_remove("ENVPACK_STATE_DIR")
            .env_remove("ENVPACK_DEPLOY_KEY")
            .env_remove("ENVPACK_ACTOR")
            .env("COLUMNS", "100")
            .args(&path)
            .arg("--help")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "host {} --help", path.join(" "));
        all.push_str(&format!("==== host {} --help\n", path.join(" ")));
        all.push_str(&String::from_utf8_lossy(&out.stdout));
    }
    insta::assert_snapshot!("help", all);
}

/// Filters that make a report independent of the machine and the run:
/// timings and the temporary paths of packs.
fn settings() -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    let target = Path::new(LEDGER).parent().unwrap().display().to_string();
    settings.add_filter(&regex_escape(&target), "[PACKS]");
    settings.add_filter(r"conformance-[0-9a-f]{8}-", "conformance-[NONCE]-");
    settings.add_filter(r"in \d+ ms", "in [MS] ms");
    settings.add_filter(r#""elapsed_ms": [0-9.e+-]+"#, r#""elapsed_ms": "[MS]""#);
    settings.add_filter(r#""(in_pack|slept)_ms": [0-9.e+-]+"#, r#""${1}_ms": "[MS]""#);
    settings.add_filter(r#"time="[0-9.]+""#, r#"time="[S]""#);
    settings.add_filter(r#"timestamp="[^"]+""#, r#"timestamp="[T]""#);
    settings.add_filter(r"\d+(\.\d+)? ms", "[N] ms");
    settings.add_filter(r"\d+ fuel", "[N] fuel");
    settings
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// `text` with every run of 64 hex digits written as `[KEYID]`.
fn hex_ids(text: &str) -> String {
    let mut out = String::new();
    let mut run = String::new();
    for c in text.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_hexdigit() {
            run.push(c);
            continue;
        }
        if run.len() == 64 {
            out.push_str("[KEYID]");
        } else {
            out.push_str(&run);
        }
        run.clear();
        out.push(c);
    }
    out.pop();
    out
}

fn fault(name: &str) -> &'static str {
    FAULTY.iter().find(|(f, _)| *f == name).map(|(_, p)| *p).unwrap()
}

#[test]
fn conformance_reports_in_every_format() {
    let sb = Sandbox::new();
    let packs = [
        LEDGER,
        fault("echoes-wrong-deployment"),
        fault("writes-before-rejecting"),
    ];
    let _guard = settings().bind_to_scope();
    for format in ["human", "json", "junit"] {
        let out = sb
            .host()
            .args(["conformance", "--format", format, "--seed", "5", "--cases", "3"])
            .args(packs)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        insta::assert_snapshot!(
            format!("conformance_{format}"),
            String::from_utf8_lossy(&out.stdout).into_owned()
        );
    }
}

/// (what is tried, the arguments): each gets its exit code and the first
/// line it wrote to stderr in one snapshot.
#[test]
fn exit_codes_of_a_fixed_set_of_inputs() {
    let sb = crate::common::operator();
    let dir = sb.dir.path();
    let text_file = dir.join("not-a-pack.txt");
    std::fs::write(&text_file, "hello\n").unwrap();
    let bad_json = dir.join("bad.json");
    std::fs::write(&bad_json, "{ nope").unwrap();
    let env = sb.env_file("dev", &crate::common::fixture(serde_json::json!({})));
    let tampered = dir.join("tampered.wasm");
    let mut bytes = std::fs::read(dir.join("ledger.wasm")).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(&tampered, bytes).unwrap();
    let unsigned = dir.join("unsigned.wasm");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/ledger/pack.toml");
    ok(
        &sb,
        &["pack", "seal", LEDGER, "--manifest", &p(&manifest), "-o", &p(&unsigned)],
    );
    crate::common::stage(&sb, "dev", crate::common::A1);
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("no arguments", vec![]),
        ("unknown command", vec!["frobnicate".into()]),
        (
            "missing pack file",
            vec!["inspect".into(), p(&dir.join("missing.wasm"))],
        ),
        ("a text file as a pack", vec!["inspect".into(), p(&text_file)]),
        (
            "malformed environment JSON",
            vec![
                "call".into(),
                LEDGER.into(),
                "stage-revision".into(),
                "--env".into(),
                p(&bad_json),
                "--revision".into(),
                "r1".into(),
            ],
        ),
        (
            "unknown verb",
            vec!["call".into(), LEDGER.into(), "explode".into(), "--env".into(), p(&env)],
        ),
        (
            "unknown revision",
            vec![
                "call".into(),
                LEDGER.into(),
                "warm-revision".into(),
                "--env".into(),
                p(&env),
                "--revision".into(),
                "nope".into(),
            ],
        ),
        ("verify an unsigned pack", vec!["verify".into(), p(&unsigned)]),
        ("verify a tampered pack", vec!["verify".into(), p(&tampered)]),
        (
            "install an unsigned pack",
            vec!["pack".into(), "install".into(), p(&unsigned)],
        ),
        ("unknown environment", vec!["status".into(), "nowhere".into()]),
        (
            "environment exists",
            vec![
                "env".into(),
                "create".into(),
                "dev".into(),
                "--deployer".into(),
                "envpack.deployer.ledger@^1".into(),
            ],
        ),
        (
            "unknown requirement",
            vec!["pack".into(), "resolve".into(), "envpack.deployer.nothing@^1".into()],
        ),
        (
            "bad weights",
            vec![
                "traffic".into(),
                "set".into(),
                "dev".into(),
                "web".into(),
                format!("{}=9000", crate::common::A1),
            ],
        ),
        (
            "weight on a revision that is not ready",
            vec![
                "traffic".into(),
                "set".into(),
                "dev".into(),
                "web".into(),
                format!("{}=10000", crate::common::A1),
            ],
        ),
        (
            "a transition the lifecycle refuses",
            vec![
                "revision".into(),
                "drain".into(),
                "dev".into(),
                crate::common::A1.into(),
            ],
        ),
        (
            "unknown revision in the store",
            vec!["revision".into(), "show".into(), "dev".into(), "nope".into()],
        ),
        (
            "bad deadline",
            vec!["--deadline-ms".into(), "0".into(), "env".into(), "list".into()],
        ),
        (
            "audit verify with a bad head",
            vec!["audit".into(), "verify".into(), "--head".into(), "x".into()],
        ),
        (
            "trust revoke of an unknown key",
            vec!["trust".into(), "revoke".into(), "nobody".into()],
        ),
        (
            "warm a staged revision",
            vec!["revision".into(), "warm".into(), "dev".into(), crate::common::A1.into()],
        ),
        (
            "a new pack with a bad name",
            vec!["new".into(), "Bad Name".into(), "--lang".into(), "python".into()],
        ),
        (
            "install from a registry reference without a tag",
            vec!["pack".into(), "install".into(), "oci://127.0.0.1:1/packs/ledger".into()],
        ),
        (
            "push an unsigned pack",
            vec![
                "pack".into(),
                "push".into(),
                p(&unsigned),
                "oci://127.0.0.1:1/packs/ledger:1".into(),
            ],
        ),
    ];
    let state = p(&sb.state_dir());
    let sandbox = p(dir);
    let mut all = String::new();
    for (what, args) in cases {
        let out = sb.host().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or("").replace(&state, "[STATE]");
        let first = first.replace(&sandbox, "[SANDBOX]");
        // Key ids are the sha256 of a key made afresh by each run.
        let first = hex_ids(&first);
        let first = first.replace(Path::new(LEDGER).parent().unwrap().to_str().unwrap(), "[PACKS]");
        all.push_str(&format!("{what}: exit {:?}\n    {first}\n", out.status.code()));
    }
    insta::assert_snapshot!("exit_codes", all);
}
