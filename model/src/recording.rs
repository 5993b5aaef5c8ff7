//! The recording of every capability call one verb call made.

use serde::Serialize;

use crate::capability::Capability;

/// Calls beyond this many are counted, not stored.
pub const MAX_RECORDED: usize = 10_000;
/// The longest detail stored for one call; longer ones are cut (a key or
/// line a pack made huge must not make the host hold it).
pub const MAX_DETAIL_BYTES: usize = 1024;
/// Details stored for one verb call in all; past it, calls are counted,
/// not stored.
pub const MAX_RECORDED_BYTES: usize = 1 << 20;

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

/// `detail` cut to [`MAX_DETAIL_BYTES`] (on a character boundary), saying
/// how long it was.
fn bounded(detail: String) -> String {
    if detail.len() <= MAX_DETAIL_BYTES {
        return detail;
    }
    let mut end = MAX_DETAIL_BYTES;
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &detail[..end], detail.len())
}

/// Every capability call of one verb call, in order.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Recording {
    pub calls: Vec<CapabilityCall>,
    /// Calls that happened but were not stored because of [`MAX_RECORDED`]
    /// or [`MAX_RECORDED_BYTES`].
    pub dropped: usize,
    /// Bytes of detail stored.
    #[serde(skip)]
    bytes: usize,
}

impl Recording {
    pub fn push(&mut self, call: CapabilityCall) {
        let at = self.calls.len();
        self.insert(at, call);
    }

    /// Records a call that happened after the first `at` calls recorded
    /// (an HTTP request, recorded when the call ends).
    pub fn insert(&mut self, at: usize, mut call: CapabilityCall) {
        call.detail = bounded(call.detail);
        if self.calls.len() >= MAX_RECORDED || self.bytes + call.detail.len() > MAX_RECORDED_BYTES {
            self.dropped += 1;
            return;
        }
        self.bytes += call.detail.len();
        self.calls.insert(at.min(self.calls.len()), call);
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

    #[test]
    fn recordings_are_bounded_in_count_and_bytes_and_keep_order() {
        let mut recording = Recording::default();
        let huge = "é".repeat(1 << 20);
        recording.push(call(Capability::Kv, "kv.get", &huge));
        let kept = &recording.calls[0].detail;
        assert!(kept.len() < MAX_DETAIL_BYTES + 32, "{} bytes kept", kept.len());
        assert!(kept.ends_with("(2097152 bytes)"), "{}", &kept[kept.len() - 20..]);
        // Details are budgeted in bytes as well as in count.
        let line = "x".repeat(MAX_DETAIL_BYTES);
        for _ in 0..2 * (MAX_RECORDED_BYTES / MAX_DETAIL_BYTES) {
            recording.push(call(Capability::Log, "log", &line));
        }
        let stored: usize = recording.calls.iter().map(|c| c.detail.len()).sum();
        assert!(stored <= MAX_RECORDED_BYTES);
        assert!(
            recording.dropped >= MAX_RECORDED_BYTES / MAX_DETAIL_BYTES - 2,
            "{}",
            recording.dropped
        );
        // An insertion goes where it is asked, within bounds.
        let mut recording = Recording::default();
        recording.push(call(Capability::Kv, "kv.get", "a"));
        recording.push(call(Capability::Kv, "kv.get", "c"));
        recording.insert(1, call(Capability::Http, "http.request", "b"));
        recording.insert(99, call(Capability::Http, "http.request", "d"));
        let order: Vec<&str> = recording.calls.iter().map(|c| c.detail.as_str()).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }
}
