//! Trust: what a pack file says about itself and who vouches for it. The
//! custom sections of a pack file ([`sections`]), its manifest and
//! descriptor, Ed25519 keys and signatures, the trust store that decides,
//! and the registry of installed packs. Built on `envpack-model` only: no
//! WebAssembly runtime is needed to check who signed a pack.

mod descriptor;
mod keys;
mod manifest;
mod registry;
pub mod sections;
mod signature;
mod store;

pub use descriptor::{Descriptor, DescriptorError, Requirement};
pub use keys::{KeyError, PrivateKey, PublicKey};
pub use manifest::{Manifest, ManifestError};
pub use registry::{InstalledPack, Registry, RegistryError};
pub use signature::{
    Keyring, OutOfScope, SignatureRecord, Verified, VerifyError, records, sign, sign_detached, signable_digest, verify,
};
pub use store::{TrustError, TrustStore, TrustedKey};
