//! The state database behind one small interface, whichever engine holds
//! it: SQLite in the state directory (the default, nothing to set up) or a
//! PostgreSQL server shared by several machines (`--database
//! postgres://...`). Queries are written once, with `?N` placeholders and
//! SQL both engines accept; values cross as [`Value`]s, rows come back
//! owned, and a write transaction is serialized against every other writer
//! on either engine (SQLite's `BEGIN IMMEDIATE`; on PostgreSQL a
//! transaction-scoped advisory lock), so the invariants the store checks
//! before it writes hold across processes and machines alike.

use std::ops::Deref;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

mod pg;
mod tls;
mod value;

pub use pg::{PgClient, advisory_key, held as pg_held, holder_of, machine_name};
pub use value::{FromValue, ToValue, Value};

/// A query's failure, from either engine or from reading its result.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{0}")]
    Sqlite(rusqlite::Error),
    #[error("{0}")]
    Postgres(String),
    #[error("the query returned no rows")]
    NoRows,
    /// The database URL itself is wrong (bad input, not a server's answer).
    #[error("{0}")]
    BadUrl(String),
    #[error("column {column}: {detail}")]
    Conversion {
        column: usize,
        detail: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The lock this process holds on an environment (or rollout) was
    /// lost with its connection: another machine may hold it now, so this
    /// transaction must not commit.
    #[error("{0}")]
    Fenced(String),
}

impl From<rusqlite::Error> for DbError {
    fn from(error: rusqlite::Error) -> Self {
        match error {
            rusqlite::Error::QueryReturnedNoRows => DbError::NoRows,
            rusqlite::Error::FromSqlConversionFailure(column, _, detail) => DbError::Conversion { column, detail },
            other => DbError::Sqlite(other),
        }
    }
}

/// `Ok(None)` for a query that found no row, like rusqlite's `optional()`.
pub trait OptionalExt<T> {
    fn optional(self) -> Result<Option<T>, DbError>;
}

impl<T> OptionalExt<T> for Result<T, DbError> {
    fn optional(self) -> Result<Option<T>, DbError> {
        match self {
            Ok(value) => Ok(Some(value)),
            Err(DbError::NoRows) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// One row of a result, owned.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    values: Vec<Value>,
}

impl Row {
    pub fn new(values: Vec<Value>) -> Self {
        Row { values }
    }

    /// Column `index`, converted; a value of another kind is an error
    /// naming the column.
    pub fn get<T: FromValue>(&self, index: usize) -> Result<T, DbError> {
        let value = self.values.get(index).ok_or_else(|| DbError::Conversion {
            column: index,
            detail: format!("the row has {} columns", self.values.len()).into(),
        })?;
        T::from_value(value).map_err(|detail| DbError::Conversion {
            column: index,
            detail: detail.into(),
        })
    }
}

/// `params![a, b]`: the values of a query's `?1, ?2`.
#[macro_export]
macro_rules! params {
    ($($param:expr),* $(,)?) => {
        &[$($crate::sql::ToValue::to_value(&$param)),*] as &[$crate::sql::Value]
    };
}
pub use crate::params;

enum Backend {
    /// One connection, shared by the handles [`Db::shared`] makes: a
    /// command's own and its pack's kv reads during a verb (an open costs
    /// what the rest of a `traffic set` does in half a millisecond: the
    /// schema is parsed again for every connection).
    Sqlite(Arc<Mutex<rusqlite::Connection>>),
    Postgres(PgClient),
}

/// A connection to the state database.
pub struct Db {
    backend: Backend,
}

impl Db {
    pub fn sqlite(conn: rusqlite::Connection) -> Self {
        Db {
            backend: Backend::Sqlite(Arc::new(Mutex::new(conn))),
        }
    }

    pub fn postgres(client: PgClient) -> Self {
        Db {
            backend: Backend::Postgres(client),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The SQLite connection, for what only SQLite has (pragmas, migrations).
    pub fn as_sqlite(&self) -> Option<MutexGuard<'_, rusqlite::Connection>> {
        match &self.backend {
            Backend::Sqlite(conn) => Some(locked(conn)),
            Backend::Postgres(_) => None,
        }
    }

    /// Another handle on this connection (its session, on PostgreSQL):
    /// what it reads, this one would; its statements take turns with this
    /// one's.
    pub fn shared(&self) -> Db {
        Db {
            backend: match &self.backend {
                Backend::Sqlite(conn) => Backend::Sqlite(conn.clone()),
                Backend::Postgres(client) => Backend::Postgres(client.clone()),
            },
        }
    }

    pub fn as_postgres(&self) -> Option<&PgClient> {
        match &self.backend {
            Backend::Postgres(client) => Some(client),
            Backend::Sqlite(_) => None,
        }
    }

    /// Runs one statement; the number of rows it changed.
    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<usize, DbError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let conn = locked(conn);
                let mut stmt = conn.prepare_cached(sql)?;
                Ok(stmt.execute(rusqlite::params_from_iter(params.iter()))?)
            }
            Backend::Postgres(client) => client.execute(sql, params),
        }
    }

