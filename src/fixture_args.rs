//! What the bench's fixture environments get from the command line, shared
//! by `conformance` and `pack install` (admission): the grant flags, pack
//! settings, and one real artifact (with revision settings) for packs that
//! deploy something real — e.g. the local-process pack needs an app to run
//! and the addresses nginx may listen on.

use std::path::PathBuf;
use std::sync::Arc;

use envpack_conformance::{FixtureSecrets, Inputs, RunConfig};
use envpack_host::StateDir;

use crate::env_cmd::parse_pairs;
use crate::error::CliError;
use crate::grant_args::GrantArgs;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct FixtureArgs {
    #[command(flatten)]
    pub grants: GrantArgs,
    /// Pack setting KEY=VALUE of every fixture environment (repeatable).
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    pub settings: Vec<String>,
    /// A real artifact every fixture revision names (its sha256 is computed now).
    #[arg(long, value_name = "FILE")]
    pub artifact: Option<PathBuf>,
    /// Setting KEY=VALUE added to every fixture revision (repeatable; an
    /// empty VALUE removes the fixture's own KEY).
    #[arg(long = "revision-setting", value_name = "KEY=VALUE")]
    pub revision_settings: Vec<String>,
    /// Seed of the generated environments and sequences (the report prints
    /// the one it used; give it again to replay a failure).
    #[arg(long, value_name = "SEED")]
    pub seed: Option<u64>,
    /// Generated cases the model-based checks run [default: 24].
    #[arg(long, value_name = "N")]
    pub cases: Option<usize>,
    /// Run only the checks that call no verb (describe, manifest,
    /// signature): nothing reaches a provider. For a cloud pack without a
    /// throwaway account to admit it against; `pack list` marks such an
    /// admission "dry".
    #[arg(long)]
    pub dry: bool,
}

impl FixtureArgs {
    /// The bench configuration these flags describe, over the defaults.
    /// Granted secrets are read from the operator's secrets file in
    /// `state_dir`, as an environment's would be.
    pub fn config(&self, state_dir: &StateDir) -> Result<RunConfig, CliError> {
        let artifact = match &self.artifact {
            Some(path) => Some(Inputs::artifact_file(path).map_err(CliError::input)?),
            None => None,
        };
        let grants = self.grants.grants()?.unwrap_or_default();
        let secrets = if grants.secrets.is_empty() {
            FixtureSecrets::default()
        } else {
            FixtureSecrets(Arc::new(
                state_dir.open_secrets().map_err(|e| CliError::State(e.to_string()))?,
            ))
        };
        Ok(RunConfig {
            grants,
            secrets,
            inputs: Inputs {
                settings: parse_pairs(&self.settings, "setting")?,
                artifact,
                revision_settings: parse_pairs(&self.revision_settings, "revision setting")?,
            },
            seed: self.seed,
            progress: crate::progress::sink(),
            dry: self.dry,
            cases: match self.cases {
                Some(0) => return Err(CliError::input("--cases must be at least 1")),
                Some(n) => n,
                None => RunConfig::default().cases,
            },
            ..RunConfig::default()
        })
    }
}
