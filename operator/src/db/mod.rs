//! The operator's database. By default SQLite in the state directory:
//! opened in WAL mode with a busy timeout and foreign keys on, migrated by
//! `user_version`, and refused with a clear error when it was written by a
//! newer host. With a database URL, the same tables on PostgreSQL
//! ([`postgres`]), migrated by their own list.

use std::path::{Path, PathBuf};
use std::time::Duration;

use envpack_host::{FileKv, KvError, StateDir};
use rusqlite::Connection;

use crate::error::StoreError;
use crate::sql::Db;

mod postgres;

/// Where the operator's records are.
#[derive(Clone, Debug)]
pub enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

impl Location {
    pub fn of(state_dir: &StateDir) -> Self {
        match state_dir.database_url() {
            Some(url) => Location::Postgres(url.to_string()),
            None => Location::Sqlite(state_dir.database()),
        }
    }

    /// A connection for writing (creating and migrating the schema).
    pub fn open(&self) -> Result<Db, StoreError> {
        match self {
            Location::Sqlite(path) => open(path),
            Location::Postgres(url) => postgres::open(url),
        }
    }

    /// A connection for reading; on SQLite a read-only one.
    pub fn open_read_only(&self) -> Result<Db, StoreError> {
        match self {
            Location::Sqlite(path) => open_read_only(path),
            Location::Postgres(url) => postgres::open(url),
        }
    }
}

/// Each migration brings the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE environments (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL
);
CREATE TABLE bindings (
    env_id TEXT PRIMARY KEY REFERENCES environments(id) ON DELETE CASCADE,
    requirement TEXT NOT NULL,
    descriptor TEXT NOT NULL,
    pack_digest TEXT NOT NULL,
    settings TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    bound_at INTEGER NOT NULL
);
CREATE TABLE deployments (
    env_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    id TEXT NOT NULL,
    PRIMARY KEY (env_id, id)
);
CREATE TABLE revisions (
    env_id TEXT NOT NULL,
    id TEXT NOT NULL,
    deployment TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    artifact_digest TEXT NOT NULL,
    artifact_location TEXT NOT NULL,
    drain_seconds INTEGER NOT NULL,
    settings TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    lifecycle TEXT NOT NULL,
    PRIMARY KEY (env_id, id),
    UNIQUE (env_id, deployment, sequence),
    FOREIGN KEY (env_id, deployment) REFERENCES deployments(env_id, id) ON DELETE CASCADE
);
CREATE TRIGGER revisions_immutable BEFORE UPDATE ON revisions
WHEN NEW.id IS NOT OLD.id OR NEW.deployment IS NOT OLD.deployment OR NEW.sequence IS NOT OLD.sequence
  OR NEW.artifact_digest IS NOT OLD.artifact_digest OR NEW.artifact_location IS NOT OLD.artifact_location
  OR NEW.drain_seconds IS NOT OLD.drain_seconds OR NEW.settings IS NOT OLD.settings OR NEW.created_at IS NOT OLD.created_at
BEGIN SELECT RAISE(ABORT, 'revision rows are immutable except their lifecycle'); END;
CREATE TABLE lifecycle_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    env_id TEXT NOT NULL,
    revision_id TEXT NOT NULL,
    from_state TEXT NOT NULL,
    to_state TEXT NOT NULL,
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE TABLE split_generations (
    env_id TEXT NOT NULL,
    deployment TEXT NOT NULL,
    generation INTEGER NOT NULL,
    entries TEXT NOT NULL,
    idempotency_key TEXT,
    actor TEXT NOT NULL,
    at INTEGER NOT NULL,
    PRIMARY KEY (env_id, deployment, generation),
    FOREIGN KEY (env_id, deployment) REFERENCES deployments(env_id, id) ON DELETE CASCADE
);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at INTEGER NOT NULL,
    actor TEXT NOT NULL,
    command TEXT NOT NULL,
    arguments TEXT NOT NULL,
    outcome TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
