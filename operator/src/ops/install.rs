//! `host pack install`: admission. Load the pack the one way with its
//! signature **required**, insist on a sealed manifest, run the `core`
//! conformance profile, and record the pack with its report in the
//! registry (a failing pack only with `force`, which is recorded too).

use std::path::Path;

use envpack_conformance::{Profile, Report, RunConfig, judge_file, render};
use envpack_host::{LoadError, Runtime, Signature, SignaturePolicy, StateDir, read_pack_file};
use envpack_trust::{InstalledPack, Registry, RegistryError, TrustError, TrustStore, Verified};

/// Why a pack was not admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmissionError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{0} has no manifest; only sealed packs can be installed")]
    Unsealed(String),
    #[error("{descriptor} was not installed: conformance failed ({})", report.failed_ids().join(", "))]
    Failed { descriptor: String, report: Box<Report> },
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error(transparent)]
    Trust(#[from] TrustError),
}

/// A pack that was admitted.
pub struct Admission {
    pub installed: InstalledPack,
    pub verified: Verified,
    pub report: Report,
    /// Installed although conformance failed.
    pub forced: bool,
}

/// Admits the pack file at `path` into the state directory's registry.
/// `runtime` loads it (the operator's limits); `judge` runs the conformance
/// profile (pack state in memory, so judging never touches an
/// environment's state) with `config` (its profile is forced to `core`).
#[tracing::instrument(name = "pack install", skip_all, fields(path = %path.display()))]
pub async fn install(
    runtime: &Runtime,
    judge: &Runtime,
    state: &StateDir,
    path: &Path,
    force: bool,
    config: &RunConfig,
) -> Result<Admission, AdmissionError> {
    let trust = TrustStore::open(&state.trust_store())?;
    let mut registry = Registry::open(&state.packs())?;
    let keyring = trust.keyring();
    let policy = SignaturePolicy::Require {
        keyring: &keyring,
        detached: None,
    };
    let source = path.display().to_string();
    let bytes = read_pack_file(path).map_err(|e| LoadError::Read {
        path: source.clone(),
        source: e,
    })?;
    let loaded = runtime.load(source, bytes.clone(), policy).await?;
    let Signature::Trusted(verified) = loaded.signature else {
        unreachable!("SignaturePolicy::Require returns only trusted packs");
    };
    let manifest = loaded
        .pack
        .manifest()
        .cloned()
        .ok_or_else(|| AdmissionError::Unsealed(path.display().to_string()))?;
    let config = RunConfig {
        profile: Profile::Core,
        seed: Some(config.seed.unwrap_or_else(|| seed_of(loaded.pack.digest()))),
        ..config.clone()
    };
    let report = judge_file(judge, path, &trust, &config).await;
    let forced = !report.passed();
    if forced && !force {
        return Err(AdmissionError::Failed {
            descriptor: manifest.descriptor.clone(),
            report: Box::new(report),
        });
    }
    let installed = registry.install(&bytes, &manifest, &verified, forced)?;
    registry.save_report(&installed, render::json(std::slice::from_ref(&report)).as_bytes())?;
    Ok(Admission {
        installed,
        verified,
        report,
        forced,
    })
}

/// The seed admission judges a pack with when the operator gives none: the
/// first 64 bits of the pack's sha256 (hex, as the loader computed it), so
/// installing the same pack twice runs the same generated cases and gets
/// the same verdict.
fn seed_of(digest: &str) -> u64 {
    digest
        .get(..16)
        .and_then(|head| u64::from_str_radix(head, 16).ok())
        .unwrap_or_default()
}
