//! Capability `log`: lines are recorded with the call, forwarded to
//! `tracing`, and sent as they happen to the call's live sink, if any.

use envpack_model::Capability;

use crate::capabilities::LogSink;
use crate::capabilities::ledger::Ledger;
use crate::contract::bindings::envpack::deployer::log::{Host, Level};

/// Longest line kept, in bytes; longer lines are cut at a char boundary.
pub const MAX_LINE_BYTES: usize = 4096;
/// Lines one call may log; further lines are counted as dropped.
pub const MAX_LINES: usize = 1000;

fn truncate(mut line: String) -> String {
    if line.len() > MAX_LINE_BYTES {
        let mut cut = MAX_LINE_BYTES;
        while !line.is_char_boundary(cut) {
            cut -= 1;
        }
        line.truncate(cut);
        line.push('…');
    }
    line
}

/// The `log` capability's part of one call: lines counted against the
/// per-call cap, and where they go as they happen.
pub struct LogState {
    lines: usize,
    dropped: usize,
    sink: Option<LogSink>,
}

impl LogState {
    pub fn new(sink: Option<LogSink>) -> Self {
        LogState {
            lines: 0,
            dropped: 0,
            sink,
        }
    }
}

/// What `log` is linked with: its state and the call's ledger.
pub struct LogView<'a> {
    pub(crate) state: &'a mut LogState,
    pub(crate) ledger: &'a mut Ledger,
}

impl Host for LogView<'_> {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.state.lines += 1;
        if self.state.lines > MAX_LINES {
            self.state.dropped += 1;
            return self
                .ledger
                .check(Capability::Log, "log.log")
                .map_err(wasmtime::Error::new);
        }
        let line = truncate(message);
        self.ledger.call(Capability::Log, "log.log", line.clone())?;
        if let Some(sink) = &self.state.sink {
            let name = match level {
                Level::Trace => "trace",
                Level::Debug => "debug",
                Level::Info => "info",
                Level::Warn => "warn",
                Level::Error => "error",
            };
            sink(name, &line);
        }
        let line = envpack_model::text::printable(&line);
        match level {
            Level::Trace => tracing::trace!(target: "pack", "{line}"),
            Level::Debug => tracing::debug!(target: "pack", "{line}"),
            Level::Info => tracing::info!(target: "pack", "{line}"),
            Level::Warn => tracing::warn!(target: "pack", "{line}"),
            Level::Error => tracing::error!(target: "pack", "{line}"),
        }
        Ok(())
    }
}
