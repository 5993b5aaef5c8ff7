//! Errors of the host layer: why a pack could not be loaded, and why the
//! host could not be set up. (Why a verb call failed is the model's
//! [`envpack_model::VerbError`].)

use envpack_model::VerbError;

/// Why a pack could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read pack {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{path} is not a WebAssembly component: {detail}")]
    NotAComponent { path: String, detail: String },
    #[error("pack {path} needs more memory than the budget of {budget} bytes allows: {detail}")]
    OverBudget {
        path: String,
        budget: usize,
        detail: String,
    },
    /// Past a shape limit or the compile worker's limits: nothing ran.
    #[error("pack {path} was not compiled: {source}")]
    Compile {
        path: String,
        source: crate::sandbox::compile::CompileError,
    },
    #[error("pack {path} does not fit the envpack:deployer@1 contract: {detail}")]
    Contract { path: String, detail: String },
    #[error("pack {path} failed in describe: {source}")]
    Describe { path: String, source: VerbError },
    #[error("pack {path}: {source}")]
    Manifest {
        path: String,
        source: envpack_trust::ManifestError,
    },
    #[error("pack {path} is not trusted: {source}")]
    Untrusted {
        path: String,
        source: envpack_trust::VerifyError,
    },
    #[error("pack {path} describes itself with contract version {found:?}; this host speaks {expected}")]
    ContractVersion {
        path: String,
        found: String,
        expected: &'static str,
    },
}

/// Why the host could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("cannot create the WebAssembly engine: {0}")]
    Engine(String),
    #[error("cannot link the host's capabilities: {0}")]
    Link(String),
    #[error("{0}")]
    Cache(String),
}
