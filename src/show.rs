//! The read-only commands — `status` (= `env show`), `events`, `traffic
//! show`, `revision list|show`, `env list`, `audit verify` — rendered from
//! the operator's read views (`envpack_operator::read`): JSON is the view
//! itself, the same object in every command; human output is one line per
//! object with local RFC 3339 times.

use std::time::Duration;

use envpack_model::Grants;
use envpack_model::text::printable;
use envpack_operator::{AuditHead, DeploymentView, Generation, Reader, RevisionView};

use crate::context::Context;
use crate::error::{CliError, exit};

pub(crate) fn reader(ctx: &mut Context) -> Result<Reader, CliError> {
    Ok(Reader::open(ctx.state_dir()?)?)
}

fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::State(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Rewrites the epoch-seconds `fields` of `value` (an object, or an array
/// of objects) as RFC 3339 in UTC: JSON output has one time format, though
/// the trust store and the registry keep seconds on disk.
pub(crate) fn rfc3339_fields(value: &mut serde_json::Value, fields: &[&str]) {
    match value {
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| rfc3339_fields(v, fields)),
        serde_json::Value::Object(map) => {
            for field in fields {
                if let Some(slot) = map.get_mut(*field)
                    && let Some(at) = slot.as_i64()
                {
                    *slot = serde_json::Value::String(envpack_operator::rfc3339(at));
                }
            }
        }
        _ => {}
    }
}

/// Epoch seconds as RFC 3339 in the local time zone.
fn local_time(at: i64) -> String {
    match jiff::Timestamp::from_second(at) {
        Ok(t) => t
            .to_zoned(jiff::tz::TimeZone::system())
            .strftime("%Y-%m-%dT%H:%M:%S%:z")
            .to_string(),
        Err(_) => at.to_string(),
    }
}

fn split_line(split: &Generation) -> String {
    let entries: Vec<String> = split
        .entries
        .iter()
        .map(|e| format!("{}={}", e.revision, e.weight_bps))
        .collect();
    format!("generation {}  {}", split.generation, entries.join(" "))
}

pub(crate) fn deployment_line(d: &DeploymentView) -> String {
    match (&d.current, &d.previous) {
        (None, _) => match d.withdrawn_after {
            // The provider keeps the last split it applied until the
            // deployment is released.
            Some(generation) => format!(
                "{}  traffic withdrawn after generation {generation} (a retirement under way: `host deployment retire {} {}` goes on)",
                d.id, d.env, d.id
            ),
            None => format!("{}  no split yet", d.id),
        },
        (Some(current), None) => format!("{}  {}", d.id, split_line(current)),
        (Some(current), Some(previous)) => format!(
            "{}  {}  (previous: {})",
            d.id,
            split_line(current),
            split_line(previous)
        ),
    }
}

pub fn revision_line(r: &RevisionView) -> String {
    revision_line_aged(r, true)
}

/// A revision's line; `aged` adds how long ago its health was probed
/// (`status --watch` leaves it out, or every probe would be a change).
pub fn revision_line_aged(r: &RevisionView, aged: bool) -> String {
    let health = match &r.health {
        None => String::new(),
        Some(h) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            let ago = (now - h.checked_at).max(0);
            let why = if h.message.is_empty() {
                String::new()
            } else {
                format!(": {}", printable(&h.message))
            };
            if aged {
                format!("  [{}{why}, probed {ago}s ago]", h.status)
            } else {
                format!("  [{}{why}]", h.status)
            }
        }
    };
    format!(
        "{}  {}  #{}  {}  {}{health}",
        r.id, r.deployment, r.sequence, r.lifecycle, r.artifact.location
    )
}

