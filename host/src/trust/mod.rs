//! Trust: what a pack file says about itself and who vouches for it. The
//! custom sections of a pack file, its manifest and descriptor, Ed25519 keys
//! and signatures, the trust store that decides, and the registry of
//! installed packs.

pub mod descriptor;
pub mod keys;
pub mod manifest;
pub mod registry;
pub mod sections;
pub mod signature;
pub mod store;

pub use store::*;
