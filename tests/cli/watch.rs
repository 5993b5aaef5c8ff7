//! `host status ENV --watch`: the live read model prints each deployment,
//! revision and rollout once, then only what other processes change.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use crate::common::{ok, operator, spawn};
use serde_json::Value;

/// The watcher's stdout, line by line as it prints them.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Reads lines until one has `change` for `key`; returns every line read.
fn until_seen(rx: &std::sync::mpsc::Receiver<String>, change: &str, key: &str) -> Vec<String> {
    let mut read = Vec::new();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let left = until.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the watcher never printed {change} {key}; it printed {read:?}"));
        let value: Value = serde_json::from_str(&line).unwrap();
        let found = value["change"] == change && value["key"] == key;
        read.push(line);
        if found {
            return read;
        }
    }
}

#[test]
fn status_watch_prints_only_what_changed_as_it_is_committed() {
    let sb = operator();
    crate::common::stage(&sb, "dev", "R1");
    let mut watcher = spawn(&sb, &["status", "dev", "--watch", "--json"]);
    let rx = lines_of(&mut watcher);
    // What is there is shown first; each change is awaited as it is printed.
    let mut out = until_seen(&rx, "added", "revision R1");
    ok(&sb, &["revision", "warm", "dev", "R1"]);
    out.extend(until_seen(&rx, "changed", "revision R1"));
    ok(&sb, &["traffic", "set", "dev", "web", "R1=10000"]);
    out.extend(until_seen(&rx, "changed", "deployment web"));
    // A command that commits (its audit row) but changes nothing the view
    // shows prints nothing: after it, the next line is the next real change.
    sb.host()
        .args(["traffic", "set", "dev", "web", "NOPE=10000"])
        .assert()
        .code(2);
    ok(
        &sb,
        &[
            "revision",
            "stage",
            "dev",
            "web",
            "--digest",
            crate::common::DIGEST,
            "--location",
            "file:///b/R2",
            "--id",
            "R2",
        ],
    );
    out.extend(until_seen(&rx, "added", "revision R2"));
    watcher.kill().unwrap();
    let _ = watcher.wait();
    let changes: Vec<Value> = out.iter().map(|l| serde_json::from_str(l).unwrap()).collect();
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
            "changed deployment web",
            "added revision R2"
        ],
        "{out:?}"
    );
    let last = |key: &str| {
        changes.iter().rev().find(|c| c["key"] == key).unwrap()["value"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(last("revision R1").contains("ready"), "{out:?}");
    assert!(last("deployment web").contains("R1=10000"), "{out:?}");
}
