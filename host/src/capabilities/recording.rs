//! The recording of every capability call one verb call made.

use serde::Serialize;

use crate::capabilities::gate::Capability;

/// Calls beyond this many are counted, not stored.
pub const MAX_RECORDED: usize = 10_000;

/// One capability call, allowed or refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CapabilityCall {
    pub capability: Capability,
    /// `interface.function`, for example `kv.set`.
    pub operation: &'static str,
    /// Arguments in short form: the key, the log line, the sleep length.
    pub detail: String,
    pub allowed: bool,
    /// Whether the pack declared this capability in `describe`.
    pub declared: bool,
}

/// Every capability call of one verb call, in order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Recording {
    pub calls: Vec<CapabilityCall>,
    /// Calls that happened but were not stored because of [`MAX_RECORDED`].
    pub dropped: usize,
}

impl Recording {
    pub fn push(&mut self, call: CapabilityCall) {
        if self.calls.len() < MAX_RECORDED {
            self.calls.push(call);
        } else {
            self.dropped += 1;
        }
    }

    /// Calls other than logging: the side effects a spec error must not follow.
    pub fn side_effects(&self) -> impl Iterator<Item = &CapabilityCall> {
        self.calls.iter().filter(|c| c.capability != Capability::Log)
    }
}
