//! `host env`: the commands that create, bind and remove environments (the
//! read-only ones render through `show`).

use std::collections::BTreeMap;

use envpack_model::{Capability, DeadlinePolicy};
use envpack_operator::{BindRequest, EnvironmentView};
use serde_json::json;

use crate::context::Context;
use crate::error::{CliError, exit};
use crate::grant_args::GrantArgs;

#[derive(clap::Subcommand)]
pub enum EnvCommand {
    /// Create an environment bound to an installed pack by descriptor requirement.
    Create(BindArgs),
    /// Move an environment to another installed pack (or change its grants/settings).
    Bind(RebindArgs),
    /// Move an environment's pin to the highest installed, trusted pack its
    /// requirement (or --deployer) names. An environment runs exactly the
    /// pack (digest and signer) it was bound to until this is run; audited,
    /// and it needs a deploy key where the environment trusts some.
    Upgrade {
        env: String,
        /// Another descriptor requirement to resolve instead of the binding's.
        #[arg(long, value_name = "REQ")]
        deployer: Option<String>,
        #[arg(long)]
        json: bool,
    },
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
    /// Remove an environment (refused while revisions are not archived, unless --force or
    /// --teardown).
    Remove {
        env: String,
        /// Remove it anyway: its processes are stopped and its records dropped, the pack is not
        /// called (whatever the provider runs for it elsewhere is left).
        #[arg(long, conflicts_with = "teardown")]
        force: bool,
        /// Tear it down through its pack first: every revision drained and archived, each
        /// deployment's own resources released (packs of contract 1.2 with `teardown`).
        #[arg(long)]
        teardown: bool,
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
    #[command(flatten)]
    grants: GrantArgs,
    /// Deadline of one verb, VERB=MS (repeatable), used as given, e.g.
    /// `warm-revision=30000`; otherwise the pack's own expectation (its
    /// manifest's [deadlines]) capped by --max-deadline-ms, else --deadline-ms.
    #[arg(long = "deadline", value_name = "VERB=MS")]
    deadlines: Vec<String>,
    /// The most a pack's own expectation may get, in milliseconds (default 120000).
    #[arg(long, value_name = "MS")]
    max_deadline_ms: Option<u64>,
    /// Pack setting KEY=VALUE (repeatable), checked against the settings
    /// the pack declares (`host inspect PACK`). `env bind` keeps the
    /// environment's other settings (see --unset, --reset-settings).
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    /// A public key (SPKI PEM, as `host keygen` writes KEY.pub) whose holder may move this
    /// environment's traffic (repeatable). Given at all, only these keys' holders may: traffic
    /// set/rollback, rollout start/promote/abort and env bind then need --deploy-key.
    #[arg(long = "trust-deploy-key", value_name = "NAME=KEY.pub")]
    deploy_keys: Vec<String>,
    /// The most the environment's work directory may hold, in MiB, before
    /// stage, warm and traffic changes are refused (default 4096; kept by
    /// `env bind` when not given).
    #[arg(long, value_name = "MIB")]
    disk_mib: Option<u64>,
    #[arg(long)]
    json: bool,
}

/// `env bind`: the arguments of `env create`, and how the settings the
/// environment has are kept.
#[derive(clap::Args)]
pub struct RebindArgs {
    #[command(flatten)]
    bind: BindArgs,
    /// Remove one of the environment's settings (repeatable); the others
    /// are kept.
    #[arg(long = "unset", value_name = "KEY", conflicts_with = "reset_settings")]
    unset: Vec<String>,
    /// Start from no settings: the environment gets exactly the --setting
    /// ones given.
    #[arg(long)]
    reset_settings: bool,
    /// Moving to another pack while the old one's revisions are not archived:
    /// retire every deployment through the old pack first (drained, archived,
    /// released), as `host deployment retire` does.
    #[arg(long, conflicts_with = "abandon")]
    teardown: bool,
    /// Moving to another pack while the old one's revisions are not archived:
    /// record them archived without calling it (with --reason); what the
    /// provider runs for them is left in place.
    #[arg(long, requires = "reason")]
    abandon: bool,
    /// Why the revisions are abandoned, recorded in their events.
    #[arg(long, value_name = "TEXT", requires = "abandon")]
    reason: Option<String>,
}

/// How revisions leave, from `--teardown` / `--abandon --reason`.
pub fn retirement(teardown: bool, abandon: bool, reason: Option<String>) -> Option<envpack_operator::Retirement> {
    match (teardown, abandon) {
        (true, _) => Some(envpack_operator::Retirement::ThroughPack),
        (_, true) => Some(envpack_operator::Retirement::Abandon(reason.unwrap_or_default())),
        _ => None,
    }
}

/// Prints what a retirement or teardown did: each step, then what is left.
pub fn print_retired(label: &str, done: &envpack_operator::Teardown) {
    for step in &done.steps {
        eprintln!("host: {label}: {}", envpack_model::text::printable(step));
    }
    for left in &done.left {
        eprintln!("host: warning: {}", envpack_model::text::printable(left));
    }
}

/// The deploy keys given on the command line; `None` if none was given.
fn parse_deploy_keys(args: &BindArgs) -> Result<Option<Vec<envpack_operator::DeployKey>>, CliError> {
    if args.deploy_keys.is_empty() {
        return Ok(None);
    }
    parse_pairs(&args.deploy_keys, "--trust-deploy-key")?
        .into_iter()
        .map(|(name, path)| {
            let pem = std::fs::read_to_string(&path)
                .map_err(|e| CliError::input(format!("--trust-deploy-key {name}={path}: {e}")))?;
            Ok(envpack_operator::DeployKey::from_pem(&name, &pem)?)
        })
        .collect::<Result<Vec<_>, CliError>>()
        .map(Some)
}

/// The deadline settings given on the command line; `None` if none was given.
fn parse_deadlines(args: &BindArgs) -> Result<Option<DeadlinePolicy>, CliError> {
    if args.deadlines.is_empty() && args.max_deadline_ms.is_none() {
        return Ok(None);
    }
    let mut verbs = BTreeMap::new();
    for (verb, ms) in parse_pairs(&args.deadlines, "deadline")? {
        let ms = ms
            .parse::<u64>()
            .ok()
            .filter(|_| ms.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| CliError::input(format!("deadline {verb}={ms:?}: not a whole number of milliseconds")))?;
        verbs.insert(verb, ms);
    }
    let policy = DeadlinePolicy {
        verbs,
        max_ms: args.max_deadline_ms,
    };
    policy.validate().map_err(|e| CliError::input(e.to_string()))?;
    Ok(Some(policy))
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
                .filter(|(k, _)| !k.trim().is_empty())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::input(format!("{what} {p:?} is not KEY=VALUE with a non-empty KEY")))
        })
        .collect()
}

