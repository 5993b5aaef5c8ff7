//! The append-only audit log: one row per mutating command (actor, command,
//! arguments, outcome), each carrying the sha256 of the previous row's hash
//! and its own fields, so that editing or deleting any row breaks the chain.

use crate::sql::{Db, OptionalExt, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::StoreError;

const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Debug, Serialize)]
pub struct AuditRow {
    pub seq: i64,
    pub at: i64,
    pub actor: String,
    pub command: String,
    pub arguments: String,
    pub outcome: String,
    pub prev_hash: String,
    pub hash: String,
}

fn digest(prev: &str, seq: i64, at: i64, actor: &str, command: &str, arguments: &str, outcome: &str) -> String {
    let mut h = Sha256::new();
    for part in [
        prev,
        &seq.to_string(),
        &at.to_string(),
        actor,
        command,
        arguments,
        outcome,
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    hex::encode(h.finalize())
}

/// Appends one row; call inside the transaction of the change it records.
pub fn append(
    conn: &Db,
    at: i64,
    actor: &str,
    command: &str,
    arguments: &str,
    outcome: &str,
) -> Result<(i64, String), StoreError> {
    let (last_seq, prev): (i64, String) = conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            params![],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS.to_string()));
    let seq = last_seq + 1;
    let hash = digest(&prev, seq, at, actor, command, arguments, outcome);
    conn.execute(
        "INSERT INTO audit (seq, at, actor, command, arguments, outcome, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![seq, at, actor, command, arguments, outcome, prev, hash],
    )?;
    Ok((seq, hash))
}

/// Appends `SEQ:HASH` to the audit sink `path` (created 0600, appended
/// with one write, synced): the chain's heads kept where whoever can
/// rewrite `state.db` cannot, for `audit verify` to check against.
pub fn export_head(path: &std::path::Path, seq: i64, hash: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{seq}:{hash}\n").as_bytes())?;
    file.sync_data()
}

/// The heads an audit sink holds, in the order they were written.
pub fn exported_heads(path: &std::path::Path) -> Result<Vec<(i64, String)>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read the audit sink {}: {e}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            line.trim()
                .split_once(':')
                .and_then(|(seq, hash)| Some((seq.parse::<i64>().ok()?, hash.to_string())))
                .filter(|(_, hash)| hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| format!("{} line {}: {line:?} is not SEQ:HASH", path.display(), n + 1))
        })
        .collect()
}

/// Checks the log against the heads exported to a sink: every exported
/// row still there with its hash, and no row after the first exported one
/// that was never exported (an append that did not go through the host).
pub fn check_exported(rows: &[AuditRow], heads: &[(i64, String)]) -> Option<Broken> {
    let exported: std::collections::BTreeMap<i64, &str> = heads.iter().map(|(s, h)| (*s, h.as_str())).collect();
    for (seq, hash) in &exported {
        match rows.iter().find(|r| r.seq == *seq) {
            None => {
                return Some(Broken {
                    seq: *seq,
                    problem: "is missing, though its head was exported: rows were deleted".into(),
                });
            }
            Some(row) if row.hash != *hash => {
                return Some(Broken {
                    seq: *seq,
                    problem: "differs from the head exported to the sink: the log was rewritten".into(),
                });
            }
            Some(_) => {}
        }
    }
    let first = *exported.keys().next()?;
    rows.iter()
        .find(|r| r.seq > first && !exported.contains_key(&r.seq))
        .map(|r| Broken {
            seq: r.seq,
            problem: "was never exported to the audit sink: appended by something other than the host (or by a host killed between its commit and the export)".into(),
        })
}

pub fn rows(conn: &Db) -> Result<Vec<AuditRow>, StoreError> {
    Ok(conn.query_map(
        "SELECT seq, at, actor, command, arguments, outcome, prev_hash, hash FROM audit ORDER BY seq",
        params![],
        |r| {
            Ok(AuditRow {
                seq: r.get(0)?,
                at: r.get(1)?,
                actor: r.get(2)?,
                command: r.get(3)?,
                arguments: r.get(4)?,
                outcome: r.get(5)?,
                prev_hash: r.get(6)?,
                hash: r.get(7)?,
            })
        },
    )?)
}

/// Where the chain breaks, if it does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("audit row {seq} {problem}")]
pub struct Broken {
    pub seq: i64,
    pub problem: String,
}

/// Recomputes the chain; `Ok(n)` is the number of intact rows.
pub fn verify(conn: &Db) -> Result<Result<usize, Broken>, StoreError> {
    let rows = rows(conn)?;
    let mut prev = GENESIS.to_string();
    for (i, row) in rows.iter().enumerate() {
        let broken = |problem: &str| {
            Ok(Err(Broken {
                seq: row.seq,
                problem: problem.to_string(),
            }))
        };
        if row.seq != i as i64 + 1 {
            return broken(&format!("should be row {}: rows were deleted or renumbered", i + 1));
        }
        if row.prev_hash != prev {
            return broken("does not follow the row before it");
        }
        if digest(
            &prev,
            row.seq,
            row.at,
            &row.actor,
            &row.command,
            &row.arguments,
            &row.outcome,
        ) != row.hash
        {
            return broken("was edited: its hash does not match its content");
        }
        prev = row.hash.clone();
    }
    Ok(Ok(rows.len()))
}
