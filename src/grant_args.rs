//! The grant flags (`--allow-run`, `--allow-env`, `--allow-port`,
//! `--allow-probe`, `--allow-http`, `--allow-secret`), shared by `env create|bind` (what an environment
//! grants) and `conformance` / `pack install` (what the bench's fixture
//! environments grant, e.g. to point a cloud pack's bench at an emulator).

use envpack_model::{Grants, resolve_command};

use crate::error::CliError;

#[derive(clap::Args, Clone, Debug, Default)]
pub struct GrantArgs {
    /// A program the pack may spawn, with the arguments it may take
    /// (repeatable; grants `process`): 'PROGRAM PATTERN...', quoted as a
    /// shell would. PROGRAM is an absolute path, a name resolved on PATH
    /// now, or `@work-dir` for a program inside the work directory. Each
    /// PATTERN is a literal or a placeholder: {path} (inside the work
    /// directory), {name}, {number}, {any}; `...` repeats the last. E.g.
    /// --allow-run 'tar -xzf {path} -C {path}'.
    #[arg(long = "allow-run", value_name = "'PROGRAM PATTERN...'")]
    pub allow_run: Vec<String>,
    /// An environment variable spawned programs may be given (repeatable):
    /// a name, or a prefix ending in `*`. Variables that change what a
    /// program loads or runs (LD_*, PATH, BASH_ENV, PYTHON*...) are refused.
    #[arg(long = "allow-env", value_name = "NAME")]
    pub allow_env: Vec<String>,
    /// TCP ports spawned programs may bind or connect to (repeatable): PORT
    /// or FIRST-LAST. Without it they reach no TCP port.
    #[arg(long = "allow-port", value_name = "PORTS")]
    pub allow_port: Vec<String>,
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
    /// The same flags again, as arguments of another `host` command.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        for (flag, values) in [
            ("--allow-run", &self.allow_run),
            ("--allow-env", &self.allow_env),
            ("--allow-port", &self.allow_port),
            ("--allow-probe", &self.allow_probe),
            ("--allow-http", &self.allow_http),
            ("--allow-secret", &self.allow_secret),
        ] {
            for value in values {
                args.extend([flag.to_string(), value.clone()]);
            }
        }
        args
    }

    pub fn grants(&self) -> Result<Option<Grants>, CliError> {
        let given = !(self.allow_run.is_empty()
            && self.allow_env.is_empty()
            && self.allow_port.is_empty()
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
            env: self.allow_env.clone(),
            ports: self.allow_port.clone(),
        };
        grants.validate().map_err(|e| CliError::input(e.to_string()))?;
        Ok(Some(grants))
    }
}
