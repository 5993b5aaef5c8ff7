//! The aws-ecs pack against a real AWS API emulator (moto, started per test
//! on a loopback port): admitted by the core bench against moto, driven
//! through the operator commands, judged by the extended bench, killed at
//! random points. Every effect is read back from the AWS API (listener
//! weights, task sets, target groups, task definitions), never from the
//! pack's own report.

use std::time::Duration;

use crate::common::moto::{Fixture, Moto, set_credentials};
use crate::common::{Rng, Sandbox, json, kill_after, ok, operator, p};
use envpack_test_packs::AWS_ECS;
use serde_json::{Value, json};

const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// Seals and signs the pack; returns its path.
fn signed_pack(sb: &Sandbox) -> String {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/aws-ecs/pack.toml");
    let pack = sb.dir.path().join("aws-ecs.wasm");
    ok(
        sb,
        &["pack", "seal", AWS_ECS, "--manifest", &p(&manifest), "-o", &p(&pack)],
    );
    ok(sb, &["sign", &p(&pack), "--key", &p(&sb.dir.path().join("key"))]);
    p(&pack)
}

/// The bench's fixture inputs for this moto: grants, settings, an image.
fn bench_args(fx: &Fixture) -> Vec<String> {
    let mut args = fx.grants();
    args.extend(fx.settings());
    args.extend(["--setting".into(), "listen-ports=9000-9999".into()]);
    args.extend(["--revision-setting".into(), "image=registry.example/app:1".into()]);
    // Each generated call is several requests to the emulator: six cases
    // keep admission and the bench bounded in time.
    args.extend(["--cases".into(), "6".into()]);
    args
}

/// An operator state with the pack admitted (the core bench passing
/// against moto, not `--force`) and environment `cloud` bound to it.
fn cloud_env(moto: &Moto, name: &str) -> (Sandbox, Fixture) {
    let fx = moto.create(name);
    let sb = operator();
    set_credentials(&sb, &fx);
    let pack = signed_pack(&sb);
    let mut install = vec!["pack".to_string(), "install".into(), pack];
    install.extend(bench_args(&fx));
    ok(&sb, &install.iter().map(String::as_str).collect::<Vec<_>>());
    let mut create: Vec<String> = ["env", "create", "cloud", "--deployer", "envpack.deployer.aws-ecs@^1"]
        .map(String::from)
        .to_vec();
    create.extend(["--capability".into(), "log,kv,clock".into()]);
    create.extend(fx.grants());
    create.extend(fx.settings());
    create.extend(["--setting".into(), "listen.web=8080".into()]);
    ok(&sb, &create.iter().map(String::as_str).collect::<Vec<_>>());
    (sb, fx)
}

fn stage(sb: &Sandbox, id: &str) {
    ok(
        sb,
        &[
            "revision",
            "stage",
            "cloud",
            "web",
            "--id",
            id,
            "--digest",
            DIGEST,
            "--location",
            &format!("registry.example/app:{id}"),
            "--setting",
            "GREETING=hello",
            "--drain-seconds",
            "7",
        ],
    );
}

