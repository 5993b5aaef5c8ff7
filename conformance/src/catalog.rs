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
    RevisionIsolation,
    ModelSequences,
    ProbeTruthful,
    EndpointTruthful,
    TeardownIdempotent,
    ArchiveReleases,
    RuntimeConfigDrift,
    ProviderMessage,
    CapabilityDeclared,
    RobustnessLongIds,
    RobustnessLargeEnv,
    BudgetsTime,
    BudgetsMemory,
    SignatureTrusted,
}

impl Check {
    /// Whether the check calls none of the pack's verbs (a dry run runs
    /// only these).
    pub fn is_pure(self) -> bool {
        matches!(
            self,
            Check::DescribeValid | Check::ManifestAgrees | Check::SignatureTrusted
        )
    }
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
    /// The sentence of `wit/deployer.wit` the check enforces, as written there.
    pub wit: &'static str,
}

const fn check(
    check: Check,
    id: &'static str,
    profile: Profile,
    statement: &'static str,
    wit: &'static str,
) -> CheckDef {
    CheckDef {
        check,
        id,
        profile,
        statement,
        wit,
    }
}

const IDEMPOTENT: &str = "Every verb must be idempotent: calling it twice leaves the provider as calling it once.";
const SPEC_FIRST: &str = "The first three are spec errors: a pack must return them (never `provider`) and must return them before performing any side effect other than logging.";
const SIBLING: &str = "A verb acts on the named revision or deployment only, never a sibling: what it changes does not depend on which siblings exist.";
const ECHO: &str = "`revision` must echo the id the verb was called with; the host refuses the outcome otherwise.";
const BUDGET: &str = "Every call runs under the deadline and memory budget the operator's environment gives it, and must finish within them with room to spare.";

