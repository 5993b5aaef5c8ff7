//! A team on several machines: two state directories (each its own trust
//! store, installed packs and work directories) sharing one PostgreSQL
//! database, started by `scripts/postgres` for the test. Commands and
//! rollouts race across the machines; what each machine reads back, the
//! split history and the audit chain are checked, not what a command said.

use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::postgres::Cluster;
use crate::common::rollout::{generations, soaking, wait_for_step};
use crate::common::{DIGEST, Sandbox, json, ok, operator_in, p, spawn, stage};

/// Machine A (key, ledger signed and installed, `dev` created) and machine
/// B (trusting A's key, the same signed file installed), on one database.
fn two_machines(cluster: &Cluster) -> (Sandbox, Sandbox) {
    let url = cluster.database();
    let a = operator_in(Sandbox::on_database(&url));
    let b = Sandbox::on_database(&url);
    let key = a.dir.path().join("key.pub");
    ok(&b, &["trust", "add", &p(&key), "--name", "ops", "--scope", "envpack.*"]);
    ok(&b, &["pack", "install", &p(&a.dir.path().join("ledger.wasm"))]);
    (a, b)
}

/// A background `host` (an agent, a follower): killed and reaped when
/// dropped, on a failed assertion too, so that none outlives its test.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_all(children: Vec<(String, Child)>) -> Vec<(String, i32, String)> {
    children
        .into_iter()
        .map(|(what, child)| {
            let out = child.wait_with_output().unwrap();
            (
                what,
                out.status.code().unwrap_or(-1),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            )
        })
        .collect()
}

fn revision_ids(sb: &Sandbox, env: &str) -> Vec<String> {
    let mut ids: Vec<String> = json(sb, &["revision", "list", env, "--json", "--all"])
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

#[test]
fn two_machines_racing_on_shared_environments_lose_nothing() {
    let cluster = Cluster::start();
    let (a, b) = two_machines(&cluster);
    // B sees what A created, and creates an environment of its own.
    assert_eq!(json(&b, &["status", "dev", "--json"])["env"], "dev");
    ok(
        &b,
        &[
            "env",
            "create",
            "qa",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv",
        ],
    );

    // Stages from both machines, on one environment and on two, at once.
    let machine = |i: usize| if i.is_multiple_of(2) { &a } else { &b };
    let env_of = |i: usize| if i.is_multiple_of(3) { "qa" } else { "dev" };
    let stages = (0..12)
        .map(|i| {
            let id = format!("C{i:02}");
            let location = format!("file:///b/{id}");
            let args = [
                "revision",
                "stage",
                env_of(i),
                "web",
                "--digest",
                DIGEST,
                "--location",
                &location,
                "--id",
                &id,
            ];
            (format!("stage {id} on {}", env_of(i)), spawn(machine(i), &args))
        })
        .collect();
    for (what, code, stderr) in wait_all(stages) {
        assert_eq!(code, 0, "{what}: {stderr}");
    }
    let expected = |env: &str| -> Vec<String> {
        (0..12)
            .filter(|i| env_of(*i) == env)
            .map(|i| format!("C{i:02}"))
            .collect()
    };
    for sb in [&a, &b] {
        assert_eq!(revision_ids(sb, "dev"), expected("dev"));
        assert_eq!(revision_ids(sb, "qa"), expected("qa"));
    }

    // Warms, then traffic sets racing from both machines on `dev`.
    let warms = expected("dev")
        .into_iter()
        .enumerate()
        .map(|(i, id)| {
            let sb = if i.is_multiple_of(2) { &a } else { &b };
            (format!("warm {id}"), spawn(sb, &["revision", "warm", "dev", &id]))
        })
        .collect();
    for (what, code, stderr) in wait_all(warms) {
        assert_eq!(code, 0, "{what}: {stderr}");
    }
    let serving = expected("dev");
    let sets = serving
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let sb = if i.is_multiple_of(2) { &a } else { &b };
            let entry = format!("{id}=10000");
            (
                format!("traffic set {entry}"),
                spawn(sb, &["traffic", "set", "dev", "web", &entry, "--json"]),
            )
        })
        .collect();
    let mut applied = Vec::new();
    for (what, code, stderr) in wait_all(sets) {
        assert_eq!(code, 0, "{what}: {stderr}");
        applied.push(what);
    }
    // One generation per command, numbered without a gap or a repeat, each
    // the split one command asked for.
    let history = generations(&a);
    assert_eq!(history.len(), serving.len(), "{history:?}");
    let mut recorded: Vec<String> = history.iter().map(|g| g.replace("=10000", "")).collect();
    recorded.sort();
    assert_eq!(recorded, serving);
    let numbers: Vec<String> = a
        .sql_rows("SELECT generation FROM split_generations WHERE env_id = 'dev' ORDER BY generation")
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    let expected_numbers: Vec<String> = (1..=serving.len()).map(|n| n.to_string()).collect();
    assert_eq!(numbers, expected_numbers);

    // One audit chain, intact from either machine, every command in it.
    let va = json(&a, &["audit", "verify", "--json"]);
    let vb = json(&b, &["audit", "verify", "--json"]);
    assert_eq!(va["intact"], true, "{va:#}");
    assert_eq!(va["head"], vb["head"]);
    let traffic_rows = a.sql_rows("SELECT COUNT(*) FROM audit WHERE command = 'traffic set'")[0][0].clone();
    assert_eq!(traffic_rows, serving.len().to_string());
    // Events of both machines, in one order: each revision staged once.
    let events = json(&b, &["events", "dev", "--json"]);
    let staged = events
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["to"] == "staged")
        .count();
    assert_eq!(staged, serving.len(), "{events:#}");
}

