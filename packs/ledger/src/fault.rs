//! Deliberate faults, compiled in only for the conformance bench's faulty
//! packs (one cargo feature each). The reference build has none.

/// Every fault and whether this build carries it.
const FAULTS: [(&str, bool); 41] = [
    (
        "accepts-unknown-revision",
        cfg!(feature = "fault-accepts-unknown-revision"),
    ),
    ("spec-error-as-provider", cfg!(feature = "fault-spec-error-as-provider")),
    ("accepts-bad-sum", cfg!(feature = "fault-accepts-bad-sum")),
    ("not-idempotent", cfg!(feature = "fault-not-idempotent")),
    (
        "echoes-wrong-deployment",
        cfg!(feature = "fault-echoes-wrong-deployment"),
    ),
    ("touches-sibling", cfg!(feature = "fault-touches-sibling")),
    (
        "writes-before-rejecting",
        cfg!(feature = "fault-writes-before-rejecting"),
    ),
    ("undeclared-capability", cfg!(feature = "fault-undeclared-capability")),
    (
        "drifting-runtime-config",
        cfg!(feature = "fault-drifting-runtime-config"),
    ),
    ("too-slow", cfg!(feature = "fault-too-slow")),
    ("archive-keeps-state", cfg!(feature = "fault-archive-keeps-state")),
    ("probe-always-healthy", cfg!(feature = "fault-probe-always-healthy")),
    ("archive-by-prefix", cfg!(feature = "fault-archive-by-prefix")),
    ("case-insensitive-keys", cfg!(feature = "fault-case-insensitive-keys")),
    ("weights-rounded", cfg!(feature = "fault-weights-rounded")),
    ("drops-zero-weight", cfg!(feature = "fault-drops-zero-weight")),
    ("sorts-echo", cfg!(feature = "fault-sorts-echo")),
    ("first-setting-only", cfg!(feature = "fault-first-setting-only")),
    ("truncates-ids", cfg!(feature = "fault-truncates-ids")),
    ("ascii-only", cfg!(feature = "fault-ascii-only")),
    ("uppercases-ids", cfg!(feature = "fault-uppercases-ids")),
    (
        "drain-drains-deployment",
        cfg!(feature = "fault-drain-drains-deployment"),
    ),
    (
        "stage-touches-other-deployments",
        cfg!(feature = "fault-stage-touches-other-deployments"),
    ),
    ("apply-applies-all", cfg!(feature = "fault-apply-applies-all")),
    ("wasi-wall-clock", cfg!(feature = "fault-wasi-wall-clock")),
    ("wasi-monotonic-clock", cfg!(feature = "fault-wasi-monotonic-clock")),
    ("sleeps-too-long", cfg!(feature = "fault-sleeps-too-long")),
    ("claims-old-contract", cfg!(feature = "fault-claims-old-contract")),
    ("memory-hog", cfg!(feature = "fault-memory-hog")),
    (
        "panics-without-settings",
        cfg!(feature = "fault-panics-without-settings"),
    ),
    ("rejects-zero-weight", cfg!(feature = "fault-rejects-zero-weight")),
    ("no-restage", cfg!(feature = "fault-no-restage")),
    ("first-split-wins", cfg!(feature = "fault-first-split-wins")),
    ("empty-provider-message", cfg!(feature = "fault-empty-provider-message")),
    (
        "archive-refuses-unstaged",
        cfg!(feature = "fault-archive-refuses-unstaged"),
    ),
    ("drain-twice-fails", cfg!(feature = "fault-drain-twice-fails")),
    ("validates-after-write", cfg!(feature = "fault-validates-after-write")),
    ("u32-sum", cfg!(feature = "fault-u32-sum")),
    (
        "unknown-deployment-as-revision",
        cfg!(feature = "fault-unknown-deployment-as-revision"),
    ),
    (
        "split-not-found-unnamed",
        cfg!(feature = "fault-split-not-found-unnamed"),
    ),
    ("long-keys", cfg!(feature = "fault-long-keys")),
];

