//! The state path through the real binary, under concurrency and crashes:
//! several `host` processes at once on one environment and on several, then
//! SIGKILL at random points; after each, the store and the pack's own state
//! (its kv rows in `state.db`) must agree, every event must follow the
//! lifecycle, and every revision must still have a way to `archived`.
//! Also: what a long verb blocks (and what it must not), and the exit code
//! of each error kind on the operator path.

use std::collections::BTreeMap;
use std::process::Child;
use std::time::Duration;

use crate::common::{DIGEST, Rng, Sandbox, json, ok, operator, spawn};

const LEDGER_NAME: &str = "envpack.deployer.ledger";

fn stage_args(env: &str, id: &str) -> Vec<String> {
    [
        "revision",
        "stage",
        env,
        "web",
        "--digest",
        DIGEST,
        "--location",
        "file:///b/x",
        "--id",
        id,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// Waits for every child; returns (exit code, stderr) of each.
fn wait_all(children: Vec<Child>) -> Vec<(Option<i32>, String)> {
    children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
        })
        .collect()
}

/// The ledger's `rev/ID` rows for `env`, read from the database itself.
fn ledger_state(sb: &Sandbox, env: &str) -> BTreeMap<String, String> {
    sb.sql_rows(&format!(
        "SELECT key, value FROM pack_kv WHERE env_id = '{env}' AND pack = '{LEDGER_NAME}' AND key LIKE 'rev/%'"
    ))
    .into_iter()
    .map(|row| (row[0]["rev/".len()..].to_string(), row[1].clone()))
    .collect()
}

/// What the ledger must hold for a revision in each lifecycle state, given
/// that its writes commit with the transition: a verb interrupted between
/// its first step and its end has written nothing yet.
fn expected_ledger(lifecycle: &str) -> &'static [Option<&'static str>] {
    match lifecycle {
        "staged" | "warming" | "failed" => &[Some("staged")],
        "ready" | "draining" => &[Some("warm")],
        "inactive" => &[Some("drained")],
        "archived" => &[None],
        _ => panic!("unknown lifecycle {lifecycle}"),
    }
}

/// The store and the pack agree, events follow the lifecycle revision by
/// revision and end in its current state, and the audit chain is intact.
pub(crate) fn assert_agree(sb: &Sandbox, env: &str, context: &str) {
    let revisions = json(sb, &["revision", "list", env, "--all", "--json"]);
    let ledger = ledger_state(sb, env);
    let events = json(sb, &["events", env, "--json"]);
    let mut last: BTreeMap<String, String> = BTreeMap::new();
    for event in events.as_array().unwrap() {
        let (from, to) = (event["from"].as_str().unwrap(), event["to"].as_str().unwrap());
        let allowed = envpack_model::lifecycle::allowed(
            envpack_model::lifecycle::parse(from).unwrap(),
            envpack_model::lifecycle::parse(to).unwrap(),
        );
        assert!(allowed, "{context}: event {from} -> {to} is not in the table");
        let id = event["revision"].as_str().unwrap().to_string();
        let previous = last.get(&id).map_or("inactive", String::as_str);
        assert_eq!(previous, from, "{context}: events of {id} do not chain");
        last.insert(id, to.to_string());
    }
    for revision in revisions.as_array().unwrap() {
        let id = revision["id"].as_str().unwrap();
        let lifecycle = revision["lifecycle"].as_str().unwrap();
        assert_eq!(
            last.get(id).map(String::as_str),
            Some(lifecycle),
            "{context}: {id}'s last event"
        );
        let held = ledger.get(id).map(String::as_str);
        assert!(
            expected_ledger(lifecycle).contains(&held),
            "{context}: revision {id} is {lifecycle} in the store but {held:?} in the pack's state"
        );
    }
    for id in ledger.keys() {
        assert!(
            revisions.as_array().unwrap().iter().any(|r| r["id"] == id.as_str()),
            "{context}: the pack holds {id}, which the store does not know"
        );
    }
    assert!(ok(sb, &["audit", "verify"]).contains("intact"), "{context}");
}

/// Two environments on the ledger: `dev` and `prod`.
fn two_environments() -> Sandbox {
    let sb = operator();
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
        ],
    );
    sb
}