pub async fn run(ctx: &mut Context, command: EnvCommand) -> Result<i32, CliError> {
    match command {
        EnvCommand::Create(args) => bind(ctx, args, true, &[], false, None).await,
        EnvCommand::Bind(RebindArgs {
            bind: args,
            unset,
            reset_settings,
            teardown,
            abandon,
            reason,
        }) => {
            let retire = retirement(teardown, abandon, reason);
            bind(ctx, args, false, &unset, reset_settings, retire).await
        }
        EnvCommand::Upgrade { env, deployer, json } => upgrade(ctx, env, deployer, json).await,
        EnvCommand::List { json } => crate::show::environments(ctx, json),
        EnvCommand::Show { env, json } => crate::show::status(ctx, &env, json),
        EnvCommand::Remove {
            env,
            teardown: true,
            json,
            ..
        } => {
            let actor = ctx.actor();
            let done = ctx.operator(actor)?.teardown_env(&env).await?;
            print_retired("teardown", &done);
            if json {
                println!(
                    "{:#}",
                    json!({ "removed": env, "teardown": done.steps, "left": done.left })
                );
            } else {
                println!("tore down and removed environment {env}");
            }
            Ok(exit::OK)
        }
        EnvCommand::Remove { env, force, json, .. } => {
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

async fn upgrade(ctx: &mut Context, env: String, deployer: Option<String>, json: bool) -> Result<i32, CliError> {
    let actor = ctx.actor();
    let mut op = ctx.operator(actor)?;
    let (before, after) = op.upgrade(&env, deployer).await?;
    let same = before.pack_digest == after.pack_digest && before.signer == after.signer;
    if json {
        let view = |b: &envpack_operator::Binding| json!({ "descriptor": b.descriptor, "digest": b.pack_digest, "signer": b.signer });
        println!(
            "{:#}",
            json!({ "env": env, "changed": !same, "from": view(&before), "to": view(&after) })
        );
    } else if same {
        println!("{env} stays on {} ({})", after.descriptor, &after.pack_digest[..16]);
    } else {
        println!(
            "upgraded {env}: {} ({}) -> {} ({}), signed by key {}",
            before.descriptor,
            &before.pack_digest[..16.min(before.pack_digest.len())],
            after.descriptor,
            &after.pack_digest[..16],
            &after.signer[..16.min(after.signer.len())]
        );
    }
    Ok(exit::OK)
}

async fn bind(
    ctx: &mut Context,
    args: BindArgs,
    create: bool,
    unset: &[String],
    reset_settings: bool,
    retire: Option<envpack_operator::Retirement>,
) -> Result<i32, CliError> {
    if args.disk_mib == Some(0) {
        return Err(CliError::input("--disk-mib must be at least 1"));
    }
    let capabilities = parse_capabilities(&args.capabilities)?;
    let grants = args.grants.grants()?;
    let settings = if args.settings.is_empty() {
        None
    } else {
        Some(parse_pairs(&args.settings, "setting")?)
    };
    let actor = ctx.actor();
    let mut op = ctx.operator(actor)?;
    let request = BindRequest {
        requirement: args.deployer.clone(),
        capabilities,
        grants,
        deadlines: parse_deadlines(&args)?,
        settings,
        deploy_keys: parse_deploy_keys(&args)?,
        disk_budget_mib: args.disk_mib,
    };
    let (rebound, warnings) = op
        .bind_with_settings(&args.env, request, create, unset, reset_settings, retire)
        .await?;
    print_retired("retire", &rebound.retired);
    let binding = rebound.binding;
    for warning in warnings {
        eprintln!("host: warning: {warning}");
    }
    if args.json {
        let view = EnvironmentView {
            id: args.env.clone(),
            binding,
        };
        println!("{}", serde_json::to_string_pretty(&view).unwrap_or_default());
    } else {
        let verb = if create { "created" } else { "bound" };
        let caps: Vec<&str> = binding.capabilities.iter().map(|c| c.name()).collect();
        let scopes = crate::show::grants_line(&binding.grants);
        let scopes = if scopes.is_empty() {
            String::new()
        } else {
            format!("; {scopes}")
        };
        println!(
            "{verb} {} -> {} (grants {}{scopes})",
            args.env,
            binding.descriptor,
            caps.join(", ")
        );
    }
    Ok(exit::OK)
}