    /// Runs statements separated by `;`, without parameters.
    pub fn execute_batch(&self, sql: &str) -> Result<(), DbError> {
        match &self.backend {
            Backend::Sqlite(conn) => Ok(locked(conn).execute_batch(sql)?),
            Backend::Postgres(client) => client.batch(sql),
        }
    }

    /// Every row of a query, each mapped by `map`.
    pub fn query_map<T>(
        &self,
        sql: &str,
        params: &[Value],
        mut map: impl FnMut(&Row) -> Result<T, DbError>,
    ) -> Result<Vec<T>, DbError> {
        self.rows(sql, params)?.iter().map(&mut map).collect()
    }

    /// The first row of a query, mapped; [`DbError::NoRows`] if none.
    pub fn query_row<T>(
        &self,
        sql: &str,
        params: &[Value],
        map: impl FnOnce(&Row) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        let rows = self.rows(sql, params)?;
        map(rows.first().ok_or(DbError::NoRows)?)
    }

    fn rows(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        match &self.backend {
            Backend::Sqlite(conn) => {
                let conn = locked(conn);
                let mut stmt = conn.prepare_cached(sql)?;
                let columns = stmt.column_count();
                let mut rows = stmt.query(rusqlite::params_from_iter(params.iter()))?;
                let mut out = Vec::new();
                while let Some(row) = rows.next()? {
                    let values = (0..columns)
                        .map(|i| row.get_ref(i).map(Value::from))
                        .collect::<Result<Vec<_>, _>>()?;
                    out.push(Row::new(values));
                }
                Ok(out)
            }
            Backend::Postgres(client) => client.query(sql, params),
        }
    }

    /// Begins a write transaction, serialized against every other writer:
    /// rolled back when dropped uncommitted.
    pub fn transaction(&mut self) -> Result<Tx<'_>, DbError> {
        match &self.backend {
            Backend::Sqlite(conn) => locked(conn).execute_batch("BEGIN IMMEDIATE")?,
            Backend::Postgres(client) => client.begin_write()?,
        }
        Ok(Tx { db: self, done: false })
    }
}

/// A write transaction; derefs to its connection.
pub struct Tx<'a> {
    db: &'a Db,
    done: bool,
}

impl Tx<'_> {
    pub fn commit(mut self) -> Result<(), DbError> {
        self.done = true;
        match &self.db.backend {
            Backend::Sqlite(conn) => {
                let conn = locked(conn);
                if let Err(e) = conn.execute_batch("COMMIT") {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
                Ok(())
            }
            Backend::Postgres(client) => client.commit(),
        }
    }
}

impl Deref for Tx<'_> {
    type Target = Db;
    fn deref(&self) -> &Db {
        self.db
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.db.execute_batch("ROLLBACK");
        }
    }
}

fn locked(conn: &Mutex<rusqlite::Connection>) -> MutexGuard<'_, rusqlite::Connection> {
    conn.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> Db {
        Db::sqlite(rusqlite::Connection::open_in_memory().unwrap())
    }

    #[test]
    fn values_round_trip_and_a_wrong_kind_names_its_column() {
        let db = memory();
        db.execute_batch("CREATE TABLE t (i INTEGER, s TEXT, b BLOB, n INTEGER)")
            .unwrap();
        db.execute(
            "INSERT INTO t VALUES (?1, ?2, ?3, ?4)",
            params![7i64, "seven", vec![0u8, 255], None::<i64>],
        )
        .unwrap();
        let (i, s, b, n): (i64, String, Vec<u8>, Option<i64>) = db
            .query_row("SELECT i, s, b, n FROM t", params![], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!((i, s.as_str(), b, n), (7, "seven", vec![0, 255], None));
        let wrong = db.query_row("SELECT s FROM t", params![], |r| r.get::<i64>(0));
        assert!(matches!(wrong, Err(DbError::Conversion { column: 0, .. })), "{wrong:?}");
        let none = db.query_row("SELECT i FROM t WHERE i = 8", params![], |r| r.get::<i64>(0));
        assert!(matches!(none.optional(), Ok(None)));
    }

    #[test]
    fn an_uncommitted_transaction_rolls_back() {
        let mut db = memory();
        db.execute_batch("CREATE TABLE t (i INTEGER)").unwrap();
        {
            let tx = db.transaction().unwrap();
            tx.execute("INSERT INTO t VALUES (1)", params![]).unwrap();
        }
        let tx = db.transaction().unwrap();
        tx.execute("INSERT INTO t VALUES (2)", params![]).unwrap();
        tx.commit().unwrap();
        let all = db.query_map("SELECT i FROM t", params![], |r| r.get::<i64>(0)).unwrap();
        assert_eq!(all, vec![2]);
    }
}