#[test]
fn concurrent_commands_on_one_and_several_environments_lose_nothing() {
    let sb = two_environments();
    let ids = |env: &str| (1..=4).map(|i| format!("{env}-R{i}")).collect::<Vec<_>>();
    // Eight stages at once: four on each environment.
    let stages: Vec<Child> = ["dev", "prod"]
        .iter()
        .flat_map(|env| ids(env).into_iter().map(move |id| (env.to_string(), id)))
        .map(|(env, id)| spawn(&sb, &stage_args(&env, &id)))
        .collect();
    for (code, stderr) in wait_all(stages) {
        assert_eq!(code, Some(0), "{stderr}");
    }
    // Eight warms at once.
    let warms: Vec<Child> = ["dev", "prod"]
        .iter()
        .flat_map(|env| ids(env).into_iter().map(move |id| (env.to_string(), id)))
        .map(|(env, id)| spawn(&sb, &words(&["revision", "warm", &env, &id])))
        .collect();
    for (code, stderr) in wait_all(warms) {
        assert_eq!(code, Some(0), "{stderr}");
    }
    for env in ["dev", "prod"] {
        assert_agree(&sb, env, "after concurrent stage and warm");
        assert_eq!(
            ledger_state(&sb, env).values().filter(|v| *v == "warm").count(),
            4,
            "{env}"
        );
    }
    // Mixed: traffic, drain, stage and reads, on both environments at once.
    let mixed = vec![
        spawn(
            &sb,
            &words(&["traffic", "set", "dev", "web", "dev-R1=5000", "dev-R2=5000"]),
        ),
        spawn(&sb, &words(&["traffic", "set", "prod", "web", "prod-R1=10000"])),
        spawn(&sb, &words(&["revision", "drain", "dev", "dev-R3"])),
        spawn(&sb, &words(&["revision", "drain", "prod", "prod-R3"])),
        spawn(&sb, &stage_args("dev", "dev-R5")),
        spawn(&sb, &stage_args("prod", "prod-R5")),
        spawn(&sb, &words(&["status", "dev", "--json"])),
        spawn(&sb, &words(&["events", "prod", "--json"])),
    ];
    for (code, stderr) in wait_all(mixed) {
        assert_eq!(code, Some(0), "{stderr}");
    }
    for env in ["dev", "prod"] {
        assert_agree(&sb, env, "after mixed commands");
        let ledger = ledger_state(&sb, env);
        assert_eq!(ledger.get(&format!("{env}-R3")).map(String::as_str), Some("drained"));
        assert_eq!(ledger.get(&format!("{env}-R5")).map(String::as_str), Some("staged"));
    }
    let split = json(&sb, &["traffic", "show", "dev", "--json"]);
    assert_eq!(split[0]["current"]["generation"], 1, "{split:#}");
}

/// One random mutating command on `env`, over the revisions it knows.
fn random_command(rng: &mut Rng, env: &str, known: &[String], fresh: &str) -> Vec<String> {
    let pick = if known.is_empty() { 0 } else { rng.below(5) };
    match pick {
        0 => stage_args(env, fresh),
        1 => words(&["revision", "warm", env, rng.pick(known)]),
        2 => words(&["revision", "drain", env, rng.pick(known)]),
        3 => {
            let (a, b) = (rng.pick(known).to_string(), rng.pick(known).to_string());
            let w = rng.below(10_001);
            if a == b {
                words(&["traffic", "set", env, "web", &format!("{a}=10000")])
            } else {
                words(&[
                    "traffic",
                    "set",
                    env,
                    "web",
                    &format!("{a}={w}"),
                    &format!("{b}={}", 10_000 - w),
                ])
            }
        }
        _ => words(&["traffic", "rollback", env, "web"]),
    }
}

/// Drives every revision not holding traffic to `archived` with documented
/// commands only: a fresh revision takes all traffic first.
fn archive_everything(sb: &Sandbox, env: &str) {
    ok(
        sb,
        &stage_args(env, "last").iter().map(String::as_str).collect::<Vec<_>>(),
    );
    ok(sb, &["revision", "warm", env, "last"]);
    ok(sb, &["traffic", "set", env, "web", "last=10000"]);
    for revision in json(sb, &["revision", "list", env, "--json"]).as_array().unwrap() {
        let id = revision["id"].as_str().unwrap();
        if id == "last" {
            continue;
        }
        // Each state's documented way forward (see README: "no state without a way forward").
        match revision["lifecycle"].as_str().unwrap() {
            "ready" | "draining" => {
                ok(sb, &["revision", "drain", env, id]);
            }
            _ => {}
        }
        ok(sb, &["revision", "archive", env, id]);
    }
    let left = json(sb, &["revision", "list", env, "--json"]);
    assert_eq!(
        left.as_array().unwrap().len(),
        1,
        "only `last` is not archived: {left:#}"
    );
}

