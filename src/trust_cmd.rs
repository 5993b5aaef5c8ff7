//! `host trust add|list|revoke`: the keys trusted to sign packs.

use std::path::PathBuf;

use crate::context::Context;
use crate::error::{CliError, exit};
use crate::keys_cmd::read_public;

#[derive(clap::Subcommand)]
pub enum Command {
    /// Trust a public key (SPKI PEM) under a name.
    Add {
        /// The public key file.
        key: PathBuf,
        /// A name for the key, unique in the store.
        #[arg(long)]
        name: String,
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
        Command::Add { key, name } => {
            let public = read_public(&key)?;
            let added = trust.add(&public, &name)?;
            println!("trusted {} as {:?}", added.key_id, added.name);
        }
        Command::List { json } => {
            if json {
                let value = serde_json::to_value(trust.keys()).map_err(|e| CliError::State(e.to_string()))?;
                println!("{value:#}");
            } else if trust.keys().is_empty() {
                println!("no trusted keys (add one with `host trust add KEY.pub --name NAME`)");
            } else {
                for key in trust.keys() {
                    let status = if key.revoked_at.is_some() { "revoked" } else { "trusted" };
                    println!("{}  {status:<7}  {}", key.key_id, key.name);
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