/// The fault this build carries, if any.
pub fn active() -> Option<&'static str> {
    FAULTS.iter().find(|(_, on)| *on).map(|(name, _)| *name)
}

/// Whether this build carries `name`.
pub fn is(name: &str) -> bool {
    active() == Some(name)
}

/// The revision id as the ledger keys it: a faulty build confuses ids
/// that differ in case, or cuts them short.
pub fn key_id(id: &str) -> String {
    if is("case-insensitive-keys") {
        id.to_lowercase()
    } else if is("truncates-ids") {
        id.chars().take(26).collect()
    } else {
        id.to_string()
    }
}

/// The revision id as an outcome echoes it.
pub fn echo_id(id: &str) -> String {
    if is("uppercases-ids") {
        id.to_uppercase()
    } else if is("truncates-ids") {
        id.chars().take(26).collect()
    } else {
        id.to_string()
    }
}

/// A faulty build's refusal of a verb on a revision (`drained`: the ledger
/// has it drained).
pub fn refuses(verb: &str, drained: bool) -> Option<String> {
    match verb {
        "stage" if drained && is("no-restage") => Some("a drained revision cannot be staged again".into()),
        "drain" if drained && is("drain-twice-fails") => Some("the revision is already drained".into()),
        _ => None,
    }
}

/// What a faulty build does on top of a transition.
pub fn on_transition(verb: &str, revision: &crate::Revision) {
    match verb {
        "stage" if is("wasi-monotonic-clock") => {
            std::hint::black_box(std::time::Instant::now());
        }
        "warm" if is("wasi-wall-clock") => {
            std::hint::black_box(std::time::SystemTime::now());
        }
        "warm" if is("panics-without-settings") => {
            let first = revision.settings.first().expect("every revision has a setting");
            std::hint::black_box(first);
        }
        "drain" => slow_drain(revision),
        "warm" if is("memory-hog") => {
            // 40 MiB, touched: over the bench's 32 MiB budget.
            std::hint::black_box(vec![1u8; 40 << 20]);
        }
        _ => {}
    }
}

/// A weight as the ledger stores it (a faulty build rounds to whole percents).
pub fn stored_weight(weight: u32) -> u32 {
    if is("weights-rounded") {
        (weight + 50) / 100 * 100
    } else {
        weight
    }
}

/// A revision's settings as the runtime config reports them.
pub fn refs(mut settings: Vec<(String, String)>) -> Vec<(String, String)> {
    if is("first-setting-only") {
        settings.truncate(1);
    }
    settings
}

/// The entries a split outcome echoes.
pub fn echo_entries(mut entries: Vec<crate::SplitEntry>) -> Vec<crate::SplitEntry> {
    if is("drops-zero-weight") {
        entries.retain(|e| e.weight_bps > 0);
    }
    if is("sorts-echo") {
        entries.sort_by(|a, b| a.revision.cmp(&b.revision));
    }
    entries
}

/// The error for a deployment without a split.
pub fn split_not_found(env: &crate::Environment, deployment: &str) -> crate::DeployError {
    if is("split-not-found-unnamed") {
        return crate::DeployError::SplitNotFound(String::new());
    }
    if is("unknown-deployment-as-revision") && !env.deployments().iter().any(|d| d == deployment) {
        return crate::DeployError::RevisionNotFound(deployment.to_string());
    }
    crate::DeployError::SplitNotFound(deployment.to_string())
}

/// A faulty drain of a revision with a long drain time does too much: it
/// computes, or sleeps through the `clock` capability, for over half the
/// default 2 s deadline and under the whole of it.
fn slow_drain(revision: &crate::Revision) {
    if revision.drain_seconds < 5 {
        return;
    }
    if is("too-slow") {
        let mut x = 0u64;
        for i in 0..SPIN {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
        }
        std::hint::black_box(x);
    }
    if is("sleeps-too-long") {
        crate::clock::sleep_ms(1100);
    }
}

/// Loop iterations of the `too-slow` drain: about 21 wasm operators each,
/// so about 1.4 s of work at the bench's 100 M operators a second.
const SPIN: u64 = 6_500_000;