/// `host status ENV` and `host env show ENV`.
pub fn status(ctx: &mut Context, env: &str, as_json: bool) -> Result<i32, CliError> {
    let status = reader(ctx)?.status(env)?;
    if as_json {
        print_json(&status)?;
        return Ok(exit::OK);
    }
    let grants: Vec<&str> = status.binding.capabilities.iter().map(|c| c.name()).collect();
    println!(
        "environment {}: {} (bound by {}), grants {}",
        status.env,
        status.binding.descriptor,
        status.binding.requirement,
        grants.join(", ")
    );
    let scopes = grants_line(&status.binding.grants);
    if !scopes.is_empty() {
        println!("  scopes: {scopes}");
    }
    if !status.binding.settings.is_empty() {
        let settings: Vec<String> = status
            .binding
            .settings
            .iter()
            .map(|(k, v)| format!("{k}={}", printable(v)))
            .collect();
        println!("  settings: {}", settings.join(" "));
    }
    if !status.binding.machine.is_empty() {
        println!("  processes on machine {}", printable(&status.binding.machine));
    }
    for d in &status.deployments {
        println!("  deployment {}", deployment_line(d));
    }
    for r in &status.revisions {
        println!("  revision {}", revision_line(r));
    }
    if status.revisions.is_empty() {
        println!("  no revisions (stage one with `host revision stage`)");
    }
    match status.agent_pid {
        Some(pid) => println!("  agent: pid {pid} drives rollouts and probes ready revisions"),
        None => println!("  agent: none (health is not probed; `host agent` runs one)"),
    }
    Ok(exit::OK)
}

/// `host env list`.
pub fn environments(ctx: &mut Context, as_json: bool) -> Result<i32, CliError> {
    let envs = reader(ctx)?.environments()?;
    if as_json {
        print_json(&envs)?;
    } else {
        for e in envs {
            println!("{:<24} {}  ({})", e.id, e.binding.descriptor, e.binding.requirement);
        }
    }
    Ok(exit::OK)
}

/// `host revision list ENV`.
pub fn revisions(ctx: &mut Context, env: &str, all: bool, as_json: bool) -> Result<i32, CliError> {
    let revisions = reader(ctx)?.revisions(env, all)?;
    if as_json {
        print_json(&revisions)?;
    } else {
        revisions.iter().for_each(|r| println!("{}", revision_line(r)));
    }
    Ok(exit::OK)
}

/// `host revision show ENV REVISION`.
pub fn revision(ctx: &mut Context, env: &str, id: &str, as_json: bool) -> Result<i32, CliError> {
    let revision = reader(ctx)?.revision(env, id)?;
    if as_json {
        print_json(&revision)?;
    } else {
        println!("{}", revision_line(&revision));
    }
    Ok(exit::OK)
}

/// `host traffic show ENV`.
pub fn traffic(ctx: &mut Context, env: &str, as_json: bool) -> Result<i32, CliError> {
    let deployments = reader(ctx)?.deployments(env)?;
    if as_json {
        print_json(&deployments)?;
    } else {
        deployments.iter().for_each(|d| println!("{}", deployment_line(d)));
    }
    Ok(exit::OK)
}

/// `host events ENV [--follow]`: a JSON array, or with `--follow` one JSON
/// object per line as events happen.
pub async fn events(ctx: &mut Context, env: &str, follow: bool, as_json: bool) -> Result<i32, CliError> {
    let reader = reader(ctx)?;
    let mut after = 0;
    loop {
        let events = match reader.events(env, after) {
            // Removed while followed: its events went with it (the audit
            // log keeps what was done).
            Err(envpack_operator::StoreError::UnknownEnv(_)) if follow && after > 0 => {
                eprintln!(
                    "host: environment {} was removed; its last events went with it (`host audit show --env {}` keeps what was done)",
                    printable(env),
                    printable(env)
                );
                return Ok(exit::OK);
            }
            other => other?,
        };
        if let Some(last) = events.last() {
            after = last.seq;
        }
        if as_json && !follow {
            print_json(&events)?;
            return Ok(exit::OK);
        }
        for event in &events {
            if as_json {
                println!(
                    "{}",
                    serde_json::to_string(event).map_err(|e| CliError::State(e.to_string()))?
                );
            } else {
                let at = event
                    .at
                    .parse::<jiff::Timestamp>()
                    .map_or_else(|_| event.at.clone(), |t| local_time(t.as_second()));
                println!(
                    "{:>6}  {at}  {}  {} -> {}  by {}: {}",
                    event.seq,
                    printable(&event.revision),
                    event.from,
                    event.to,
                    printable(&event.actor),
                    printable(&event.reason)
                );
            }
        }
        if !follow {
            return Ok(exit::OK);
        }
        tokio::task::block_in_place(|| reader.wait_for_change(Duration::from_millis(250)))?;
    }
}

