//! `host conformance PACK...`: the bench from the command line, one report
//! per pack, as text, JSON or JUnit XML; exit 0 only if no check failed.

use std::path::PathBuf;

use envpack_conformance::{Profile, RunConfig, judge_file, render};
use envpack_model::files;

use crate::context::Context;
use crate::error::{CliError, exit};
use crate::fixture_args::FixtureArgs;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
    Junit,
}

#[derive(clap::Args)]
pub struct Args {
    /// The packs to judge.
    #[arg(required = true)]
    packs: Vec<PathBuf>,
    /// `core` (what admission runs) or `extended` (adds robustness, budgets, signature).
    #[arg(long, default_value = "core")]
    profile: String,
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,
    /// Write the report here instead of stdout.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Scopes, settings and an artifact for the bench's fixture
    /// environments (each run gets a throwaway work directory; nothing it
    /// starts outlives it).
    #[command(flatten)]
    fixture: FixtureArgs,
}

pub async fn run(ctx: &mut Context, args: Args) -> Result<i32, CliError> {
    let profile = Profile::parse(&args.profile).ok_or_else(|| CliError::Input {
        message: format!("unknown profile {:?}", args.profile),
        hint: Some("profiles are: core, extended".into()),
    })?;
    let state_dir = ctx.state_dir()?.clone();
    let config = RunConfig {
        profile,
        ..args.fixture.config(&state_dir)?
    };
    // A path that names no file is the user's mistake, not a failing pack.
    for path in &args.packs {
        if let Err(e) = std::fs::metadata(path) {
            return Err(CliError::Input {
                message: format!("cannot read pack {}: {e}", path.display()),
                hint: Some("give the path of a pack's .wasm file".into()),
            });
        }
    }
    let trust = ctx.trust()?;
    let runtime = ctx.conformance_runtime()?;
    let mut reports = Vec::new();
    for path in &args.packs {
        reports.push(judge_file(runtime, path, &trust, &config).await);
    }
    let text = match args.format {
        Format::Human => reports.iter().map(render::human).collect::<Vec<_>>().join("\n"),
        Format::Json => render::json(&reports),
        Format::Junit => {
            render::junit(&reports).map_err(|e| CliError::State(format!("cannot write JUnit XML: {e}")))?
        }
    };
    match &args.out {
        Some(path) => files::write_atomic(path, text.as_bytes(), 0o644)
            .map_err(|e| CliError::State(format!("cannot write {}: {e}", path.display())))?,
        None => println!("{}", text.trim_end()),
    }
    let failed = reports.iter().filter(|r| !r.passed()).count();
    if failed > 0 {
        eprintln!(
            "host: error: {failed} of {} packs failed conformance ({} profile)",
            reports.len(),
            profile.name()
        );
        return Ok(exit::VERB_FAILED);
    }
    Ok(exit::OK)
}
