//! Pack state (the `kv` capability) in `state.db`. Two stores:
//!
//! - [`PackKv`], for operator commands: rows of `pack_kv` keyed by
//!   (environment, pack, key). It reads through its own connection while the
//!   command holds the environment's lock (no other process writes those
//!   rows then, so every read of the call sees one state), and it *does not
//!   write*: the call's accepted writes are handed back with
//!   [`PackKv::take_pending`] and applied by [`apply`] inside the command's
//!   transaction, with the lifecycle change, the event and the audit row.
//! - [`CallKv`], for `host call` (the pack author's path, no operator): rows
//!   of `call_kv` keyed by namespace, committed at once in their own
//!   transaction, and never visible to operator environments.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::sql::{Db, OptionalExt, params};
use envpack_host::{Change, KvError, KvStore};

use crate::db;
use crate::error::StoreError;

fn kv_error(detail: impl std::fmt::Display) -> KvError {
    KvError::Io {
        path: "state.db".into(),
        source: std::io::Error::other(detail.to_string()),
    }
}

fn guard(conn: &Mutex<Db>) -> MutexGuard<'_, Db> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Pack state of one (environment, pack) for one operator command.
pub struct PackKv {
    conn: Mutex<Db>,
    env: String,
    pack: String,
    namespace: String,
    pending: Mutex<Vec<Change>>,
}

impl PackKv {
    /// A store over `state.db` for `pack` (its name, no version) in `env`;
    /// `namespace` is what the runtime will ask for (`Pack::kv_namespace`).
    /// Reads go through a read-only connection: writes wait, in
    /// [`Self::take_pending`], for the command's own transaction.
    #[cfg(test)]
    pub fn open(database: &db::Location, env: &str, pack: &str, namespace: String) -> Result<Self, StoreError> {
        Ok(Self::over(database.open_read_only()?, env, pack, namespace))
    }

    /// [`Self::open`] over a connection already made.
    pub fn over(conn: Db, env: &str, pack: &str, namespace: String) -> Self {
        PackKv {
            conn: Mutex::new(conn),
            env: env.to_string(),
            pack: pack.to_string(),
            namespace,
            pending: Mutex::new(Vec::new()),
        }
    }

    fn scope(&self, namespace: &str) -> Result<(), KvError> {
        if namespace == self.namespace {
            Ok(())
        } else {
            Err(kv_error(format!(
                "kv namespace {namespace:?} is not this command's ({:?})",
                self.namespace
            )))
        }
    }

    /// The writes the runtime accepted, in order; empty if none.
    pub fn take_pending(&self) -> Vec<Change> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl KvStore for PackKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        self.scope(namespace)?;
        guard(&self.conn)
            .query_row(
                "SELECT value FROM pack_kv WHERE env_id = ?1 AND pack = ?2 AND key = ?3",
                params![self.env, self.pack, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(kv_error)
    }

    fn keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        self.scope(namespace)?;
        guard(&self.conn)
            .query_map(
                "SELECT key FROM pack_kv WHERE env_id = ?1 AND pack = ?2 \
                 AND substr(key, 1, length(CAST(?3 AS TEXT))) = ?3 ORDER BY key",
                params![self.env, self.pack, prefix],
                |r| r.get(0),
            )
            .map_err(kv_error)
    }

    /// Holds the writes for the command's transaction.
    fn commit(&self, namespace: &str, changes: Vec<Change>) -> Result<(), KvError> {
        self.scope(namespace)?;
        self.pending
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(changes);
        Ok(())
    }

    fn dump(&self, namespace: &str) -> Result<std::collections::BTreeMap<String, Vec<u8>>, KvError> {
        self.scope(namespace)?;
        dump(&guard(&self.conn), &self.env, &self.pack).map_err(kv_error)
    }

