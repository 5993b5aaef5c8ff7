//! Locks on PostgreSQL: session-level advisory locks under namespaced,
//! hashed keys, each held on a connection of its own (never one that
//! other queries use), released when the lock is dropped or, if the
//! process dies, when the server closes its session. Every write
//! transaction this process begins checks that the session still holds
//! each lock (the fencing check in `sql::pg`): a lock lost with its
//! connection stops this process's commits before another machine's work
//! can be overwritten.

use crate::error::StoreError;
use crate::sql::{Db, DbError, PgClient, advisory_key, holder_of, params, pg_held};

/// A held advisory lock, with the connection that holds it.
pub struct PgLock {
    client: PgClient,
    key: i64,
}

impl Drop for PgLock {
    fn drop(&mut self) {
        pg_held::unregister(self.key, self.client.backend_pid());
        let _ = self.client.execute("SELECT pg_advisory_unlock(?1)", params![self.key]);
    }
}

/// Who holds a lock: the `host` process and its machine, from the holding
/// session's `application_name` (`host pid N on MACHINE`).
pub struct Holder {
    pub pid: u32,
    pub machine: String,
}

fn key_of(name: &str) -> i64 {
    advisory_key(&format!("lock {name}"))
}

fn fail(name: &str, error: DbError) -> StoreError {
    StoreError::Lock {
        env: name.to_string(),
        detail: error.to_string(),
    }
}

/// The holder of the lock `name`, if anyone holds it.
pub fn holder(db: &Db, name: &str) -> Result<Option<Holder>, DbError> {
    Ok(holder_of(db, key_of(name))?.and_then(|app| parse_application(&app)))
}

fn parse_application(app: &str) -> Option<Holder> {
    let rest = app.strip_prefix("host pid ")?;
    let (pid, machine) = rest.split_once(" on ")?;
    Some(Holder {
        pid: pid.parse().ok()?,
        machine: machine.to_string(),
    })
}

fn connect(url: &str, name: &str) -> Result<PgClient, StoreError> {
    PgClient::connect(url).map_err(|e| fail(name, e))
}

fn try_take(client: &PgClient, key: i64) -> Result<bool, DbError> {
    Ok(client
        .query("SELECT pg_try_advisory_lock(?1)", params![key])?
        .first()
        .map(|row| row.get::<bool>(0))
        .transpose()?
        .unwrap_or(false))
}

/// Takes the environment's lock, saying who holds it while waiting.
pub fn lock(url: &str, env: &str, session: Option<PgClient>) -> Result<PgLock, StoreError> {
    let client = match session {
        Some(client) => client,
        None => connect(url, env)?,
    };
    let key = key_of(env);
    if !try_take(&client, key).map_err(|e| fail(env, e))? {
        let me = crate::sql::machine_name();
        let db = Db::postgres(client.clone());
        match holder(&db, env).ok().flatten() {
            Some(h) if h.pid == std::process::id() && h.machine == me => {}
            Some(h) if h.machine == me => {
                eprintln!(
                    "host: waiting for environment {env:?}: process {} is changing it",
                    h.pid
                )
            }
            Some(h) => eprintln!(
                "host: waiting for environment {env:?}: process {} on {} is changing it",
                h.pid, h.machine
            ),
            None => eprintln!("host: waiting for environment {env:?}: another command is changing it"),
        }
        drop(db);
        client
            .execute("SELECT pg_advisory_lock(?1)", params![key])
            .map_err(|e| fail(env, e))?;
    }
    pg_held::register(key, client.backend_pid());
    Ok(PgLock { client, key })
}

/// Takes the lock `name` if no one holds it.
pub fn try_lock(url: &str, name: &str) -> Result<Option<PgLock>, StoreError> {
    let client = connect(url, name)?;
    let key = key_of(name);
    if !try_take(&client, key).map_err(|e| fail(name, e))? {
        return Ok(None);
    }
    pg_held::register(key, client.backend_pid());
    Ok(Some(PgLock { client, key }))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_holder_is_read_from_its_application_name() {
        let h = super::parse_application("host pid 42 on ci-runner-3").unwrap();
        assert_eq!((h.pid, h.machine.as_str()), (42, "ci-runner-3"));
        assert!(super::parse_application("psql").is_none());
    }
}
