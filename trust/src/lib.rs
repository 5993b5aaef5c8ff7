//! Trust: what a pack file says about itself and who vouches for it. The
//! custom sections of a pack file ([`sections`]), its manifest and
//! descriptor, Ed25519 keys and signatures, the trust store that decides,
//! and the registry of installed packs. Built on `envpack-model` only: no
//! WebAssembly runtime is needed to check who signed a pack.

mod descriptor;
mod keys;
mod manifest;
mod registry;
mod seal;
pub mod sections;
mod signature;
mod store;

pub use descriptor::{Descriptor, DescriptorError, Requirement};
pub use keys::{KeyError, PrivateKey, PublicKey};
pub use manifest::{Manifest, ManifestError};
pub use registry::{Checked, InstalledPack, Registry, RegistryError};
pub use seal::SealKey;
pub use signature::{
    Keyring, OutOfScope, SignatureRecord, SignedFacts, Verified, VerifyError, records, sign, sign_detached,
    signable_digest, verify, verify_signed,
};
pub use store::{TrustError, TrustStore, TrustedKey};
