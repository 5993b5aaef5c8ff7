//! Errors of the command layer and the exit code each maps to. Every message
//! names the problem; where there is an obvious next step, a hint says it.

use envpack_host::{LoadError, SetupError};
use envpack_model::VerbError;
use envpack_trust::{KeyError, ManifestError, RegistryError, TrustError, VerifyError};

/// Exit codes, as documented in the README.
pub mod exit {
    /// The verb (or command) succeeded.
    pub const OK: i32 = 0;
    /// The verb failed: a precondition, a typed pack error, or a provider error.
    pub const VERB_FAILED: i32 = 1;
    /// Bad input: usage, an unreadable or malformed file, an unknown verb.
    pub const BAD_INPUT: i32 = 2;
    /// The pack could not be loaded (not a component, wrong contract, describe failed).
    pub const PACK_UNUSABLE: i32 = 3;
    /// The pack's reported runtime config differs from the host's projection.
    pub const DRIFT: i32 = 4;
    /// The host itself could not start (engine, state directory).
    pub const HOST: i32 = 5;
    /// The pack is not trusted: unsigned, tampered, unknown or revoked signer,
    /// or its manifest disagrees with `describe`.
    pub const UNTRUSTED: i32 = 6;
    /// A rollout the command drove did not finish: it is paused (by
    /// `rollout pause`, or a metric gate that could not judge) and waits
    /// for `rollout resume`.
    pub const UNFINISHED: i32 = 7;
    /// Ctrl-C (SIGINT) stopped a command that drives or follows a rollout;
    /// what was recorded stays, and the message says how to go on.
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{message}")]
    Input { message: String, hint: Option<String> },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Verb(#[from] VerbError),
    #[error("runtime config drift: the pack's view differs from the host's projection")]
    Drift,
    #[error(transparent)]
    Setup(#[from] SetupError),
    #[error("{0}")]
    State(String),
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("{path}: {source}")]
    Key { path: String, source: KeyError },
    #[error("{path}: {source}")]
    Manifest { path: String, source: ManifestError },
    #[error(transparent)]
    Store(#[from] envpack_operator::StoreError),
    #[error("{0}")]
    Tampered(String),
    #[error(transparent)]
    Admit(#[from] envpack_operator::AdmissionError),
    #[error("{descriptor} was not installed: conformance failed ({})", failed.join(", "))]
    Admission { descriptor: String, failed: Vec<String> },
    #[error(transparent)]
    Distribution(#[from] envpack_operator::distribute::DistributionError),
}

impl CliError {
    pub fn input(message: impl Into<String>) -> Self {
        CliError::Input {
            message: message.into(),
            hint: None,
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::Input { .. } => exit::BAD_INPUT,
            CliError::Load(e) => load_exit(e),
            CliError::Verify(_) => exit::UNTRUSTED,
            CliError::Registry(e) => registry_exit(e),
            CliError::Trust(e) => trust_exit(e),
            CliError::Key { .. } | CliError::Manifest { .. } => exit::BAD_INPUT,
            CliError::Verb(e) => verb_exit(e),
            CliError::Admission { .. } => exit::VERB_FAILED,
            CliError::Admit(e) => admission_exit(e),
            CliError::Tampered(_) => exit::UNTRUSTED,
            CliError::Store(e) => store_exit(e),
            CliError::Drift => exit::DRIFT,
            CliError::Setup(_) | CliError::State(_) => exit::HOST,
            CliError::Distribution(e) => distribution_exit(e),
        }
    }

    /// A next step for the user, when there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            CliError::Input { hint, .. } => hint.clone(),
            CliError::Admit(envpack_operator::AdmissionError::Unsealed(_)) => {
                Some("seal it with `host pack seal`, then sign it".into())
            }
            CliError::Load(LoadError::Read { .. }) => {
                Some("give the path of a built pack: the NAME.wasm that `./build.sh` writes in a `host new` project, or target/wasm32-wasip2/release/NAME.wasm of a cargo build".into())
            }
            CliError::Load(LoadError::OverBudget { .. }) => {
                Some("raise --memory-mib (the default is 64) or make the pack's initial memory smaller".into())
            }
            CliError::Load(LoadError::NotAComponent { .. }) => {
                Some("packs are components: build with `cargo build --target wasm32-wasip2`".into())
            }
            CliError::Load(LoadError::Contract { .. }) => {
                Some("build the pack against wit/deployer.wit (envpack:deployer@1.2.0) and export `deployer`".into())
            }
            CliError::Drift => {
                Some("run `host call PACK apply-traffic-split` for each deployment, then compare again".into())
            }
            CliError::Store(e) => store_hint(e),
            CliError::Distribution(e) => e.hint(),
            _ => None,
        }
    }
}

fn distribution_exit(error: &envpack_operator::distribute::DistributionError) -> i32 {
    use envpack_operator::distribute::DistributionError as D;
    match error {
        D::DigestMismatch { .. } => exit::UNTRUSTED,
        D::Unreachable { .. } | D::Unauthorized { .. } | D::Registry { .. } => exit::HOST,
        _ => exit::BAD_INPUT,
    }
}

fn admission_exit(error: &envpack_operator::AdmissionError) -> i32 {
    use envpack_operator::AdmissionError as A;
    match error {
        A::Load(e) => load_exit(e),
        A::Unsealed(_) => exit::BAD_INPUT,
        A::Failed { .. } => exit::VERB_FAILED,
        A::Registry(e) => registry_exit(e),
        A::Trust(e) => trust_exit(e),
    }
}

fn load_exit(error: &LoadError) -> i32 {
    match error {
        LoadError::Read { .. } => exit::BAD_INPUT,
        LoadError::Untrusted { .. } | LoadError::Changed { .. } => exit::UNTRUSTED,
        LoadError::Manifest { source, .. } if is_mismatch(source) => exit::UNTRUSTED,
        LoadError::Host(_) => exit::HOST,
        _ => exit::PACK_UNUSABLE,
    }
}

fn registry_exit(error: &RegistryError) -> i32 {
    match error {
        RegistryError::Untrusted { .. } | RegistryError::Changed { .. } | RegistryError::Missing { .. } => {
            exit::UNTRUSTED
        }
        RegistryError::Io(_) => exit::HOST,
        _ => exit::BAD_INPUT,
    }
}

fn trust_exit(error: &TrustError) -> i32 {
    match error {
        TrustError::Io(_) => exit::HOST,
        _ => exit::BAD_INPUT,
    }
}

pub fn verb_exit(error: &VerbError) -> i32 {
    match error {
        VerbError::StateNotSaved { .. } => exit::HOST,
        _ => exit::VERB_FAILED,
    }
}

fn store_hint(error: &envpack_operator::StoreError) -> Option<String> {
    use envpack_model::Lifecycle;
    use envpack_operator::StoreError as E;
    match error {
        E::PackLeft {
            env,
            revision,
            lifecycle,
            error,
        } => match lifecycle {
            Lifecycle::Failed => Some(format!(
                "`host revision retry {env} {revision}` stages it again; `host revision archive {env} {revision}` gives it up"
            )),
            Lifecycle::Draining => Some(format!(
                "run `host revision drain {env} {revision}` again to finish the drain once the provider allows it"
            )),
            _ if error.kind() == "provider" => Some(format!(
                "the revision is unchanged; `host revision show {env} {revision}` and the pack's message say what the provider needs"
            )),
            _ => None,
        },
        E::Database(e) => database_hint(&e.to_string()),
        E::Registry(RegistryError::Untrusted { .. }) | E::Trust(_) => {
            Some("`host trust list` shows the trusted keys; install a pack signed by one of them".into())
        }
        E::Corrupt(_) => Some("the state database was changed outside the host; restore it from a backup".into()),
        E::PackInUse { .. } => Some("rebind them with `host env bind ENV --deployer REQ`, or pass --force".into()),
        _ => None,
    }
}

/// What to check when the PostgreSQL server could not be used.
fn database_hint(message: &str) -> Option<String> {
    if message.contains("certificate") || message.contains("TLS") {
        Some(
            "the server's certificate is verified against the system's roots, or PGSSLROOTCERT (its CA's PEM \
             file); sslmode in the URL chooses TLS (docs/shared-state.md)"
                .into(),
        )
    } else if message.contains("connection closed") || message.contains("connection to the database is gone") {
        Some(
            "the connection to the database was lost: what was not committed is not recorded; run the command again \
             (a rollout: `host rollout resume`)"
                .into(),
        )
    } else if message.contains("database \"") && message.contains("does not exist") {
        Some("create the database first (`createdb -h HOST -U USER NAME`); the host creates its tables itself".into())
    } else if message.contains("error connecting") || message.contains("password") || message.contains("role") {
        Some("check the server and credentials in ENVPACK_DATABASE_URL (or --database)".into())
    } else {
        None
    }
}

fn is_mismatch(error: &ManifestError) -> bool {
    matches!(error, ManifestError::Mismatch { .. })
}

/// Each operator error keeps its kind to the exit code: a trust refusal is
/// 6 whether `pack resolve` or `revision warm` met it.
fn store_exit(error: &envpack_operator::StoreError) -> i32 {
    use envpack_operator::StoreError as E;
    match error {
        E::Pack(e) => verb_exit(e),
        E::PackLeft { error, .. } => verb_exit(error),
        E::Registry(e) => registry_exit(e),
        E::Trust(e) => trust_exit(e),
        E::Load(e) => load_exit(e),
        E::Database(_)
        | E::NewerSchema { .. }
        | E::Lock { .. }
        | E::LockLost(_)
        | E::Corrupt(_)
        | E::Io { .. }
        | E::Import(_) => exit::HOST,
        E::UnknownEnv(_)
        | E::EnvExists(_)
        | E::UnknownDeployment { .. }
        | E::UnknownRevision { .. }
        | E::DuplicateRevision(_)
        | E::Transition(_)
        | E::HasWeight { .. }
        | E::Split(_)
        | E::KeyReused { .. }
        | E::NoPrevious(_)
        | E::NoGeneration { .. }
        | E::NoSplit(_)
        | E::Requirement(_)
        | E::Unbound(_)
        | E::Ungranted { .. }
        | E::Invalid(_)
        | E::RolloutActive { .. }
        | E::PackInUse { .. }
        | E::OverDiskBudget { .. }
        | E::OtherMachine { .. } => exit::BAD_INPUT,
        E::RolloutStopped { .. } | E::StepRefused(_) => exit::VERB_FAILED,
        E::Unauthorized { .. } | E::SignerChanged { .. } | E::PinnedPackGone { .. } => exit::UNTRUSTED,
        E::PackElsewhere { .. } => exit::BAD_INPUT,
    }
}
