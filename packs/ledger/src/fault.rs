//! Deliberate faults, compiled in only for the conformance bench's faulty
//! packs (one cargo feature each). The reference build has none.

/// Every fault and whether this build carries it.
const FAULTS: [(&str, bool); 10] = [
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
];

/// The fault this build carries, if any.
pub fn active() -> Option<&'static str> {
    FAULTS.iter().find(|(_, on)| *on).map(|(name, _)| *name)
}

/// Whether this build carries `name`.
pub fn is(name: &str) -> bool {
    active() == Some(name)
}
