//! `host revision ...` and `host traffic ...`: lifecycle verbs and traffic
//! splits, each run through the environment's pack before it is recorded.

use envpack_model::SplitEntry;
use envpack_operator::{Applied, NewRevision, RevisionView};

use crate::context::Context;
use crate::env_cmd::parse_pairs;
use crate::error::{CliError, exit};

#[derive(clap::Subcommand)]
pub enum RevisionCommand {
    /// Create a revision of DEPLOYMENT and stage it (inactive -> staged).
    Stage {
        env: String,
        deployment: String,
        /// `sha256:` + 64 hex digits.
        #[arg(long)]
        digest: String,
        /// Where the provider fetches the artifact.
        #[arg(long)]
        location: String,
        /// Revision id (default: a new ULID).
        #[arg(long)]
        id: Option<String>,
        #[arg(long, default_value_t = 30)]
        drain_seconds: u32,
        /// Run setting KEY=VALUE (repeatable).
        #[arg(long = "setting", value_name = "KEY=VALUE")]
        settings: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// staged -> warming -> ready (or failed, with the pack's message).
    Warm(Target),
    /// ready -> draining -> inactive; refused while the revision has traffic.
    Drain(Target),
    /// -> archived; refused while the revision has traffic.
    Archive(Target),
    /// failed -> staged.
    Retry(Target),
    /// Record a revision archived without calling the pack, when the pack keeps refusing to
    /// drain or archive it; its processes are stopped, anything else the provider runs for it
    /// is left to you. Refused while it has traffic.
    Abandon {
        env: String,
        revision: String,
        /// Why (recorded in the revision's events and the audit log).
        #[arg(long, required = true)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
    /// List revisions (not archived, unless --all).
    List {
        env: String,
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    Show(Target),
    /// Where the revision is reached on its own, bypassing the split, as its pack says (packs of
    /// contract 1.2 that export `endpoints`); exit 1 when it has no address now.
    Endpoint(Target),
}

#[derive(clap::Args)]
pub struct Target {
    env: String,
    revision: String,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum TrafficCommand {
    /// Set a deployment's split: REV=BPS entries summing to 10000.
    Set {
        env: String,
        deployment: String,
        #[arg(required = true, value_name = "REV=BPS")]
        entries: Vec<String>,
        /// Makes a retried command a no-op; the same key with other entries is refused.
        #[arg(long)]
        idempotency_key: Option<String>,
        /// Set it even while a rollout moves the deployment (the audit log names the rollout).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show the current split (and the previous generation) of each deployment.
    Show {
        env: String,
        #[arg(long)]
        json: bool,
    },
    /// Go back to the previous generation's split, in one atomic step.
    Rollback {
        env: String,
        deployment: String,
        /// The earlier generation to go back to (`traffic show` lists the current and previous);
        /// default: the one before the current
        #[arg(long, value_name = "GEN")]
        to: Option<i64>,
        /// Roll back even while a rollout moves the deployment (the audit log names the rollout).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
}

fn parse_entries(raw: &[String]) -> Result<Vec<SplitEntry>, CliError> {
    raw.iter()
        .map(|item| {
            let (revision, bps) = item
                .rsplit_once('=')
                .ok_or_else(|| CliError::input(format!("{item:?} is not REVISION=BPS")))?;
            let digits = !bps.is_empty() && bps.bytes().all(|b| b.is_ascii_digit());
            let weight_bps = bps.parse::<u32>().ok().filter(|_| digits).ok_or_else(|| {
                CliError::input(format!(
                    "{item:?} is not REVISION=BPS: {bps:?} is not a whole number of basis points (0 to 10000)"
                ))
            })?;
            Ok(SplitEntry {
                revision: revision.to_string(),
                weight_bps,
            })
        })
        .collect()
}

fn print_revision(env: &str, r: &envpack_model::Revision, as_json: bool) {
    let view = RevisionView::new(env, r.clone());
    if as_json {
        println!("{}", serde_json::to_string_pretty(&view).unwrap_or_default());
    } else {
        println!("{}", crate::show::revision_line(&view));
    }
}

pub async fn revision(ctx: &mut Context, command: RevisionCommand) -> Result<i32, CliError> {
    let actor = ctx.actor();
    match command {
        RevisionCommand::Stage {
            env,
            deployment,
            digest,
            location,
            id,
            drain_seconds,
            settings,
            json,
        } => {
            let settings = parse_pairs(&settings, "setting")?;
            if location.trim().is_empty() {
                return Err(CliError::input(
                    "--location is empty: give where the provider fetches the artifact",
                ));
            }
            let new = NewRevision {
                id,
                deployment,
                digest,
                location,
                drain_seconds,
                settings,
            };
            let revision = ctx.operator(actor)?.stage(&env, new).await?;
            print_revision(&env, &revision, json);
        }
        RevisionCommand::Warm(t) => {
            let r = ctx.operator(actor)?.warm(&t.env, &t.revision).await?;
            print_revision(&t.env, &r, t.json)
        }
        RevisionCommand::Drain(t) => {
            let r = ctx.operator(actor)?.drain(&t.env, &t.revision).await?;
            print_revision(&t.env, &r, t.json)
        }
        RevisionCommand::Archive(t) => {
            let r = ctx.operator(actor)?.archive(&t.env, &t.revision).await?;
            print_revision(&t.env, &r, t.json)
        }
        RevisionCommand::Abandon {
            env,
            revision,
            reason,
            json,
        } => {
            let r = ctx.operator(actor)?.abandon(&env, &revision, &reason)?;
            print_revision(&env, &r, json)
        }
        RevisionCommand::Retry(t) => {
            let r = ctx.operator(actor)?.retry(&t.env, &t.revision).await?;
            print_revision(&t.env, &r, t.json)
        }
        RevisionCommand::List { env, all, json } => return crate::show::revisions(ctx, &env, all, json),
        RevisionCommand::Show(t) => return crate::show::revision(ctx, &t.env, &t.revision, t.json),
        RevisionCommand::Endpoint(t) => {
            let url = ctx.operator(actor)?.revision_endpoint(&t.env, &t.revision).await?;
            if t.json {
                println!(
                    "{:#}",
                    serde_json::json!({ "env": t.env, "revision": t.revision, "url": url })
                );
            } else if let Some(url) = &url {
                println!("{}", envpack_model::text::printable(url));
            } else {
                eprintln!(
                    "host: revision {} has no address of its own now (it does not run)",
                    t.revision
                );
            }
            return Ok(if url.is_some() { exit::OK } else { exit::VERB_FAILED });
        }
    }
    Ok(exit::OK)
}

/// The traffic-change object of `traffic set|rollback --json`.
#[derive(serde::Serialize)]
struct TrafficChange<'a> {
    env: &'a str,
    deployment: &'a str,
    action: &'a str,
    /// The generation these entries were recorded as.
    generation: i64,
    /// The deployment's generation now.
    current_generation: i64,
    /// True when an idempotency key repeated an earlier command: nothing ran.
    replayed: bool,
}

fn print_generation(env: &str, deployment: &str, applied: &Applied, action: &str, as_json: bool) {
    if as_json {
        let change = TrafficChange {
            env,
            deployment,
            action,
            generation: applied.generation,
            current_generation: applied.current,
            replayed: applied.replayed,
        };
        println!("{}", serde_json::to_string_pretty(&change).unwrap_or_default());
    } else if applied.replayed {
        println!(
            "{env}/{deployment}: already {action} as generation {} by this idempotency key; nothing ran (current generation {})",
            applied.generation, applied.current
        );
    } else {
        println!("{env}/{deployment}: {action}, now generation {}", applied.generation);
    }
}

pub async fn traffic(ctx: &mut Context, command: TrafficCommand) -> Result<i32, CliError> {
    let actor = ctx.actor();
    match command {
        TrafficCommand::Set {
            env,
            deployment,
            entries,
            idempotency_key,
            force,
            json,
        } => {
            let entries = parse_entries(&entries)?;
            let applied = ctx
                .operator(actor)?
                .set_traffic(&env, &deployment, entries, idempotency_key, force)
                .await?;
            print_generation(&env, &deployment, &applied, "set", json);
        }
        TrafficCommand::Rollback {
            env,
            deployment,
            to,
            force,
            json,
        } => {
            let applied = ctx.operator(actor)?.rollback(&env, &deployment, to, force).await?;
            print_generation(&env, &deployment, &applied, "rolled back", json);
        }
        TrafficCommand::Show { env, json } => return crate::show::traffic(ctx, &env, json),
    }
    Ok(exit::OK)
}
