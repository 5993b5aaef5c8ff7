//! The SQLite database: opened in WAL mode with a busy timeout and foreign
//! keys on, migrated by `user_version`, and refused with a clear error when
//! it was written by a newer host.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

use crate::error::StoreError;

/// Each migration brings the schema from version `index` to `index + 1`.
const MIGRATIONS: &[&str] = &[r#"
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
"#];

/// The schema version this host writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Opens (creating and migrating) the database at `path`.
pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(30))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    migrate(conn)
}

fn migrate(mut conn: Connection) -> Result<Connection, StoreError> {
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
        tx.pragma_update(None, "user_version", index as i64 + 1)?;
        tx.commit()?;
    }
    Ok(conn)
}