fn start_rollout(sb: &Sandbox) -> Child {
    spawn(
        sb,
        &[
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "R2",
            "--steps",
            "50,100",
            "--soak",
            "2s",
            "--interval",
            "100ms",
            "--analysis",
            "probe=1",
        ],
    )
}

#[test]
fn a_rollout_driven_on_one_machine_is_finished_by_the_other_after_a_kill() {
    let cluster = Cluster::start();
    let (a, b) = two_machines(&cluster);
    stage(&a, "dev", "R1");
    ok(&a, &["revision", "warm", "dev", "R1"]);
    ok(&a, &["traffic", "set", "dev", "web", "R1=10000"]);
    stage(&b, "dev", "R2");

    let mut driver = start_rollout(&a);
    wait_for_step(&b, "soaking at 50%", |s| soaking(s, "step 1"));
    // One driver per rollout, across machines: B stands aside.
    let out = b.host().args(["rollout", "resume", "dev", "web"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("the process driving rollout"), "{stderr}");
    let shown = json(&b, &["rollout", "status", "dev", "web", "--json"]);
    assert_eq!(shown[0]["driver_pid"], driver.id(), "{shown:#}");
    // A pid alone would name a process of either machine: A's is named.
    let on = shown[0]["driver_machine"].as_str().unwrap_or_default().to_string();
    assert!(!on.is_empty(), "{shown:#}");
    let text = ok(&b, &["rollout", "status", "dev", "web"]);
    assert!(
        text.contains(&format!("driven by pid {} on {on}", driver.id())),
        "{text}"
    );

    // A's driver dies mid-soak; two resumes race, one on each machine:
    // exactly one drives, and the rollout ends where the plan says.
    driver.kill().unwrap();
    driver.wait().unwrap();
    let resumes = vec![
        (
            "resume on A".to_string(),
            spawn(&a, &["rollout", "resume", "dev", "web"]),
        ),
        (
            "resume on B".to_string(),
            spawn(&b, &["rollout", "resume", "dev", "web"]),
        ),
    ];
    let until = Instant::now() + Duration::from_secs(60);
    let done = wait_all(resumes);
    assert!(Instant::now() < until);
    for (what, code, stderr) in &done {
        assert_eq!(*code, 0, "{what}: {stderr}");
    }
    let stood_aside = done
        .iter()
        .filter(|(_, _, stderr)| stderr.contains("the process driving rollout"))
        .count();
    assert_eq!(stood_aside, 1, "{done:?}");
    let r = json(&a, &["rollout", "status", "dev", "web", "--json"])[0].clone();
    assert_eq!(r["state"], "succeeded", "{r:#}");
    assert_eq!(generations(&b), ["R1=10000", "R2=5000 R1=5000", "R2=10000"]);
    assert_eq!(json(&b, &["audit", "verify", "--json"])["intact"], true);
}

#[test]
fn a_command_that_lost_its_lock_commits_nothing() {
    let cluster = Cluster::start();
    let (a, _b) = two_machines(&cluster);
    crate::common::hostile_env(&a, "slow", "sleep");
    let before = a.sql_rows("SELECT COUNT(*) FROM audit")[0][0].clone();
    let mut holder = spawn(
        &a,
        &[
            "revision",
            "stage",
            "slow",
            "web",
            "--digest",
            DIGEST,
            "--location",
            "file:///b/S1",
            "--id",
            "S1",
            "--deadline-ms",
            "4000",
        ],
    );
    crate::common::wait_for("the stage to hold slow's lock", || {
        crate::common::env_lock_held(&a, "slow")
    });
    // The server drops the lock's session (a network cut, an operator's
    // pg_terminate_backend): another machine could take the lock now.
    a.sql(
        "",
        "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND pid <> pg_backend_pid()",
    );
    let until = Instant::now() + Duration::from_secs(30);
    while holder.try_wait().unwrap().is_none() {
        assert!(Instant::now() < until, "the stage did not end");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = holder.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("lost its lock"), "{stderr}");
    // Nothing of it committed: no revision, no audit row (not even its failure).
    assert!(revision_ids(&a, "slow").is_empty());
    assert_eq!(a.sql_rows("SELECT COUNT(*) FROM audit")[0][0], before);
    let _: Value = json(&a, &["audit", "verify", "--json"]);
}

/// `child`'s stdout lines, read on a thread of their own.
fn lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The first line from `lines` containing `needle`, waited for up to `secs`.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, needle: &str, secs: u64) -> String {
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line with {needle:?} within {secs} s"));
        if line.contains(needle) {
            return line;
        }
    }
}

