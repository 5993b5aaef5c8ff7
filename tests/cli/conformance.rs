//! `host conformance` and admission on `host pack install`, through the real
//! binary: every report format, one report per pack, and exit codes.

use crate::common::{LEDGER, Sandbox};
use envpack_test_packs::FAULTY;
use predicates::str::contains;
use serde_json::Value;

#[test]
fn reference_passes_and_faulty_packs_fail_in_json_one_report_each() {
    let sb = Sandbox::new();
    // Every faulty pack's own checks are conformance/tests/corpus.rs's job;
    // here, the command's report shape over a few of them.
    let faulty: Vec<&(&str, &str)> = FAULTY.iter().take(3).collect();
    let mut cmd = sb.host();
    cmd.args(["conformance", "--format", "json", "--cases", "4", "--seed", "9", LEDGER]);
    for (_, path) in &faulty {
        cmd.arg(path);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 1 + faulty.len(), "one report per pack");
    assert_eq!(reports[0]["descriptor"], "envpack.deployer.ledger@1.0.0");
    assert_eq!(reports[0]["summary"]["failed"], 0, "{:#}", reports[0]);
    for (report, (fault, _)) in reports[1..].iter().zip(faulty) {
        assert_eq!(report["descriptor"], format!("envpack.faulty.{fault}@1.0.0"));
        assert_eq!(report["seed"], 9, "{fault}: the seed given is the seed reported");
        let failed: Vec<&Value> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .collect();
        assert!(!failed.is_empty(), "{fault}: {report:#}");
        for check in failed {
            assert!(!check["message"].as_str().unwrap().is_empty(), "{check}");
            assert!(
                !check["wit"].as_str().unwrap().is_empty(),
                "every check quotes the contract: {check}"
            );
        }
    }
}

#[test]
fn admission_judges_a_packs_work_by_the_operators_deadline() {
    let sb = author_trusted();
    // This pack does 1.4 s of work (in fuel: the same on a busy machine)
    // draining a revision with a long drain time.
    let (_, slow) = FAULTY.iter().find(|(f, _)| *f == "too-slow").unwrap();
    let pack = sealed(&sb, slow, "envpack.faulty.too-slow@1.0.0", "slow");
    // An operator whose verbs get 1 s: the pack cannot drain in time there.
    sb.host()
        .args(["--deadline-ms", "1000", "pack", "install", &pack, "--cases", "2"])
        .assert()
        .code(1)
        .stderr(contains("drain-revision"))
        .stderr(contains("ran past its deadline of 1000 ms"))
        .stderr(contains("was not installed: conformance failed (verbs.happy-path"));
    // With the default 2 s it drains in time (budgets are `extended`'s concern).
    sb.host()
        .args(["pack", "install", &pack, "--cases", "2"])
        .assert()
        .success();
}

#[test]
fn junit_goes_to_a_file_with_a_suite_per_pack() {
    let sb = Sandbox::new();
    let out_file = sb.dir.path().join("conformance.xml");
    sb.host()
        .args(["conformance", "--format", "junit", "--out"])
        .arg(&out_file)
        .args([LEDGER, FAULTY[0].1])
        .assert()
        .code(1);
    let xml = std::fs::read_to_string(&out_file).unwrap();
    assert_eq!(xml.matches("<testsuite ").count(), 2, "{xml}");
    // spec.unknown-revision, and spec.typed-errors: the 600-byte unknown id
    // overflows the pack's kv key, a provider error, not revision-not-found.
    assert_eq!(xml.matches("<failure").count(), 2, "{xml}");
    assert!(xml.contains("name=\"spec.unknown-revision\""), "{xml}");
}

#[test]
fn human_output_explains_a_failure() {
    let sb = Sandbox::new();
    let (_, sibling) = FAULTY.iter().find(|(f, _)| *f == "touches-sibling").unwrap();
    sb.host()
        .args(["conformance", sibling])
        .assert()
        .code(1)
        .stdout(contains("FAIL split.isolation"))
        .stdout(contains("changed kv keys {\"split/api\", \"split/web\"}"))
        .stdout(contains(
            "the contract: A verb acts on the named revision or deployment only",
        ))
        .stderr(contains("1 of 1 packs failed conformance"));
    sb.host()
        .args(["conformance", LEDGER])
        .assert()
        .success()
        .stdout(contains("0 failed"));
}

#[test]
fn a_file_that_is_not_a_pack_gets_a_failing_report() {
    let sb = Sandbox::new();
    let junk = sb.dir.path().join("junk.wasm");
    std::fs::write(&junk, b"junk").unwrap();
    sb.host()
        .arg("conformance")
        .arg(&junk)
        .assert()
        .code(1)
        .stdout(contains("FAIL describe.valid"));
    sb.host()
        .args(["conformance", "--profile", "strict", LEDGER])
        .assert()
        .code(2)
        .stderr(contains("unknown profile"));
    // A path that names no file is a usage error that names the path.
    let missing = sb.dir.path().join("no-such-pack.wasm");
    sb.host()
        .arg("conformance")
        .arg(&missing)
        .assert()
        .code(2)
        .stderr(contains("no-such-pack.wasm"));
}

