//! Error classification: what stopped a call (the deadline, the memory
//! budget, a capability refusal or limit, a trap with the pack's stderr)
//! becomes the `provider` cause that names it.

use crate::capabilities::kv::KvLimit;
use crate::error::DeadlineExceeded;
use crate::sandbox::call_state::CallState;
use crate::sandbox::limits::BudgetExceeded;
use envpack_model::{Denied, ProviderCause, Verb, VerbError};

/// Names the cause of a failed call.
pub(crate) fn classify(verb: Verb, error: &wasmtime::Error, state: &CallState) -> VerbError {
    let cause = cause_of(error, state);
    VerbError::Provider { verb, cause }
}

fn cause_of(error: &wasmtime::Error, state: &CallState) -> ProviderCause {
    for e in error.chain() {
        if let Some(d) = e.downcast_ref::<DeadlineExceeded>() {
            return ProviderCause::Deadline(d.0);
        }
        if let Some(b) = e.downcast_ref::<BudgetExceeded>() {
            return ProviderCause::MemoryBudget {
                requested: b.requested,
                budget: b.budget,
                at_start: b.at_start,
            };
        }
        if let Some(d) = e.downcast_ref::<Denied>() {
            return ProviderCause::CapabilityDenied(d.clone());
        }
        if let Some(k) = e.downcast_ref::<KvLimit>() {
            return ProviderCause::CapabilityLimit {
                what: "kv",
                detail: k.0.clone(),
            };
        }
    }
    // A metered call's fuel is its deadline counted in work done.
    if error.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel) {
        return ProviderCause::Deadline(state.deadline());
    }
    let stderr = state.panic_message();
    let trap = match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => {
            "stack overflow: the call stack (1 MiB) is exhausted, likely by unbounded recursion".to_string()
        }
        Some(wasmtime::Trap::MemoryOutOfBounds) => match recursion(error) {
            Some((frames, function)) => format!(
                "stack overflow: out of bounds memory access in a recursion of {function} ({frames} of the \
                 innermost calls): unbounded recursion ran the pack's own stack out of its linear memory"
            ),
            None => wasmtime::Trap::MemoryOutOfBounds.to_string(),
        },
        Some(trap) => trap.to_string(),
        None => error.to_string(),
    };
    if stderr.is_empty() {
        ProviderCause::Trap(trap)
    } else {
        ProviderCause::Trap(format!("{trap}; the pack's stderr says: {stderr}"))
    }
}

/// Innermost frames wasmtime keeps in a trap's backtrace (its default).
const BACKTRACE_FRAMES: usize = 20;

/// How many of the innermost frames are the recursing function, and its
/// name, when the trapping stack looks like runaway recursion (the whole
/// kept backtrace, three quarters of it one function): languages that keep
/// their stack in linear memory (Rust, C) overflow it as an out of bounds
/// access, not as wasmtime's stack overflow.
fn recursion(error: &wasmtime::Error) -> Option<(usize, String)> {
    let backtrace = error.downcast_ref::<wasmtime::WasmBacktrace>()?;
    let frames = backtrace.frames();
    if frames.len() < BACKTRACE_FRAMES {
        return None;
    }
    let mut counts = std::collections::HashMap::new();
    for frame in frames {
        *counts
            .entry((frame.module().name(), frame.func_index()))
            .or_insert(0usize) += 1;
    }
    let ((_, index), count) = counts.into_iter().max_by_key(|(_, count)| *count)?;
    if count * 4 < frames.len() * 3 {
        return None;
    }
    let name = frames
        .iter()
        .find(|f| f.func_index() == index)
        .and_then(|f| f.func_name())
        .map(|name| envpack_model::text::printable(name).into_owned())
        .unwrap_or_else(|| format!("function {index}"));
    Some((count, name))
}
