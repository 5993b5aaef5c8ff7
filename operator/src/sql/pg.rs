//! A PostgreSQL connection for the synchronous store. The `postgres` crate
//! runs each client on a runtime of its own, which must not be entered from
//! inside the host's tokio runtime; so each connection lives on a thread of
//! its own and the store hands it jobs (a query, a transaction's end) and
//! waits for the answer. Prepared statements are cached per connection.
//!
//! Writers are serialized by a transaction-scoped advisory lock (the same
//! key on every machine), the way SQLite's `BEGIN IMMEDIATE` serializes
//! them in one file: the checks the store makes before it writes (a
//! generation's number, the one unfinished rollout, the audit chain's head)
//! cannot interleave, and rows commit in the order their sequence numbers
//! were drawn. A write transaction also checks that every lock this
//! process holds on an environment or rollout is still held by its session
//! (a fencing check): a lock lost with its connection means another
//! machine may be acting, and nothing commits.

use std::collections::HashMap;
use std::sync::{Arc, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use postgres::{NoTls, Statement};
use sha2::{Digest, Sha256};

use super::{DbError, Row, Value};

/// The advisory lock every write transaction takes (its key's namespace
/// is this product's; see [`advisory_key`]).
const WRITERS: &str = "writers";

/// The 64-bit advisory lock key of `name`, namespaced so that another
/// application's advisory locks on the same database cannot collide.
pub fn advisory_key(name: &str) -> i64 {
    let digest = Sha256::digest(format!("envpack host lock\0{name}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// The `application_name` of the session holding the advisory lock `key`
/// (`host pid N on MACHINE` for a host), if any session holds it.
pub fn holder_of(db: &super::Db, key: i64) -> Result<Option<String>, DbError> {
    Ok(db
        .query_map(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.locktype = 'advisory' AND l.granted AND l.classid::bigint = ?1 \
             AND l.objid::bigint = ?2 AND l.objsubid = 1",
            &[Value::Int((key >> 32) & 0xffff_ffff), Value::Int(key & 0xffff_ffff)],
            |r| r.get::<String>(0),
        )?
        .into_iter()
        .next())
}

/// The session-level advisory locks this process holds, `(key, backend
/// pid)`: what every write transaction checks are still held.
pub mod held {
    use std::sync::{Mutex, OnceLock};

    pub(super) fn all() -> &'static Mutex<Vec<(i64, i32)>> {
        static HELD: OnceLock<Mutex<Vec<(i64, i32)>>> = OnceLock::new();
        HELD.get_or_init(|| Mutex::new(Vec::new()))
    }

    /// Records that the session `backend` holds the advisory lock `key`.
    pub fn register(key: i64, backend: i32) {
        if let Ok(mut held) = all().lock() {
            held.push((key, backend));
        }
    }

    pub fn unregister(key: i64, backend: i32) {
        if let Ok(mut held) = all().lock()
            && let Some(at) = held.iter().position(|h| *h == (key, backend))
        {
            held.remove(at);
        }
    }
}

struct Session {
    client: postgres::Client,
    statements: HashMap<String, Statement>,
    /// Each query's text with PostgreSQL's placeholders.
    translated: HashMap<String, String>,
}

impl Session {
    fn translated(&mut self, sql: &str) -> String {
        self.translated
            .entry(sql.to_string())
            .or_insert_with(|| placeholders(sql))
            .clone()
    }

    /// Runs a query in one round trip, its parameters' types given (a
    /// NULL's type is not known: such a query is prepared first).
    fn run(&mut self, sql: &str, params: &[Value]) -> Result<(Vec<Row>, u64), postgres::Error> {
        use fallible_iterator::FallibleIterator;
        let collect = |mut rows: postgres::RowIter<'_>| -> Result<(Vec<Row>, u64), postgres::Error> {
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let values = (0..row.len())
                    .map(|i| row.try_get::<_, Value>(i))
                    .collect::<Result<Vec<_>, _>>()?;
                out.push(Row::new(values));
            }
            Ok((out, rows.rows_affected().unwrap_or(0)))
        };
        if params.iter().any(|p| matches!(p, Value::Null)) {
            let stmt = self.statement(sql)?;
            let rows = self.client.query_raw(&stmt, params.iter())?;
            return collect(rows);
        }
        let text = self.translated(sql);
        let typed = params.iter().map(|p| (p, value_type(p)));
        let rows = self.client.query_typed_raw(&text, typed)?;
        collect(rows)
    }

    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(&placeholders(sql))?;
        self.statements.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }
}

