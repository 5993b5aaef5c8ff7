//! `host bench --quick --json` as a smoke run: every figure is present and
//! positive. Speed targets are benchmark goals, never asserted here.

use crate::common::{LEDGER, Sandbox};
use serde_json::Value;

#[test]
fn quick_bench_reports_every_figure() {
    let sb = Sandbox::new();
    let out = sb
        .host()
        .args(["bench", "--quick", "--json", "--pack", LEDGER])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(report["machine"]["cores"].as_u64().unwrap() >= 1);
    let figures = report["figures"].as_array().unwrap();
    let mut expected = vec![
        "load.cold".to_string(),
        "load.warm".to_string(),
        "instantiate".to_string(),
        "instantiate.wasmtime".to_string(),
        "instantiate.exports".to_string(),
        "instantiate.with-store".to_string(),
        "instantiate.on-demand".to_string(),
        "instantiate.on-demand.wasmtime".to_string(),
        "instantiate.on-demand.exports".to_string(),
        "instantiate.on-demand.with-store".to_string(),
        "throughput.verbs_per_second".to_string(),
        "throughput.one-task".to_string(),
        "machine.effective-cores".to_string(),
        "conformance.extended".to_string(),
        "memory.per_live_instance_rss".to_string(),
        "memory.linear_per_instance".to_string(),
        "memory.peak_rss".to_string(),
        "floor.sqlite-commit".to_string(),
        "floor.process-start".to_string(),
        "install.reference".to_string(),
    ];
    let verbs = [
        "stage-revision",
        "warm-revision",
        "drain-revision",
        "archive-revision",
        "apply-traffic-split",
        "report-runtime-config",
        "probe-revision",
    ];
    for size in [10, 1000, 10000] {
        for verb in verbs {
            expected.push(format!("verb.{verb}.{size}"));
            expected.push(format!("native.{verb}.{size}"));
        }
    }
    for name in &expected {
        let figure = figures
            .iter()
            .find(|f| f["name"] == name.as_str())
            .unwrap_or_else(|| panic!("figure {name} missing"));
        for stat in ["median", "p99"] {
            assert!(
                figure[stat].as_f64().unwrap() > 0.0,
                "{name} {stat} is not positive: {figure}"
            );
        }
    }
    assert_eq!(figures.len(), expected.len(), "unexpected figures");
    assert_eq!(report["ratios"].as_array().unwrap().len(), 21);
    // Every target is reported; the interpreter pack and the local-process
    // install were not asked for in a quick run: reported as not measured.
    let targets = report["targets"].as_array().unwrap();
    let names: Vec<&str> = targets.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "cli.traffic-set",
            "cli.traffic-set/version",
            "cli.status",
            "cli.interpreter",
            "verb.host-overhead",
            "instantiate",
            "load.warm",
            "cache.speedup",
            "throughput",
            "verb.growth.10000",
            "conformance.extended",
            "install.local-process",
            "install.interpreter"
        ]
    );
    for name in ["cli.interpreter", "install.local-process", "install.interpreter"] {
        let target = targets.iter().find(|t| t["name"] == name).unwrap();
        assert_eq!(target["met"], false, "{target}");
        assert!(
            target["floor"].as_str().unwrap().starts_with("not measured"),
            "{target}"
        );
    }
    let skipped = report["skipped"].as_array().unwrap();
    assert_eq!(skipped.len(), 3, "{}", report["skipped"]);
    assert!(
        skipped
            .iter()
            .any(|s| s.as_str().unwrap().starts_with("commands on PostgreSQL")),
        "{}",
        report["skipped"]
    );

    // Each verb's phases, against a bare wasmtime call of the same export.
    let breakdown = report["breakdown"].as_array().unwrap();
    assert_eq!(breakdown.len(), verbs.len());
    for row in breakdown {
        let phases: Vec<&str> = row["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["phase"].as_str().unwrap())
            .collect();
        assert_eq!(
            phases,
            [
                "preconditions",
                "state",
                "instantiate",
                "lend",
                "guest",
                "teardown",
                "recording",
                "outcome",
                "settle"
            ]
        );
        for stat in ["full_us", "bare_us"] {
            assert!(row[stat].as_f64().unwrap() > 0.0, "{row}");
        }
        let guest = row["phases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["phase"] == "guest")
            .unwrap();
        assert!(guest["median_us"].as_f64().unwrap() > 0.0, "{row}");
    }

    // Whole commands through the real binary, with the phases each one marked.
    let commands = report["commands"].as_array().unwrap();
    let command = |name: &str| {
        commands
            .iter()
            .find(|c| c["command"] == name && c["build"] == "this")
            .unwrap_or_else(|| panic!("command {name} missing: {commands:?}"))
    };
    let names = |c: &Value| -> Vec<String> {
        c["phases"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["phase"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(command("version")["total_median_us"].as_f64().unwrap() > 0.0);
    assert_eq!(
        names(command("status")),
        ["exec", "args", "state-open", "command", "teardown", "exit"]
    );
    for name in ["traffic-set", "traffic-set-pooling"] {
        assert_eq!(
            names(command(name)),
            [
                "exec",
                "args",
                "state-open",
                "engine",
                "verify",
                "cache",
                "link",
                "describe",
                "load",
                "verb",
                "commit",
                "command",
                "teardown",
                "exit"
            ],
            "{name}"
        );
        assert!(command(name)["total_median_us"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_without_a_pack_says_how_to_build_one() {
    let sb = Sandbox::new();
    sb.host()
        .args(["bench", "--quick", "--pack", "no/such.wasm"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no pack at no/such.wasm"));
}

#[test]
fn bench_measures_any_pack_with_its_own_environment() {
    // An unsealed pack that is not the reference: sealed with what its
    // describe says, run in environments granting what it declares.
    let sb = Sandbox::new();
    let out = sb
        .host()
        .args([
            "bench",
            "--quick",
            "--json",
            "--no-commands",
            "--setting",
            "region=bench",
            "--pack",
            envpack_test_packs::INDIE_STATELESS,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let figures = report["figures"].as_array().unwrap();
    let has = |name: &str| figures.iter().any(|f| f["name"] == name);
    assert!(has("verb.apply-traffic-split.10000") && has("load.warm"), "{figures:?}");
    // No native comparison for a pack that is not the reference.
    assert!(
        !figures
            .iter()
            .any(|f| f["name"].as_str().unwrap().starts_with("native."))
    );
    assert!(report["ratios"].as_array().unwrap().is_empty());
    assert_eq!(report["breakdown"].as_array().unwrap().len(), 7);
}
