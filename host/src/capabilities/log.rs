//! Capability `log`: lines are recorded with the call, forwarded to
//! `tracing`, and sent as they happen to the call's live sink, if any.

use crate::capabilities::gate::Capability;
use crate::contract::bindings::envpack::deployer::log::{Host, Level};
use crate::sandbox::call_state::CallState;

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

impl Host for CallState {
    fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        self.log_lines += 1;
        if self.log_lines > MAX_LINES {
            self.log_dropped += 1;
            return self
                .gate
                .check(Capability::Log, "log.log")
                .map_err(wasmtime::Error::new);
        }
        let line = truncate(message);
        self.capability_call(Capability::Log, "log.log", line.clone())?;
        if let Some(sink) = &self.services.log_sink {
            let name = match level {
                Level::Trace => "trace",
                Level::Debug => "debug",
                Level::Info => "info",
                Level::Warn => "warn",
                Level::Error => "error",
            };
            sink(name, &line);
        }
        let line = crate::text::printable(&line);
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