    /// One indexed aggregate, not a dump: this runs on every call that writes.
    fn usage(&self, namespace: &str) -> Result<(u64, u64), KvError> {
        self.scope(namespace)?;
        guard(&self.conn)
            .query_row(
                &format!("SELECT {USAGE} FROM pack_kv WHERE env_id = ?1 AND pack = ?2"),
                params![self.env, self.pack],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(kv_error)
    }
}

/// Keys and their bytes (keys and values, as stored) of a namespace.
const USAGE: &str = "COUNT(*), COALESCE(SUM(octet_length(key) + octet_length(value)), 0)";

/// Applies a call's kv writes; call inside the command's transaction.
pub fn apply(conn: &Db, env: &str, pack: &str, changes: &[Change]) -> Result<(), StoreError> {
    for (key, value) in changes {
        match value {
            Some(value) => conn.execute(
                "INSERT INTO pack_kv (env_id, pack, key, value) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (env_id, pack, key) DO UPDATE SET value = excluded.value",
                params![env, pack, key, value],
            )?,
            None => conn.execute(
                "DELETE FROM pack_kv WHERE env_id = ?1 AND pack = ?2 AND key = ?3",
                params![env, pack, key],
            )?,
        };
    }
    Ok(())
}

/// Every key of a pack's state in an environment.
pub fn dump(
    conn: &Db,
    env: &str,
    pack: &str,
) -> Result<std::collections::BTreeMap<String, Vec<u8>>, crate::sql::DbError> {
    Ok(conn
        .query_map(
            "SELECT key, value FROM pack_kv WHERE env_id = ?1 AND pack = ?2 ORDER BY key",
            params![env, pack],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .into_iter()
        .collect())
}

/// Pack state for `host call`, committed at once.
pub struct CallKv {
    conn: Mutex<Db>,
}

impl CallKv {
    pub fn open(database: &db::Location) -> Result<Self, StoreError> {
        Ok(CallKv {
            conn: Mutex::new(database.open()?),
        })
    }
}

impl KvStore for CallKv {
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, KvError> {
        guard(&self.conn)
            .query_row(
                "SELECT value FROM call_kv WHERE namespace = ?1 AND key = ?2",
                params![namespace, key],
                |r| r.get(0),
            )
            .optional()
            .map_err(kv_error)
    }

    fn keys(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, KvError> {
        guard(&self.conn)
            .query_map(
                "SELECT key FROM call_kv WHERE namespace = ?1 \
                 AND substr(key, 1, length(CAST(?2 AS TEXT))) = ?2 ORDER BY key",
                params![namespace, prefix],
                |r| r.get(0),
            )
            .map_err(kv_error)
    }

    fn commit(&self, namespace: &str, changes: Vec<Change>) -> Result<(), KvError> {
        let mut conn = guard(&self.conn);
        let tx = conn.transaction().map_err(kv_error)?;
        for (key, value) in changes {
            match value {
                Some(value) => tx.execute(
                    "INSERT INTO call_kv (namespace, key, value) VALUES (?1, ?2, ?3)
                     ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value",
                    params![namespace, key, value],
                ),
                None => tx.execute(
                    "DELETE FROM call_kv WHERE namespace = ?1 AND key = ?2",
                    params![namespace, key],
                ),
            }
            .map_err(kv_error)?;
        }
        tx.commit().map_err(kv_error)
    }

    fn usage(&self, namespace: &str) -> Result<(u64, u64), KvError> {
        guard(&self.conn)
            .query_row(
                &format!("SELECT {USAGE} FROM call_kv WHERE namespace = ?1"),
                params![namespace],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(kv_error)
    }

    fn dump(&self, namespace: &str) -> Result<std::collections::BTreeMap<String, Vec<u8>>, KvError> {
        Ok(guard(&self.conn)
            .query_map(
                "SELECT key, value FROM call_kv WHERE namespace = ?1 ORDER BY key",
                params![namespace],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(kv_error)?
            .into_iter()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let conn = db::open(&path).unwrap();
        conn.execute(
            "INSERT INTO environments (id, created_at) VALUES ('dev', 0), ('prod', 0)",
            params![],
        )
        .unwrap();
        (dir, path)
    }

    #[test]
    fn pack_kv_defers_writes_to_the_commands_transaction() {
        let (_dir, path) = store();
        let kv = PackKv::open(&db::Location::Sqlite(path.clone()), "dev", "p", "p/dev".into()).unwrap();
        kv.commit("p/dev", vec![("a".into(), Some(b"1".to_vec()))]).unwrap();
        assert_eq!(kv.get("p/dev", "a").unwrap(), None, "nothing is written before apply");
        let pending = kv.take_pending();
        let mut conn = db::open(&path).unwrap();
        let tx = conn.transaction().unwrap();
        apply(&tx, "dev", "p", &pending).unwrap();
        tx.commit().unwrap();
        assert_eq!(kv.get("p/dev", "a").unwrap(), Some(b"1".to_vec()));
        assert!(kv.get("q/dev", "a").is_err(), "another namespace is refused");
        let other = PackKv::open(&db::Location::Sqlite(path.clone()), "prod", "p", "p/prod".into()).unwrap();
        assert_eq!(other.keys("p/prod", "").unwrap(), Vec::<String>::new());
    }

    #[test]
    fn prefixes_are_literal_not_patterns() {
        let (_dir, path) = store();
        let conn = db::open(&path).unwrap();
        let changes: Vec<Change> = ["a_b", "a%c", "axb", "a"]
            .iter()
            .map(|k| (k.to_string(), Some(vec![1])))
            .collect();
        apply(&conn, "dev", "p", &changes).unwrap();
        let kv = PackKv::open(&db::Location::Sqlite(path.clone()), "dev", "p", "p/dev".into()).unwrap();
        assert_eq!(kv.keys("p/dev", "a_").unwrap(), vec!["a_b".to_string()]);
        assert_eq!(kv.keys("p/dev", "a%").unwrap(), vec!["a%c".to_string()]);
        assert_eq!(kv.keys("p/dev", "").unwrap().len(), 4);
    }

    #[test]
    fn call_kv_commits_at_once() {
        let (_dir, path) = store();
        let kv = CallKv::open(&db::Location::Sqlite(path.clone())).unwrap();
        kv.commit("p/dev", vec![("k".into(), Some(vec![0xff]))]).unwrap();
        assert_eq!(
            CallKv::open(&db::Location::Sqlite(path.clone()))
                .unwrap()
                .get("p/dev", "k")
                .unwrap(),
            Some(vec![0xff])
        );
        let pack = PackKv::open(&db::Location::Sqlite(path.clone()), "dev", "p", "p/dev".into()).unwrap();
        assert_eq!(
            pack.get("p/dev", "k").unwrap(),
            None,
            "host call state is not operator state"
        );
    }

    #[test]
    fn usage_counts_keys_and_bytes_like_a_dump_would() {
        let (_dir, path) = store();
        let conn = db::open(&path).unwrap();
        let changes: Vec<Change> = vec![
            ("é-unicode".into(), Some(vec![0u8; 300])),
            ("a".into(), Some(vec![1, 2, 3])),
            ("empty".into(), Some(Vec::new())),
        ];
        apply(&conn, "dev", "p", &changes).unwrap();
        let pack = PackKv::open(&db::Location::Sqlite(path.clone()), "dev", "p", "p/dev".into()).unwrap();
        let call = CallKv::open(&db::Location::Sqlite(path.clone())).unwrap();
        call.commit("p/dev", changes).unwrap();
        for store in [&pack as &dyn KvStore, &call] {
            let all = store.dump("p/dev").unwrap();
            let bytes: u64 = all.iter().map(|(k, v)| (k.len() + v.len()) as u64).sum();
            assert_eq!(store.usage("p/dev").unwrap(), (3, bytes));
        }
        assert_eq!(call.usage("p/empty").unwrap(), (0, 0));
    }
}
