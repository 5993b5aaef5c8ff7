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
        tx.execute(
            "INSERT INTO t VALUES (?1, 'a row the size of an audit row')",
            [n as i64],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        samples.push(started.elapsed());
    }
    Ok(vec![latency("floor.sqlite-commit", samples)])
}

/// `floor.postgres-connect` (a connection made, one query, closed: the
/// server forks a process for each) and `floor.postgres-commit` (one
/// row's transaction on an open connection), on the database at `url`.
/// On a thread of its own: the client runs its own runtime.
pub fn postgres(url: &str, runs: usize) -> Result<Vec<Figure>, BenchError> {
    let url = url.to_string();
    std::thread::spawn(move || {
        let sql = |e: postgres::Error| fail("postgres floor")(e.to_string());
        let mut connects = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            let mut client = postgres::Client::connect(&url, postgres::NoTls).map_err(sql)?;
            client.simple_query("SELECT 1").map_err(sql)?;
            drop(client);
            connects.push(started.elapsed());
        }
        let mut client = postgres::Client::connect(&url, postgres::NoTls).map_err(sql)?;
        client
            .batch_execute("CREATE TEMPORARY TABLE floor (n BIGINT, v TEXT)")
            .map_err(sql)?;
        let mut commits = Vec::with_capacity(runs * 4);
        for n in 0..runs * 4 {
            let started = Instant::now();
            let mut tx = client.transaction().map_err(sql)?;
            tx.execute(
                "INSERT INTO floor VALUES ($1, 'a row the size of an audit row')",
                &[&(n as i64)],
            )
            .map_err(sql)?;
            tx.commit().map_err(sql)?;
            commits.push(started.elapsed());
        }
        Ok(vec![
            latency("floor.postgres-connect", connects),
            latency("floor.postgres-commit", commits),
        ])
    })
    .join()
    .map_err(|_| BenchError("the postgres floor's thread panicked".into()))?
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

/// The integrity checks' options, on an installed interpreter pack's state
/// directory (`state`): what each costs per command. `integrity.sha256.pack`
/// is hashing the pack file (what every command did to check its digest,
/// then again for its signature); `integrity.blake3.entry` is the keyed
/// tag over its compiled-code entry (what every cached load did);
/// `integrity.seal-check` is what a command does now: the registry's seal
/// (file identity, keyed tag) and the signatures verified from it.
pub fn integrity(state: &Path, runs: usize) -> Result<Vec<Figure>, BenchError> {
    use envpack_trust::{Registry, SealKey, TrustStore};
    let err = |what: &'static str| move |e: String| fail(what)(e);
    let registry = Registry::open(&state.join("packs")).map_err(|e| err("registry")(e.to_string()))?;
    let trust = TrustStore::open(&state.join("trust.json")).map_err(|e| err("trust")(e.to_string()))?;
    let Some(pack) = registry.list().first().cloned() else {
        return Ok(Vec::new());
    };
    let bytes = std::fs::read(registry.path(&pack)).map_err(|e| err("read")(e.to_string()))?;
    let entry = std::fs::read_dir(state.join("cache"))
        .map_err(|e| err("cache")(e.to_string()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "cwasm"))
        .max_by_key(|p| std::fs::metadata(p).map_or(0, |m| m.len()));
    let entry = match entry {
        Some(path) => std::fs::read(path).map_err(|e| err("read")(e.to_string()))?,
        None => Vec::new(),
    };
    let key = SealKey::from_bytes([7; 32]);
    let time = |f: &dyn Fn()| {
        (0..runs.clamp(1, 5))
            .map(|_| {
                let started = Instant::now();
                f();
                started.elapsed()
            })
            .collect::<Vec<_>>()
    };
    let mut figures = vec![
        latency(
            "integrity.sha256.pack",
            time(&|| {
                std::hint::black_box(envpack_model::sha256_hex(&bytes));
            }),
        ),
        latency(
            "integrity.blake3.entry",
            time(&|| {
                let mut hasher = key.hasher();
                hasher.update(&entry);
                std::hint::black_box(hasher.finalize());
            }),
        ),
    ];
    let mut checks = Vec::new();
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let checked = registry
            .check(&pack, &trust.keyring())
            .map_err(|e| err("check")(e.to_string()))?;
        checks.push(started.elapsed());
        if checked.bytes.is_some() {
            return Err(BenchError("the installed pack was not checked from its seal".into()));
        }
    }
    figures.push(latency("integrity.seal-check", checks));
    Ok(figures)
}

/// `machine.effective-cores`: how many cores this process actually gets
/// now — the same CPU-bound work on one thread, then on one thread per
/// core at once: cores x (time alone / time together). On a shared machine
/// it is below the core count, and bounds any all-cores figure.
pub fn effective_cores(cores: usize) -> Figure {
    fn spin(rounds: u64) -> u64 {
        let mut x = 0u64;
        for i in 0..rounds {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
        }
        x
    }
    const ROUNDS: u64 = 200_000_000;
    let started = Instant::now();
    std::hint::black_box(spin(ROUNDS));
    let alone = started.elapsed().as_secs_f64();
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..cores {
            scope.spawn(|| std::hint::black_box(spin(ROUNDS)));
        }
    });
    let together = started.elapsed().as_secs_f64();
    crate::stats::value(
        "machine.effective-cores",
        "cores",
        cores as f64 * alone / together.max(1e-9),
    )
}