type Job = Box<dyn FnOnce(&mut Session) + Send>;

/// Why a write transaction did not begin.
enum Begin {
    /// The writers' lock was not had within the bounded wait.
    Busy,
    Failed(DbError),
}

/// The thread that owns a connection; it ends (closing the connection)
/// when the last handle on it is dropped.
struct Worker {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    backend_pid: i32,
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One connection, on a thread of its own. Clones share the session (a
/// pack's kv reads go through the command's own connection: no
/// transaction is open during a pack call).
#[derive(Clone)]
pub struct PgClient {
    worker: Arc<Worker>,
}

/// A connection being made on its thread, for a caller that has other
/// work meanwhile (a command's lock session, while it loads the pack).
struct Connecting {
    ready: mpsc::Receiver<Result<i32, DbError>>,
    jobs: mpsc::Sender<Job>,
    thread: JoinHandle<()>,
    /// How long the whole handshake may take, and whom it is with.
    timeout: Duration,
    target: String,
}

impl Connecting {
    /// The connection, once made.
    fn wait(self) -> Result<PgClient, DbError> {
        // (A server that accepts the connection and never answers would
        // hold the handshake for ever: the thread is left behind.)
        let backend_pid = match self.ready.recv_timeout(self.timeout) {
            Ok(answer) => answer?,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(DbError::Postgres(format!(
                    "{}: no answer within {} s (is a PostgreSQL server listening there?)",
                    self.target,
                    self.timeout.as_secs()
                )));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(DbError::Postgres("the database thread ended before connecting".into()));
            }
        };
        Ok(PgClient {
            worker: Arc::new(Worker {
                jobs: Some(self.jobs),
                thread: Some(self.thread),
                backend_pid,
            }),
        })
    }
}

/// `postgres::Error` as one line: the server's message (and detail) when
/// it sent one, else the client's.
pub fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => match db.detail() {
            Some(detail) => format!("{} ({detail})", db.message()),
            None => db.message().to_string(),
        },
        None => {
            let mut text = error.to_string();
            let mut source = std::error::Error::source(error);
            while let Some(inner) = source {
                text.push_str(&format!(": {inner}"));
                source = inner.source();
            }
            text
        }
    }
}

fn pg(error: postgres::Error) -> DbError {
    DbError::Postgres(describe(&error))
}

/// Whether `error` says the session itself is gone: closed, reset or cut
/// (an I/O error), or ended by the server (`pg_terminate_backend`).
fn session_gone(error: &postgres::Error) -> bool {
    error.is_closed()
        || error.as_db_error().is_some_and(|d| d.code().code() == "57P01")
        || std::error::Error::source(error).is_some_and(|s| s.is::<std::io::Error>())
}

const LOST_LOCK: &str = "this process lost its lock (its connection to the database was closed): another machine may \
                         be changing the environment, so nothing was committed; run the command again (a rollout: \
                         `host rollout resume`)";

/// The first column of the first row a simple query returned.
fn first_value(messages: &[postgres::SimpleQueryMessage]) -> Option<&str> {
    messages.iter().find_map(|m| match m {
        postgres::SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    })
}

impl PgClient {
    /// Connects to `url` as this process (`host pid N on HOST`, what other
    /// machines are told when they wait for a lock it holds).
    pub fn connect(url: &str) -> Result<Self, DbError> {
        Self::start(url)?.wait()
    }

