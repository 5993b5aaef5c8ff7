//! The host's state directory: `--state-dir`, else `$ENVPACK_STATE_DIR`, else
//! `$XDG_DATA_HOME/envpack`, else `~/.local/share/envpack`. Created with mode
//! 0700: it holds pack state that only the host writes.

use std::path::{Path, PathBuf};

use crate::error::CliError;

/// Resolves the state directory (flag or environment already applied by clap).
pub fn resolve(flag: Option<PathBuf>) -> Result<PathBuf, CliError> {
    if let Some(dir) = flag {
        return Ok(dir);
    }
    if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(xdg).join("envpack"));
    }
    match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
        Some(home) => Ok(PathBuf::from(home).join(".local/share/envpack")),
        None => Err(CliError::Input {
            message: "cannot choose a state directory: neither HOME nor XDG_DATA_HOME is set".into(),
            hint: Some("pass --state-dir DIR or set ENVPACK_STATE_DIR".into()),
        }),
    }
}

/// Creates the directory (mode 0700 on Unix) if it does not exist.
pub fn ensure(dir: &Path) -> Result<(), CliError> {
    envpack_host::fsutil::create_private_dir(dir)
        .map_err(|e| CliError::State(format!("cannot create state directory {}: {e}", dir.display())))
}
