//! Pack signatures. Each signature is Ed25519 over the sha256 of every byte of
//! the file except the signature sections themselves (the 8-byte header and
//! the manifest included), stored in its own `envpack-signature` section, so
//! a second party can add a signature without breaking the first. A detached
//! signature is the same 64 bytes in a file of its own, as `openssl pkeyutl
//! -sign -rawin` writes it over the output of `host pack digest`.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::keys::{PrivateKey, PublicKey};
use crate::sections::{self, Malformed, SIGNATURE};
use crate::store::{TrustStore, TrustedKey};

/// One embedded signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignatureRecord {
    pub alg: String,
    /// Hex sha256 of the signer's raw public key.
    pub key_id: String,
    /// Hex Ed25519 signature (64 bytes).
    pub signature: String,
}

/// Why a pack is not trusted. Each case has its own message.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the pack is unsigned: it carries no envpack-signature section")]
    Unsigned,
    #[error("the pack was tampered with: {0}")]
    Damaged(#[from] Malformed),
    #[error("the pack was tampered with: the signature by key {key_id} ({name}) does not match its content")]
    Tampered { key_id: String, name: String },
    #[error("a signature section is corrupt: {0}")]
    BadSection(String),
    #[error("the pack is signed only by unknown keys ({}); add the signer with `host trust add`", key_ids.join(", "))]
    UnknownKey { key_ids: Vec<String> },
    #[error("the pack is signed by revoked key {key_id} ({name}) and by no trusted key")]
    Revoked { key_id: String, name: String },
    #[error("the detached signature matches no trusted key: the pack was tampered with, or the signer is unknown")]
    DetachedNoMatch,
    #[error("{0}")]
    OutOfScope(Box<OutOfScope>),
}

/// A valid signature by a trusted key whose scope does not cover the pack.
#[derive(Debug, thiserror::Error)]
#[error(
    "key {key_id} ({name}) may sign only {}, and this pack is {descriptor}; sign it with a key trusted for it",
    scopes.join(", ")
)]
pub struct OutOfScope {
    pub key_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub descriptor: String,
}

/// The pack name (`namespace.name`) a scope is checked against: its sealed
/// manifest's, which the signature covers.
fn sealed_name(pack: &[u8]) -> String {
    match crate::manifest::Manifest::read(pack) {
        Ok(Some(manifest)) => manifest.descriptor.split('@').next().unwrap_or_default().to_string(),
        _ => "unsealed (it has no manifest naming it)".to_string(),
    }
}

/// The first trusted key whose scope covers `name`, else the error
/// naming the first that does not.
fn in_scope(keys: Vec<TrustedKey>, name: &str) -> Result<TrustedKey, VerifyError> {
    let mut outside = None;
    for key in keys {
        if key.covers(name) {
            return Ok(key);
        }
        outside.get_or_insert(key);
    }
    let key = outside.ok_or(VerifyError::DetachedNoMatch)?;
    Err(VerifyError::OutOfScope(Box::new(OutOfScope {
        key_id: key.key_id,
        name: key.name,
        scopes: key.scopes,
        descriptor: name.to_string(),
    })))
}

/// The key a pack was verified by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verified {
    pub key_id: String,
    pub name: String,
    /// Every key id that signed the pack (valid signatures only).
    pub signers: Vec<String>,
}

/// sha256 of the file without its signature sections: what signatures cover.
pub fn signable_digest(pack: &[u8]) -> Result<[u8; 32], Malformed> {
    let stripped = sections::strip(pack, &[SIGNATURE])?;
    Ok(Sha256::digest(&stripped).into())
}

/// The pack with one more signature by `key`.
pub fn sign(pack: &[u8], key: &PrivateKey) -> Result<Vec<u8>, Malformed> {
    let digest = signable_digest(pack)?;
    let record = SignatureRecord {
        alg: "ed25519".into(),
        key_id: key.public().key_id(),
        signature: hex::encode(key.sign(&digest)),
    };
    let mut out = pack.to_vec();
    let json = serde_json::to_vec(&record).map_err(|e| Malformed {
        offset: 0,
        message: e.to_string(),
    })?;
    sections::append(&mut out, SIGNATURE, &json);
    Ok(out)
}

/// A detached signature of the pack by `key` (64 raw bytes).
pub fn sign_detached(pack: &[u8], key: &PrivateKey) -> Result<[u8; 64], Malformed> {
    Ok(key.sign(&signable_digest(pack)?))
}

/// The embedded signatures.
pub fn records(pack: &[u8]) -> Result<Vec<SignatureRecord>, VerifyError> {
    sections::custom(pack, SIGNATURE)?
        .into_iter()
        .map(|data| serde_json::from_slice(data).map_err(|e| VerifyError::BadSection(e.to_string())))
        .collect()
}

