//! Retirements and teardowns under crashes and concurrency, through the
//! real binary: SIGKILL at seeded points of each (then the store and the
//! pack agree, and running the command again finishes it), and
//! retirements racing other writers on one environment and on two.

use crate::common::rollout::audit_commands;
use crate::common::{DIGEST, Rng, Sandbox, json, kill_after, ok, operator};
use crate::retire::{deployments, stage_in};
use crate::state::assert_agree;

/// An environment on the ledger with two deployments of three ready
/// revisions each, the first of each serving all of it.
fn two_deployments(sb: &Sandbox, env: &str) {
    ok(
        sb,
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
    for (deployment, ids) in [("web", ["a", "b", "c"]), ("api", ["x", "y", "z"])] {
        for id in ids {
            let id = format!("{env}-{id}");
            stage_in(sb, env, deployment, &id);
            ok(sb, &["revision", "warm", env, &id]);
        }
        let first = format!("{env}-{}=10000", ids[0]);
        ok(sb, &["traffic", "set", env, deployment, &first]);
    }
}

/// Audit rows of the steps of a retirement or teardown.
fn steps_recorded(sb: &Sandbox) -> usize {
    audit_commands(sb)
        .iter()
        .filter(|(c, _, o)| (c == "deployment retire" || c == "env teardown") && o.starts_with("ok"))
        .count()
}

/// SIGKILL at seeded points of a retirement and of a teardown: after each,
/// the store and the pack agree, and running the same command again ends
/// the deployment (or the environment) with every revision archived.
#[test]
fn a_retirement_or_teardown_killed_anywhere_is_finished_by_running_it_again() {
    let sb = operator();
    let mut rng = Rng::new();
    // How long a whole one takes here, so that the kills land inside it.
    two_deployments(&sb, "timed");
    let started = std::time::Instant::now();
    ok(&sb, &["env", "remove", "timed", "--teardown"]);
    let span = started.elapsed().as_millis() as u64;
    let mut interrupted = 0;
    for round in 0..16 {
        let env = format!("k{round}");
        two_deployments(&sb, &env);
        let teardown = round % 2 == 1;
        let args: Vec<&str> = if teardown {
            vec!["env", "remove", &env, "--teardown"]
        } else {
            vec!["deployment", "retire", &env, "web"]
        };
        let before = steps_recorded(&sb);
        kill_after(&sb, &args, rng.below(span.max(1)));
        let done = steps_recorded(&sb) - before;
        let context = format!("round {round} ({}, killed after {done} steps)", args.join(" "));
        let exists = sb.host().args(["env", "show", &env]).output().unwrap().status.success();
        if exists {
            assert_agree(&sb, &env, &context);
        }
        let out = sb.host().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // A teardown killed after its last commit left no environment to name.
        let gone = teardown && stderr.contains("no environment");
        let finished_before = gone || String::from_utf8_lossy(&out.stdout).contains("retired already");
        assert!(out.status.success() || gone, "{context}: {stderr}");
        if done > 0 && !finished_before {
            interrupted += 1;
        }
        if teardown {
            let gone = sb.host().args(["env", "show", &env]).output().unwrap();
            assert!(!gone.status.success(), "{context}: the environment is removed");
        } else {
            assert_agree(&sb, &env, &context);
            assert_eq!(deployments(&sb, &env), ["api"], "{context}");
            for id in ["a", "b", "c"] {
                let r = json(&sb, &["revision", "show", &env, &format!("{env}-{id}"), "--json"]);
                assert_eq!(r["lifecycle"], "archived", "{context}: {r:#}");
            }
            let x = json(&sb, &["revision", "show", &env, &format!("{env}-x"), "--json"]);
            assert_eq!(x["lifecycle"], "ready", "{context}: api untouched");
        }
    }
    eprintln!("{interrupted} of 16 runs were killed half-way (a whole teardown took {span} ms)");
}

/// Retirements racing other writers, on one environment and on two: every
/// command ends in a state the store and the pack agree on, and each
/// deployment is either retired (everything archived) or alive again with
/// only revisions staged after the retirement live.
#[test]
fn retirements_racing_stage_warm_and_traffic_lose_nothing() {
    let sb = operator();
    let mut rng = Rng::new();
    for round in 0..4 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        two_deployments(&sb, &a);
        two_deployments(&sb, &b);
        let fresh = format!("{a}-new");
        let location = format!("file:///b/{fresh}");
        let mut commands: Vec<Vec<String>> = vec![
            vec!["deployment".into(), "retire".into(), a.clone(), "web".into()],
            vec!["deployment".into(), "retire".into(), b.clone(), "web".into()],
            vec![
                "revision".into(),
                "stage".into(),
                a.clone(),
                "web".into(),
                "--digest".into(),
                DIGEST.into(),
                "--location".into(),
                location,
                "--id".into(),
                fresh.clone(),
            ],
            vec![
                "traffic".into(),
                "set".into(),
                a.clone(),
                "web".into(),
                format!("{a}-b=10000"),
            ],
            vec!["revision".into(), "drain".into(), a.clone(), format!("{a}-c")],
            vec!["deployment".into(), "retire".into(), a.clone(), "api".into()],
        ];
        // A seeded order of start: which waits for which changes per round.
        for i in (1..commands.len()).rev() {
            commands.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let children: Vec<_> = commands.iter().map(|c| crate::common::spawn(&sb, c)).collect();
        for child in children {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                !stderr.contains("panicked") && !stderr.contains("state database:"),
                "round {round}: {stderr}"
            );
        }
        for env in [&a, &b] {
            assert_agree(&sb, env, &format!("round {round}, {env}"));
        }
        assert!(
            !deployments(&sb, &b).contains(&"web".to_string()),
            "round {round}: b's web retired"
        );
        let revisions = json(&sb, &["revision", "list", &a, "--json"]);
        let live: Vec<&str> = revisions
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        if deployments(&sb, &a).contains(&"web".to_string()) {
            // Revived by the stage that ran after the retirement: only it lives.
            assert_eq!(live, [fresh.as_str()], "round {round}: {revisions:#}");
        } else {
            assert!(live.is_empty(), "round {round}: {revisions:#}");
        }
    }
}
