//! Admission: what `host pack install` does, as a library function — load
//! the pack the one way with its signature **required**, insist on a sealed
//! manifest, run the `core` profile, and record the pack with its report in
//! the registry (a failing pack only with `force`, which is recorded too).
//! Also [`judge_file`]: the bench on a pack file, signature reported.

use std::path::Path;

use envpack_host::contract::pack::read_pack_file;
use envpack_host::trust::TrustStore;
use envpack_host::trust::registry::{InstalledPack, Registry, RegistryError};
use envpack_host::trust::signature::{Keyring, Verified, VerifyError};
use envpack_host::{LoadError, Runtime, Signature, SignaturePolicy};

use crate::bench::{BenchConfig, SignatureStatus, run, unloadable};
use crate::render;
use crate::report::Report;

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
}

/// A pack that was admitted.
pub struct Admission {
    pub installed: InstalledPack,
    pub verified: Verified,
    pub report: Report,
    /// Installed although conformance failed.
    pub forced: bool,
}

/// Admits the pack file at `path` into `registry`. `runtime` loads it (the
/// operator's limits); `bench` runs the conformance profile (pack state in
/// memory, so judging never touches an environment's state) with `config`
/// (its profile is forced to `core`).
pub async fn admit(
    runtime: &Runtime,
    bench: &Runtime,
    path: &Path,
    trust: &TrustStore,
    registry: &mut Registry,
    force: bool,
    config: &BenchConfig,
) -> Result<Admission, AdmissionError> {
    let keyring = Keyring {
        trust,
        extra: Vec::new(),
    };
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
    let config = BenchConfig {
        profile: crate::catalog::Profile::Core,
        seed: Some(config.seed.unwrap_or_else(|| seed_of(loaded.pack.digest()))),
        ..config.clone()
    };
    let report = judge_file(bench, path, trust, &config).await;
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

/// The bench's view of a signature verdict.
pub fn signature_status(signature: &Signature) -> SignatureStatus {
    match signature {
        Signature::Trusted(v) => SignatureStatus::Trusted {
            name: v.name.clone(),
            key_id: v.key_id.clone(),
        },
        Signature::Refused(VerifyError::Unsigned) | Signature::NotChecked => SignatureStatus::Unsigned,
        Signature::Refused(
            e @ (VerifyError::Tampered { .. } | VerifyError::Damaged(_) | VerifyError::BadSection(_)),
        ) => SignatureStatus::Tampered(e.to_string()),
        Signature::Refused(e) => SignatureStatus::Untrusted(e.to_string()),
    }
}

/// Runs the bench on one pack file, its signature checked against `trust`
/// and reported; a pack that cannot be loaded gets a failing report.
pub async fn judge_file(runtime: &Runtime, path: &Path, trust: &TrustStore, config: &BenchConfig) -> Report {
    let source = path.display().to_string();
    let keyring = Keyring {
        trust,
        extra: Vec::new(),
    };
    match runtime.load_file(path, SignaturePolicy::Report(&keyring)).await {
        Ok(loaded) => {
            let status = signature_status(&loaded.signature);
            run(runtime, &loaded.pack, &source, &status, config).await
        }
        Err(e) => unloadable(&source, &e.to_string(), config),
    }
}
