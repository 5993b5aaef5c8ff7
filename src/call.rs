//! `host call PACK VERB --env ENV.json`: one verb through the full host path
//! (preconditions, sandboxed instance, outcome check), printed for people or
//! as JSON, with the exit code saying how it ended.

use std::path::PathBuf;

use envpack_host::{CallReport, Pack, SignaturePolicy};
use envpack_model::{Environment, Health, Outcome, Request, Verb, text::printable};
use serde_json::json;

use crate::context::Context;
use crate::error::{CliError, exit};

#[derive(clap::Args)]
pub struct Args {
    /// The pack (.wasm component).
    pack: PathBuf,
    /// The verb: stage-revision, warm-revision, drain-revision, archive-revision,
    /// probe-revision, apply-traffic-split, report-runtime-config or describe.
    verb: String,
    /// The environment document (JSON; see the README).
    #[arg(long, value_name = "ENV.json")]
    env: Option<PathBuf>,
    /// The revision a revision verb acts on.
    #[arg(long, value_name = "ID", conflicts_with = "deployment")]
    revision: Option<String>,
    /// The deployment `apply-traffic-split` acts on.
    #[arg(long, value_name = "ID")]
    deployment: Option<String>,
    /// Print the call report as JSON (outcome or error, capability calls, timing).
    #[arg(long)]
    json: bool,
}

fn parse_verb(name: &str) -> Result<Verb, CliError> {
    Verb::from_name(name).ok_or_else(|| CliError::Input {
        message: format!("unknown verb {name:?}"),
        hint: Some(format!(
            "verbs are: {}",
            Verb::ALL.iter().map(|v| v.name()).collect::<Vec<_>>().join(", ")
        )),
    })
}

fn need(value: Option<String>, flag: &str, verb: Verb) -> Result<String, CliError> {
    value.ok_or_else(|| CliError::input(format!("{verb} needs {flag} ID")))
}

/// Builds the request, refusing flags that do not fit the verb; `None` for
/// `describe`, which takes no environment.
fn request(verb: Verb, revision: Option<String>, deployment: Option<String>) -> Result<Option<Request>, CliError> {
    let extra = |flag: &str| CliError::input(format!("{verb} does not take {flag}"));
    match verb {
        Verb::ApplyTrafficSplit | Verb::ReleaseDeployment => {
            if revision.is_some() {
                return Err(extra("--revision"));
            }
            let deployment = need(deployment, "--deployment", verb)?;
            Ok(Some(if verb == Verb::ReleaseDeployment {
                Request::ReleaseDeployment(deployment)
            } else {
                Request::ApplyTrafficSplit(deployment)
            }))
        }
        Verb::ReportRuntimeConfig | Verb::Describe => match (revision, deployment) {
            (Some(_), _) => Err(extra("--revision")),
            (_, Some(_)) => Err(extra("--deployment")),
            _ if verb == Verb::Describe => Ok(None),
            _ => Ok(Some(Request::ReportRuntimeConfig)),
        },
        _ => {
            if deployment.is_some() {
                return Err(extra("--deployment"));
            }
            let id = need(revision, "--revision", verb)?;
            Ok(Some(match verb {
                Verb::StageRevision => Request::Stage(id),
                Verb::WarmRevision => Request::Warm(id),
                Verb::DrainRevision => Request::Drain(id),
                Verb::ArchiveRevision => Request::Archive(id),
                Verb::RevisionEndpoint => Request::Endpoint(id),
                _ => Request::Probe(id),
            }))
        }
    }
}

