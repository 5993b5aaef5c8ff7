//! `host secret set|list|remove`: the named credentials packs may read when
//! an environment grants them (`--allow-secret NAME`). Values come from
//! stdin or an environment variable, never from the command line (where
//! `ps` and shell history would keep them), and are never printed.

use std::io::Read;

use serde_json::json;

use crate::context::Context;
use crate::error::{CliError, exit};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Set a secret: the value is read from stdin (one trailing newline is
    /// dropped), or from environment variable VAR with --from-env.
    Set {
        name: String,
        #[arg(long, value_name = "VAR")]
        from_env: Option<String>,
    },
    /// List secret names (never values).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    Remove { name: String },
}

fn secrets_error(e: envpack_host::SecretsError) -> CliError {
    use envpack_host::SecretsError as E;
    match e {
        E::File { .. } => CliError::State(e.to_string()),
        E::Name(_) | E::Unknown(_) => CliError::input(e.to_string()),
    }
}

pub fn run(ctx: &mut Context, command: Command) -> Result<i32, CliError> {
    let dir = ctx.state_dir()?;
    let mut secrets = match command {
        Command::List { .. } => dir.open_secrets(),
        _ => dir.open_secrets_for_update(),
    }
    .map_err(secrets_error)?;
    match command {
        Command::Set { name, from_env } => {
            let value = match from_env {
                Some(var) => std::env::var(&var)
                    .map_err(|_| CliError::input(format!("environment variable {var} is not set (or not UTF-8)")))?,
                None => {
                    let mut value = String::new();
                    std::io::stdin()
                        .read_to_string(&mut value)
                        .map_err(|e| CliError::input(format!("cannot read the secret from stdin: {e}")))?;
                    if value.ends_with('\n') {
                        value.pop();
                        if value.ends_with('\r') {
                            value.pop();
                        }
                    }
                    value
                }
            };
            if value.is_empty() {
                return Err(CliError::Input {
                    message: format!("the value for secret {name:?} is empty"),
                    hint: Some(
                        "pipe it in: `printf %s \"$VALUE\" | host secret set NAME`, or use --from-env VAR".into(),
                    ),
                });
            }
            secrets.set(&name, value).map_err(secrets_error)?;
            println!("set secret {name}");
        }
        Command::List { json } => {
            let names = secrets.names();
            if json {
                println!("{}", json!(names));
            } else if names.is_empty() {
                println!("no secrets (set one with `host secret set NAME`)");
            } else {
                names.iter().for_each(|n| println!("{n}"));
            }
        }
        Command::Remove { name } => {
            secrets.remove(&name).map_err(secrets_error)?;
            println!("removed secret {name}");
        }
    }
    Ok(exit::OK)
}
