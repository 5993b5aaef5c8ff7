//! Judging a pack file: load it the one way with its signature checked and
//! reported (not required), run the profile, and report; a pack that cannot
//! be loaded gets a failing report naming why.

use std::path::Path;

use envpack_host::{Runtime, Signature, SignaturePolicy};
use envpack_trust::{TrustStore, VerifyError};

use crate::config::{RunConfig, SignatureStatus};
use crate::report::Report;
use crate::runner::{run, unloadable};

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
pub async fn judge_file(runtime: &Runtime, path: &Path, trust: &TrustStore, config: &RunConfig) -> Report {
    let source = path.display().to_string();
    let keyring = trust.keyring();
    match runtime.load_file(path, SignaturePolicy::Report(&keyring)).await {
        Ok(loaded) => {
            let status = signature_status(&loaded.signature);
            run(runtime, &loaded.pack, &source, &status, config).await
        }
        Err(e) => unloadable(&source, &e.to_string(), config),
    }
}