pub async fn run(ctx: &mut Context, args: Args) -> Result<i32, CliError> {
    let verb = parse_verb(&args.verb)?;
    let request = request(verb, args.revision, args.deployment)?;
    let state_dir = ctx.state_dir()?.clone();
    let runtime = ctx.runtime()?;
    // The author's own build: signatures are not this command's business.
    let pack = runtime.load_file(&args.pack, SignaturePolicy::Skip).await?.pack;
    let Some(request) = request else {
        return describe(&pack, args.json);
    };
    let env_path = args
        .env
        .ok_or_else(|| CliError::input(format!("{verb} needs --env ENV.json")))?;
    let env = Environment::from_file(&env_path).map_err(|e| CliError::Input {
        message: format!("{}: {e}", env_path.display()),
        hint: Some("the environment format is described in the README; examples/dev.json is a complete example".into()),
    })?;
    let report = envpack_operator::call(runtime, &state_dir, &pack, env, &request).await?;
    if args.json {
        let mut value = serde_json::to_value(&report).map_err(|e| CliError::State(e.to_string()))?;
        value["pack"] = json!(pack.info().descriptor);
        println!("{value:#}");
    } else {
        print_report(&report);
    }
    match report.result {
        Ok(Outcome::RuntimeConfig { drift: true, .. }) => {
            if !args.json {
                eprintln!("host: error: {}", CliError::Drift);
            }
            Ok(exit::DRIFT)
        }
        Ok(_) => Ok(exit::OK),
        Err(error) if args.json => Ok(crate::error::verb_exit(&error)),
        Err(error) => Err(error.into()),
    }
}

fn describe(pack: &Pack, as_json: bool) -> Result<i32, CliError> {
    let info = pack.info();
    if as_json {
        let value = serde_json::to_value(info).map_err(|e| CliError::State(e.to_string()))?;
        println!("{value:#}");
    } else {
        let caps: Vec<&str> = info.capabilities.iter().map(|c| c.name()).collect();
        println!(
            "{} (contract {}): {}",
            printable(&info.descriptor),
            printable(&info.contract_version),
            printable(&info.description)
        );
        println!("capabilities: {}", caps.join(", "));
    }
    Ok(exit::OK)
}

fn print_outcome(outcome: &Outcome) {
    match outcome {
        Outcome::Revision { revision, detail } => println!("  revision {}: {}", printable(revision), printable(detail)),
        Outcome::Split { deployment, entries } => {
            let list: Vec<String> = entries
                .iter()
                .map(|e| format!("{}={}", e.revision, e.weight_bps))
                .collect();
            println!("  {deployment}: {}", list.join(" "));
        }
        Outcome::Health { revision, health } => match health {
            Health::Healthy => println!("  revision {revision}: healthy"),
            Health::Unhealthy(why) => println!("  revision {revision}: unhealthy: {why}"),
            Health::Unsupported => println!("  revision {revision}: health unknown (the pack cannot probe)"),
        },
        Outcome::Released { deployment, note } => match note {
            Some(note) => println!("  deployment {deployment}: released: {}", printable(note)),
            None => println!("  deployment {deployment}: the pack exports no `teardown`; its own resources are left"),
        },
        Outcome::Endpoint {
            revision,
            url,
            supported,
        } => match (url, supported) {
            (Some(url), _) => println!("  revision {revision}: reached at {}", printable(url)),
            (None, true) => println!("  revision {revision}: no address of its own now"),
            (None, false) => println!("  revision {revision}: the pack does not say (it exports no `endpoints`)"),
        },
        Outcome::RuntimeConfig { host, pack, drift } => {
            let text = serde_json::to_string_pretty(host).unwrap_or_default();
            println!("  host projection:\n{}", indent(&text));
            match pack {
                None => println!("  the pack accepts the host's projection"),
                Some(_) if !drift => println!("  the pack's view matches"),
                Some(view) => {
                    let text = serde_json::to_string_pretty(view).unwrap_or_default();
                    println!("  the pack's view DIFFERS:\n{}", indent(&text));
                }
            }
        }
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n")
}

fn print_report(report: &CallReport) {
    let ms = report.elapsed.as_secs_f64() * 1000.0;
    match &report.result {
        Ok(outcome) => {
            println!("ok {} ({ms:.1} ms)", report.verb);
            print_outcome(outcome);
        }
        Err(error) if error.is_precondition() => {
            println!("refused {} before the pack ran ({ms:.1} ms)", report.verb);
        }
        Err(_) => println!("failed {} ({ms:.1} ms)", report.verb),
    }
    if !report.recording.calls.is_empty() {
        println!("  capability calls:");
        for call in &report.recording.calls {
            let mark = if call.allowed { "" } else { "  (refused)" };
            println!("    {} {}{mark}", call.operation, printable(&call.detail));
        }
    }
    if report.kv_committed {
        println!("  kv writes saved");
    }
}
