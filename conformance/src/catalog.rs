//! The check catalog: every check's stable id, profile and one-line statement
//! of what must hold. The ids are part of the bench's interface: reports,
//! JUnit test names and pack authors' CI filters use them.

use serde::Serialize;

/// Which checks a run selects. `extended` includes `core`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Profile {
    Core,
    Extended,
}

impl Profile {
    pub fn name(self) -> &'static str {
        match self {
            Profile::Core => "core",
            Profile::Extended => "extended",
        }
    }

    pub fn parse(text: &str) -> Option<Profile> {
        match text {
            "core" => Some(Profile::Core),
            "extended" => Some(Profile::Extended),
            _ => None,
        }
    }

    /// Whether a run with this profile selects a check of profile `check`.
    pub fn selects(self, check: Profile) -> bool {
        check <= self
    }
}

/// Every check the bench knows; the runner dispatches on this, never on ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    DescribeValid,
    ManifestAgrees,
    VerbsHappyPath,
    VerbsEcho,
    Idempotency,
    SpecUnknownRevision,
    SpecInvalidSplit,
    SpecSplitNotFound,
    SpecTypedErrors,
    SpecNoSideEffectBeforeError,
    SplitIsolation,
    RuntimeConfigDrift,
    ProviderMessage,
    CapabilityDeclared,
    RobustnessLongIds,
    RobustnessLargeEnv,
    BudgetsTime,
    BudgetsMemory,
    SignatureTrusted,
}

/// One check of the catalog.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct CheckDef {
    /// What runs it.
    #[serde(skip)]
    pub check: Check,
    pub id: &'static str,
    pub profile: Profile,
    /// What the check calls and what must hold, in one line.
    pub statement: &'static str,
}

const fn check(check: Check, id: &'static str, profile: Profile, statement: &'static str) -> CheckDef {
    CheckDef {
        check,
        id,
        profile,
        statement,
    }
}

/// Every check, in the order they run. Checks over the whole run's calls
/// (capabilities, provider messages, budgets) come last.
pub const CATALOG: &[CheckDef] = &[
    check(
        Check::DescribeValid,
        "describe.valid",
        Profile::Core,
        "describe returns a valid namespace.name@semver descriptor and a contract version this host runs (1.x up to 1.1)",
    ),
    check(
        Check::ManifestAgrees,
        "manifest.agrees",
        Profile::Core,
        "the embedded manifest agrees with describe (descriptor, contract, capabilities)",
    ),
    check(
        Check::VerbsHappyPath,
        "verbs.happy-path",
        Profile::Core,
        "stage, warm, apply-traffic-split, report-runtime-config, probe, drain and archive succeed on the fixture (2 deployments, 3 revisions)",
    ),
    check(
        Check::VerbsEcho,
        "verbs.echo",
        Profile::Core,
        "revision outcomes echo the requested revision; split outcomes echo the target deployment and exactly its recorded entries",
    ),
    check(
        Check::Idempotency,
        "idempotency",
        Profile::Core,
        "every verb called twice, and the whole sequence run 3 times, leave the pack's kv and reported runtime config as once",
    ),
    check(
        Check::SpecUnknownRevision,
        "spec.unknown-revision",
        Profile::Core,
        "every revision verb rejects an unknown revision",
    ),
    check(
        Check::SpecInvalidSplit,
        "spec.invalid-split",
        Profile::Core,
        "apply-traffic-split rejects sums of 9000 and 10001, an entry over 10000, no entries, and weights whose u32 sum wraps to 10000; invalid-split carries the u64 sum",
    ),
    check(
        Check::SpecSplitNotFound,
        "spec.split-not-found",
        Profile::Core,
        "apply-traffic-split rejects a deployment without a split and an unknown deployment",
    ),
    check(
        Check::SpecTypedErrors,
        "spec.typed-errors",
        Profile::Core,
        "every rejection above is its typed variant (revision-not-found, invalid-split, split-not-found) naming the input, never provider",
    ),
    check(
        Check::SpecNoSideEffectBeforeError,
        "spec.no-side-effect-before-error",
        Profile::Core,
        "for every rejected input, no side effect (kv write, spawn, signal, artifact fetch, non-GET HTTP) happened before the error; reads and logging may",
    ),
    check(
        Check::SplitIsolation,
        "split.isolation",
        Profile::Core,
        "applying one deployment's split writes no kv key of, and leaves the reported runtime config of, the other deployment unchanged, and stops no process that ran before it",
    ),
    check(
        Check::RuntimeConfigDrift,
        "runtime-config.drift",
        Profile::Core,
        "report-runtime-config, where the pack overrides it, equals the host's projection after the happy path",
    ),
    check(
        Check::ProviderMessage,
        "provider.message",
        Profile::Core,
        "every provider error the pack returned carries a non-empty message",
    ),
    check(
        Check::CapabilityDeclared,
        "capability.declared",
        Profile::Core,
        "the pack called only capabilities it declared in describe",
    ),
    check(
        Check::RobustnessLongIds,
        "robustness.long-ids",
        Profile::Extended,
        "the happy path works with 256-byte and unicode ids, and revision outcomes name them exactly",
    ),
    check(
        Check::RobustnessLargeEnv,
        "robustness.large-env",
        Profile::Extended,
        "the happy path works in an environment with thousands of archived revisions",
    ),
    check(
        Check::BudgetsTime,
        "budgets.time",
        Profile::Extended,
        "every verb call took at most half the deadline production gives it (the pack's signed expectation, else the default)",
    ),
    check(
        Check::BudgetsMemory,
        "budgets.memory",
        Profile::Extended,
        "every verb call of the run stayed within the memory budget",
    ),
    check(
        Check::SignatureTrusted,
        "signature.trusted",
        Profile::Extended,
        "the pack is signed by a trusted key (reported, not required: unsigned developer builds are skipped)",
    ),
];

/// The catalog entry for `id`.
pub fn find(id: &str) -> Option<&'static CheckDef> {
    CATALOG.iter().find(|c| c.id == id)
}