/// Listener 8080's forward weights by revision, read from AWS.
fn weights(moto: &Moto, fx: &Fixture) -> Value {
    let state = moto.inspect(fx);
    state["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["port"] == 8080)
        .map(|l| l["forward"].clone())
        .unwrap_or(Value::Null)
}

/// The task sets of `revision` as AWS lists them: (scale, status).
fn task_sets(state: &Value, revision: &str) -> Vec<(f64, String)> {
    state["task_sets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["revision"] == revision)
        .map(|t| (t["scale"].as_f64().unwrap(), t["status"].as_str().unwrap().to_string()))
        .collect()
}

fn count(state: &Value, list: &str, revision: &str) -> usize {
    state[list]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| *v == revision)
        .count()
}

#[test]
fn the_operator_flow_on_moto_routes_by_the_split_and_archive_leaves_nothing() {
    let moto = Moto::start();
    let (sb, fx) = cloud_env(&moto, "flow");

    stage(&sb, "R1");
    let state = moto.inspect(&fx);
    assert_eq!(
        count(&state, "task_definitions", "R1"),
        1,
        "stage registers one task definition: {state}"
    );
    assert!(task_sets(&state, "R1").is_empty(), "stage starts nothing: {state}");
    ok(&sb, &["revision", "warm", "cloud", "R1"]);
    let state = moto.inspect(&fx);
    assert_eq!(task_sets(&state, "R1"), vec![(100.0, "ACTIVE".to_string())]);
    assert_eq!(count(&state, "target_groups", "R1"), 1);

    ok(&sb, &["traffic", "set", "cloud", "web", "R1=10000"]);
    assert_eq!(weights(&moto, &fx), json!({"R1": 1}));

    stage(&sb, "R2");
    ok(&sb, &["revision", "warm", "cloud", "R2"]);
    ok(&sb, &["traffic", "set", "cloud", "web", "R1=9000", "R2=1000"]);
    assert_eq!(weights(&moto, &fx), json!({"R1": 9, "R2": 1}));
    ok(&sb, &["traffic", "set", "cloud", "web", "R1=7500", "R2=2500"]);
    assert_eq!(weights(&moto, &fx), json!({"R1": 3, "R2": 1}));
    // 0.01% cannot be said in 0-999 exactly: the nearest, never zero.
    ok(&sb, &["traffic", "set", "cloud", "web", "R1=9999", "R2=1"]);
    assert_eq!(weights(&moto, &fx), json!({"R1": 999, "R2": 1}));
    ok(&sb, &["traffic", "rollback", "cloud", "web"]);
    assert_eq!(weights(&moto, &fx), json!({"R1": 3, "R2": 1}));

    ok(&sb, &["traffic", "set", "cloud", "web", "R1=10000", "R2=0"]);
    assert_eq!(
        weights(&moto, &fx),
        json!({"R1": 1}),
        "a 0-weight revision leaves the listener"
    );
    ok(&sb, &["revision", "drain", "cloud", "R2"]);
    let state = moto.inspect(&fx);
    assert_eq!(
        task_sets(&state, "R2"),
        vec![(0.0, "ACTIVE".to_string())],
        "drain scales to 0"
    );
    ok(&sb, &["revision", "archive", "cloud", "R2"]);
    let state = moto.inspect(&fx);
    assert!(
        task_sets(&state, "R2").is_empty(),
        "archive deletes the task set: {state}"
    );
    assert_eq!(
        count(&state, "target_groups", "R2"),
        0,
        "archive deletes the target group: {state}"
    );
    assert_eq!(
        count(&state, "task_definitions", "R2"),
        0,
        "archive deregisters: {state}"
    );
    // R1 is untouched.
    assert_eq!(task_sets(&state, "R1"), vec![(100.0, "ACTIVE".to_string())]);
    assert_eq!(weights(&moto, &fx), json!({"R1": 1}));

    // A revision whose artifact is a URL needs an image: stage fails, named.
    let out = sb
        .host()
        .args(["revision", "stage", "cloud", "web", "--id", "R3", "--digest", DIGEST])
        .args(["--location", "https://example.com/app.tar.gz"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a container image reference"), "{stderr}");
    assert_eq!(count(&moto.inspect(&fx), "task_definitions", "R3"), 0);
}

#[test]
fn aws_errors_name_the_action_and_the_code() {
    let moto = Moto::start();
    let (sb, fx) = cloud_env(&moto, "errors");
    // A cluster that does not exist: ECS answers ClusterNotFoundException.
    let mut bind: Vec<String> = ["env", "create", "wrong", "--deployer", "envpack.deployer.aws-ecs@^1"]
        .map(String::from)
        .to_vec();
    bind.extend(["--capability".into(), "log,kv,clock".into()]);
    bind.extend(fx.grants());
    bind.extend(
        fx.settings()
            .into_iter()
            .map(|s| s.replace("cluster=errors", "cluster=nope")),
    );
    ok(&sb, &bind.iter().map(String::as_str).collect::<Vec<_>>());
    let stage = |env: &str| {
        sb.host()
            .args(["revision", "stage", env, "web", "--id", "E1", "--digest", DIGEST])
            .args(["--location", "registry.example/app:1"])
            .output()
            .unwrap()
    };
    assert!(stage("wrong").status.success(), "stage needs no cluster");
    let out = sb.host().args(["revision", "warm", "wrong", "E1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("ECS DescribeServices failed") || stderr.contains("ECS CreateService failed"),
        "the action is named: {stderr}"
    );
    assert!(
        stderr.contains("ClusterNotFoundException"),
        "AWS's code is named: {stderr}"
    );

    // A wrong secret key: the signature does not match, and AWS says so.
    // (This is also what proves moto checks the pack's signatures.)
    let out = sb
        .host()
        .args(["secret", "set", "aws-secret-access-key"])
        .write_stdin("not-the-key")
        .output()
        .unwrap();
    assert!(out.status.success());
    let out = sb.host().args(["revision", "retry", "wrong", "E1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("ECS DescribeTaskDefinition failed: SignatureDoesNotMatch"),
        "{stderr}"
    );

    // Credentials not set: a clear message before any request.
    ok(&sb, &["secret", "remove", "aws-secret-access-key"]);
    let out = sb.host().args(["revision", "retry", "wrong", "E1"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("host secret set aws-secret-access-key"), "{stderr}");
}

#[test]
fn the_extended_bench_passes_against_moto() {
    let moto = Moto::start();
    let fx = moto.create("bench");
    let sb = operator();
    set_credentials(&sb, &fx);
    let pack = signed_pack(&sb);
    let out = sb
        .host()
        .args(["conformance", "--profile", "extended", &pack])
        .args(bench_args(&fx))
        .timeout(Duration::from_secs(600))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "extended bench against moto:\n{stdout}");
    assert!(stdout.contains("PASS robustness.long-ids"), "{stdout}");
    assert!(stdout.contains("PASS idempotency"), "{stdout}");

    // At the end of the run every fixture revision was archived through
    // the pack: AWS holds no task set, no target group and no ACTIVE task
    // definition of the bench's, though it registered many (each archive
    // deregisters, ECS keeps them INACTIVE). What a deployment holds (its
    // ECS service, its listener) is released by `env remove --teardown`
    // (release-deployment), not by archiving revisions.
    let state = moto.inspect(&fx);
    assert_eq!(state["task_sets"], json!([]), "task sets left: {state}");
    assert_eq!(state["target_groups"], json!([]), "target groups left: {state}");
    assert_eq!(
        state["registrations"],
        json!([]),
        "task definitions left ACTIVE: {state}"
    );
    assert!(
        state["deregistered"].as_u64().unwrap() > 10,
        "the bench registered and released task definitions: {state}"
    );
    assert!(
        stdout.contains("released: "),
        "the report says what it archived: {stdout}"
    );
}

#[test]
fn admission_against_moto_releases_every_revision_it_made() {
    let moto = Moto::start();
    let fx = moto.create("admit");
    let sb = operator();
    set_credentials(&sb, &fx);
    let pack = signed_pack(&sb);
    let mut install = vec!["pack".to_string(), "install".into(), pack];
    install.extend(bench_args(&fx));
    let out = ok(&sb, &install.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.contains("installed envpack.deployer.aws-ecs"), "{out}");
    let state = moto.inspect(&fx);
    assert_eq!(state["task_sets"], json!([]), "admission left task sets: {state}");
    assert_eq!(
        state["target_groups"],
        json!([]),
        "admission left target groups: {state}"
    );
    assert_eq!(
        state["registrations"],
        json!([]),
        "admission left ACTIVE task definitions: {state}"
    );
    assert!(
        state["deregistered"].as_u64().unwrap() > 0,
        "admission made revisions: {state}"
    );
}

fn lifecycle(sb: &Sandbox, id: &str) -> String {
    json(sb, &["revision", "show", "cloud", id, "--json"])["lifecycle"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn verbs_killed_between_api_calls_make_nothing_twice_when_run_again() {
    let moto = Moto::start();
    let (sb, fx) = cloud_env(&moto, "crash");
    let mut rng = Rng::new();
    let ids = ["K1", "K2", "K3"];
    for id in ids {
        stage(&sb, id);
        // Killed somewhere between the host starting and the task set steady.
        kill_after(&sb, &["revision", "warm", "cloud", id], 30 + rng.below(400));
        if lifecycle(&sb, id) != "ready" {
            ok(&sb, &["revision", "warm", "cloud", id]);
        }
        let state = moto.inspect(&fx);
        assert_eq!(task_sets(&state, id).len(), 1, "one task set for {id}: {state}");
        assert_eq!(
            count(&state, "target_groups", id),
            1,
            "one target group for {id}: {state}"
        );
        assert_eq!(
            count(&state, "task_definitions", id),
            1,
            "one task definition for {id}: {state}"
        );
    }
    for (split, expected) in [
        (["K1=5000", "K2=5000", "K3=0"], json!({"K1": 1, "K2": 1})),
        (["K1=0", "K2=2000", "K3=8000"], json!({"K2": 1, "K3": 4})),
    ] {
        let mut args = vec!["traffic", "set", "cloud", "web"];
        args.extend(split);
        kill_after(&sb, &args, 20 + rng.below(300));
        ok(&sb, &args);
        assert_eq!(weights(&moto, &fx), expected, "after a killed and re-run {split:?}");
        let listeners = moto.inspect(&fx)["listeners"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|l| l["port"] == 8080)
            .count();
        assert_eq!(listeners, 1, "one listener for web");
    }
    kill_after(&sb, &["revision", "archive", "cloud", "K1"], 20 + rng.below(300));
    if lifecycle(&sb, "K1") != "archived" {
        ok(&sb, &["revision", "archive", "cloud", "K1"]);
    }
    let state = moto.inspect(&fx);
    assert!(task_sets(&state, "K1").is_empty(), "{state}");
    assert_eq!(count(&state, "target_groups", "K1"), 0, "{state}");
    assert_eq!(count(&state, "task_definitions", "K1"), 0, "{state}");
}

#[test]
fn operators_routing_at_once_on_one_load_balancer_get_a_listener_each() {
    let moto = Moto::start();
    let fx = moto.create("race");
    // Three operators (state directories of their own) share one account
    // and one load balancer; nothing in envpack orders their commands.
    let envs = ["e0", "e1", "e2"];
    let operators: Vec<Sandbox> = envs
        .iter()
        .map(|env| {
            let sb = operator();
            set_credentials(&sb, &fx);
            crate::common::install_signed(&sb, AWS_ECS, "packs/aws-ecs/pack.toml", "aws-ecs");
            let mut create: Vec<String> = ["env", "create", env, "--deployer", "envpack.deployer.aws-ecs@^1"]
                .map(String::from)
                .to_vec();
            create.extend(["--capability".into(), "log,kv,clock".into()]);
            create.extend(fx.grants());
            create.extend(fx.settings());
            // No listen.web: each picks the first free port of one shared range.
            create.extend(["--setting".into(), "listen-ports=9100-9110".into()]);
            ok(&sb, &create.iter().map(String::as_str).collect::<Vec<_>>());
            let id = format!("{env}-R");
            ok(
                &sb,
                &[
                    "revision",
                    "stage",
                    env,
                    "web",
                    "--id",
                    &id,
                    "--digest",
                    DIGEST,
                    "--location",
                    "registry.example/app:1",
                ],
            );
            ok(&sb, &["revision", "warm", env, &id]);
            sb
        })
        .collect();
    // All three pick a port of the same range at once.
    let children: Vec<_> = operators
        .iter()
        .zip(envs)
        .map(|(sb, env)| crate::common::spawn(sb, &["traffic", "set", env, "web", &format!("{env}-R=10000")]))
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let state = moto.inspect(&fx);
    let routed: Vec<String> = state["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| (9100..=9110).contains(&l["port"].as_u64().unwrap()))
        .map(|l| l["forward"].to_string())
        .collect();
    assert_eq!(routed.len(), 3, "one listener per environment: {state}");
    for env in envs {
        let forward = json!({ format!("{env}-R"): 1 }).to_string();
        assert_eq!(
            routed.iter().filter(|f| **f == forward).count(),
            1,
            "{env} routed by exactly one listener: {routed:?}"
        );
    }
}

/// The ECS services of environment `cloud` (admission's bench leaves its
/// own in the cluster) as AWS describes them: (name, status, running
/// count). Read with the fixture's admin keys through boto3 (moto lists
/// INACTIVE services too, as deleted ones).
fn services(moto: &Moto, fx: &Fixture) -> Vec<(String, String, u64)> {
    const SCRIPT: &str = r#"
import json, os, sys
import boto3
ecs = boto3.client("ecs", endpoint_url=sys.argv[1], region_name="us-east-1",
                   aws_access_key_id=os.environ["FIXTURE_ACCESS_KEY_ID"],
                   aws_secret_access_key=os.environ["FIXTURE_SECRET_ACCESS_KEY"])
arns = ecs.list_services(cluster=sys.argv[2])["serviceArns"]
found = []
for i in range(0, len(arns), 10):
    for s in ecs.describe_services(cluster=sys.argv[2], services=arns[i:i + 10])["services"]:
        found.append([s["serviceName"], s["status"], s["runningCount"]])
print(json.dumps(found))
"#;
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/moto-venv/bin/python");
    let out = std::process::Command::new(python)
        .args(["-c", SCRIPT, &moto.endpoint, &fx.cluster])
        .env("FIXTURE_ACCESS_KEY_ID", &fx.admin.0)
        .env("FIXTURE_SECRET_ACCESS_KEY", &fx.admin.1)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "describing services: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<(String, String, u64)> = serde_json::from_slice(&out.stdout).unwrap();
    found
        .into_iter()
        .filter(|(name, _, _)| name.starts_with("envpack-cloud-"))
        .collect()
}

#[test]
fn env_remove_with_teardown_on_moto_leaves_nothing_of_the_environment() {
    let moto = Moto::start();
    let (sb, fx) = cloud_env(&moto, "teardown");

    stage(&sb, "R1");
    ok(&sb, &["revision", "warm", "cloud", "R1"]);
    ok(&sb, &["traffic", "set", "cloud", "web", "R1=10000"]);
    stage(&sb, "R2");
    ok(&sb, &["revision", "warm", "cloud", "R2"]);
    ok(&sb, &["traffic", "set", "cloud", "web", "R1=9000", "R2=1000"]);
    assert_eq!(weights(&moto, &fx), json!({"R1": 9, "R2": 1}));
    // A revision staged and never warmed: a task definition, nothing else.
    stage(&sb, "R3");
    let state = moto.inspect(&fx);
    assert_eq!(state["task_sets"].as_array().unwrap().len(), 2, "{state}");
    assert_eq!(count(&state, "task_definitions", "R3"), 1, "{state}");
    let before = services(&moto, &fx);
    assert_eq!(before.len(), 1, "one service for deployment web: {before:?}");
    assert_eq!(before[0].1, "ACTIVE", "{before:?}");

    // Drains and archives every revision through the pack, releases the
    // deployment (release-deployment), then removes the environment.
    ok(&sb, &["env", "remove", "cloud", "--teardown"]);

    // Read back from AWS, not from the pack.
    let state = moto.inspect(&fx);
    assert_eq!(state["task_sets"], json!([]), "task sets left: {state}");
    assert_eq!(state["target_groups"], json!([]), "target groups left: {state}");
    assert_eq!(
        state["registrations"],
        json!([]),
        "task definitions left ACTIVE: {state}"
    );
    assert!(
        !state["listeners"].as_array().unwrap().iter().any(|l| l["port"] == 8080),
        "the deployment's listener is left: {state}"
    );
    let after = services(&moto, &fx);
    assert!(
        after
            .iter()
            .all(|(_, status, running)| status != "ACTIVE" && *running == 0),
        "the deployment's service is left ACTIVE or running: {after:?}"
    );
    assert!(
        after.iter().all(|(name, _, _)| *name == before[0].0),
        "no other service appeared: {after:?}"
    );
}
