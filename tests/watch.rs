//! `host status ENV --watch`: the live read model prints each deployment,
//! revision and rollout once, then only what other processes change.

mod common;

use std::io::Read;
use std::time::{Duration, Instant};

use common::{json, ok, operator, spawn};
use serde_json::Value;

#[test]
fn status_watch_prints_only_what_changed_as_it_is_committed() {
    let sb = operator();
    common::stage(&sb, "dev", "R1");
    let mut watcher = spawn(&sb, &["status", "dev", "--watch", "--json"]);
    // Wait until it has shown what is there (bounded), then change things.
    let until = Instant::now() + Duration::from_secs(20);
    while json(&sb, &["revision", "list", "dev", "--json"])
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(Instant::now() < until);
    }
    std::thread::sleep(Duration::from_millis(800));
    ok(&sb, &["revision", "warm", "dev", "R1"]);
    std::thread::sleep(Duration::from_millis(800));
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000"]);
    std::thread::sleep(Duration::from_millis(800));
    // A command that commits (its audit row) but changes nothing the view
    // shows prints nothing.
    sb.host()
        .args(["traffic", "set", "dev", "web", "NOPE=10000"])
        .assert()
        .code(2);
    std::thread::sleep(Duration::from_millis(800));
    watcher.kill().unwrap();
    let _ = watcher.wait();
    let mut out = String::new();
    watcher.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    let changes: Vec<Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let mut seen: Vec<String> = changes
        .iter()
        .map(|c| format!("{} {}", c["change"].as_str().unwrap(), c["key"].as_str().unwrap()))
        .collect();
    // A warm commits twice (warming, then ready): a poll may see both.
    seen.dedup();
    assert_eq!(
        seen,
        [
            "added deployment web",
            "added revision R1",
            "changed revision R1",
            "changed deployment web"
        ],
        "{out}"
    );
    let last = |key: &str| {
        changes.iter().rev().find(|c| c["key"] == key).unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(last("revision R1").contains("ready"), "{out}");
    assert!(last("deployment web").contains("R1=10000"), "{out}");
}