fn parse_head(text: &str) -> Result<AuditHead, CliError> {
    let bad = || CliError::Input {
        message: format!("--head {text:?} is not SEQ:HASH (SEQ a row number from 1, HASH 64 hex digits)"),
        hint: Some("`host audit verify` prints the head to record, e.g. 12:3f9a…(64 hex digits)".into()),
    };
    let (seq, hash) = text.split_once(':').ok_or_else(bad)?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) || seq.starts_with('0') {
        return Err(bad());
    }
    let seq = seq.parse::<i64>().map_err(|_| bad())?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok(AuditHead {
        seq,
        hash: hash.to_ascii_lowercase(),
    })
}

/// `host audit verify [--head SEQ:HASH]`: exit 0 only if the chain is intact
/// (and still contains the recorded head).
pub fn audit_show(ctx: &mut Context, env: Option<&str>, last: Option<usize>, as_json: bool) -> Result<i32, CliError> {
    let entries = reader(ctx)?.audit_entries(env, last)?;
    if as_json {
        print_json(&entries)?;
        return Ok(exit::OK);
    }
    if entries.is_empty() {
        println!(
            "the audit log has no rows{}",
            env.map(|e| format!(" for environment {e}")).unwrap_or_default()
        );
    }
    for e in &entries {
        let mut arguments = e.arguments.clone();
        if env.is_some()
            && let Some(map) = arguments.as_object_mut()
        {
            map.remove("env");
        }
        let at = e.at.parse::<jiff::Timestamp>().map(|t| local_time(t.as_second()));
        println!(
            "{:>5}  {}  {}  {}  {}  {}",
            e.seq,
            at.unwrap_or_else(|_| e.at.clone()),
            printable(&e.actor),
            printable(&e.command),
            printable(&e.outcome),
            printable(&arguments.to_string())
        );
    }
    Ok(exit::OK)
}

pub fn audit_verify(ctx: &mut Context, head: Option<&str>, as_json: bool) -> Result<i32, CliError> {
    let expected = head.map(parse_head).transpose()?;
    let sink = ctx.audit_sink_path().map(std::path::Path::to_path_buf);
    let reader = reader(ctx)?;
    let view = match &sink {
        Some(sink) => reader.audit_with_sink(expected.as_ref(), sink)?,
        None => reader.audit(expected.as_ref())?,
    };
    if as_json {
        print_json(&view)?;
        return Ok(if view.intact { exit::OK } else { exit::UNTRUSTED });
    }
    if let Some(broken) = &view.broken {
        return Err(CliError::Tampered(format!("audit log tampered: {broken}")));
    }
    match &view.head {
        Some(h) => println!(
            "audit log intact: {} rows, hash chain verified; head {}:{} (record it, then check with --head)",
            view.rows, h.seq, h.hash
        ),
        None => println!("audit log intact: empty"),
    }
    Ok(exit::OK)
}

/// The scopes of a binding, for one line of text.
pub fn grants_line(grants: &Grants) -> String {
    let mut parts = Vec::new();
    if !grants.process.is_empty() {
        let commands: Vec<String> = grants
            .process
            .iter()
            .map(|c| {
                if c.name == c.path.display().to_string() || c.path.as_os_str().is_empty() {
                    format!("'{}'", c.shown())
                } else {
                    format!("'{}' ({})", c.shown(), c.path.display())
                }
            })
            .collect();
        parts.push(format!("run {}", commands.join(", ")));
    }
    if !grants.env.is_empty() {
        parts.push(format!("env {}", grants.env.join(", ")));
    }
    if !grants.ports.is_empty() {
        parts.push(format!("ports {}", grants.ports.join(", ")));
    }
    if !grants.probe.is_empty() {
        parts.push(format!("probe {}", grants.probe.join(", ")));
    }
    if !grants.http.is_empty() {
        parts.push(format!("http {}", grants.http.join(", ")));
    }
    if !grants.secrets.is_empty() {
        parts.push(format!("secrets {}", grants.secrets.join(", ")));
    }
    parts.join("; ")
}
