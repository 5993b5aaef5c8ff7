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

    /// Records a call that happened after the first `at` calls recorded
    /// (an HTTP request, recorded when the call ends).
    pub fn insert(&mut self, at: usize, call: CapabilityCall) {
        if self.calls.len() < MAX_RECORDED {
            self.calls.insert(at.min(self.calls.len()), call);
        } else {
            self.dropped += 1;
        }
    }

    /// The calls that change something — kv writes, spawns, signals, an
    /// artifact placed, outbound HTTP other than GET/HEAD: the side effects
    /// a spec error must not follow. Reads (kv.get, clock, status, probes,
    /// secrets) and logging are not side effects.
    pub fn side_effects(&self) -> impl Iterator<Item = &CapabilityCall> {
        self.calls.iter().filter(|c| is_side_effect(c))
    }
}

fn is_side_effect(call: &CapabilityCall) -> bool {
    match call.operation {
        "kv.set" | "kv.delete" | "process.spawn" | "process.send-signal" | "process.fetch-artifact" => true,
        "http.request" => !(call.detail.starts_with("GET ") || call.detail.starts_with("HEAD ")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(capability: Capability, operation: &'static str, detail: &str) -> CapabilityCall {
        CapabilityCall {
            capability,
            operation,
            detail: detail.into(),
            allowed: true,
            declared: true,
        }
    }

    #[test]
    fn only_calls_that_change_something_are_side_effects() {
        let effects = [
            call(Capability::Kv, "kv.set", "k"),
            call(Capability::Kv, "kv.delete", "k"),
            call(Capability::Process, "process.spawn", "sleep 1"),
            call(Capability::Process, "process.send-signal", "p1 Term"),
            call(Capability::Process, "process.fetch-artifact", "r1"),
            call(Capability::Http, "http.request", "POST http://127.0.0.1:9/x -> 200"),
        ];
        let reads = [
            call(Capability::Kv, "kv.get", "k"),
            call(Capability::Kv, "kv.list-keys", ""),
            call(Capability::Clock, "clock.now-ms", ""),
            call(Capability::Process, "process.status", "p1"),
            call(Capability::Probe, "probe.http-get", "127.0.0.1:9/"),
            call(Capability::Secrets, "secrets.get", "TOKEN"),
            call(Capability::Http, "http.request", "GET http://127.0.0.1:9/x -> 200"),
            call(Capability::Log, "log", "hello"),
        ];
        assert!(effects.iter().all(is_side_effect));
        assert!(!reads.iter().any(is_side_effect));
    }
}
