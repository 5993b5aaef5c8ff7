//! Helpers for tests that drive the real `host` binary: a private state
//! directory per test, environment documents written to temp files, and
//! JSON output parsed back.

#![allow(dead_code)]

pub mod rollout;

pub mod moto;

pub mod prometheus;

pub mod registry;

pub mod postgres;

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::{Value, json};
use tempfile::TempDir;

#[allow(unused_imports)]
pub use envpack_test_packs::{LEDGER, TEST_HOSTILE};

pub const A1: &str = "01JBW0000000000000000000A1";
pub const A2: &str = "01JBW0000000000000000000A2";
pub const B1: &str = "01JBW0000000000000000000B1";

/// One test's sandbox: its own state directory and scratch files, and its
/// records in `state.db` there or, when the suite runs on PostgreSQL, in a
/// database of its own.
pub struct Sandbox {
    pub dir: TempDir,
    pub database: Option<String>,
    /// The machine this sandbox's commands run as (`ENVPACK_MACHINE`).
    pub machine: Option<String>,
}

impl Sandbox {
    pub fn new() -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
            database: postgres::suite_database(),
            machine: None,
        }
    }

    /// A sandbox whose records are in the database at `url` (another
    /// "machine" of a team sharing it).
    pub fn on_database(url: &str) -> Self {
        Sandbox {
            dir: tempfile::tempdir().expect("temp dir"),
            database: Some(url.to_string()),
            machine: None,
        }
    }

    /// Points `cmd` at this sandbox's state (directory and database).
    pub fn state_env<'a>(&self, cmd: &'a mut std::process::Command) -> &'a mut std::process::Command {
        cmd.env("ENVPACK_STATE_DIR", self.state_dir());
        if let Some(machine) = &self.machine {
            cmd.env("ENVPACK_MACHINE", machine);
        }
        match &self.database {
            Some(url) => cmd.env("ENVPACK_DATABASE_URL", url),
            None => cmd.env_remove("ENVPACK_DATABASE_URL"),
        }
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// `host` with this sandbox's state directory.
    pub fn host(&self) -> assert_cmd::Command {
        let mut cmd = assert_cmd::Command::new(env!("CARGO_BIN_EXE_host"));
        cmd.env("ENVPACK_STATE_DIR", self.state_dir()).env_remove("ENVPACK_LOG");
        match &self.database {
            Some(url) => cmd.env("ENVPACK_DATABASE_URL", url),
            None => cmd.env_remove("ENVPACK_DATABASE_URL"),
        };
        if let Some(machine) = &self.machine {
            cmd.env("ENVPACK_MACHINE", machine);
        }
        cmd.timeout(std::time::Duration::from_secs(60));
        cmd
    }

    /// Runs SQL statements on this sandbox's records, as whoever can write
    /// the database (to tamper with them): `sqlite` on `state.db`,
    /// `postgres` on its database.
    pub fn sql(&self, sqlite: &str, postgres: &str) {
        match &self.database {
            Some(url) => ::postgres::Client::connect(url, ::postgres::NoTls)
                .expect("connect to the sandbox's database")
                .batch_execute(&format!("SET search_path TO envpack; {postgres}"))
                .expect(postgres),
            None => rusqlite::Connection::open(self.state_dir().join("state.db"))
                .expect("open state.db")
                .execute_batch(sqlite)
                .expect(sqlite),
        }
    }

    /// The rows of a query on this sandbox's records, every value as text.
    pub fn sql_rows(&self, query: &str) -> Vec<Vec<String>> {
        match &self.database {
            Some(url) => {
                use ::postgres::types::Type;
                let mut client =
                    ::postgres::Client::connect(url, ::postgres::NoTls).expect("connect to the sandbox's database");
                client
                    .batch_execute("SET search_path TO envpack")
                    .expect("the product's schema");
                let rows = client.query(query, &[]).expect(query);
                rows.iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| match *row.columns()[i].type_() {
                                Type::INT8 => row.get::<_, Option<i64>>(i).map(|n| n.to_string()),
                                Type::INT4 => row.get::<_, Option<i32>>(i).map(|n| n.to_string()),
                                Type::BYTEA => row
                                    .get::<_, Option<Vec<u8>>>(i)
                                    .map(|b| String::from_utf8_lossy(&b).into_owned()),
                                _ => row.get::<_, Option<String>>(i),
                            })
                            .map(Option::unwrap_or_default)
                            .collect()
                    })
                    .collect()
            }
            None => {
                let conn = rusqlite::Connection::open(self.state_dir().join("state.db")).expect("open state.db");
                let mut stmt = conn.prepare(query).expect(query);
                let columns = stmt.column_count();
                stmt.query_map([], |r| {
                    (0..columns)
                        .map(|i| {
                            Ok(match r.get_ref(i)? {
                                rusqlite::types::ValueRef::Null => String::new(),
                                rusqlite::types::ValueRef::Integer(n) => n.to_string(),
                                rusqlite::types::ValueRef::Real(x) => x.to_string(),
                                rusqlite::types::ValueRef::Text(t) | rusqlite::types::ValueRef::Blob(t) => {
                                    String::from_utf8_lossy(t).into_owned()
                                }
                            })
                        })
                        .collect::<rusqlite::Result<Vec<String>>>()
                })
                .expect(query)
                .collect::<rusqlite::Result<_>>()
                .expect(query)
            }
        }
    }

    /// Lifts the audit log's append-only guard (as someone who can write
    /// the database could).
    pub fn drop_audit_guards(&self) {
        self.sql(
            "DROP TRIGGER audit_append_only_update; DROP TRIGGER audit_append_only_delete;",
            "ALTER TABLE audit DISABLE TRIGGER USER;",
        );
    }

    /// Writes an environment document and returns its path.
    pub fn env_file(&self, name: &str, doc: &Value) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap()).unwrap();
        path
    }

    /// Every row of `host call`'s pack state (`call_kv` in `state.db`), as
    /// bytes to compare (empty if there is none yet).
    pub fn kv_bytes(&self) -> Vec<u8> {
        if self.database.is_none() && !self.state_dir().join("state.db").exists() {
            return Vec::new();
        }
        self.sql_rows("SELECT namespace, key, value FROM call_kv ORDER BY namespace, key")
            .into_iter()
            .flat_map(|row| {
                [row[0].as_str(), "\0", row[1].as_str(), "=", row[2].as_str(), "\n"]
                    .concat()
                    .into_bytes()
            })
            .collect()
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

/// A state directory with a trusted key (`key`, `key.pub` in the sandbox),
/// the ledger sealed, signed, installed, and `dev` bound to it.
pub fn operator() -> Sandbox {
    operator_in(Sandbox::new())
}

/// [`operator`] in the sandbox `sb` (one whose records are on a given database, say).
pub fn operator_in(sb: Sandbox) -> Sandbox {
    let key = sb.dir.path().join("key");
    ok(&sb, &["keygen", "--out", &p(&key)]);
    ok(
        &sb,
        &[
            "trust",
            "add",
            &p(&key.with_extension("pub")),
            "--name",
            "ops",
            "--scope",
            "envpack.*",
        ],
    );
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("packs/ledger/pack.toml");
    let pack = sb.dir.path().join("ledger.wasm");
    ok(
        &sb,
        &["pack", "seal", LEDGER, "--manifest", &p(&manifest), "-o", &p(&pack)],
    );
    ok(&sb, &["sign", &p(&pack), "--key", &p(&key)]);
    ok(&sb, &["pack", "install", &p(&pack)]);
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
    sb
}

/// Seals `component` with `manifest` (relative to the workspace root), signs
/// it with the sandbox's key and installs it (`--force`: test packs fail
/// conformance on purpose).
pub fn install_signed(sb: &Sandbox, component: &str, manifest: &str, name: &str) {
    let key = sb.dir.path().join("key");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join(manifest);
    let pack = sb.dir.path().join(format!("{name}.wasm"));
    ok(
        sb,
        &["pack", "seal", component, "--manifest", &p(&manifest), "-o", &p(&pack)],
    );
    ok(sb, &["sign", &p(&pack), "--key", &p(&key)]);
    ok(sb, &["pack", "install", "--force", &p(&pack)]);
}

pub fn p(path: &Path) -> String {
    path.display().to_string()
}

/// Runs `host ARGS`, asserting success; returns stdout.
pub fn ok(sb: &Sandbox, args: &[&str]) -> String {
    let out = sb.host().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "host {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `host ARGS` and parses its stdout as JSON.
pub fn json(sb: &Sandbox, args: &[&str]) -> Value {
    let out = ok(sb, args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("host {args:?} printed no JSON ({e}): {out}"))
}

/// Starts `host ARGS` in the background on the sandbox's state.
pub fn spawn<S: AsRef<std::ffi::OsStr>>(sb: &Sandbox, args: &[S]) -> std::process::Child {
    sb.state_env(&mut std::process::Command::new(env!("CARGO_BIN_EXE_host")))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

/// The artifact digest the operator tests stage with.
pub const DIGEST: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// `host revision stage ENV web --id ID`, asserting success.
pub fn stage(sb: &Sandbox, env: &str, id: &str) {
    let location = format!("file:///b/{id}");
    ok(
        sb,
        &[
            "revision",
            "stage",
            env,
            "web",
            "--digest",
            DIGEST,
            "--location",
            &location,
            "--id",
            id,
        ],
    );
}

/// A copy of the component at `path` in the sandbox whose `describe`
/// names version `to` instead of `from` (the same code: what another
/// version of a pack is to the host); returns the copy's path.
pub fn with_version(sb: &Sandbox, path: &str, descriptor: &str, from: &str, to: &str) -> PathBuf {
    assert_eq!(from.len(), to.len(), "the patch keeps the component's layout");
    let bytes = std::fs::read(path).unwrap();
    let (old, new) = (format!("{descriptor}@{from}"), format!("{descriptor}@{to}"));
    let at = bytes
        .windows(old.len())
        .position(|w| w == old.as_bytes())
        .expect("the descriptor in the pack");
    let mut patched = bytes;
    patched[at..at + new.len()].copy_from_slice(new.as_bytes());
    let copy = sb.dir.path().join(format!("{descriptor}-{to}-unsealed.wasm"));
    std::fs::write(&copy, patched).unwrap();
    copy
}

/// Installs the hostile test pack and creates `env` bound to it in `mode`.
pub fn hostile_env(sb: &Sandbox, env: &str, mode: &str) {
    install_signed(sb, TEST_HOSTILE, "packs/test-hostile/pack.toml", "hostile");
    let setting = format!("mode={mode}");
    ok(
        sb,
        &[
            "env",
            "create",
            env,
            "--deployer",
            "envpack.test.hostile@^0.1",
            "--capability",
            "log,kv",
            "--setting",
            &setting,
        ],
    );
}

/// A tiny xorshift, seeded from the clock and printed, so a failure can be replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new() -> Self {
        let seed = std::env::var("ENVPACK_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos() as u64
            });
        eprintln!("seed {seed} (set ENVPACK_TEST_SEED to replay)");
        Rng(seed | 1)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }

    pub fn pick<'a>(&mut self, items: &'a [String]) -> &'a str {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The test app (`tests/apps/revision_app.py`) as `app.py` in a