#[test]
fn sigkill_at_random_points_leaves_agreement_and_a_way_forward() {
    let sb = two_environments();
    let mut rng = Rng::new();
    let mut known: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for round in 0..14 {
        // Two or three commands at once, on one or both environments; one of them is killed.
        let count = 2 + rng.below(2) as usize;
        let mut children = Vec::new();
        for slot in 0..count {
            let env = if rng.below(2) == 0 { "dev" } else { "prod" };
            let fresh = format!("{env}-{round}-{slot}");
            let ids = known.entry(env).or_default();
            let command = random_command(&mut rng, env, ids, &fresh);
            if command[1] == "stage" {
                ids.push(fresh);
            }
            children.push(spawn(&sb, &command));
        }
        std::thread::sleep(Duration::from_millis(rng.below(250)));
        let victim = rng.below(count as u64) as usize;
        let _ = children[victim].kill();
        for (code, stderr) in wait_all(children) {
            assert!(
                !stderr.contains("panicked") && !stderr.contains("state database:"),
                "round {round}: exit {code:?}: {stderr}"
            );
        }
        for env in ["dev", "prod"] {
            assert_agree(&sb, env, &format!("round {round}"));
        }
    }
    for env in ["dev", "prod"] {
        archive_everything(&sb, env);
        assert_agree(&sb, env, "after archiving everything");
    }
}

/// An environment bound to the hostile pack in `sleep` mode: each of its
/// verbs holds the environment's lock until the deadline stops it.
fn with_slow_environment() -> Sandbox {
    let sb = operator();
    crate::common::hostile_env(&sb, "slow", "sleep");
    sb
}

