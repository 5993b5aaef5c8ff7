//! `host`: the envpack command. A thin layer over `envpack-host`: it parses
//! arguments, builds the runtime, runs one command and maps every failure to
//! a one-line message and a documented exit code.

mod agent_cmd;
mod bench_cmd;
mod call;
mod conformance_cmd;
mod context;
mod deployment_cmd;
mod env_cmd;
mod error;
mod fixture_args;
mod grant_args;
mod input;
mod inspect;
mod keys_cmd;
mod new_cmd;
mod pack_cmd;
mod progress;
mod revision_cmd;
mod rollout_cmd;
mod secret_cmd;
mod show;
mod trust_cmd;
mod watch;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use envpack_host::timing::mark;

use crate::context::Context;
use crate::error::{CliError, exit};

/// The heading every command's `--help` lists the global options under.
const GLOBAL: &str = "Global options";

/// Load, inspect and run envpack deployer packs.
#[derive(Parser)]
#[command(name = "host", version, about, propagate_version = true)]
struct Cli {
    /// Directory of the host's state: trust store, installed packs, compiled-code cache, pack kv state.
    #[arg(long, global = true, help_heading = GLOBAL, env = "ENVPACK_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,

    /// The operator's database on a PostgreSQL server shared by several machines
    /// (postgres://USER@HOST:PORT/DB) instead of state.db in the state directory.
    #[arg(long, global = true, help_heading = GLOBAL, env = "ENVPACK_DATABASE_URL", value_name = "URL",
          hide_env_values = true)]
    database: Option<String>,

    /// CPU and wall-clock deadline of one verb call, in milliseconds.
    #[arg(long, global = true, help_heading = GLOBAL, default_value_t = 2000, value_name = "MS")]
    deadline_ms: u64,

    /// Memory budget of one pack instance, across all its memories, in MiB.
    #[arg(long, global = true, help_heading = GLOBAL, default_value_t = 64, value_name = "MIB")]
    memory_mib: usize,

    /// CPU seconds a pack's compile may take (in a worker process).
    #[arg(long, global = true, help_heading = GLOBAL, env = "ENVPACK_COMPILE_SECONDS", value_name = "SECONDS",
          default_value_t = envpack_host::WorkerLimits::DEFAULT_CPU_SECONDS)]
    compile_seconds: u64,

    /// Memory a pack's compile may take (the worker's address space).
    #[arg(long, global = true, help_heading = GLOBAL, env = "ENVPACK_COMPILE_MEMORY_MIB", value_name = "MIB",
          default_value_t = envpack_host::WorkerLimits::DEFAULT_MEMORY_MIB)]
    compile_memory_mib: u64,

    /// Raise (or lower) one limit on a pack's shape, checked before compiling:
    /// core-modules, functions, locals-per-function, function-body-bytes,
    /// nesting-depth, code-bytes. Repeatable.
    #[arg(long, global = true, help_heading = GLOBAL, value_name = "NAME=N")]
    pack_limit: Vec<String>,

    /// Private key (PKCS#8 PEM) to sign traffic changes with, for environments that trust
    /// deploy keys (`env create --trust-deploy-key`); the audit log names the key.
    #[arg(long, global = true, help_heading = GLOBAL, env = "ENVPACK_DEPLOY_KEY", value_name = "KEY")]
    deploy_key: Option<PathBuf>,

    /// A file on other storage that every audit row's head (SEQ:HASH) is appended to, and that
    /// `audit verify` checks the log against: rows appended or rewritten in state.db with a
    /// recomputed hash are found there.
    #[arg(long, global = true, help_heading = GLOBAL, env = "ENVPACK_AUDIT_SINK", value_name = "FILE")]
    audit_sink: Option<PathBuf>,

    /// Who is acting, for lifecycle events and the audit log.
    #[arg(long, global = true, help_heading = GLOBAL, env = "ENVPACK_ACTOR", value_name = "NAME")]
    actor: Option<String>,

    /// How pack instances get their memory: `on-demand` (mmap per instance: what a command
    /// that runs a few verbs wants) or `pooling` (a pool reserved up front: cheaper
    /// instances, a costlier start). Default: on-demand; pooling for `conformance` and
    /// `pack install`, whose runs make thousands of instances.
    #[arg(long, global = true, help_heading = GLOBAL, env = "ENVPACK_ALLOCATOR", value_enum)]
    allocator: Option<context::AllocatorArg>,

    /// Log the host's own spans and the packs' log lines to stderr (-v info, -vv debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    verbose: u8,

    #[command(subcommand)]
    command: Commands,
}

