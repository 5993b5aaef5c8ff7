//! Errors of the host layer: why a pack could not be loaded, and why the
//! host could not be set up. (Why a verb call failed is the model's
//! [`envpack_model::VerbError`].)

use envpack_model::{Over, ShapeError, VerbError};

/// The call ran past its deadline: the trap the sandbox's epoch deadline
/// and a capability that waits (a sleep, a WASI pollable) both raise.
#[derive(Debug, thiserror::Error)]
#[error("deadline of {} ms exceeded", .0.as_millis())]
pub struct DeadlineExceeded(pub std::time::Duration);

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
    Compile { path: String, source: CompileError },
    #[error("pack {path} does not fit the envpack:deployer@1 contract: {detail}")]
    Contract { path: String, detail: String },
    /// The host's own set-up failed (not the pack's doing).
    #[error(transparent)]
    Host(#[from] SetupError),
    #[error("pack {path} failed in describe: {source}")]
    Describe { path: String, source: VerbError },
    #[error("pack {path}: {source}")]
    Manifest {
        path: String,
        source: envpack_trust::ManifestError,
    },
    #[error(
        "installed file for {path} no longer has digest {digest}: it was changed on disk; `host pack install` the signed pack again to restore it"
    )]
    Changed { path: String, digest: String },
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

/// Why a pack was not compiled.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// Past a shape limit; nothing was compiled.
    #[error("{0}; raise it with --pack-limit {limit}=N", limit = .0.limit)]
    Shape(Over),
    /// The compiler itself refused the pack (invalid WebAssembly and the like).
    #[error("{0}{hint}", hint = refusal_hint(.0))]
    Refused(String),
    /// The worker hit its time limit.
    #[error("compiling took more than the compile worker's {0} CPU seconds; raise it with --compile-seconds")]
    Time(u64),
    /// The worker hit its memory limit.
    #[error("compiling needed more than the compile worker's {} MiB; raise it with --compile-memory-mib", .0 >> 20)]
    Memory(u64),
    /// The worker could not be run or answered nonsense.
    #[error("the compile worker failed: {0}")]
    Worker(String),
}

impl From<ShapeError> for CompileError {
    fn from(error: ShapeError) -> Self {
        match error {
            // Malformed bytes are the compiler's to describe (it says more).
            ShapeError::Malformed { offset, message } => {
                CompileError::Refused(format!("malformed WebAssembly at byte {offset}: {message}"))
            }
            ShapeError::Over(over) => CompileError::Shape(over),
        }
    }
}

/// What an author can do about a refusal the compiler words for wasmtime's
/// developers: a pack built for the component model's async ABI (a
/// toolchain's `async` option) is one this host cannot run.
fn refusal_hint(message: &str) -> &'static str {
    if message.contains("component model async")
        || message.contains("`async` option")
        || message.contains("async stackful")
    {
        "\n  the pack uses the component model's async ABI (an `async` export or canonical option, as wit-bindgen's `async` setting makes); this host runs WASI 0.2's synchronous ABI: build the pack without async exports"
    } else {
        ""
    }
}

#[cfg(test)]
mod refusal_tests {
    use super::CompileError;

    #[test]
    fn an_async_abi_pack_is_named_as_such() {
        let e =
            CompileError::Refused("`task.return` requires the component model async feature (at offset 0x2a)".into());
        assert!(
            e.to_string().contains("the pack uses the component model's async ABI"),
            "{e}"
        );
        let plain = CompileError::Refused("type mismatch".into());
        assert_eq!(plain.to_string(), "type mismatch");
    }
}