#[test]
fn a_long_verb_blocks_only_writers_of_its_own_environment() {
    let sb = with_slow_environment();
    let mut slow = stage_args("slow", "S1");
    slow.extend(words(&["--deadline-ms", "6000"]));
    let mut holder = spawn(&sb, &slow);
    // Wait until the holder is inside the pack: it holds the environment's lock.
    crate::common::wait_for("the first stage to hold slow's lock", || {
        crate::common::env_lock_held(&sb, "slow")
    });
    let mut queued = stage_args("slow", "S2");
    queued.extend(words(&["--deadline-ms", "6000"]));
    let mut waiter = spawn(&sb, &queued);
    // Reads of the same environment, and writes to another, go through meanwhile.
    ok(&sb, &["status", "slow", "--json"]);
    ok(&sb, &["events", "slow", "--json"]);
    ok(&sb, &["traffic", "show", "slow", "--json"]);
    ok(&sb, &["revision", "list", "slow", "--json"]);
    ok(
        &sb,
        &stage_args("dev", "D1").iter().map(String::as_str).collect::<Vec<_>>(),
    );
    ok(&sb, &["revision", "warm", "dev", "D1"]);
    let holder_done = holder.try_wait().unwrap();
    let waiter_done = waiter.try_wait().unwrap();
    assert!(
        holder_done.is_none(),
        "inconclusive: the slow verb ended before the other commands did (machine too loaded?)"
    );
    assert!(
        waiter_done.is_none(),
        "a second writer on `slow` must wait for the first"
    );
    let out = holder.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("deadline"));
    let out = waiter.wait_with_output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("waiting for environment \"slow\""),
        "the queued writer says what it waits for: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn code_of(sb: &Sandbox, args: &[&str]) -> (Option<i32>, String) {
    let out = sb.host().args(args).output().unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn each_error_kind_keeps_its_exit_code_on_the_operator_path() {
    let sb = operator();
    // Unknown environment: bad input.
    let (code, stderr) = code_of(
        &sb,
        &stage_args("nowhere", "X")
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no environment \"nowhere\""), "{stderr}");

    // A tampered pack file in the registry: untrusted, on a verb and on resolve.
    let installed = json(&sb, &["pack", "list", "--json"]);
    let digest = installed[0]["digest"].as_str().unwrap().to_string();
    let file = sb.state_dir().join("packs").join(format!("{digest}.wasm"));
    let original = std::fs::read(&file).unwrap();
    let mut tampered = original.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(&file, &tampered).unwrap();
    let (code, stderr) = code_of(
        &sb,
        &stage_args("dev", "T1").iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(code, Some(6), "tampered registry file on a verb: {stderr}");
    let (code, stderr) = code_of(&sb, &["pack", "resolve", "envpack.deployer.ledger@^1"]);
    assert_eq!(code, Some(6), "tampered registry file on resolve: {stderr}");
    std::fs::write(&file, &original).unwrap();
    ok(
        &sb,
        &stage_args("dev", "T1").iter().map(String::as_str).collect::<Vec<_>>(),
    );

    // A revoked signer: untrusted everywhere.
    ok(&sb, &["trust", "revoke", "ops"]);
    let (code, stderr) = code_of(&sb, &["revision", "warm", "dev", "T1"]);
    assert_eq!(code, Some(6), "revoked signer on a verb: {stderr}");
    let (code, stderr) = code_of(&sb, &["pack", "resolve", "envpack.deployer.ledger@^1"]);
    assert_eq!(code, Some(6), "revoked signer on resolve: {stderr}");
    let (code, stderr) = code_of(
        &sb,
        &["env", "create", "qa", "--deployer", "envpack.deployer.ledger@^1"],
    );
    assert_eq!(code, Some(6), "revoked signer on env create: {stderr}");
    // The refused warm changed nothing.
    let shown = json(&sb, &["revision", "show", "dev", "T1", "--json"]);
    assert_eq!(shown["lifecycle"], "staged");

    // A corrupt row: a state error naming the column, not a default.
    let corrupt = "UPDATE bindings SET settings = 'not json' WHERE env_id = 'dev'";
    sb.sql(corrupt, corrupt);
    let (code, stderr) = code_of(&sb, &["status", "dev"]);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("binding settings"), "{stderr}");

    // A database that is not one: a state error (SQLite's file; a
    // PostgreSQL store has none).
    if sb.database.is_some() {
        return;
    }
    std::fs::write(
        sb.state_dir().join("state.db"),
        b"this is not sqlite, just long enough to be read as a header.....",
    )
    .unwrap();
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(sb.state_dir().join(format!("state.db{suffix}")));
    }
    let (code, stderr) = code_of(&sb, &["status", "dev"]);
    assert_eq!(code, Some(5), "{stderr}");
    assert!(stderr.contains("not a SQLite database"), "{stderr}");
}

#[test]
fn removing_an_environment_removes_its_pack_state() {
    let sb = two_environments();
    ok(
        &sb,
        &stage_args("dev", "R1").iter().map(String::as_str).collect::<Vec<_>>(),
    );
    ok(
        &sb,
        &stage_args("prod", "R1").iter().map(String::as_str).collect::<Vec<_>>(),
    );
    assert_eq!(ledger_state(&sb, "dev").len(), 1);
    ok(&sb, &["env", "remove", "dev", "--force"]);
    assert!(ledger_state(&sb, "dev").is_empty(), "dev's pack state is gone with it");
    assert_eq!(ledger_state(&sb, "prod").len(), 1, "prod keeps its own");
    ok(
        &sb,
        &[
            "env",
            "create",
            "dev",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv",
        ],
    );
    assert!(
        ledger_state(&sb, "dev").is_empty(),
        "a re-created environment inherits nothing"
    );
}

