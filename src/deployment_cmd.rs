//! `host deployment`: what ends a deployment for good.

use serde_json::json;

use crate::context::Context;
use crate::error::{CliError, exit};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Retire a deployment: its traffic withdrawn, every revision that is not archived drained
    /// and archived through the pack, its own resources (a route, a listener, a service)
    /// released through the pack (contract 1.2's `teardown`), then no longer listed; its
    /// revisions and history are kept. Staging into it again starts it afresh. Running it again
    /// after a refusal goes on from where it stopped.
    Retire {
        env: String,
        deployment: String,
        /// Do not call the pack: record the revisions archived with --reason (the host stops
        /// their processes); what the provider runs for them is left in place.
        #[arg(long, requires = "reason")]
        abandon: bool,
        /// Why they are abandoned, recorded in their events.
        #[arg(long, value_name = "TEXT", requires = "abandon")]
        reason: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(ctx: &mut Context, command: Command) -> Result<i32, CliError> {
    match command {
        Command::Retire {
            env,
            deployment,
            abandon,
            reason,
            json,
        } => {
            let how = crate::env_cmd::retirement(!abandon, abandon, reason)
                .unwrap_or(envpack_operator::Retirement::ThroughPack);
            let actor = ctx.actor();
            let done = ctx.operator(actor)?.retire_deployment(&env, &deployment, how).await?;
            if !done.already {
                crate::env_cmd::print_retired("retire", &done);
            }
            if json {
                println!(
                    "{:#}",
                    json!({ "env": env, "retired": deployment, "already": done.already, "steps": done.steps, "left": done.left })
                );
            } else if done.already {
                println!("{}", done.steps.join("; "));
            } else {
                println!("retired deployment {deployment} of {env}");
            }
            Ok(exit::OK)
        }
    }
}
