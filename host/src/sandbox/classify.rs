//! Error classification: what stopped a call (the deadline, the memory
//! budget, a capability refusal or limit, a trap with the pack's stderr)
//! becomes the `provider` cause that names it.

use crate::capabilities::gate::Denied;
use crate::capabilities::kv::KvLimit;
use crate::contract::verb::Verb;
use crate::error::{ProviderCause, VerbError};
use crate::sandbox::call_state::CallState;
use crate::sandbox::limits::{BudgetExceeded, DeadlineExceeded};

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
    let stderr = state.panic_message();
    let trap = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => error.to_string(),
    };
    if stderr.is_empty() {
        ProviderCause::Trap(trap)
    } else {
        ProviderCause::Trap(format!("{trap}; the pack's stderr says: {stderr}"))
    }
}
