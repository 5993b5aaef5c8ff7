//! `host status ENV --watch`: a live read model. The environment is kept as
//! per-key snapshots (one per deployment, revision and rollout); each time
//! another process commits (SQLite's `data_version` moves: one cheap query,
//! four times a second, no busy loop; PostgreSQL notifies at once), the
//! snapshots are rebuilt and only
//! the keys that changed are printed: `+` new, `~` changed, `-` gone. With
//! `--json`, one object per change and line.

use std::collections::BTreeMap;
use std::time::Duration;

use envpack_model::text::printable;
use envpack_operator::{Reader, RolloutView};
use serde_json::json;

use crate::context::Context;
use crate::error::CliError;

/// How often the database is asked whether anything was committed.
const POLL: Duration = Duration::from_millis(250);

type Snapshot = BTreeMap<String, String>;

pub async fn status(ctx: &mut Context, env: &str, as_json: bool) -> Result<i32, CliError> {
    let reader = crate::show::reader(ctx)?;
    let mut shown = Snapshot::new();
    let mut version = None;
    loop {
        let now = reader.data_version()?;
        if version != Some(now) {
            version = Some(now);
            let next = snapshot(&reader, env)?;
            print_changes(&shown, &next, as_json)?;
            shown = next;
        }
        tokio::task::block_in_place(|| reader.wait_for_change(POLL))?;
    }
}

fn snapshot(reader: &Reader, env: &str) -> Result<Snapshot, CliError> {
    let status = reader.status(env)?;
    let mut keys = Snapshot::new();
    for d in &status.deployments {
        keys.insert(format!("deployment {}", d.id), crate::show::deployment_line(d));
    }
    for r in &status.revisions {
        keys.insert(format!("revision {}", r.id), crate::show::revision_line_aged(r, false));
    }
    for view in reader.rollouts(env, None)? {
        keys.insert(format!("rollout {}", view.rollout.deployment), rollout_line(&view));
    }
    Ok(keys)
}

/// The rollout's state and the step it is at (not the soak's countdown:
/// that would change every tick).
fn rollout_line(view: &RolloutView) -> String {
    let r = &view.rollout;
    let at = view
        .steps
        .iter()
        .find(|s| s.state == "started" || s.state == "pending")
        .map(|s| format!(", at step {}: {} ({})", s.seq, s.action.describe(), s.state))
        .unwrap_or_default();
    let reason = if r.reason.is_empty() {
        String::new()
    } else {
        format!(": {}", r.reason)
    };
    format!("{} {} to {} {}{at}{reason}", r.deployment, r.id, r.revision, r.state)
}

fn print_changes(before: &Snapshot, after: &Snapshot, as_json: bool) -> Result<(), CliError> {
    for (key, line) in after {
        let mark = match before.get(key) {
            None => "+",
            Some(old) if old != line => "~",
            Some(_) => continue,
        };
        emit(mark, key, Some(line), as_json)?;
    }
    for key in before.keys().filter(|k| !after.contains_key(*k)) {
        emit("-", key, None, as_json)?;
    }
    Ok(())
}

fn emit(mark: &str, key: &str, line: Option<&str>, as_json: bool) -> Result<(), CliError> {
    if as_json {
        let change = match mark {
            "+" => "added",
            "~" => "changed",
            _ => "removed",
        };
        let object = json!({ "change": change, "key": key, "value": line });
        println!(
            "{}",
            serde_json::to_string(&object).map_err(|e| CliError::State(e.to_string()))?
        );
    } else {
        // `+ revision R1  web  #1  ready ...`: the kind, then the line (which starts with the id).
        let kind = key.split(' ').next().unwrap_or(key);
        match line {
            Some(line) => println!("{mark} {kind} {}", printable(line)),
            None => println!("{mark} {}", printable(key)),
        }
    }
    Ok(())
}
