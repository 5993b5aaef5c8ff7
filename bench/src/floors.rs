//! The floors a command stands on, measured in the same run as the
//! command: a bare SQLite commit (the durability every mutating command
//! buys: WAL, `synchronous=FULL`, one small transaction), and a bare
//! process start (`/bin/true`: fork, exec, exit, reaped), beside `host
//! --version` (the host's own start: a larger binary, its arguments). The
//! bare wasmtime call of every verb is in the phase breakdown.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::stats::{Figure, latency};
use crate::{BenchError, fail};

/// `floor.sqlite-commit`: one immediate transaction of one small insert,
/// committed, on a database opened as `state.db` is.
pub fn in_process(scratch: &Path, runs: usize) -> Result<Vec<Figure>, BenchError> {
    let sql = |e: rusqlite::Error| fail("sqlite floor")(e.to_string());
    let mut conn = rusqlite::Connection::open(scratch.join("floor.db")).map_err(sql)?;
    conn.pragma_update(None, "journal_mode", "WAL").map_err(sql)?;
    conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
    conn.execute("CREATE TABLE t (n INTEGER, v TEXT)", []).map_err(sql)?;
    let mut samples = Vec::with_capacity(runs * 4);
    for n in 0..runs * 4 {
        let started = Instant::now();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql)?;
        tx.execute("INSERT INTO t VALUES (?1, 'a row the size of an audit row')", [n as i64])
            .map_err(sql)?;
        tx.commit().map_err(sql)?;
        samples.push(started.elapsed());
    }
    Ok(vec![latency("floor.sqlite-commit", samples)])
}

/// `floor.process-start`: `/bin/true`, spawned and reaped.
pub fn process_start(runs: usize) -> Result<Figure, BenchError> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        let started = Instant::now();
        let status = Command::new("/bin/true")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| fail("process floor")(e.to_string()))?;
        samples.push(started.elapsed());
        if !status.success() {
            return Err(BenchError("/bin/true failed".into()));
        }
    }
    Ok(latency("floor.process-start", samples))
}