/// Every check, in the order they run. Checks over the whole run's calls
/// (capabilities, provider messages, budgets) come last.
pub const CATALOG: &[CheckDef] = &[
    check(
        Check::DescribeValid,
        "describe.valid",
        Profile::Core,
        "describe returns a valid namespace.name@semver descriptor and the contract version the component was built against, one this host runs (1.x up to 1.2)",
        "The contract version the pack was built against: the version of this package in the WIT it was built with",
    ),
    check(
        Check::ManifestAgrees,
        "manifest.agrees",
        Profile::Core,
        "the embedded manifest agrees with describe (descriptor, contract, capabilities)",
        "What a pack says about itself. Must agree with the pack's manifest.",
    ),
    check(
        Check::VerbsHappyPath,
        "verbs.happy-path",
        Profile::Core,
        "stage, warm, apply-traffic-split, report-runtime-config, probe, drain and archive succeed on the fixture (2 deployments, 3 revisions)",
        "it checks every precondition before a verb reaches the pack",
    ),
    check(
        Check::VerbsEcho,
        "verbs.echo",
        Profile::Core,
        "revision outcomes echo the requested revision; split outcomes echo the target deployment and exactly its recorded entries",
        "Must echo the target deployment and exactly the entries applied, in the recorded order",
    ),
    check(
        Check::Idempotency,
        "idempotency",
        Profile::Core,
        "every verb called twice, the whole sequence run 3 times, and every effectful call of the generated sequences repeated, leave the pack's kv, processes and reported runtime config as once",
        IDEMPOTENT,
    ),
    check(
        Check::SpecUnknownRevision,
        "spec.unknown-revision",
        Profile::Core,
        "every revision verb rejects unknown revisions of every id shape: a ULID, 256 bytes in ASCII and two-byte characters, past 256 and past 512 bytes, unicode, and a prefix, an extension and the other case of a revision the environment has",
        "The revision id named by the call is not in the environment.",
    ),
    check(
        Check::SpecInvalidSplit,
        "spec.invalid-split",
        Profile::Core,
        "apply-traffic-split rejects sums of 9000 and 10001, an entry over 10000, no entries, and weights whose u32 sum wraps to 10000; invalid-split carries the u64 sum",
        "The recorded split does not sum to 10000 bps (or an entry exceeds 10000); carries the sum computed in u64.",
    ),
    check(
        Check::SpecSplitNotFound,
        "spec.split-not-found",
        Profile::Core,
        "apply-traffic-split rejects a deployment without a split and an unknown deployment",
        "Returns `split-not-found` if the deployment has no split",
    ),
    check(
        Check::SpecTypedErrors,
        "spec.typed-errors",
        Profile::Core,
        "every rejection above is its typed variant (revision-not-found, invalid-split, split-not-found) naming the input, never provider",
        SPEC_FIRST,
    ),
    check(
        Check::SpecNoSideEffectBeforeError,
        "spec.no-side-effect-before-error",
        Profile::Core,
        "for every rejected input, and every spec error returned for an input the host never forwards (a split naming an unknown or another deployment's revision), no side effect (kv write, spawn, signal, artifact fetch, non-GET HTTP) happened before the error; reads and logging may",
        SPEC_FIRST,
    ),
    check(
        Check::SplitIsolation,
        "split.isolation",
        Profile::Core,
        "applying web's new split changes the same kv keys whether the other deployment is `api` or renamed, and leaves api's reported runtime config, probe and processes as they were",
        SIBLING,
    ),
    check(
        Check::RevisionIsolation,
        "revision.isolation",
        Profile::Core,
        "stage, warm, probe, drain and archive of one revision change the same kv keys whether its siblings have their ids, others, or are not there (recorded ready but never staged by the pack, against the revision alone), and leave the siblings' probes and processes as they were",
        SIBLING,
    ),
    check(
        Check::ModelSequences,
        "model.sequences",
        Profile::Core,
        "in a coverage case every run starts with (every id shape, sequences shared across deployments, settings as operators write them) and in seeded, generated environments (ids of every shape, odd and zero weights, several settings), every call of the operator's sequences succeeds and echoes, and the reported runtime config follows the splits applied; failures shrink to a minimal case",
        "When returned, it must be the splits the pack has applied; once every recorded split has been applied it equals the host's projection.",
    ),
    check(
        Check::ProbeTruthful,
        "probe.truthful",
        Profile::Core,
        "probe never calls a revision healthy that the pack never warmed (also when the host records it ready, shares its sequence with a warmed one, or differs from one only in case or length) or that is archived, in fixed cases and in the coverage and generated sequences",
        "A revision the pack never warmed, or archived, is never `healthy`.",
    ),
    check(
        Check::EndpointTruthful,
        "endpoint.truthful",
        Profile::Core,
        "packs that export `endpoints` (contract 1.2): revision-endpoint answers revision-not-found for an unknown id, no address for a revision it never warmed (also when the host records it ready) or archived, and an http(s) URL for a warmed one, changing nothing; skipped for packs without the export",
        "`none` when there is no such address (the revision does not run, or the provider has no direct route to it). Read-only: no side effects. `revision-not-found` for an unknown id.",
    ),
    check(
        Check::TeardownIdempotent,
        "teardown.idempotent",
        Profile::Core,
        "packs that export `teardown` (contract 1.2): release-deployment of a deployment the pack never set up succeeds, twice, beside another deployment it runs, changing nothing the pack keeps (kv) and stopping none of its processes; skipped for packs without the export",
        "Idempotent: a deployment the pack never set up, or released already, is released.",
    ),
    check(
        Check::ArchiveReleases,
        "archive.releases",
        Profile::Core,
        "in the coverage and generated sequences (which archive only revisions no split lists), after archive no kv key or value and no file of the work directory (path or contents) names the revision, its artifact directory is gone and no process started for it runs",
        "Release every provider resource the revision holds: afterwards nothing the pack keeps (kv, files, processes) names the revision, except the entries of an applied split that still list it at weight 0",
    ),
    check(
        Check::RuntimeConfigDrift,
        "runtime-config.drift",
        Profile::Core,
        "report-runtime-config, where the pack overrides it, equals the host's projection after the happy path",
        "When returned, it must be the splits the pack has applied; once every recorded split has been applied it equals the host's projection.",
    ),
    check(
        Check::ProviderMessage,
        "provider.message",
        Profile::Core,
        "every provider error the pack returned carries a non-empty message, on every path the run takes and on failures provoked for the purpose: artifacts no provider can fetch (ftp, s3, oci, unreachable https, a missing file), warm of a revision never staged, a split whose revisions were never run, drain of a revision never warmed",
        "The provider failed. The message must be non-empty and say what failed.",
    ),
    check(
        Check::CapabilityDeclared,
        "capability.declared",
        Profile::Core,
        "the pack called only capabilities it declared in describe, and read time or randomness through WASI only with `clock`",
        "The host grants them per environment, denies by default, and refuses any call to one not both declared and granted.",
    ),
    check(
        Check::RobustnessLongIds,
        "robustness.long-ids",
        Profile::Extended,
        "the happy path works with 256-byte and unicode ids, and revision outcomes name them exactly",
        ECHO,
    ),
    check(
        Check::RobustnessLargeEnv,
        "robustness.large-env",
        Profile::Extended,
        "the happy path works in an environment with thousands of archived revisions",
        "Lookups are by id, so a call costs what the pack reads, not the size of the environment's history.",
    ),
    check(
        Check::BudgetsTime,
        "budgets.time",
        Profile::Extended,
        "every verb call's work (fuel burned at 100 M wasm operators a second, plus sleeps: clock.sleep-ms and waits on WASI clocks, as std::thread::sleep makes) is at most half the deadline production gives it (the pack's signed expectation, else the default)",
        BUDGET,
    ),
    check(
        Check::BudgetsMemory,
        "budgets.memory",
        Profile::Extended,
        "every verb call of the run stayed within the memory budget",
        BUDGET,
    ),
    check(
        Check::SignatureTrusted,
        "signature.trusted",
        Profile::Extended,
        "the pack is signed by a trusted key (reported, not required: unsigned developer builds are skipped)",
        "A pack is signed by its author; the host verifies the signature against its trust store before it compiles the pack.",
    ),
];

#[cfg(test)]
mod tests {
    use super::CATALOG;

    /// Every check quotes a sentence that really is in the contract.
    #[test]
    fn every_check_quotes_the_wit() {
        let wit = include_str!("../../wit/deployer.wit");
        let prose: String = wit
            .lines()
            .map(|l| l.trim().trim_start_matches("///").trim())
            .collect::<Vec<_>>()
            .join(" ");
        for def in CATALOG {
            assert!(
                prose.contains(def.wit),
                "{}: {:?} is not in wit/deployer.wit",
                def.id,
                def.wit
            );
        }
    }
}
