//! Ed25519 keys in the formats `openssl` reads and writes: private keys as
//! PKCS#8 PEM, public keys as SPKI PEM. A key id is the hex sha256 of the
//! public key's 32 raw bytes.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not an Ed25519 private key in PKCS#8 PEM (`-----BEGIN PRIVATE KEY-----`): {0}")]
    Private(String),
    #[error("not an Ed25519 public key in SPKI PEM (`-----BEGIN PUBLIC KEY-----`): {0}")]
    Public(String),
    #[error("cannot encode the key: {0}")]
    Encode(String),
    #[error("the system's random number generator failed: {0}")]
    Random(String),
}

/// A public key and its id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

/// A private key.
pub struct PrivateKey(SigningKey);

impl PublicKey {
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(PublicKey)
            .map_err(|e| KeyError::Public(e.to_string()))
    }

    pub fn to_pem(&self) -> Result<String, KeyError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    /// Hex sha256 of the 32 raw public key bytes.
    pub fn key_id(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// Whether `signature` is this key's Ed25519 signature of `message`.
    pub fn verifies(&self, message: &[u8], signature: &[u8; 64]) -> bool {
        self.0.verify(message, &Signature::from_bytes(signature)).is_ok()
    }
}

impl PrivateKey {
    /// A new key from the operating system's random number generator.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(PrivateKey(SigningKey::from_bytes(&seed)))
    }

    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem.trim())
            .map(PrivateKey)
            .map_err(|e| KeyError::Private(e.to_string()))
    }

    /// PKCS#8 v1 (RFC 8410, private key only): the form every OpenSSL reads;
    /// the v2 form with an embedded public key is refused by OpenSSL 3.0.
    pub fn to_pem(&self) -> Result<String, KeyError> {
        let bytes = KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        };
        bytes
            .to_pkcs8_pem(LineEnding::LF)
            .map(|pem| pem.to_string())
            .map_err(|e| KeyError::Encode(e.to_string()))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_round_trip_and_signing() {
        let key = PrivateKey::generate().unwrap();
        let again = PrivateKey::from_pem(&key.to_pem().unwrap()).unwrap();
        let public = PublicKey::from_pem(&key.public().to_pem().unwrap()).unwrap();
        assert_eq!(again.public(), public);
        assert_eq!(public.key_id().len(), 64);
        let sig = key.sign(b"message");
        assert!(public.verifies(b"message", &sig));
        assert!(!public.verifies(b"massage", &sig));
    }

    #[test]
    fn refuses_non_keys() {
        assert!(PublicKey::from_pem("hello").is_err());
        assert!(PrivateKey::from_pem("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----").is_err());
    }
}