    /// Starts connecting to `url` on the connection's thread.
    fn start(url: &str) -> Result<Connecting, DbError> {
        if let Some((scheme, _)) = url.split_once("://")
            && scheme != "postgres"
            && scheme != "postgresql"
        {
            return Err(DbError::BadUrl(format!(
                "the database URL is a {scheme}:// URL; the shared records need PostgreSQL: postgres://USER@HOST:PORT/DB"
            )));
        }
        // libpq's verifying modes: this client always verifies (see `tls`).
        let url = url
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require");
        let (url, root_cert) = super::tls::take_root_cert(&url);
        let mut config: postgres::Config = url
            .parse()
            .map_err(|e: postgres::Error| DbError::BadUrl(format!("invalid database URL: {}", describe(&e))))?;
        let target = server_of(&config);
        let timeout = config.get_connect_timeout().copied().unwrap_or(Duration::from_secs(10));
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        config.keepalives_idle(Duration::from_secs(30));
        config.application_name(&format!("host pid {} on {}", std::process::id(), machine_name()));
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (jobs_tx, jobs_rx) = mpsc::channel::<Job>();
        let tls = super::tls::connector(&config, root_cert.as_deref())?;
        let shown = target.clone();
        let thread = std::thread::Builder::new()
            .name("envpack-postgres".into())
            .spawn(move || {
                let connected = match tls {
                    Some(tls) => config.connect(tls),
                    None => config.connect(NoTls),
                };
                let client = match connected {
                    Ok(client) => client,
                    Err(e) => {
                        let _ = ready_tx.send(Err(DbError::Postgres(format!("{target}: {}", describe(&e)))));
                        return;
                    }
                };
                let mut session = Session {
                    client,
                    statements: HashMap::new(),
                    translated: HashMap::new(),
                };
                // The session's settings: the product's own schema (its
                // tables never mix with another application's in `public`);
                // a write transaction left idle (a process stopped
                // mid-write) ended by the server, so that it cannot hold
                // every machine's writes for ever; and the server's own
                // keepalives, so that a machine cut off loses its session
                // (and locks) within about a minute, not the system's two
                // hours. One round trip.
                let pid = session
                    .client
                    .simple_query(
                        "SET search_path TO envpack; SET idle_in_transaction_session_timeout = '60s'; \
                         SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; \
                         SET tcp_keepalives_count = 3; SELECT pg_backend_pid()",
                    )
                    .map_err(pg)
                    .and_then(|messages| {
                        first_value(&messages)
                            .and_then(|pid| pid.parse().ok())
                            .ok_or_else(|| DbError::Postgres("the server did not say its process id".into()))
                    });
                let _ = ready_tx.send(pid);
                for job in jobs_rx {
                    job(&mut session);
                }
            })
            .map_err(|e| DbError::Postgres(format!("cannot start the database thread: {e}")))?;
        Ok(Connecting {
            ready: ready_rx,
            jobs: jobs_tx,
            thread,
            timeout: timeout + Duration::from_secs(5),
            target: shown,
        })
    }

    /// The server process serving this connection (what `pg_locks` names).
    pub fn backend_pid(&self) -> i32 {
        self.worker.backend_pid
    }