/// A sandbox with a key of its own, trusted as `author`.
fn author_trusted() -> Sandbox {
    let sb = Sandbox::new();
    let key = sb.dir.path().join("key");
    sb.host().arg("keygen").arg("--out").arg(&key).assert().success();
    sb.host()
        .args(["trust", "add"])
        .arg(key.with_extension("pub"))
        .args(["--name", "author", "--scope", "envpack.*"])
        .assert()
        .success();
    sb
}

/// Seals and signs a pack with a manifest matching its describe.
fn sealed(sb: &Sandbox, path: &str, descriptor: &str, name: &str) -> String {
    let toml = sb.dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &toml,
        format!("descriptor = \"{descriptor}\"\ncontract_version = \"1.1.0\"\ncapabilities = [\"log\", \"kv\"]\nauthor = \"t\"\n"),
    )
    .unwrap();
    let out = sb.dir.path().join(format!("{name}.wasm"));
    sb.host()
        .args(["pack", "seal", path, "--manifest"])
        .arg(&toml)
        .arg("-o")
        .arg(&out)
        .assert()
        .success();
    sb.host()
        .arg("sign")
        .arg(&out)
        .arg("--key")
        .arg(sb.dir.path().join("key"))
        .assert()
        .success();
    out.display().to_string()
}

#[test]
fn install_admits_conformant_packs_and_refuses_others_unless_forced() {
    let sb = author_trusted();

    let good = sealed(&sb, LEDGER, "envpack.deployer.ledger@1.0.0", "good");
    sb.host()
        .args(["pack", "install", &good])
        .assert()
        .success()
        .stdout(contains("0 failed"));

    let (_, echo) = FAULTY.iter().find(|(f, _)| *f == "echoes-wrong-deployment").unwrap();
    let bad = sealed(&sb, echo, "envpack.faulty.echoes-wrong-deployment@1.0.0", "bad");
    let refused = sb
        .host()
        .args(["pack", "install", &bad])
        .assert()
        .code(1)
        .stderr(contains("FAIL verbs.echo"))
        .stderr(contains("was not installed: conformance failed (verbs.echo"));
    let forced = sb.host().args(["pack", "install", "--force", &bad]).assert().success();
    // The same pack is judged on the same generated cases every time.
    let seed = |out: &std::process::Output| {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let at = text.find("generated cases: seed ").expect("the report names its seed");
        text[at..].split(')').next().unwrap_or_default().to_string()
    };
    assert_eq!(seed(refused.get_output()), seed(forced.get_output()));

    let list = sb.host().args(["pack", "list", "--json"]).output().unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let forced = entries.iter().find(|e| e["forced"] == true).unwrap();
    assert_eq!(forced["descriptor"], "envpack.faulty.echoes-wrong-deployment@1.0.0");
    // verbs.echo, and model.sequences (every generated apply echoes too).
    assert_eq!(forced["conformance"]["failed"], 2);
    let admitted = entries.iter().find(|e| e["forced"] == false).unwrap();
    assert_eq!(admitted["conformance"]["failed"], 0);
    sb.host()
        .args(["pack", "list"])
        .assert()
        .success()
        .stdout(contains("FORCED"));
}

#[test]
fn a_dry_install_calls_no_verb_and_is_listed_as_dry() {
    let sb = author_trusted();
    let pack = sealed(&sb, LEDGER, "envpack.deployer.ledger@1.0.0", "dry");
    sb.host()
        .args(["pack", "install", "--dry", &pack])
        .assert()
        .success()
        .stdout(contains(
            "conformance core (dry: only the checks that call no verb ran)",
        ));
    let list = sb.host().args(["pack", "list", "--json"]).output().unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(list[0]["dry_admission"], true, "{list}");
    // Only describe and the manifest were judged; every verb check skipped.
    assert_eq!(list[0]["conformance"]["passed"], 2, "{list}");
    sb.host()
        .args(["pack", "list"])
        .assert()
        .success()
        .stdout(contains("dry: no verb called"));
    // The stored report says which checks were skipped, and why.
    let reports: Vec<_> = std::fs::read_dir(sb.state_dir().join("packs"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".report.json"))
        .collect();
    let report: Value = serde_json::from_slice(&std::fs::read(&reports[0]).unwrap()).unwrap();
    assert_eq!(report["dry"], true);
    let happy = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == "verbs.happy-path")
        .unwrap();
    assert_eq!(happy["status"], "skip");
    assert!(happy["message"].as_str().unwrap().contains("dry run"), "{happy}");
}
