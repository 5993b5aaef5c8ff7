//! What a pack says about itself, and the one contract-version rule: which
//! versions of `envpack:deployer` this host runs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::capability::Capability;

/// The contract version this host speaks (`wit/deployer.wit`).
pub const CONTRACT_VERSION: &str = "1.2.0";

/// Whether this host runs packs built against contract `version`: the same
/// major version, at or below this host's minor (see `wit/README.md`).
pub fn accepts_contract(version: &str) -> bool {
    let (Ok(found), Ok(ours)) = (
        semver::Version::parse(version),
        semver::Version::parse(CONTRACT_VERSION),
    ) else {
        return false;
    };
    found.major == ours.major && found.minor <= ours.minor && found.pre.is_empty()
}

/// What a pack says about itself in `describe`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackInfo {
    pub descriptor: String,
    pub contract_version: String,
    pub capabilities: Vec<Capability>,
    pub description: String,
}

impl PackInfo {
    /// The descriptor without its version: `envpack.deployer.ledger`.
    pub fn name(&self) -> &str {
        descriptor_name(&self.descriptor)
    }
}

/// A descriptor (`envpack.deployer.ledger@1.0.0`) without its version.
pub fn descriptor_name(descriptor: &str) -> &str {
    descriptor.split('@').next().unwrap_or(descriptor)
}

/// Hex sha256 of `bytes`: how packs, artifacts and keys are named.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::accepts_contract;

    #[test]
    fn same_major_at_or_below_our_minor() {
        assert!(accepts_contract("1.0.0"));
        assert!(accepts_contract("1.1.0"));
        assert!(accepts_contract("1.2.0"));
        assert!(accepts_contract("1.0.7"));
        assert!(
            !accepts_contract("1.3.0"),
            "a newer minor may call what this host lacks"
        );
        assert!(!accepts_contract("2.0.0"));
        assert!(!accepts_contract("0.9.0"));
        assert!(!accepts_contract("1.1.0-rc.1"));
        assert!(!accepts_contract("one"));
    }
}