#[test]
fn an_interrupted_warm_or_drain_is_resumed_by_running_it_again() {
    let sb = operator();
    ok(
        &sb,
        &stage_args("dev", "R1").iter().map(String::as_str).collect::<Vec<_>>(),
    );
    // What a kill between the first step and the pack's end leaves behind.
    let interrupt = |to: &str| {
        let from = sb.sql_rows("SELECT lifecycle FROM revisions WHERE id = 'R1'")[0][0].clone();
        let change = format!(
            "UPDATE revisions SET lifecycle = '{to}' WHERE id = 'R1';
             INSERT INTO lifecycle_events (env_id, revision_id, from_state, to_state, reason, actor, at)
             VALUES ('dev', 'R1', '{from}', '{to}', 'test', 'test', 0);"
        );
        sb.sql(&change, &change);
    };
    interrupt("warming");
    let warmed = json(&sb, &["revision", "warm", "dev", "R1", "--json"]);
    assert_eq!(warmed["lifecycle"], "ready");
    interrupt("draining");
    let drained = json(&sb, &["revision", "drain", "dev", "R1", "--json"]);
    assert_eq!(drained["lifecycle"], "inactive");
    let events = json(&sb, &["events", "dev", "--json"]);
    let resumed = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["reason"].as_str().unwrap_or_default().contains("resumed"))
        .count();
    assert_eq!(resumed, 2, "{events:#}");
    assert_agree(&sb, "dev", "after resuming");
}

#[test]
fn deleting_the_newest_audit_rows_is_caught_against_a_recorded_head() {
    let sb = operator();
    for id in ["R1", "R2", "R3"] {
        ok(
            &sb,
            &stage_args("dev", id).iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    let view = json(&sb, &["audit", "verify", "--json"]);
    assert_eq!(view["intact"], true);
    let head = format!("{}:{}", view["head"]["seq"], view["head"]["hash"].as_str().unwrap());
    ok(&sb, &["audit", "verify", "--head", &head]);
    // Someone with write access removes the newest rows, triggers and all.
    sb.drop_audit_guards();
    let delete = "DELETE FROM audit WHERE seq >= (SELECT MAX(seq) - 1 FROM audit)";
    sb.sql(delete, delete);
    ok(&sb, &["audit", "verify"]);
    let (code, stderr) = code_of(&sb, &["audit", "verify", "--head", &head]);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("is missing"), "{stderr}");
    let (code, _) = code_of(&sb, &["audit", "verify", "--head", "12:nothex"]);
    assert_eq!(code, Some(2));
    // Every row gone, environments and events left: caught without a head.
    sb.sql("DELETE FROM audit", "DELETE FROM audit");
    let (code, stderr) = code_of(&sb, &["audit", "verify"]);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("the log is empty"), "{stderr}");
}

#[test]
fn deadlines_come_from_the_operator_then_the_pack_capped_then_the_default() {
    let sb = operator();
    crate::common::hostile_env(&sb, "slow", "normal");
    for id in ["W1", "W2"] {
        ok(
            &sb,
            &stage_args("slow", id).iter().map(String::as_str).collect::<Vec<_>>(),
        );
    }
    let warm = |id: &str| {
        let (code, stderr) = code_of(&sb, &["revision", "warm", "slow", id]);
        assert_eq!(code, Some(1), "{stderr}");
        stderr
    };
    // The pack expects 4000 ms for warm; the operator caps expectations at 1200.
    ok(
        &sb,
        &[
            "env",
            "bind",
            "slow",
            "--deployer",
            "envpack.test.hostile@^0.1",
            "--setting",
            "mode=sleep",
            "--max-deadline-ms",
            "1200",
        ],
    );
    let stderr = warm("W1");
    assert!(stderr.contains("deadline of 1200 ms"), "capped expectation: {stderr}");
    assert!(
        stderr.contains("host: pack info: warm-revision in mode \"sleep\""),
        "the pack's log line streamed: {stderr}"
    );
    // The operator's own deadline for the verb wins.
    ok(
        &sb,
        &[
            "env",
            "bind",
            "slow",
            "--deployer",
            "envpack.test.hostile@^0.1",
            "--deadline",
            "warm-revision=900",
        ],
    );
    assert!(warm("W2").contains("deadline of 900 ms"));
    let shown = json(&sb, &["env", "show", "slow", "--json"]);
    assert_eq!(shown["binding"]["deadlines"]["verbs"]["warm-revision"], 900);
    // Bad settings are refused by name.
    let (code, stderr) = code_of(
        &sb,
        &[
            "env",
            "bind",
            "slow",
            "--deployer",
            "envpack.test.hostile@^0.1",
            "--deadline",
            "warm=5",
        ],
    );
    assert_eq!(code, Some(2));
    assert!(stderr.contains("\"warm\" is not a verb"), "{stderr}");
}
