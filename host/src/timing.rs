//! Where one `host` command's time goes: process-wide marks at the ends of
//! its phases (arguments parsed, engine built, state opened, pack verified,
//! loaded, verb run, committed), off unless the command was started with
//! `ENVPACK_TIMINGS=FILE`; then one JSON line per command is appended to
//! FILE at exit. `host bench` runs the real binary this way to break a
//! command's wall time down. When off, a mark is one relaxed atomic load.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The environment variable that turns timing on and names the file.
pub const TIMINGS_ENV: &str = "ENVPACK_TIMINGS";

static ON: AtomicBool = AtomicBool::new(false);
static MARKS: Mutex<Option<Marks>> = Mutex::new(None);

struct Marks {
    start: Instant,
    start_unix_ns: u128,
    marks: Vec<(&'static str, Instant)>,
}

/// One command's marks as written to the timings file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommandTimings {
    /// Wall-clock time (ns since the Unix epoch) when `main` started.
    pub start_unix_ns: u128,
    /// Each mark's name and its time in ns since `main` started, in order.
    pub marks: Vec<(String, u64)>,
}

/// Starts timing this process (called first thing in `main`).
pub fn start() {
    let start_unix_ns = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let mut guard = MARKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    *guard = Some(Marks {
        start: Instant::now(),
        start_unix_ns,
        marks: Vec::new(),
    });
    ON.store(true, Ordering::Release);
}

/// Ends the phase called `name` now, if timing is on.
pub fn mark(name: &'static str) {
    if !ON.load(Ordering::Acquire) {
        return;
    }
    let now = Instant::now();
    if let Some(marks) = MARKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_mut() {
        marks.marks.push((name, now));
    }
}

/// The marks so far, if timing is on.
pub fn snapshot() -> Option<CommandTimings> {
    let guard = MARKS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let marks = guard.as_ref()?;
    Some(CommandTimings {
        start_unix_ns: marks.start_unix_ns,
        marks: marks
            .marks
            .iter()
            .map(|(name, at)| {
                let ns = at.saturating_duration_since(marks.start).as_nanos();
                (name.to_string(), u64::try_from(ns).unwrap_or(u64::MAX))
            })
            .collect(),
    })
}

/// Appends this command's marks as one JSON line to `path`.
pub fn append_to(path: &Path) -> std::io::Result<()> {
    let Some(timings) = snapshot() else {
        return Ok(());
    };
    let mut line = serde_json::to_string(&timings).map_err(std::io::Error::other)?;
    line.push('\n');
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    file.write_all(line.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_kept_in_order_once_started() {
        mark("before-start");
        assert!(snapshot().is_none_or(|t| t.marks.iter().all(|(n, _)| n != "before-start")));
        start();
        mark("one");
        mark("two");
        let timings = snapshot().expect("started");
        let names: Vec<&str> = timings.marks.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["one", "two"]);
        assert!(timings.marks[0].1 <= timings.marks[1].1);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.jsonl");
        append_to(&file).unwrap();
        append_to(&file).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(text.lines().count(), 2);
        let back: CommandTimings = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(back.marks.len(), 2);
    }
}
