//! Reading the files a user names on the command line (packs, keys,
//! signatures), each bounded and each failure naming the path.

use std::path::Path;

use envpack_trust::{PrivateKey, PublicKey};

use crate::error::CliError;

pub fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::input(format!("cannot read {}: {e}", path.display())))
}

/// Reads a pack (or a detached signature) for `sign`, `verify`, `pack
/// seal` and `pack digest`: bounded like every other path that reads a
/// pack, so no command reads a file of any size whole.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>, CliError> {
    envpack_host::read_pack_file(path).map_err(|e| CliError::Input {
        message: format!("cannot read {}: {e}", path.display()),
        hint: Some(format!(
            "packs are at most {} MiB (MAX_PACK_BYTES); a bigger file is not a pack this host runs",
            envpack_host::MAX_PACK_BYTES >> 20
        )),
    })
}

pub fn key_error(path: &Path) -> impl Fn(envpack_trust::KeyError) -> CliError + '_ {
    move |source| CliError::Key {
        path: path.display().to_string(),
        source,
    }
}

pub fn read_public(path: &Path) -> Result<PublicKey, CliError> {
    PublicKey::from_pem(&read_text(path)?).map_err(key_error(path))
}

pub fn read_private_key(path: &Path) -> Result<PrivateKey, CliError> {
    PrivateKey::from_pem(&read_text(path)?).map_err(key_error(path))
}
