//! How a conformance run is configured: the profile, the fixture
//! environments' grants, settings, artifact and secrets, the seed and
//! number of generated cases; and the pack's signature status as the caller
//! verified it.

use std::sync::Arc;

use envpack_host::{NoSecrets, SecretStore};
use envpack_model::Grants;

use crate::catalog::Profile;

/// How a run is configured.
#[derive(Clone, Debug)]
pub struct RunConfig {
    pub profile: Profile,
    /// Linear memory one instance may hold (`budgets.memory`).
    pub memory_budget: usize,
    /// How many times `idempotency` repeats the whole sequence.
    pub repeat: usize,
    /// Archived revisions in `robustness.large-env`.
    pub history: u64,
    /// Scopes given to every fixture environment (`host conformance
    /// --allow-run ...`), e.g. to point a cloud pack at an emulator.
    pub grants: Grants,
    /// Where throwaway work directories go (default: the system's temp directory).
    pub scratch: Option<std::path::PathBuf>,
    /// Settings and an artifact for every fixture environment.
    pub inputs: crate::fixture::Inputs,
    /// Where granted secrets come from (`host conformance` reads the
    /// operator's secrets file; none by default).
    pub secrets: FixtureSecrets,
    /// The seed of the generated cases (`host conformance --seed`); a
    /// fresh one when `None`. The report always says which was used.
    pub seed: Option<u64>,
    /// Generated cases the model-based checks run.
    pub cases: usize,
    /// Attempts to shrink a failing case, at most.
    pub shrinks: usize,
    /// Where the run reports what it is doing.
    pub progress: crate::progress::ProgressSink,
    /// Run only the checks that call no verb (`--dry`): nothing reaches a
    /// provider; every other check is skipped and the report says so.
    pub dry: bool,
}

/// The secret store of a run; never printed.
#[derive(Clone)]
pub struct FixtureSecrets(pub Arc<dyn SecretStore>);

impl Default for FixtureSecrets {
    fn default() -> Self {
        FixtureSecrets(Arc::new(NoSecrets))
    }
}

impl std::fmt::Debug for FixtureSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FixtureSecrets(..)")
    }
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            profile: Profile::Core,
            memory_budget: 32 << 20,
            repeat: 3,
            history: 5_000,
            grants: Grants::default(),
            scratch: None,
            secrets: FixtureSecrets::default(),
            inputs: Default::default(),
            seed: None,
            cases: 24,
            shrinks: 256,
            progress: Default::default(),
            dry: false,
        }
    }
}

/// The pack's signature status, as the caller verified it against its trust store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureStatus {
    Trusted {
        name: String,
        key_id: String,
    },
    Unsigned,
    /// Signed, but not by a trusted key (unknown or revoked): reported, not failed.
    Untrusted(String),
    /// A signature does not match the content.
    Tampered(String),
}