fn decode_signature(record: &SignatureRecord) -> Result<[u8; 64], VerifyError> {
    if record.alg != "ed25519" {
        return Err(VerifyError::BadSection(format!(
            "unsupported algorithm {:?}",
            record.alg
        )));
    }
    let bytes = hex::decode(&record.signature).map_err(|e| VerifyError::BadSection(e.to_string()))?;
    bytes
        .try_into()
        .map_err(|_| VerifyError::BadSection("an Ed25519 signature is 64 bytes".into()))
}

/// Keys to check signatures with: the trust store plus keys given explicitly
/// (`--key`), which count as trusted for this verification.
pub struct Keyring<'a> {
    pub trust: &'a TrustStore,
    pub extra: Vec<PublicKey>,
}

impl<'a> Keyring<'a> {
    /// The trust store alone: no key given on the command line.
    pub fn of(trust: &'a TrustStore) -> Self {
        Keyring {
            trust,
            extra: Vec::new(),
        }
    }

    fn find(&self, key_id: &str) -> Option<TrustedKey> {
        if let Some(key) = self.extra.iter().find(|k| k.key_id() == key_id) {
            return Some(TrustedKey::explicit(key));
        }
        self.trust.get(key_id).cloned()
    }

    fn candidates(&self) -> Vec<TrustedKey> {
        let mut keys: Vec<TrustedKey> = self.extra.iter().map(TrustedKey::explicit).collect();
        keys.extend(self.trust.keys().iter().filter(|k| k.revoked_at.is_none()).cloned());
        keys
    }
}

/// Verifies a pack, failing closed: any signature that does not hold is
/// tampering; a pack is trusted only if a trusted, unrevoked key signed it.
pub fn verify(pack: &[u8], keyring: &Keyring<'_>, detached: Option<&[u8; 64]>) -> Result<Verified, VerifyError> {
    let digest = signable_digest(pack)?;
    if let Some(signature) = detached {
        let verified = verify_detached(&digest, keyring, signature)?;
        let key = keyring.find(&verified.key_id).ok_or(VerifyError::DetachedNoMatch)?;
        in_scope(vec![key], &sealed_name(pack))?;
        return Ok(verified);
    }
    verify_signed(&SignedFacts::of(pack)?, keyring)
}

/// What the embedded signatures of a pack are checked on: the digest they
/// cover, the signatures, and the pack name a scope is checked against.
/// Extracted once (one pass over the file); the registry keeps them with
/// an installed pack, so that checking it against today's trust store
/// does not read the file again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedFacts {
    /// Hex sha256 of the file without its signature sections.
    pub signable_digest: String,
    pub records: Vec<SignatureRecord>,
    /// The sealed manifest's pack name (or why there is none).
    pub name: String,
}

impl SignedFacts {
    pub fn of(pack: &[u8]) -> Result<Self, VerifyError> {
        Ok(SignedFacts {
            signable_digest: hex::encode(signable_digest(pack)?),
            records: records(pack)?,
            name: sealed_name(pack),
        })
    }
}

/// Verifies embedded signatures from their [`SignedFacts`]: the same
/// decision as [`verify`], against today's keyring.
pub fn verify_signed(facts: &SignedFacts, keyring: &Keyring<'_>) -> Result<Verified, VerifyError> {
    let digest: [u8; 32] = hex::decode(&facts.signable_digest)
        .ok()
        .and_then(|bytes| bytes.try_into().ok())
        .ok_or_else(|| VerifyError::BadSection("the signed digest is not 32 bytes of hex".into()))?;
    if facts.records.is_empty() {
        return Err(VerifyError::Unsigned);
    }
    let mut trusted = Vec::new();
    let mut revoked = None;
    let mut signers = Vec::new();
    let mut unknown = Vec::new();
    for record in &facts.records {
        let signature = decode_signature(record)?;
        let Some(key) = keyring.find(&record.key_id) else {
            unknown.push(record.key_id.clone());
            continue;
        };
        if !key.public()?.verifies(&digest, &signature) {
            return Err(VerifyError::Tampered {
                key_id: key.key_id,
                name: key.name,
            });
        }
        signers.push(key.key_id.clone());
        if key.revoked_at.is_some() {
            revoked.get_or_insert(key);
        } else {
            trusted.push(key);
        }
    }
    match (trusted.is_empty(), revoked) {
        (false, _) => {
            let key = in_scope(trusted, &facts.name)?;
            Ok(Verified {
                key_id: key.key_id,
                name: key.name,
                signers,
            })
        }
        (true, Some(key)) => Err(VerifyError::Revoked {
            key_id: key.key_id,
            name: key.name,
        }),
        (true, None) => Err(VerifyError::UnknownKey { key_ids: unknown }),
    }
}

fn verify_detached(digest: &[u8; 32], keyring: &Keyring<'_>, signature: &[u8; 64]) -> Result<Verified, VerifyError> {
    for key in keyring.candidates() {
        if key.public()?.verifies(digest, signature) {
            return Ok(Verified {
                signers: vec![key.key_id.clone()],
                key_id: key.key_id,
                name: key.name,
            });
        }
    }
    Err(VerifyError::DetachedNoMatch)
}
