//! Who may move traffic while and around rollouts: manual traffic refused
//! during a rollout unless forced (and recorded), bad rollouts refused
//! before anything is recorded, deploy keys, and rollouts of several
//! environments side by side.

use std::process::Child;

use crate::common::rollout::*;
use crate::common::{json, ok, operator, spawn};
use predicates::prelude::PredicateBooleanExt;
use predicates::str::contains;
use serde_json::{Value, json as j};

#[test]
fn manual_traffic_is_refused_during_a_rollout_unless_forced_and_recorded() {
    let sb = serving_r1();
    run_rollout(&sb, "dev web --to R2 --no-drive");
    sb.host()
        .args(["traffic", "set", "dev", "web", "R1=10000"])
        .assert()
        .code(2)
        .stderr(contains("has rollout").and(contains("--force")));
    sb.host()
        .args(["traffic", "rollback", "dev", "web"])
        .assert()
        .code(2)
        .stderr(contains("has rollout"));
    // A second rollout of the same deployment is refused too.
    sb.host()
        .args(["rollout", "start", "dev", "web", "--to", "R2"])
        .assert()
        .code(2)
        .stderr(contains("already has rollout"));
    let id = rollout(&sb)["id"].as_str().unwrap().to_string();
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000", "--force"]);
    let audit = audit_commands(&sb);
    let forced = audit.iter().rev().find(|(c, _, _)| c == "traffic set").unwrap();
    let args: Value = serde_json::from_str(&forced.1).unwrap();
    assert_eq!(args["forced_during_rollout"], j!(id));
    // The forced split paused the rollout, so its next step does not
    // overwrite it; promote drives it on from there.
    let paused = rollout(&sb);
    assert_eq!(paused["state"], "paused", "{paused:#}");
    assert!(
        paused["reason"].as_str().unwrap().contains("traffic set --force"),
        "{paused:#}"
    );
    let out = ok(&sb, &["rollout", "promote", "dev", "web"]);
    assert!(
        out.contains("succeeded"),
        "promote drives a rollout no one drives: {out}"
    );
    assert_eq!(generations(&sb).last().unwrap(), "R2=10000");
}

#[test]
fn bad_rollouts_are_refused_before_anything_is_recorded() {
    let sb = serving_r1();
    let refused = |args: &[&str], message: &str| {
        let mut all = vec!["rollout", "start", "dev", "web"];
        all.extend(args);
        sb.host().args(&all).assert().code(2).stderr(contains(message));
    };
    refused(&["--to", "R2", "--steps", "10,50"], "must end at 100");
    refused(&["--to", "R2", "--steps", "50,10,100"], "rise strictly");
    refused(&["--to", "R2", "--soak", "soon"], "not a duration");
    refused(&["--to", "R2", "--analysis", "latency=5"], "unknown gate");
    refused(
        &["--to", "R2", "--analysis", "http=http://example.com/"],
        "--allow-http http://example.com:80",
    );
    refused(
        &["--to", "R2", "--analysis", "command=true"],
        "--allow-run 'true PATTERN...'",
    );
    refused(&["--to", "R1"], "already has all of web's traffic");
    refused(&["--to", "NOPE"], "no revision \"NOPE\"");
    assert_eq!(json(&sb, &["rollout", "status", "dev", "--json"]), j!([]));
    assert_eq!(generations(&sb), ["R1=10000"]);
}