#[test]
fn followers_on_one_machine_see_what_the_other_commits() {
    let cluster = Cluster::start();
    let (a, b) = two_machines(&cluster);
    stage(&a, "dev", "R1");
    let mut events = Reaped(spawn(&a, &["events", "dev", "--follow", "--json"]));
    let mut watch = Reaped(spawn(&a, &["status", "dev", "--watch", "--json"]));
    let (event_lines, watch_lines) = (lines(&mut events.0), lines(&mut watch.0));
    wait_for_line(&event_lines, "R1", 30);
    wait_for_line(&watch_lines, "R1", 30);
    // Both listen now (their first read is done); B commits. They are
    // woken by its notification: their fallback wait is 30 s, this one 10.
    std::thread::sleep(Duration::from_millis(300));
    stage(&b, "dev", "R7");
    let line = wait_for_line(&event_lines, "R7", 10);
    assert!(line.contains("staged"), "{line}");
    let line = wait_for_line(&watch_lines, "R7", 10);
    assert!(line.contains("revision R7"), "{line}");
    drop((events, watch));
}

#[test]
fn an_environment_whose_processes_run_on_one_machine_is_changed_only_there() {
    let cluster = Cluster::start();
    let (mut a, mut b) = two_machines(&cluster);
    a.machine = Some("alpha".into());
    b.machine = Some("beta".into());
    ok(
        &a,
        &[
            "env",
            "create",
            "local",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv,process",
        ],
    );
    let status = json(&b, &["status", "local", "--json"]);
    assert_eq!(status["binding"]["machine"], "alpha", "{status:#}");
    assert!(ok(&b, &["status", "local"]).contains("processes on machine alpha"));
    // From beta: refused, naming where to run it; nothing recorded.
    for args in [
        vec![
            "revision",
            "stage",
            "local",
            "web",
            "--digest",
            DIGEST,
            "--location",
            "file:///b/L1",
            "--id",
            "L1",
        ],
        vec!["env", "remove", "local"],
        vec!["rollout", "start", "local", "web", "--to", "L1", "--steps", "100"],
        vec![
            "env",
            "bind",
            "local",
            "--deployer",
            "envpack.deployer.ledger@^1",
            "--capability",
            "log,kv",
        ],
    ] {
        let out = b.host().args(&args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.contains("runs its processes on machine \"alpha\"") && stderr.contains("run this command on alpha"),
            "{stderr}"
        );
    }
    assert!(revision_ids(&a, "local").is_empty());
    // On alpha it goes through; environments without processes go anywhere.
    stage(&a, "local", "L1");
    stage(&b, "dev", "D1");
    assert_eq!(revision_ids(&b, "local"), ["L1"]);

    // Beta's agent probes what beta may change, never alpha's processes.
    ok(&a, &["revision", "warm", "local", "L1"]);
    ok(&b, &["revision", "warm", "dev", "D1"]);
    let agent = Reaped(spawn(
        &b,
        &["agent", "--probe-interval", "200ms", "--scan-interval", "100ms"],
    ));
    let health = |env: &str, id: &str| json(&a, &["revision", "show", env, id, "--json"])["health"].clone();
    let until = Instant::now() + Duration::from_secs(30);
    while health("dev", "D1").is_null() {
        assert!(Instant::now() < until, "beta's agent never probed D1");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(600));
    drop(agent);
    assert!(health("local", "L1").is_null(), "{:#}", health("local", "L1"));
    // No rollout was recorded by beta's refused start; one alpha records
    // is not driven (nor rolled back) by beta.
    assert_eq!(
        json(&a, &["rollout", "status", "local", "--json"]),
        serde_json::json!([])
    );
    ok(
        &a,
        &[
            "rollout",
            "start",
            "local",
            "web",
            "--to",
            "L1",
            "--steps",
            "100",
            "--no-drive",
        ],
    );
    let before = json(&a, &["rollout", "status", "local", "--json"]);
    let out = b.host().args(["rollout", "resume", "local", "web"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("run this command on alpha"), "{stderr}");
    assert_eq!(json(&a, &["rollout", "status", "local", "--json"]), before);
    // Beta's status says where it is driven from; alpha's needs not.
    let shown = ok(&b, &["rollout", "status", "local", "web"]);
    assert!(shown.contains("on alpha, `host rollout resume local web`"), "{shown}");
    let shown = ok(&a, &["rollout", "status", "local", "web"]);
    assert!(
        shown.contains("driven by nobody") && !shown.contains("on alpha,"),
        "{shown}"
    );
    ok(&a, &["rollout", "cancel", "local", "web", "--reason", "test over"]);
    // If alpha is gone for good, beta may forget the environment.
    ok(&b, &["env", "remove", "local", "--force"]);
    let envs = json(&a, &["env", "list", "--json"]);
    assert!(envs.as_array().unwrap().iter().all(|e| e["id"] != "local"), "{envs:#}");
}

#[test]
fn a_database_asked_for_tls_is_verified_and_refused_without_it() {
    let cluster = Cluster::start_tls();
    let url = format!("{}?sslmode=require", cluster.database());
    let ca = format!("{}/ca.crt", cluster.dir);
    let sb = Sandbox::on_database(&url);
    // With the server's CA: works.
    let out = sb
        .host()
        .env("PGSSLROOTCERT", &ca)
        .args(["env", "list"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Without it, the self-signed certificate is not trusted.
    let out = sb
        .host()
        .env_remove("PGSSLROOTCERT")
        .args(["env", "list"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("certificate"), "{stderr}");
    // A server without TLS, asked for it: refused, not sent in the clear.
    let plain = Cluster::start();
    let sb = Sandbox::on_database(&format!("{}?sslmode=require", plain.database()));
    let out = sb.host().args(["env", "list"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("TLS"), "{stderr}");
}

#[test]
fn a_machine_without_the_pinned_pack_is_told_where_it_came_from_and_syncs_it() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let a = operator_in(Sandbox::on_database(&url));
    let mut b = Sandbox::on_database(&url);
    b.machine = Some("beta".into());
    let key = a.dir.path().join("key.pub");
    // Reads need no pack; a verb does, and beta has not installed it.
    assert_eq!(json(&b, &["status", "dev", "--json"])["env"], "dev");
    let location = "file:///b/B1";
    let stage = [
        "revision",
        "stage",
        "dev",
        "web",
        "--digest",
        DIGEST,
        "--location",
        location,
        "--id",
        "B1",
    ];
    let out = b.host().args(stage).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("not installed on this machine") && stderr.contains(&p(&a.dir.path().join("ledger.wasm"))),
        "{stderr}"
    );
    assert!(stderr.contains("host pack sync"), "{stderr}");
    // A new environment asking for it by name is told the same.
    let create = [
        "env",
        "create",
        "qa",
        "--deployer",
        "envpack.deployer.ledger@^1",
        "--capability",
        "log,kv",
    ];
    let out = b.host().args(create).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no pack named envpack.deployer.ledger is installed")
            && stderr.contains("installed envpack.deployer.ledger@1.0.0")
            && stderr.contains("host pack sync"),
        "{stderr}"
    );
    // One the index has no version of is told only what this machine has.
    let out = b
        .host()
        .args(["env", "create", "qa", "--deployer", "envpack.deployer.ledger@^2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("pack sync"), "{stderr}");
    // Syncing before trusting the signer installs nothing: this machine's trust decides.
    let out = b.host().args(["pack", "sync"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not installed"));
    ok(&b, &["trust", "add", &p(&key), "--name", "ops", "--scope", "envpack.*"]);
    let synced = json(&b, &["pack", "sync", "--json"]);
    assert_eq!(synced[0]["installed"], true, "{synced:#}");
    assert!(ok(&b, &["pack", "sync"]).contains("every pack in the index is installed here"));
    ok(&b, &stage);
    assert_eq!(revision_ids(&a, "dev"), ["B1"]);
    ok(&b, &create);
}

#[test]
fn each_machine_checks_its_own_audit_sink_and_a_forged_row_of_its_own() {
    let cluster = Cluster::start();
    let (mut a, mut b) = two_machines(&cluster);
    a.machine = Some("alpha".into());
    b.machine = Some("beta".into());
    let (sink_a, sink_b) = (a.dir.path().join("sink"), b.dir.path().join("sink"));
    let with_sink = |sb: &Sandbox, sink: &std::path::Path, args: &[&str]| {
        let out = sb.host().env("ENVPACK_AUDIT_SINK", sink).args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    for (sb, sink, id) in [(&a, &sink_a, "S1"), (&b, &sink_b, "S2"), (&a, &sink_a, "S3")] {
        let location = format!("file:///b/{id}");
        let stage = [
            "revision",
            "stage",
            "dev",
            "web",
            "--digest",
            DIGEST,
            "--location",
            &location,
            "--id",
            id,
        ];
        assert_eq!(with_sink(sb, sink, &stage).0, Some(0));
    }
    // Each machine's sink vouches for its own rows: no false alarm.
    assert_eq!(with_sink(&a, &sink_a, &["audit", "verify"]), (Some(0), String::new()));
    assert_eq!(with_sink(&b, &sink_b, &["audit", "verify"]).0, Some(0));
    // A row forged in alpha's name (hash chain recomputed) is caught by alpha's sink.
    let last = a.sql_rows("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1");
    let (seq, prev): (i64, String) = (last[0][0].parse().unwrap(), last[0][1].clone());
    let hash = crate::operator::chain_hash(&prev, seq + 1, 1, "mallory on alpha", "traffic set", "{}", "ok");
    let forge = format!(
        "INSERT INTO audit (seq, at, actor, command, arguments, outcome, prev_hash, hash) \
         VALUES ({}, 1, 'mallory on alpha', 'traffic set', '{{}}', 'ok', '{prev}', '{hash}')",
        seq + 1
    );
    a.sql(&forge, &forge);
    let (code, stderr) = with_sink(&a, &sink_a, &["audit", "verify"]);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("never exported"), "{stderr}");
}

#[test]
fn a_machine_without_the_pack_neither_drives_nor_probes() {
    let cluster = Cluster::start();
    let url = cluster.database();
    let a = operator_in(Sandbox::on_database(&url));
    let b = Sandbox::on_database(&url);
    stage(&a, "dev", "R1");
    ok(&a, &["revision", "warm", "dev", "R1"]);
    ok(&a, &["traffic", "set", "dev", "web", "R1=10000"]);
    stage(&a, "dev", "R2");
    ok(
        &a,
        &[
            "rollout",
            "start",
            "dev",
            "web",
            "--to",
            "R2",
            "--steps",
            "100",
            "--soak",
            "100ms",
            "--no-drive",
        ],
    );
    let before = json(&a, &["rollout", "status", "dev", "web", "--json"]);
    // Beta has no pack: its resume is refused, its agent leaves both alone.
    let out = b.host().args(["rollout", "resume", "dev", "web"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(stderr.contains("not installed on this machine"), "{stderr}");
    let agent = Reaped(spawn(
        &b,
        &["agent", "--probe-interval", "200ms", "--scan-interval", "100ms"],
    ));
    std::thread::sleep(Duration::from_millis(2500));
    drop(agent);
    assert_eq!(json(&a, &["rollout", "status", "dev", "web", "--json"]), before);
    assert!(json(&a, &["revision", "show", "dev", "R1", "--json"])["health"].is_null());
    // Alpha, which has it, finishes the rollout.
    ok(&a, &["rollout", "resume", "dev", "web"]);
    assert_eq!(
        json(&a, &["rollout", "status", "dev", "web", "--json"])[0]["state"],
        "succeeded"
    );
}