    fn run<R: Send + 'static>(&self, job: impl FnOnce(&mut Session) -> R + Send + 'static) -> Result<R, DbError> {
        let gone = || DbError::Postgres("the connection to the database is gone".into());
        let (tx, rx) = mpsc::sync_channel(1);
        self.worker
            .jobs
            .as_ref()
            .ok_or_else(gone)?
            .send(Box::new(move |session| {
                let _ = tx.send(job(session));
            }))
            .map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())
    }

    pub fn execute(&self, sql: &str, params: &[Value]) -> Result<usize, DbError> {
        let sql = sql.to_string();
        let params = params.to_vec();
        self.run(move |s| s.run(&sql, &params))?
            .map(|(_, affected)| usize::try_from(affected).unwrap_or(usize::MAX))
            .map_err(|e| self.failed(e))
    }

    pub fn query(&self, sql: &str, params: &[Value]) -> Result<Vec<Row>, DbError> {
        let sql = sql.to_string();
        let params = params.to_vec();
        self.run(move |s| s.run(&sql, &params))?
            .map(|(rows, _)| rows)
            .map_err(|e| self.failed(e))
    }

    pub fn batch(&self, sql: &str) -> Result<(), DbError> {
        let sql = sql.to_string();
        self.run(move |s| s.client.batch_execute(&sql))?
            .map_err(|e| self.failed(e))
    }

    /// `error` as the store's: a lost session that held a lock is the lost
    /// lock (whatever the client called it), not a network error.
    fn failed(&self, error: postgres::Error) -> DbError {
        let holds_locks = held::all()
            .lock()
            .map(|h| h.iter().any(|(_, backend)| *backend == self.backend_pid()))
            .unwrap_or(false);
        if holds_locks && session_gone(&error) {
            DbError::Fenced(LOST_LOCK.into())
        } else {
            pg(error)
        }
    }

    /// `BEGIN`, the writers' lock, the change counter and its
    /// notification, and the fencing check: one round trip. A writers'
    /// lock not had within a second is waited for again, saying who has it.
    pub fn begin_write(&self) -> Result<(), DbError> {
        match self.try_begin_write(true) {
            Err(Begin::Busy) => {
                let who = holder_of(&super::Db::postgres(self.clone()), advisory_key(WRITERS))
                    .ok()
                    .flatten()
                    .unwrap_or_else(|| "another command".into());
                eprintln!(
                    "host: waiting to write the records: {who} is writing (a write stuck for 60 s is ended by the server)"
                );
                match self.try_begin_write(false) {
                    Err(Begin::Busy) => Err(DbError::Postgres("the writers' lock could not be had".into())),
                    Err(Begin::Failed(e)) => Err(e),
                    Ok(()) => Ok(()),
                }
            }
            Err(Begin::Failed(e)) => Err(e),
            Ok(()) => Ok(()),
        }
    }

    fn try_begin_write(&self, bounded: bool) -> Result<(), Begin> {
        let held: Vec<(i64, i32)> = held::all().lock().map(|h| h.clone()).unwrap_or_default();
        let wait = if bounded { "1s" } else { "0" };
        // What readers watch (see `db::postgres`): the counter, and the
        // notification delivered when (if) this transaction commits.
        let mut sql = format!(
            "BEGIN; SET LOCAL lock_timeout = '{wait}'; SELECT pg_advisory_xact_lock({}); SET LOCAL lock_timeout = 0;
             UPDATE envpack_schema SET changes = changes + 1; NOTIFY envpack_changes;",
            advisory_key(WRITERS)
        );
        if !held.is_empty() {
            let wanted: Vec<String> = held
                .iter()
                .map(|(key, backend)| {
                    format!(
                        "(pid = {backend} AND classid::bigint = {} AND objid::bigint = {})",
                        (key >> 32) & 0xffff_ffff,
                        key & 0xffff_ffff
                    )
                })
                .collect();
            sql.push_str(&format!(
                " SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 AND ({})",
                wanted.join(" OR ")
            ));
        }
        let expected = held.len().to_string();
        let holds_locks = !held.is_empty();
        let outcome = self
            .run(move |s| -> Result<Result<bool, postgres::Error>, postgres::Error> {
                let messages = match s.client.simple_query(&sql) {
                    Ok(messages) => messages,
                    Err(e) => {
                        let _ = s.client.batch_execute("ROLLBACK");
                        return Ok(Err(e));
                    }
                };
                // The count is the batch's last row (the lock's SELECT returns one too).
                let last = messages.iter().rev().find_map(|m| match m {
                    postgres::SimpleQueryMessage::Row(row) => row.get(0),
                    _ => None,
                });
                let lost = holds_locks && last != Some(expected.as_str());
                if lost {
                    s.client.batch_execute("ROLLBACK")?;
                }
                Ok(Ok(lost))
            })
            .map_err(Begin::Failed)?
            .map_err(|e| Begin::Failed(pg(e)))?;
        let lost = match outcome {
            Ok(lost) => lost,
            Err(e) if e.as_db_error().is_some_and(|d| d.code().code() == "55P03") => return Err(Begin::Busy),
            // (This session gone with a lock it held: the lost lock.)
            Err(e) => return Err(Begin::Failed(self.failed(e))),
        };
        if lost {
            return Err(Begin::Failed(DbError::Fenced(LOST_LOCK.into())));
        }
        Ok(())
    }

    pub fn commit(&self) -> Result<(), DbError> {
        self.batch("COMMIT")
    }

    /// Waits up to `timeout` for a notification on a channel this session
    /// listens to; whether one came.
    pub fn wait_notification(&self, timeout: Duration) -> Result<bool, DbError> {
        self.run(move |s| {
            use fallible_iterator::FallibleIterator;
            let first = s.client.notifications().timeout_iter(timeout).next()?.is_some();
            // Several commits may have notified: one wake-up for all.
            let mut pending = s.client.notifications();
            while pending.iter().next()?.is_some() {}
            Ok::<_, postgres::Error>(first)
        })?
        .map_err(pg)
    }
}

