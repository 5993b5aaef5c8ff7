//! `host env`, `host status`, `host events`, `host audit verify`: the
//! operator's view of environments, and the commands that bind them to packs.

use std::collections::BTreeMap;
use std::time::Duration;

use envpack_host::Capability;
use envpack_operator::{audit, db, store};
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
        EnvCommand::List { json } => {
            let conn = db::open(&ctx.state_dir()?.join("state.db"))?;
            let envs = store::list_envs(&conn)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&envs).unwrap_or_default());
            } else {
                for env in envs {
                    let binding = store::binding(&conn, &env).map(|b| b.descriptor).unwrap_or_default();
                    println!("{env:<24} {binding}");
                }
            }
            Ok(exit::OK)
        }
        EnvCommand::Show { env, json } => status(ctx, &env, json),
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

/// `host status ENV` (and `env show`): binding, splits, live revisions.
pub fn status(ctx: &mut Context, env: &str, as_json: bool) -> Result<i32, CliError> {
    let conn = db::open(&ctx.state_dir()?.join("state.db"))?;
    let binding = store::binding(&conn, env)?;
    let mut deployments = Vec::new();
    for deployment in store::deployments(&conn, env)? {
        let split = store::current_split(&conn, env, &deployment)?;
        deployments.push(json!({ "id": deployment, "split": split }));
    }
    let revisions = store::revisions(&conn, env, false)?;
    if as_json {
        let value = json!({ "env": env, "binding": binding, "deployments": deployments, "revisions": revisions });
        println!("{value:#}");
        return Ok(exit::OK);
    }
    println!("environment {env}: {} ({})", binding.descriptor, binding.requirement);
    for d in &deployments {
        let split = match d["split"]["entries"].as_array() {
            Some(entries) => entries
                .iter()
                .map(|e| format!("{}={}", e["revision"].as_str().unwrap_or_default(), e["weight_bps"]))
                .collect::<Vec<_>>()
                .join(" "),
            None => "no split".into(),
        };
        println!(
            "  deployment {}  generation {}  {split}",
            d["id"].as_str().unwrap_or_default(),
            d["split"]["generation"]
        );
    }
    for r in revisions {
        println!(
            "  revision {}  {}  #{}  {}",
            r.id, r.deployment, r.sequence, r.lifecycle
        );
    }
    Ok(exit::OK)
}

/// `host events ENV [--follow]`.
pub async fn events(ctx: &mut Context, env: &str, follow: bool, as_json: bool) -> Result<i32, CliError> {
    let conn = db::open(&ctx.state_dir()?.join("state.db"))?;
    store::require_env(&conn, env)?;
    let mut after = 0;
    loop {
        for event in store::events(&conn, env, after)? {
            after = event.seq;
            if as_json {
                println!("{}", serde_json::to_string(&event).unwrap_or_default());
            } else {
                println!(
                    "{:>6} {} {} {} -> {} by {}: {}",
                    event.seq, event.at, event.revision, event.from, event.to, event.actor, event.reason
                );
            }
        }
        if !follow {
            return Ok(exit::OK);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `host audit verify`.
pub fn audit_verify(ctx: &mut Context) -> Result<i32, CliError> {
    let conn = db::open(&ctx.state_dir()?.join("state.db"))?;
    match audit::verify(&conn)? {
        Ok(rows) => {
            println!("audit log intact: {rows} rows, hash chain verified");
            Ok(exit::OK)
        }
        Err(broken) => Err(CliError::Tampered(format!("audit log tampered: {broken}"))),
    }
}