/// The commands, as parsed. Their arguments are built lazily, from
/// [`COMMANDS`]; their `about` texts are there.
#[derive(Subcommand)]
enum Command {
    New(new_cmd::Args),
    Inspect(inspect::Args),
    Call(call::Args),
    Bench(bench_cmd::Args),
    Conformance(conformance_cmd::Args),
    Keygen(keys_cmd::KeygenArgs),
    Sign(keys_cmd::SignArgs),
    Verify(keys_cmd::VerifyArgs),
    #[command(subcommand)]
    Trust(trust_cmd::Command),
    #[command(subcommand)]
    Pack(pack_cmd::Command),
    #[command(subcommand)]
    Env(env_cmd::EnvCommand),
    #[command(subcommand)]
    Revision(revision_cmd::RevisionCommand),
    #[command(subcommand)]
    Traffic(revision_cmd::TrafficCommand),
    #[command(subcommand)]
    Deployment(deployment_cmd::Command),
    #[command(subcommand)]
    Rollout(rollout_cmd::Command),
    Agent(agent_cmd::Args),
    Status(StatusArgs),
    Events(EventsArgs),
    #[command(subcommand)]
    Secret(secret_cmd::Command),
    #[command(subcommand)]
    Audit(AuditCommand),
}

/// Adds one command's arguments to its stub.
type Build = fn(clap::Command) -> clap::Command;

fn args<A: clap::Args>(command: clap::Command) -> clap::Command {
    A::augment_args(command)
}

fn group<S: Subcommand>(command: clap::Command) -> clap::Command {
    S::augment_subcommands(command)
        .subcommand_required(true)
        .arg_required_else_help(true)
}

/// Every command's name and `about`, and how its arguments are built: only
/// for the command a command line names (clap's `defer`). Building every
/// command's arguments up front cost 0.6 ms of every command.
const COMMANDS: [(&str, &str, Build); 20] = [
    (
        "new",
        "Create a pack project (Rust, Python or JavaScript) that builds and passes conformance as generated",
        args::<new_cmd::Args>,
    ),
    (
        "inspect",
        "Show what a pack is: descriptor, contract, capabilities, WIT imports and exports",
        args::<inspect::Args>,
    ),
    (
        "call",
        "Run one verb of a pack against an environment, through the full host path",
        args::<call::Args>,
    ),
    (
        "bench",
        "Measure load, instantiation, verb latency (next to a native baseline), throughput and memory",
        args::<bench_cmd::Args>,
    ),
    (
        "conformance",
        "Run the conformance bench against packs; exit 0 only if no selected check failed",
        args::<conformance_cmd::Args>,
    ),
    (
        "keygen",
        "Make an Ed25519 key pair: KEY (PKCS#8 PEM, mode 0600) and KEY.pub (SPKI PEM)",
        args::<keys_cmd::KeygenArgs>,
    ),
    (
        "sign",
        "Add a signature to a sealed pack (or write a detached one)",
        args::<keys_cmd::SignArgs>,
    ),
    (
        "verify",
        "Check a pack's signatures against the trust store; exit 0 only if trusted",
        args::<keys_cmd::VerifyArgs>,
    ),
    (
        "trust",
        "Manage the keys trusted to sign packs",
        group::<trust_cmd::Command>,
    ),
    (
        "pack",
        "Seal, install, list, remove and resolve packs",
        group::<pack_cmd::Command>,
    ),
    (
        "env",
        "Create, bind, list, show and remove environments",
        group::<env_cmd::EnvCommand>,
    ),
    (
        "revision",
        "Stage, warm, drain, archive and retry revisions",
        group::<revision_cmd::RevisionCommand>,
    ),
    (
        "traffic",
        "Set, show and roll back traffic splits",
        group::<revision_cmd::TrafficCommand>,
    ),
    (
        "deployment",
        "Retire a deployment: traffic withdrawn, revisions drained and archived, its resources released",
        group::<deployment_cmd::Command>,
    ),
    (
        "rollout",
        "Move a deployment to a new revision in steps, under analysis gates, with automatic rollback",
        group::<rollout_cmd::Command>,
    ),
    (
        "agent",
        "Run in the background for this state directory: drive every rollout, probe ready revisions",
        args::<agent_cmd::Args>,
    ),
    (
        "status",
        "Show an environment: binding, splits, live revisions. --watch keeps going and prints only what \
         changed (deployments, revisions, rollouts) as other commands commit it",
        args::<StatusArgs>,
    ),
    (
        "events",
        "Print an environment's lifecycle events (a JSON array with --json); --follow keeps printing new \
         ones (one JSON object per line with --json)",
        args::<EventsArgs>,
    ),
    (
        "secret",
        "Set, list and remove the named secrets packs may read when granted",
        group::<secret_cmd::Command>,
    ),
    ("audit", "Check the audit log", group::<AuditCommand>),
];