/// `database DB on HOST:PORT as USER`, for messages (never the password).
fn server_of(config: &postgres::Config) -> String {
    use postgres::config::Host;
    let ports = config.get_ports();
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => format!("{}/.s.PGSQL.{port}", path.display()),
            }
        })
        .collect();
    format!(
        "database {} on {} as {}",
        config.get_dbname().unwrap_or("(the user's)"),
        if hosts.is_empty() {
            "the default socket".to_string()
        } else {
            hosts.join(", ")
        },
        config.get_user().unwrap_or("(the login user)")
    )
}

/// The PostgreSQL type a value is sent as.
fn value_type(value: &Value) -> postgres::types::Type {
    use postgres::types::Type;
    match value {
        Value::Int(_) => Type::INT8,
        Value::Real(_) => Type::FLOAT8,
        Value::Text(_) => Type::TEXT,
        Value::Blob(_) => Type::BYTEA,
        Value::Null => Type::UNKNOWN,
    }
}

/// This machine's name, as other machines are told it: `$ENVPACK_MACHINE`,
/// else the host name.
pub fn machine_name() -> String {
    if let Some(name) = std::env::var("ENVPACK_MACHINE").ok().filter(|n| !n.trim().is_empty()) {
        return name.trim().to_string();
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown host".into())
}

/// `?1` placeholders as PostgreSQL's `$1`, outside string literals.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut in_literal = false;
    let mut anonymous = 0;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_literal = !in_literal;
                out.push(c);
            }
            '?' if !in_literal => {
                out.push('$');
                if chars.peek().is_some_and(char::is_ascii_digit) {
                    while let Some(d) = chars.peek().copied().filter(char::is_ascii_digit) {
                        out.push(d);
                        chars.next();
                    }
                } else {
                    anonymous += 1;
                    out.push_str(&anonymous.to_string());
                }
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_renumbered_outside_literals_only() {
        assert_eq!(
            placeholders("SELECT ?1, '?2', ?10 WHERE a = ? AND b = ?"),
            "SELECT $1, '?2', $10 WHERE a = $1 AND b = $2"
        );
    }

    #[test]
    fn keys_are_namespaced_and_stable() {
        assert_eq!(advisory_key("env dev"), advisory_key("env dev"));
        assert_ne!(advisory_key("env dev"), advisory_key("env prod"));
    }
}
