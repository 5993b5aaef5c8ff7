//! `host`: the envpack command. A thin layer over `envpack-host`: it parses
//! arguments, builds the runtime, runs one command and maps every failure to
//! a one-line message and a documented exit code.

mod call;
mod error;
mod inspect;
mod state_dir;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use envpack_host::{FileKv, HostConfig, KvStore, MemoryKv, Runtime};

use crate::error::{CliError, exit};

/// Load, inspect and run envpack deployer packs.
#[derive(Parser)]
#[command(name = "host", version, about, propagate_version = true)]
struct Cli {
    /// Directory of the host's state (pack kv state; later: trust store, packs, environments).
    #[arg(long, global = true, env = "ENVPACK_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// CPU and wall-clock deadline of one verb call, in milliseconds.
    #[arg(long, global = true, default_value_t = 2000, value_name = "MS")]
    deadline_ms: u64,

    /// Memory budget of one pack instance, across all its memories, in MiB.
    #[arg(long, global = true, default_value_t = 64, value_name = "MIB")]
    memory_mib: usize,

    /// Log the host's own spans and the packs' log lines to stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what a pack is: descriptor, contract, capabilities, WIT imports and exports.
    Inspect(inspect::Args),
    /// Run one verb of a pack against an environment, through the full host path.
    Call(call::Args),
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ENVPACK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .init();
}

fn host_config(cli: &Cli) -> Result<HostConfig, CliError> {
    if cli.deadline_ms == 0 || cli.memory_mib == 0 {
        return Err(CliError::input(
            "--deadline-ms and --memory-mib must be greater than zero",
        ));
    }
    let memory_budget = cli
        .memory_mib
        .checked_mul(1 << 20)
        .ok_or_else(|| CliError::input(format!("--memory-mib {} is too large", cli.memory_mib)))?;
    Ok(HostConfig {
        deadline: Duration::from_millis(cli.deadline_ms),
        memory_budget,
        ..HostConfig::default()
    })
}

/// Pack kv state lives in the state directory; `inspect` needs none.
fn kv_store(cli: &Cli) -> Result<Arc<dyn KvStore>, CliError> {
    if matches!(cli.command, Command::Inspect(_)) {
        return Ok(Arc::new(MemoryKv::default()));
    }
    let dir = state_dir::resolve(cli.state_dir.clone())?;
    state_dir::ensure(&dir)?;
    let kv = FileKv::open(&dir.join("kv.json")).map_err(|e| CliError::State(e.to_string()))?;
    Ok(Arc::new(kv))
}

async fn run(cli: Cli) -> Result<i32, CliError> {
    let runtime = Runtime::new(host_config(&cli)?, kv_store(&cli)?)?;
    match cli.command {
        Command::Inspect(args) => inspect::run(&runtime, args).await,
        Command::Call(args) => call::run(&runtime, args).await,
    }
}

fn report(error: &CliError) {
    eprintln!("host: error: {error}");
    if let Some(hint) = error.hint() {
        eprintln!("host: hint: {hint}");
    }
}

fn main() {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let code = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => match rt.block_on(run(cli)) {
            Ok(code) => code,
            Err(error) => {
                report(&error);
                error.exit_code()
            }
        },
        Err(e) => {
            eprintln!("host: error: cannot start the async runtime: {e}");
            exit::HOST
        }
    };
    std::process::exit(code);
}