/// [`Command`] with its arguments built lazily (see [`COMMANDS`]).
struct Commands(Command);

impl clap::FromArgMatches for Commands {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Command::from_arg_matches(matches).map(Commands)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }
}

impl Subcommand for Commands {
    fn augment_subcommands(command: clap::Command) -> clap::Command {
        COMMANDS.iter().fold(command, |command, (name, about, build)| {
            command.subcommand(clap::Command::new(*name).about(*about).defer(*build))
        })
    }

    fn augment_subcommands_for_update(command: clap::Command) -> clap::Command {
        Self::augment_subcommands(command)
    }

    fn has_subcommand(name: &str) -> bool {
        Command::has_subcommand(name)
    }
}

#[derive(clap::Args)]
struct StatusArgs {
    env: String,
    #[arg(long)]
    watch: bool,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
struct EventsArgs {
    env: String,
    #[arg(long)]
    follow: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Print the audit log, oldest first: every mutating command, who ran it, its arguments
    /// and its outcome (refusals included). `audit verify` checks the rows are intact.
    Show {
        /// Only the rows of this environment.
        #[arg(long)]
        env: Option<String>,
        /// Only the last N rows (after --env).
        #[arg(long, value_name = "N")]
        last: Option<usize>,
        #[arg(long)]
        json: bool,
    },
    /// Recompute the audit log's hash chain; exit 0 only if intact. Prints the head
    /// (SEQ:HASH) to record elsewhere; --head checks the log still holds it, unchanged.
    Verify {
        #[arg(long, value_name = "SEQ:HASH")]
        head: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn init_tracing(verbose: u8) {
    // Packs' log lines reach the operator through the verb's own stream
    // (`host: pack LEVEL: ...`) and the call's recording; repeating them
    // here is for -v only.
    let default = match verbose {
        0 => "warn,pack=off",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("ENVPACK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours for a terminal only: a pipe or a log file gets plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true)
        .init();
}

/// The async runtime a command runs on. A one-shot command (one verb call,
/// a few queries) runs on this thread alone: starting a worker per core
/// would cost more than it does (0.3 ms of a `traffic set`, and the cores
/// the threads opening its records and building its linker want). Commands
/// that work for long or at once on several things get a worker per core:
/// the bench, conformance runs (`pack install` too), rollouts and the
/// agent, and the ones that follow changes (`--watch`, `--follow`) and block
/// a worker while they wait.
fn async_runtime(command: &Command) -> std::io::Result<tokio::runtime::Runtime> {
    let one_thread = match command {
        Command::Bench(_)
        | Command::Conformance(_)
        | Command::Pack(_)
        | Command::Rollout(_)
        | Command::Agent(_)
        | Command::Status(StatusArgs { watch: true, .. })
        | Command::Events(EventsArgs { follow: true, .. }) => false,
        Command::New(_)
        | Command::Inspect(_)
        | Command::Call(_)
        | Command::Keygen(_)
        | Command::Sign(_)
        | Command::Verify(_)
        | Command::Trust(_)
        | Command::Env(_)
        | Command::Revision(_)
        | Command::Traffic(_)
        | Command::Deployment(_)
        | Command::Status(_)
        | Command::Events(_)
        | Command::Secret(_)
        | Command::Audit(_) => true,
    };
    let mut builder = match one_thread {
        true => tokio::runtime::Builder::new_current_thread(),
        false => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

async fn run(cli: Cli) -> Result<i32, CliError> {
    let cmd = match cli.command.0 {
        // Needs no state directory, runtime or limits.
        Command::New(args) => return new_cmd::run(args),
        other => other,
    };
    let mut ctx = Context::new(cli.state_dir, cli.deadline_ms, cli.memory_mib, cli.actor)?;
    ctx.allocator(cli.allocator);
    ctx.deploy_key(cli.deploy_key);
    ctx.audit_sink(cli.audit_sink);
    ctx.database(cli.database);
    ctx.bound_compiles(cli.compile_seconds, cli.compile_memory_mib, &cli.pack_limit)?;
    let result = command(&mut ctx, cmd).await;
    mark("command");
    // The process ends next: its engines and their epoch tickers are the
    // kernel's to reclaim (stopping and joining them cost 0.2 ms of every
    // command). The rest of the context (connections) is closed as usual.
    ctx.abandon_runtimes();
    result
}

async fn command(ctx: &mut Context, command: Command) -> Result<i32, CliError> {
    match command {
        Command::New(args) => new_cmd::run(args),
        Command::Inspect(args) => inspect::run(ctx, args).await,
        Command::Call(args) => call::run(ctx, args).await,
        Command::Bench(args) => bench_cmd::run(args, ctx.database_url()).await,
        Command::Conformance(args) => conformance_cmd::run(ctx, args).await,
        Command::Keygen(args) => keys_cmd::keygen(args),
        Command::Sign(args) => keys_cmd::sign(args),
        Command::Verify(args) => keys_cmd::verify(ctx, args).await,
        Command::Trust(command) => trust_cmd::run(ctx, command),
        Command::Pack(command) => pack_cmd::run(ctx, command).await,
        Command::Env(command) => env_cmd::run(ctx, command).await,
        Command::Revision(command) => revision_cmd::revision(ctx, command).await,
        Command::Traffic(command) => revision_cmd::traffic(ctx, command).await,
        Command::Rollout(command) => rollout_cmd::run(ctx, command).await,
        Command::Deployment(command) => deployment_cmd::run(ctx, command).await,
        Command::Agent(args) => agent_cmd::run(ctx, args).await,
        Command::Status(StatusArgs { env, watch: true, json }) => watch::status(ctx, &env, json).await,
        Command::Status(StatusArgs {
            env,
            watch: false,
            json,
        }) => show::status(ctx, &env, json),
        Command::Events(EventsArgs { env, follow, json }) => show::events(ctx, &env, follow, json).await,
        Command::Secret(command) => secret_cmd::run(ctx, command),
        Command::Audit(AuditCommand::Verify { head, json }) => show::audit_verify(ctx, head.as_deref(), json),
        Command::Audit(AuditCommand::Show { env, last, json }) => show::audit_show(ctx, env.as_deref(), last, json),
    }
}

/// Collapses a message onto one line: errors from deep layers (a
/// compiler's, a parser's) may span several.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn report(error: &CliError) {
    // Errors carry pack text: written out, never acted on by the terminal.
    let printable = |text: &str| envpack_model::text::printable(&one_line(text)).into_owned();
    eprintln!("host: error: {}", printable(&error.to_string()));
    if let Some(hint) = error.hint() {
        eprintln!("host: hint: {}", printable(&hint));
    }
}

fn main() {
    // Like any Unix filter: a reader that goes away (`host events dev | head`)
    // ends the command quietly instead of a panic on the next write.
    // SAFETY: called first, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    // Compiled code runs mapped from the cache under read leases: a lease
    // broken by a writer stops this process (SIGIO), on whichever thread
    // gets the signal, so no thread may start with SIGIO blocked.
    envpack_host::prepare_leases();
    // The host run again to compile one pack under limits (see `Context::bound_compiles`).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|arg| arg == envpack_host::WORKER_ARG)
    {
        std::process::exit(envpack_host::worker_main());
    }
    let timings = std::env::var_os(envpack_host::timing::TIMINGS_ENV);
    if timings.is_some() {
        envpack_host::timing::start();
    }
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    mark("args");
    let code = match async_runtime(&cli.command.0) {
        Ok(rt) => {
            let code = match rt.block_on(run(cli)) {
                Ok(code) => code,
                Err(error) => {
                    report(&error);
                    error.exit_code()
                }
            };
            // Its worker threads too (every task was awaited).
            std::mem::forget(rt);
            code
        }
        Err(e) => {
            eprintln!("host: error: cannot start the async runtime: {e}");
            exit::HOST
        }
    };
    mark("teardown");
    if let Some(path) = timings
        && let Err(e) = envpack_host::timing::append_to(path.as_ref())
    {
        eprintln!("host: warning: cannot write timings to {}: {e}", path.to_string_lossy());
    }
    std::process::exit(code);
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// The lazily built tree names exactly the parsed enum's commands, and
    /// clap finds nothing wrong with it once every command is built.
    #[test]
    fn the_lazy_command_tree_is_the_parsed_one() {
        let parsed = Command::augment_subcommands(clap::Command::new("host"));
        let parsed: Vec<&str> = parsed.get_subcommands().map(|c| c.get_name()).collect();
        let lazy: Vec<&str> = COMMANDS.iter().map(|(name, ..)| *name).collect();
        assert_eq!(parsed, lazy);
        Cli::command().debug_assert();
    }

    #[test]
    fn a_deferred_command_parses_its_arguments() {
        let cli = Cli::try_parse_from(["host", "status", "prod", "--json"]).unwrap();
        assert!(
            matches!(cli.command.0, Command::Status(StatusArgs { env, watch: false, json: true }) if env == "prod")
        );
        let error = Cli::try_parse_from(["host", "status"]).err().unwrap();
        assert_eq!(error.kind(), clap::error::ErrorKind::MissingRequiredArgument);
    }

    /// One-shot commands run on their own thread; the ones that block a
    /// worker while they wait (`block_in_place` panics on a current-thread
    /// runtime) or work on several things at once get a worker per core.
    #[test]
    fn each_command_gets_the_runtime_it_needs() {
        use tokio::runtime::RuntimeFlavor::{CurrentThread, MultiThread};
        let cases: [(&[&str], _); 8] = [
            (&["traffic", "set", "prod", "web", "r1=10000"], CurrentThread),
            (&["revision", "warm", "prod", "r1"], CurrentThread),
            (&["status", "prod"], CurrentThread),
            (&["events", "prod"], CurrentThread),
            (&["status", "prod", "--watch"], MultiThread),
            (&["events", "prod", "--follow"], MultiThread),
            (&["pack", "install", "p.wasm"], MultiThread),
            (&["agent"], MultiThread),
        ];
        for (args, flavor) in cases {
            let cli = Cli::try_parse_from(std::iter::once("host").chain(args.iter().copied())).unwrap();
            let runtime = async_runtime(&cli.command.0).unwrap();
            assert_eq!(runtime.handle().runtime_flavor(), flavor, "host {}", args.join(" "));
        }
    }
}
