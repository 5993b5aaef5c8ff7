//! `host env`: the commands that create, bind and remove environments (the
//! read-only ones render through `show`).

use std::collections::BTreeMap;

use envpack_host::Capability;
use serde_json::json;

use crate::context::Context;
use crate::error::{CliError, exit};

#[derive(clap::Subcommand)]
pub enum EnvCommand {
    /// Create an environment bound to an installed pack by descriptor requirement.
    Create(BindArgs),
    /// Move an environment to another installed pack (or change its grants/settings).
    Bind(BindArgs),
    /// List environments.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show an environment's binding, deployments and live revisions.
    Show {
        env: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove an environment (refused while revisions are not archived, unless --force).
    Remove {
        env: String,
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args)]
pub struct BindArgs {
    env: String,
    /// Descriptor requirement, e.g. `envpack.deployer.ledger@^1`.
    #[arg(long, value_name = "REQ")]
    deployer: String,
    /// Capability granted to the pack (repeatable): log, kv, clock, process, probe, http, secrets.
    #[arg(long = "capability", value_name = "CAP")]
    capabilities: Vec<String>,
    /// Pack setting KEY=VALUE (repeatable).
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    #[arg(long)]
    json: bool,
}

fn parse_capabilities(names: &[String]) -> Result<Option<Vec<Capability>>, CliError> {
    if names.is_empty() {
        return Ok(None);
    }
    names
        .iter()
        .flat_map(|n| n.split(','))
        .map(|name| {
            Capability::ALL
                .into_iter()
                .find(|c| c.name() == name.trim())
                .ok_or_else(|| CliError::Input {
                    message: format!("unknown capability {name:?}"),
                    hint: Some("capabilities are: log, kv, clock, process, probe, http, secrets".into()),
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

pub fn parse_pairs(pairs: &[String], what: &str) -> Result<BTreeMap<String, String>, CliError> {
    pairs
        .iter()
        .map(|p| {
            p.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::input(format!("{what} {p:?} is not KEY=VALUE")))
        })
        .collect()
}

pub async fn run(ctx: &mut Context, command: EnvCommand) -> Result<i32, CliError> {
    match command {
        EnvCommand::Create(args) => bind(ctx, args, true).await,
        EnvCommand::Bind(args) => bind(ctx, args, false).await,
        EnvCommand::List { json } => crate::show::environments(ctx, json),
        EnvCommand::Show { env, json } => crate::show::status(ctx, &env, json),
        EnvCommand::Remove { env, force, json } => {
            let actor = ctx.actor();
            let mut op = ctx.operator_without_runtime(actor)?;
            op.remove_env(&env, force)?;
            if json {
                println!("{:#}", json!({ "removed": env }));
            } else {
                println!("removed environment {env}");
            }
            Ok(exit::OK)
        }
    }
}

async fn bind(ctx: &mut Context, args: BindArgs, create: bool) -> Result<i32, CliError> {
    let capabilities = parse_capabilities(&args.capabilities)?;
    let settings = if args.settings.is_empty() {
        None
    } else {
        Some(parse_pairs(&args.settings, "setting")?)
    };
    let actor = ctx.actor();
    let mut op = ctx.operator(actor)?;
    let binding = op
        .bind(&args.env, &args.deployer, capabilities, settings, create)
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&binding).unwrap_or_default());
    } else {
        let verb = if create { "created" } else { "bound" };
        let caps: Vec<&str> = binding.capabilities.iter().map(|c| c.name()).collect();
        println!(
            "{verb} {} -> {} (grants {})",
            args.env,
            binding.descriptor,
            caps.join(", ")
        );
    }
    Ok(exit::OK)
}
