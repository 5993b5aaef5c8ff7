//! `host bench`: the benchmarks, as a table or JSON.

use std::path::PathBuf;

use envpack_bench::{BenchEnv, LocalProcessInstall, Options, Programs, render};

use crate::env_cmd::parse_pairs;
use crate::error::{CliError, exit};
use crate::grant_args::GrantArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Fewer iterations: a smoke run that finishes in seconds.
    #[arg(long)]
    quick: bool,
    /// The pack to measure: the reference pack by default, or any pack
    /// (sealed or not: an unsealed pack is sealed with what its `describe`
    /// says). The bench signs it with a fresh key; its environments get
    /// the pack's capabilities and the --setting and --allow-* flags.
    #[arg(long, default_value = "target/packs/ledger.wasm", value_name = "PACK")]
    pack: PathBuf,
    /// Pack setting KEY=VALUE of the measured pack's environments (repeatable).
    #[arg(long = "setting", value_name = "KEY=VALUE")]
    settings: Vec<String>,
    #[command(flatten)]
    grants: GrantArgs,
    /// An interpreter pack (e.g. Python, built by `packs/py-stateless/build`)
    /// whose `traffic set` runs side by side with the measured pack's, and
    /// whose `pack install` is timed against its compile time; skipped
    /// (reported as not measured) if the file is missing [default:
    /// target/packs/py-stateless.wasm; with --quick, only if given].
    #[arg(long, value_name = "PACK")]
    interpreter_pack: Option<PathBuf>,
    /// The local-process pack, whose `pack install` (with an app to deploy,
    /// nginx and Python) is timed; skipped if it or a program is missing
    /// [default: target/packs/local-process.wasm; with --quick, only if given].
    #[arg(long, value_name = "PACK")]
    local_process_pack: Option<PathBuf>,
    /// Another build of `host` whose commands run side by side with this one's
    /// (interleaved, on copies of one state directory): a before/after in one run.
    #[arg(long, value_name = "HOST")]
    baseline: Option<PathBuf>,
    /// Skip the command path (whole `host` processes).
    #[arg(long)]
    no_commands: bool,
}

/// With the global `--database URL`, `status` and `traffic set` also run
/// with their records on that PostgreSQL database, beside SQLite's.
pub async fn run(args: Args, database: Option<String>) -> Result<i32, CliError> {
    if !args.pack.is_file() {
        return Err(CliError::Input {
            message: format!("no pack at {}", args.pack.display()),
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
    let env = BenchEnv {
        settings: parse_pairs(&args.settings, "setting")?,
        grants: args.grants.grants()?.unwrap_or_default(),
        args: args
            .settings
            .iter()
            .flat_map(|s| ["--setting".to_string(), s.clone()])
            .chain(args.grants.to_args())
            .collect(),
    };
    // A quick run measures the slow things (a 20 MB compile, a real
    // deployment's admission) only when asked to.
    let default = |given: Option<PathBuf>, path: &str| given.or_else(|| (!args.quick).then(|| path.into()));
    let local_process =
        default(args.local_process_pack, "target/packs/local-process.wasm").map(|pack| LocalProcessInstall {
            pack,
            manifest: "packs/local-process/pack.toml".into(),
            app: "tests/apps/revision_app.py".into(),
        });
    let options = Options {
        quick: args.quick,
        pack: args.pack,
        env,
        interpreter_pack: default(args.interpreter_pack, "target/packs/py-stateless.wasm"),
        local_process,
        programs,
        database,
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