"#,
    // 2: pack state moves from kv.json into the database, per environment, so
    // that it commits with the lifecycle change it belongs to. The rows of
    // kv.json are imported right after this runs (see `import_kv_json`).
    r#"
CREATE TABLE pack_kv (
    env_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    pack TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (env_id, pack, key)
) WITHOUT ROWID;
CREATE TABLE call_kv (
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
"#,
    // 3: grants with scopes (contract 1.1 capabilities), as JSON.
    r#"
ALTER TABLE bindings ADD COLUMN grants TEXT NOT NULL DEFAULT '{}';
"#,
    // 4: per-verb deadlines and the cap on a pack's own expectations, as JSON.
    r#"
ALTER TABLE bindings ADD COLUMN deadlines TEXT NOT NULL DEFAULT '{}';
"#,
    // 5: rollouts, as sagas: one row per rollout, one row per step, written
    // before the step acts and marked after; at most one rollout per
    // deployment is unfinished. And the deploy keys an environment trusts.
    r#"
CREATE TABLE rollouts (
    id TEXT PRIMARY KEY,
    env_id TEXT NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    deployment TEXT NOT NULL,
    revision TEXT NOT NULL,
    spec TEXT NOT NULL,
    previous TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    stopped TEXT NOT NULL DEFAULT '',
    actor TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX one_unfinished_rollout ON rollouts (env_id, deployment)
    WHERE state IN ('running', 'paused', 'rolling-back');
ALTER TABLE bindings ADD COLUMN deploy_keys TEXT NOT NULL DEFAULT '[]';
CREATE TABLE rollout_steps (
    rollout_id TEXT NOT NULL REFERENCES rollouts(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    phase TEXT NOT NULL,
    action TEXT NOT NULL,
    state TEXT NOT NULL,
    note TEXT NOT NULL DEFAULT '',
    soaked_ms INTEGER NOT NULL DEFAULT 0,
    started_at INTEGER,
    done_at INTEGER,
    PRIMARY KEY (rollout_id, seq)
);
"#,
    // 6: an environment is pinned to the signer of its pack (besides its
    // digest), and a removed environment's deploy keys outlive it.
    r#"
ALTER TABLE bindings ADD COLUMN signer TEXT NOT NULL DEFAULT '';
ALTER TABLE bindings ADD COLUMN disk_budget_mib INTEGER NOT NULL DEFAULT 4096;
CREATE TABLE retired_environments (
    id TEXT PRIMARY KEY,
    deploy_keys TEXT NOT NULL,
    removed_at INTEGER NOT NULL,
    actor TEXT NOT NULL
);
"#,
    // 7: what `host agent` last saw when it probed a ready revision.
    r#"
CREATE TABLE revision_health (
    env_id TEXT NOT NULL,
    revision TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    checked_at INTEGER NOT NULL,
    PRIMARY KEY (env_id, revision),
    FOREIGN KEY (env_id, revision) REFERENCES revisions(env_id, id) ON DELETE CASCADE
);
"#,
    // 8: a deployment's traffic can be withdrawn (generations up to
    // `split_floor` are history, not its split) and the deployment retired
    // (its revisions kept, archived; staging into it again revives it).
    r#"
ALTER TABLE deployments ADD COLUMN split_floor INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN retired_at INTEGER;
"#,
    // 9: the machine an environment's processes run on (with shared
    // records, its changing commands run there).
    r#"
ALTER TABLE bindings ADD COLUMN machine TEXT NOT NULL DEFAULT '';
"#,
    // 10: the packs installed on any machine sharing these records, and
    // where each came from (every machine verifies its own copy).
    r#"
CREATE TABLE installed_packs (
    digest TEXT PRIMARY KEY,
    descriptor TEXT NOT NULL,
    signer TEXT NOT NULL,
    source TEXT NOT NULL,
    machine TEXT NOT NULL,
    installed_at INTEGER NOT NULL
);
"#,
];

/// How long a connection waits for another process's lock on the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The WAL's length past which a commit folds it into state.db: every
/// process that opens the database first reads the WAL back whole (its
/// index lives in shared memory that ends with the last process), so it
/// is kept short; a traffic change adds ~20 KiB, so about one command
/// in a dozen folds.
const WAL_FOLD_BYTES: u64 = 256 * 1024;

/// Folds a long WAL into state.db and empties it (a `TRUNCATE`
/// checkpoint), after a commit. Never waits: while a reader still reads
/// an older snapshot the fold is left to a later commit.
pub fn fold_wal(db: &Db) {
    let Some(conn) = db.as_sqlite() else {
        return;
    };
    let Some(wal) = conn
        .path()
        .filter(|p| !p.is_empty())
        .map(|p| PathBuf::from(format!("{p}-wal")))
    else {
        return;
    };
    if std::fs::metadata(&wal).map_or(true, |m| m.len() <= WAL_FOLD_BYTES) {
        return;
    }
    let folded = conn
        .busy_timeout(Duration::ZERO)
        .and_then(|()| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get::<_, i64>(0)));
    if let Err(e) = conn.busy_timeout(BUSY_TIMEOUT) {
        tracing::warn!("cannot set the database's busy timeout again: {e}");
    }
    match folded {
        Ok(0) => tracing::debug!("folded the WAL into state.db"),
        Ok(_) => tracing::debug!("the WAL is read by another process; folding it later"),
        Err(e) => tracing::debug!("folding the WAL later: {e}"),
    }
}

/// The schema version this host writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens (creating and migrating) the SQLite database at `path`.
pub fn open(path: &Path) -> Result<Db, StoreError> {
    open_sqlite(path).map(Db::sqlite)
}

fn open_sqlite(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    // The operator's records are the operator's alone (SQLite gives the
    // -wal and -shm files the database file's mode).
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).map_err(|e| {
        StoreError::Io {
            path: path.display().to_string(),
            source: e,
        }
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Every command is a process of its own, and a checkpoint when it
    // closed the database cost more than the command's own commit: the
    // WAL and state.db synced, the WAL deleted, and the next command's
    // WAL created again with its header and the directory synced. The
    // WAL now stays between commands (committed, synced: nothing is lost
    // by a crash; the next opener reads it back) and is folded into
    // state.db once it is long (`fold_wal`).
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
    let conn = migrate(conn, path)?;
    envpack_host::timing::mark("state-open");
    Ok(conn)
}

/// A read-only connection, for readers (`status`, `events`, ...) and the
/// pack's kv reads during a verb: one open, no pragma to set. A missing or
/// older database is created or migrated first (the only write a reader
/// ever causes); a newer one is refused.
pub fn open_read_only(path: &Path) -> Result<Db, StoreError> {
    if path.exists() {
        let conn = read_only(path)?;
        if schema_version(&conn)? == SCHEMA_VERSION {
            envpack_host::timing::mark("state-open");
            return Ok(Db::sqlite(conn));
        }
    }
    drop(open_sqlite(path)?);
    let conn = read_only(path)?;
    check_version(&conn)?;
    Ok(Db::sqlite(conn))
}

fn read_only(path: &Path) -> Result<Connection, StoreError> {
    use rusqlite::OpenFlags;
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// The schema version of `conn`'s database; a newer one than this host's is refused.
fn schema_version(conn: &Connection) -> Result<i64, StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    Ok(version)
}

/// Refuses a database this host does not understand.
pub fn check_version(conn: &Connection) -> Result<(), StoreError> {
    schema_version(conn).map(drop)
}

fn migrate(mut conn: Connection, path: &Path) -> Result<Connection, StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Another process may have migrated while this one waited for the lock.
        let now: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if now > index as i64 {
            continue;
        }
        tx.execute_batch(sql)?;
        let imported = if index == 1 { import_kv_json(&tx, path)? } else { None };
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
        // The rows are committed: set the file aside so nothing reads it again.
        if let Some(file) = imported {
            std::fs::rename(&file, file.with_extension("json.imported")).map_err(|e| StoreError::Io {
                path: file.display().to_string(),
                source: e,
            })?;
        }
    }
    Ok(conn)
}