/// `.tar.gz`, in the sandbox; its path.
pub fn revision_app_tarball(sb: &Sandbox) -> PathBuf {
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps/revision_app.py");
    let src = sb.dir.path().join("app-src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::copy(&app, src.join("app.py")).unwrap();
    let tarball = sb.dir.path().join("app.tar.gz");
    let status = std::process::Command::new("tar")
        .args(["-czf", &p(&tarball), "-C", &p(&src), "app.py"])
        .status()
        .unwrap();
    assert!(status.success());
    tarball
}

/// Runs `host ARGS` and SIGKILLs it after `ms` (if it is still running).
pub fn kill_after(sb: &Sandbox, args: &[&str], ms: u64) {
    let mut child = spawn(sb, args);
    std::thread::sleep(std::time::Duration::from_millis(ms));
    let _ = child.kill();
    let _ = child.wait();
}

/// What the local-process pack needs granted, each with the arguments it
/// passes: tar to unpack, nginx to test and run its config, the test app's
/// interpreter and single-file apps in the work directory; the variables it
/// gives apps (the test app's switches among them); and TCP `ports` (the
/// revisions' range and nginx's listen ports).
pub fn local_process_grants(ports: &[&str]) -> Vec<String> {
    let mut grants: Vec<String> = [
        "--allow-run",
        "tar -xzf {path} -C {path} --no-same-owner",
        "--allow-run",
        "nginx -t -q -p {path} -c {path} -e stderr",
        "--allow-run",
        "nginx -p {path} -c {path} -e stderr -g 'daemon off;'",
        "--allow-run",
        "/usr/bin/python3 {path}",
        "--allow-run",
        "@work-dir",
        "--allow-env",
        "PORT",
        "--allow-env",
        "ENVPACK_REVISION",
        "--allow-env",
        "FAIL_*",
        "--allow-env",
        "CRASH",
    ]
    .map(String::from)
    .to_vec();
    for range in ports {
        grants.extend(["--allow-port".to_string(), range.to_string()]);
    }
    grants
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits (polling, at most 60 s) until `ready` holds; panics naming `what`.
pub fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !ready() {
        assert!(std::time::Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether a command holds environment `env`'s lock now (a non-blocking
/// lock attempt on its lock file fails).
pub fn env_lock_held(sb: &Sandbox, env: &str) -> bool {
    use sha2::Digest;
    if sb.database.is_some() {
        // The server's advisory lock (the key `lock::postgres` derives).
        let digest = sha2::Sha256::digest(format!("envpack host lock\0lock {env}").as_bytes());
        let key = i64::from_be_bytes(digest[..8].try_into().unwrap());
        let held = sb.sql_rows(&format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND classid::bigint = {} AND objid::bigint = {}",
            (key >> 32) & 0xffff_ffff,
            key & 0xffff_ffff
        ));
        return held[0][0] != "0";
    }
    let name = hex::encode(sha2::Sha256::digest(env.as_bytes()));
    let path = sb.state_dir().join("locks").join(format!("{name}.lock"));
    let Ok(file) = std::fs::File::options().write(true).open(path) else {
        return false;
    };
    matches!(file.try_lock(), Err(std::fs::TryLockError::WouldBlock))
}

/// Everything the processes of every environment wrote to their logs.
pub fn process_logs(sb: &Sandbox) -> String {
    let mut all = String::new();
    let Ok(works) = std::fs::read_dir(sb.state_dir().join("work")) else {
        return all;
    };
    for work in works.flatten() {
        if let Ok(logs) = std::fs::read_dir(work.path().join("logs")) {
            for log in logs.flatten() {
                all.push_str(&std::fs::read_to_string(log.path()).unwrap_or_default());
            }
        }
    }
    all
}