/// An environment that trusts a deploy key: only commands signed with it
/// move its traffic or rebind it, and the audit log names the key.
#[test]
fn a_prod_environment_moves_traffic_only_for_its_deploy_key_holders() {
    let sb = operator();
    let deploy = sb.dir.path().join("deploy");
    ok(&sb, &["keygen", "--out", &crate::common::p(&deploy)]);
    let trusted = format!("ops={}", crate::common::p(&deploy.with_extension("pub")));
    ok(
        &sb,
        &[
            "env",
            "create",
            "prod",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv",
            "--trust-deploy-key",
            &trusted,
        ],
    );
    for id in ["P1", "P2"] {
        crate::common::stage(&sb, "prod", id);
        ok(&sb, &["revision", "warm", "prod", id]);
    }
    let refused = |args: &[&str], message: &str| {
        sb.host().args(args).assert().code(6).stderr(contains(message));
    };
    refused(
        &["traffic", "set", "prod", "web", "P1=10000"],
        "it trusts deploy keys [ops]",
    );
    let stranger = crate::common::p(&sb.dir.path().join("key"));
    refused(
        &["traffic", "set", "prod", "web", "P1=10000", "--deploy-key", &stranger],
        "is not one of its deploy keys [ops]",
    );
    let key = crate::common::p(&deploy);
    ok(
        &sb,
        &["traffic", "set", "prod", "web", "P1=10000", "--deploy-key", &key],
    );
    ok(
        &sb,
        &[
            "rollout",
            "start",
            "prod",
            "web",
            "--to",
            "P2",
            "--no-drive",
            "--deploy-key",
            &key,
        ],
    );
    refused(
        &["rollout", "abort", "prod", "web"],
        "rollout abort on environment \"prod\" is refused",
    );
    refused(&["rollout", "promote", "prod", "web"], "deploy keys [ops]");
    // Pausing and resuming carry out what a key holder started.
    ok(&sb, &["rollout", "pause", "prod", "web"]);
    ok(
        &sb,
        &[
            "rollout",
            "abort",
            "prod",
            "web",
            "--deploy-key",
            &key,
            "--actor",
            "carol",
        ],
    );
    // The protection cannot be taken off without the key either.
    refused(
        &["env", "bind", "prod", "--deployer", "envpack.deployer.ledger@^1"],
        "env bind on environment \"prod\" is refused",
    );
    // Unprotected `dev` needs no key.
    crate::common::stage(&sb, "dev", "D1");
    ok(&sb, &["revision", "warm", "dev", "D1"]);
    ok(&sb, &["traffic", "set", "dev", "web", "D1=10000"]);
    let audit = audit_commands(&sb);
    let signed: Vec<(String, Value)> = audit
        .iter()
        .filter_map(|(c, a, o)| {
            let args: Value = serde_json::from_str(a).unwrap();
            (o.starts_with("ok") && args["env"] == "prod" && !args["authorized_by"].is_null())
                .then(|| (c.clone(), args["authorized_by"].clone()))
        })
        .collect();
    let commands: Vec<&str> = signed.iter().map(|(c, _)| c.as_str()).collect();
    assert_eq!(
        commands,
        ["traffic set", "rollout start", "rollout abort"],
        "{audit:#?}"
    );
    assert!(
        signed
            .iter()
            .all(|(_, by)| by["key"] == "ops" && by["signature"].as_str().unwrap().len() == 128)
    );
    let refusals = audit.iter().filter(|(_, _, o)| o.contains("is refused")).count();
    assert_eq!(refusals, 5, "every refusal is audited too");
}

/// Rollouts of several environments at once: each takes its environment's
/// lock only while a verb runs, so they proceed side by side.
#[test]
fn rollouts_of_several_environments_run_side_by_side() {
    let sb = operator();
    let envs = ["e1", "e2", "e3"];
    for env in envs {
        ok(
            &sb,
            &[
                "env",
                "create",
                env,
                "--deployer",
                "envpack.deployer.ledger@^1",
                "--capability",
                "log,kv",
            ],
        );
        crate::common::stage(&sb, env, "A");
        crate::common::stage(&sb, env, "B");
        ok(&sb, &["revision", "warm", env, "A"]);
        ok(&sb, &["traffic", "set", env, "web", "A=10000"]);
    }
    let children: Vec<Child> = envs
        .iter()
        .map(|env| {
            spawn(
                &sb,
                &[
                    "rollout",
                    "start",
                    env,
                    "web",
                    "--to",
                    "B",
                    "--steps",
                    "30,60,100",
                    "--soak",
                    "300ms",
                    "--interval",
                    "50ms",
                    "--analysis",
                    "probe",
                ],
            )
        })
        .collect();
    for child in children {
        let (code, stderr) = finished(child);
        assert_eq!(code, 0, "{stderr}");
    }
    for env in envs {
        let r = json(&sb, &["rollout", "status", env, "--json"])[0].clone();
        assert_eq!(r["state"], "succeeded", "{env}: {r:#}");
        let traffic = json(&sb, &["traffic", "show", env, "--json"]);
        assert_eq!(split_text(&traffic[0]["current"]["entries"]), "B=10000", "{env}");
    }
    ok(&sb, &["audit", "verify"]);
}
