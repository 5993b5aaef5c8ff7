//! `host bench`: the benchmarks, as a table or JSON.

use std::path::PathBuf;

use envpack_bench::{Options, Programs, render};

use crate::error::{CliError, exit};

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Fewer iterations: a smoke run that finishes in seconds.
    #[arg(long)]
    quick: bool,
    /// The reference pack to measure (an unsealed build; the bench seals and signs it).
    #[arg(long, default_value = "target/packs/ledger.wasm", value_name = "PACK")]
    pack: PathBuf,
    /// Another build of `host` whose commands run side by side with this one's
    /// (interleaved, on copies of one state directory): a before/after in one run.
    #[arg(long, value_name = "HOST")]
    baseline: Option<PathBuf>,
    /// Skip the command path (whole `host` processes).
    #[arg(long)]
    no_commands: bool,
}

pub async fn run(args: Args) -> Result<i32, CliError> {
    if !args.pack.is_file() {
        return Err(CliError::Input {
            message: format!("no reference pack at {}", args.pack.display()),
            hint: Some("build it with `scripts/quickstart` (or `cargo build`), or pass --pack PATH".into()),
        });
    }
    if let Some(baseline) = &args.baseline
        && !baseline.is_file()
    {
        return Err(CliError::input(format!(
            "no host binary at {} (--baseline)",
            baseline.display()
        )));
    }
    let programs = if args.no_commands {
        None
    } else {
        let program = std::env::current_exe()
            .map_err(|e| CliError::State(format!("cannot find the host binary to measure its commands: {e}")))?;
        Some(Programs {
            program,
            baseline: args.baseline,
        })
    };
    let options = Options {
        quick: args.quick,
        pack: args.pack,
        programs,
    };
    let report = envpack_bench::run(&options)
        .await
        .map_err(|e| CliError::State(format!("bench failed: {e}")))?;
    if args.json {
        let value = serde_json::to_value(&report).map_err(|e| CliError::State(e.to_string()))?;
        println!("{value:#}");
    } else {
        print!("{}", render::table(&report));
    }
    Ok(exit::OK)
}
