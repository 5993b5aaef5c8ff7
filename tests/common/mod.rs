//! Helpers for tests that drive the real `host` binary: a private state
//! directory per test, environment documents written to temp files, and
//! JSON output parsed back.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use tempfile::TempDir;

#[allow(unused_imports)]
pub use envpack_test_packs::{LEDGER, TEST_HOSTILE};

pub const A1: &str = "01JBW0000000000000000000A1";
pub const A2: &str = "01JBW0000000000000000000A2";
pub const B1: &str = "01JBW0000000000000000000B1";

/// One test's sandbox: its own state directory and scratch files.
pub struct Sandbox {
    pub dir: TempDir,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `host` with this sandbox's state directory.
    pub fn host(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_host"));
        cmd.env("ENVPACK_STATE_DIR", self.state_dir()).env_remove("ENVPACK_LOG");
        cmd.timeout(std::time::Duration::from_secs(60));
        cmd
    }

    /// Writes an environment document and returns its path.
    pub fn env_file(&self, name: &str, doc: &Value) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        path
    }

    /// Bytes of the kv state file (empty if it does not exist yet).
    pub fn kv_bytes(&self) -> Vec<u8> {
        std::fs::read(self.state_dir().join("kv.json")).unwrap_or_default()
    }

    /// Runs `host call PACK VERB --env ENV [target] --json`.
    pub fn call(&self, pack: &str, verb: &str, env: &Path, target: &[&str]) -> (Output, Value) {
        let output = self
            .host()
            .args(["call", pack, verb, "--json", "--env"])
            .arg(env)
            .args(target)
            .output()
            .expect("run host");
        let value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "host call printed no JSON ({e}); stdout: {}; stderr: {}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            )
        });
        (output, value)
    }
}

fn revision(id: &str, sequence: u64, lifecycle: &str) -> Value {
    json!({
        "id": id,
        "sequence": sequence,
        "lifecycle": lifecycle,
        "artifact": {
            "digest": format!("sha256:{}", "ab".repeat(32)),
            "location": format!("file:///builds/{id}.tar.gz"),
        },
        "drain_seconds": 5,
        "settings": { "PORT": "8080" },
    })
}

/// Two deployments (web: A1, A2 split 90/10; api: B1 at 100%), kv and log granted.
pub fn fixture(settings: Value) -> Value {
    json!({
        "id": "dev",
        "capabilities": ["log", "kv", "clock"],
        "settings": settings,
        "deployments": [
            {
                "id": "web",
                "split": { "generation": 1, "entries": [
                    { "revision": A1, "weight_bps": 9000 },
                    { "revision": A2, "weight_bps": 1000 }
                ]},
                "revisions": [revision(A1, 1, "ready"), revision(A2, 2, "ready")]
            },
            {
                "id": "api",
                "split": { "generation": 1, "entries": [{ "revision": B1, "weight_bps": 10000 }] },
                "revisions": [revision(B1, 1, "ready")]
            }
        ]
    })
}

/// The fixture with web's split entries replaced.
pub fn with_web_split(entries: Value) -> Value {
    let mut doc = fixture(json!({}));
    doc["deployments"][0]["split"]["entries"] = entries;
    doc
}

pub fn error_kind(value: &Value) -> &str {
    value["result"]["error"]["kind"].as_str().unwrap_or("<no error>")
}

pub fn error_message(value: &Value) -> &str {
    value["result"]["error"]["message"].as_str().unwrap_or("<no error>")
}
