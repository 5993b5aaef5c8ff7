//! The grant flags (`--allow-run`, `--allow-probe`, `--allow-http`,
//! `--allow-secret`), shared by `env create|bind` (what an environment
//! grants) and `conformance` / `pack install` (what the bench's fixture
//! environments grant, e.g. to point a cloud pack's bench at an emulator).

use envpack_model::{Grants, resolve_command};

use crate::error::CliError;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct GrantArgs {
    /// Command the pack may spawn (repeatable; grants `process`): an absolute
    /// path, a name resolved on PATH now, or `@work-dir` for any program
    /// inside the environment's work directory (as much trust as a shell).
    #[arg(long = "allow-run", value_name = "CMD")]
    pub allow_run: Vec<String>,
    /// Address the pack may probe (repeatable; grants `probe`): HOST:PORT or
    /// a port range HOST:FIRST-LAST.
    #[arg(long = "allow-probe", value_name = "HOST:PORT")]
    pub allow_probe: Vec<String>,
    /// Origin the pack may call over HTTP (repeatable; grants `http`): SCHEME://HOST:PORT.
    #[arg(long = "allow-http", value_name = "ORIGIN")]
    pub allow_http: Vec<String>,
    /// Secret the pack may read (repeatable; grants `secrets`).
    #[arg(long = "allow-secret", value_name = "NAME")]
    pub allow_secret: Vec<String>,
}

impl GrantArgs {
    /// The scopes given, resolved and checked now; `None` if none was given.
    pub fn grants(&self) -> Result<Option<Grants>, CliError> {
        let given = !(self.allow_run.is_empty()
            && self.allow_probe.is_empty()
            && self.allow_http.is_empty()
            && self.allow_secret.is_empty());
        if !given {
            return Ok(None);
        }
        let mut process = Vec::new();
        for name in &self.allow_run {
            process.push(resolve_command(name).map_err(|e| CliError::input(e.to_string()))?);
        }
        let grants = Grants {
            process,
            probe: self.allow_probe.clone(),
            http: self.allow_http.clone(),
            secrets: self.allow_secret.clone(),
        };
        grants.validate().map_err(|e| CliError::input(e.to_string()))?;
        Ok(Some(grants))
    }
}
