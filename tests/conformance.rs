//! `host conformance` and admission on `host pack install`, through the real
//! binary: every report format, one report per pack, and exit codes.

mod common;

use common::{LEDGER, Sandbox};
use envpack_test_packs::FAULTY;
use predicates::str::contains;
use serde_json::Value;

#[test]
fn reference_passes_and_every_faulty_pack_fails_in_json() {
    let sb = Sandbox::new();
    let mut cmd = sb.host();
    cmd.args(["conformance", "--profile", "extended", "--format", "json", LEDGER]);
    for (_, path) in FAULTY {
        cmd.arg(path);
    }
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let reports: Value = serde_json::from_slice(&out.stdout).unwrap();
    let reports = reports.as_array().unwrap();
    assert_eq!(reports.len(), 1 + FAULTY.len(), "one report per pack");
    assert_eq!(reports[0]["descriptor"], "envpack.deployer.ledger@1.0.0");
    assert_eq!(reports[0]["summary"]["failed"], 0, "{:#}", reports[0]);
    for (report, (fault, _)) in reports[1..].iter().zip(FAULTY) {
        // touches-sibling also makes the pack's report drift (conformance/tests/faulty.rs).
        let expected = if *fault == "touches-sibling" { 2 } else { 1 };
        assert_eq!(report["summary"]["failed"], expected, "{fault}: {report:#}");
        assert_eq!(report["descriptor"], format!("envpack.faulty.{fault}@1.0.0"));
        let failed: Vec<&Value> = report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["status"] == "fail")
            .collect();
        assert!(!failed[0]["message"].as_str().unwrap().is_empty());
    }
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
    assert_eq!(xml.matches("<failure").count(), 1, "{xml}");
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
        .stdout(contains("called kv.delete \"split/api\""))
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
    let sb = Sandbox::new();
    let key = sb.dir.path().join("key");
    sb.host().arg("keygen").arg("--out").arg(&key).assert().success();
    sb.host()
        .args(["trust", "add"])
        .arg(key.with_extension("pub"))
        .args(["--name", "author"])
        .assert()
        .success();

    let good = sealed(&sb, LEDGER, "envpack.deployer.ledger@1.0.0", "good");
    sb.host()
        .args(["pack", "install", &good])
        .assert()
        .success()
        .stdout(contains("0 failed"));

    let (_, echo) = FAULTY.iter().find(|(f, _)| *f == "echoes-wrong-deployment").unwrap();
    let bad = sealed(&sb, echo, "envpack.faulty.echoes-wrong-deployment@1.0.0", "bad");
    sb.host()
        .args(["pack", "install", &bad])
        .assert()
        .code(1)
        .stderr(contains("FAIL verbs.echo"))
        .stderr(contains("was not installed: conformance failed (verbs.echo)"));
    sb.host().args(["pack", "install", "--force", &bad]).assert().success();

    let list = sb.host().args(["pack", "list", "--json"]).output().unwrap();
    let list: Value = serde_json::from_slice(&list.stdout).unwrap();
    let entries = list.as_array().unwrap();
    assert_eq!(entries.len(), 2);
    let forced = entries.iter().find(|e| e["forced"] == true).unwrap();
    assert_eq!(forced["descriptor"], "envpack.faulty.echoes-wrong-deployment@1.0.0");
    assert_eq!(forced["conformance"]["failed"], 1);
    let admitted = entries.iter().find(|e| e["forced"] == false).unwrap();
    assert_eq!(admitted["conformance"]["failed"], 0);
    sb.host()
        .args(["pack", "list"])
        .assert()
        .success()
        .stdout(contains("FORCED"));
}