/// Imports the pack state of an older host (`kv.json` beside the database,
/// namespaces `PACK/ENV`): into `pack_kv` for environments the store knows,
/// into `call_kv` (the `host call` state) otherwise. Returns the file's path
/// if there was one.
fn import_kv_json(tx: &Connection, db_path: &Path) -> Result<Option<std::path::PathBuf>, StoreError> {
    let Some(file) = db_path.parent().map(|dir| dir.join("kv.json")) else {
        return Ok(None);
    };
    let namespaces = match FileKv::open(&file) {
        Ok(kv) => kv.namespaces(),
        Err(KvError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Import(e.to_string())),
    };
    if namespaces.is_empty() && !file.exists() {
        return Ok(None);
    }
    for (namespace, entries) in namespaces {
        let env = namespace
            .split_once('/')
            .map(|(pack, env)| (pack.to_string(), env.to_string()));
        let known = match &env {
            Some((_, env)) => tx
                .query_row("SELECT 1 FROM environments WHERE id = ?1", [env], |_| Ok(()))
                .map(|()| true)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(false),
                    other => Err(other),
                })?,
            None => false,
        };
        for (key, value) in entries {
            match (&env, known) {
                (Some((pack, env)), true) => tx.execute(
                    "INSERT OR REPLACE INTO pack_kv (env_id, pack, key, value) VALUES (?1, ?2, ?3, ?4)",
                    rusqlite::params![env, pack, key, value],
                )?,
                _ => tx.execute(
                    "INSERT OR REPLACE INTO call_kv (namespace, key, value) VALUES (?1, ?2, ?3)",
                    rusqlite::params![namespace, key, value],
                )?,
            };
        }
    }
    Ok(Some(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database at schema 1 (before pack state moved in), with `dev` known.
    fn version_one(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("state.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute("INSERT INTO environments (id, created_at) VALUES ('dev', 0)", [])
            .unwrap();
        path
    }

    #[test]
    fn a_reader_creates_migrates_or_refuses_but_never_writes_a_current_database() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        // Missing: created and migrated, then opened read-only.
        let conn = open_read_only(&path).unwrap();
        let conn = conn.as_sqlite().unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        assert!(
            conn.execute("INSERT INTO environments (id, created_at) VALUES ('x', 0)", [])
                .is_err()
        );
        // Older: migrated first.
        let old = tempfile::tempdir().unwrap();
        let old_path = version_one(old.path());
        let conn = open_read_only(&old_path).unwrap();
        let conn = conn.as_sqlite().unwrap();
        assert_eq!(schema_version(&conn).unwrap(), SCHEMA_VERSION);
        assert!(
            conn.query_row("SELECT 1 FROM environments WHERE id = 'dev'", [], |_| Ok(()))
                .is_ok()
        );
        // Newer: refused, and left as it was.
        let rw = Connection::open(&path).unwrap();
        rw.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        drop(rw);
        assert!(matches!(open_read_only(&path), Err(StoreError::NewerSchema { .. })));
        let rw = Connection::open(&path).unwrap();
        let version: i64 = rw.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION + 1);
    }

    #[test]
    fn kv_json_of_an_older_host_is_imported_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = version_one(dir.path());
        let old = r#"{"envpack.deployer.ledger/dev": {"rev/A": "staged", "bin": [255, 0]},
                      "envpack.deployer.ledger/scratch": {"rev/B": "warm"}}"#;
        std::fs::write(dir.path().join("kv.json"), old).unwrap();
        let conn = open_sqlite(&path).unwrap();
        let dev: Vec<(String, Vec<u8>)> = conn
            .prepare("SELECT key, value FROM pack_kv WHERE env_id = 'dev' ORDER BY key")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            dev,
            vec![("bin".into(), vec![255, 0]), ("rev/A".into(), b"staged".to_vec())]
        );
        let call: String = conn
            .query_row("SELECT namespace FROM call_kv WHERE key = 'rev/B'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(
            call, "envpack.deployer.ledger/scratch",
            "unknown environments stay host-call state"
        );
        assert!(!dir.path().join("kv.json").exists());
        assert!(dir.path().join("kv.json.imported").exists());
    }

    #[test]
    fn a_corrupt_kv_json_stops_the_migration_and_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let path = version_one(dir.path());
        std::fs::write(dir.path().join("kv.json"), b"{not json").unwrap();
        let error = open(&path).err().expect("refused");
        assert!(matches!(error, StoreError::Import(_)), "{error}");
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).unwrap();
        assert_eq!(version, 1, "the schema is left as it was");
        assert!(dir.path().join("kv.json").exists());
    }

    fn wal_len(path: &Path) -> u64 {
        std::fs::metadata(format!("{}-wal", path.display())).map_or(0, |m| m.len())
    }

    /// Fills the WAL past the fold's length, through `db`.
    fn lengthen_wal(db: &Db) {
        let conn = db.as_sqlite().unwrap();
        conn.execute_batch("CREATE TABLE IF NOT EXISTS filler (x BLOB)")
            .unwrap();
        for _ in 0..(WAL_FOLD_BYTES / 4096 + 8) {
            conn.execute("INSERT INTO filler VALUES (zeroblob(4000))", []).unwrap();
        }
    }

    #[test]
    fn the_wal_outlives_its_command_and_is_folded_once_long() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let db = open(&path).unwrap();
        db.as_sqlite()
            .unwrap()
            .execute("INSERT INTO environments (id, created_at) VALUES ('dev', 0)", [])
            .unwrap();
        drop(db);
        assert!(wal_len(&path) > 0, "closing leaves the WAL for the next command");
        let reader = open_read_only(&path).unwrap();
        let found: i64 = reader
            .as_sqlite()
            .unwrap()
            .query_row("SELECT count(*) FROM environments WHERE id = 'dev'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(found, 1, "the next process reads the commit back from the WAL");
        drop(reader);
        let db = open(&path).unwrap();
        fold_wal(&db);
        assert!(wal_len(&path) > 0, "a short WAL is left as it is");
        lengthen_wal(&db);
        assert!(wal_len(&path) > WAL_FOLD_BYTES);
        fold_wal(&db);
        assert_eq!(wal_len(&path), 0, "a long WAL is folded into state.db");
        drop(db);
        let db = open_read_only(&path).unwrap();
        let rows: i64 = db
            .as_sqlite()
            .unwrap()
            .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows as u64, WAL_FOLD_BYTES / 4096 + 8, "nothing folded is lost");
    }

    #[test]
    fn a_fold_never_waits_for_a_reader_of_an_older_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let db = open(&path).unwrap();
        lengthen_wal(&db);
        let reader = open_read_only(&path).unwrap();
        let reading = reader.as_sqlite().unwrap();
        reading.execute_batch("BEGIN").unwrap();
        let _: i64 = reading
            .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
            .unwrap();
        db.as_sqlite()
            .unwrap()
            .execute("INSERT INTO filler VALUES (1)", [])
            .unwrap();
        let asked = std::time::Instant::now();
        fold_wal(&db);
        // Waiting would mean the busy timeout, 30 s: far from any noise.
        assert!(asked.elapsed() < BUSY_TIMEOUT / 2, "the fold waited for the reader");
        assert!(wal_len(&path) > WAL_FOLD_BYTES, "not folded under a reader");
        reading.execute_batch("COMMIT").unwrap();
        drop(reading);
        fold_wal(&db);
        assert_eq!(wal_len(&path), 0, "folded once the reader is done");
        db.as_sqlite()
            .unwrap()
            .execute("INSERT INTO filler VALUES (2)", [])
            .unwrap();
    }
}
