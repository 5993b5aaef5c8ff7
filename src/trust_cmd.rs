//! `host trust add|list|revoke`: the keys trusted to sign packs.

use std::path::PathBuf;

use crate::context::Context;
use crate::error::{CliError, exit};
use crate::input::read_public;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Trust a public key (SPKI PEM) under a name.
    Add {
        /// The public key file.
        key: PathBuf,
        /// A name for the key, unique in the store.
        #[arg(long)]
        name: String,
        /// Pack names the key may sign (repeatable): `acme.*`,
        /// `acme.deployer.web`. A pack signed by this key under another
        /// name is refused.
        #[arg(long = "scope", value_name = "PATTERN")]
        scopes: Vec<String>,
        /// Trust the key to sign packs of every name instead: its holder
        /// can then publish a newer version of any pack you installed (an
        /// environment moves to it only by `host env upgrade`).
        #[arg(long, conflicts_with = "scopes")]
        any_descriptor: bool,
    },
    /// List trusted and revoked keys.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key (by id, at least 8 hex digits, or by name). Permanent.
    Revoke {
        /// Key id prefix or name.
        key: String,
    },
}

pub fn run(ctx: &mut Context, command: Command) -> Result<i32, CliError> {
    let mut trust = ctx.trust()?;
    match command {
        Command::Add {
            key,
            name,
            scopes,
            any_descriptor,
        } => {
            if scopes.is_empty() && !any_descriptor {
                return Err(CliError::Input {
                    message: format!(
                        "trusting key {name:?} needs the pack names it may sign: --scope PATTERN (e.g. --scope 'acme.*'), \
                         or --any-descriptor"
                    ),
                    hint: Some(
                        "a key trusted for any descriptor can publish a newer version of every pack you installed; \
                         scope it to its author's names"
                            .into(),
                    ),
                });
            }
            let public = read_public(&key)?;
            let added = trust.add_scoped(&public, &name, &scopes)?;
            println!(
                "trusted {} as {:?} for {}",
                added.key_id,
                added.name,
                scope_text(&added.scopes)
            );
        }
        Command::List { json } => {
            if json {
                let mut value = serde_json::to_value(trust.keys()).map_err(|e| CliError::State(e.to_string()))?;
                crate::show::rfc3339_fields(&mut value, &["added_at", "revoked_at"]);
                println!("{value:#}");
            } else if trust.keys().is_empty() {
                println!("no trusted keys (add one with `host trust add KEY.pub --name NAME`)");
            } else {
                for key in trust.keys() {
                    let status = if key.revoked_at.is_some() { "revoked" } else { "trusted" };
                    println!(
                        "{}  {status:<7}  {}  signs {}",
                        key.key_id,
                        key.name,
                        scope_text(&key.scopes)
                    );
                }
            }
        }
        Command::Revoke { key } => {
            let revoked = trust.revoke(&key)?;
            println!(
                "revoked {} ({}); packs it signed are refused from now on",
                revoked.key_id, revoked.name
            );
        }
    }
    Ok(exit::OK)
}

fn scope_text(scopes: &[String]) -> String {
    if scopes.is_empty() {
        "any pack".to_string()
    } else {
        scopes.join(", ")
    }
}
