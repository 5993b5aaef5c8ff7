//! `host inspect`: what a pack says it is, and clear refusals for files that
//! are not packs.

use crate::common::{LEDGER, Sandbox};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use serde_json::Value;

#[test]
fn inspect_json_reports_descriptor_capabilities_and_wit() {
    let sb = Sandbox::new();
    let out = sb.host().args(["inspect", LEDGER, "--json"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["descriptor"], "envpack.deployer.ledger@1.0.0");
    assert_eq!(v["contract_version"], "1.1.0");
    assert_eq!(v["capabilities"], serde_json::json!(["log", "kv"]));
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
    let imports: Vec<&str> = v["imports"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(imports.contains(&"envpack:deployer/kv@1.1.0"), "{imports:?}");
    assert!(imports.contains(&"envpack:deployer/environment@1.1.0"), "{imports:?}");
    assert_eq!(v["exports"], serde_json::json!(["envpack:deployer/deployer@1.1.0"]));
}

#[test]
fn inspect_text_names_the_pack() {
    Sandbox::new()
        .host()
        .args(["inspect", LEDGER])
        .assert()
        .success()
        .stdout(contains("envpack.deployer.ledger@1.0.0"))
        .stdout(contains("capabilities log, kv"));
}

#[test]
fn missing_file_is_bad_input_with_a_hint() {
    Sandbox::new()
        .host()
        .args(["inspect", "no/such/pack.wasm"])
        .assert()
        .code(2)
        .stderr(contains("cannot read pack no/such/pack.wasm"))
        .stderr(contains("hint:"));
}

#[test]
fn a_core_module_is_not_a_pack() {
    let sb = Sandbox::new();
    let path = sb.dir.path().join("core.wasm");
    // The smallest valid core module: magic and version, no sections.
    std::fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    sb.host()
        .arg("inspect")
        .arg(&path)
        .assert()
        .code(3)
        .stderr(contains("is not a WebAssembly component"));
}

#[test]
fn garbage_is_not_a_pack() {
    let sb = Sandbox::new();
    let path = sb.dir.path().join("junk.wasm");
    std::fs::write(&path, b"definitely not wasm").unwrap();
    sb.host()
        .arg("inspect")
        .arg(&path)
        .assert()
        .code(3)
        .stderr(contains("host: error:"));
}

#[test]
fn a_memory_budget_too_small_for_the_pack_says_so() {
    let sb = Sandbox::new();
    sb.host()
        .args(["--memory-mib", "1", "inspect", LEDGER])
        .assert()
        .code(3)
        .stderr(contains("needs more memory than the budget of 1048576 bytes"))
        .stderr(contains("raise --memory-mib"))
        .stderr(contains("not a WebAssembly component").not());
}

#[test]
fn a_budget_too_small_is_named_the_same_on_either_allocator() {
    let sb = Sandbox::new();
    for allocator in ["on-demand", "pooling"] {
        sb.host()
            .args(["--allocator", allocator, "--memory-mib", "1", "inspect", LEDGER])
            .assert()
            .code(3)
            .stderr(contains("needs more memory than the budget of 1048576 bytes"))
            .stderr(contains("raise --memory-mib"));
    }
}
