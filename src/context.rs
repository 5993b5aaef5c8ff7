//! What a command needs from its environment, built on first use: the state
//! directory (created 0700) and the runtime (with the compiled-code cache in
//! the state directory).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use envpack_host::{AllocatorChoice, Compiler, HostConfig, MemoryKv, Runtime, StateDir, WorkerLimits};
use envpack_model::PackLimits;
use envpack_operator::Operator;
use envpack_trust::{Registry, TrustStore};

use crate::error::CliError;

/// The `--allocator` choices.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AllocatorArg {
    OnDemand,
    Pooling,
}

pub struct Context {
    state_dir_flag: Option<PathBuf>,
    database_url: Option<String>,
    state_dir: Option<StateDir>,
    deadline: Duration,
    memory_budget: usize,
    runtime: Option<Runtime>,
    conformance_runtime: Option<Runtime>,
    actor: Option<String>,
    pack_limits: PackLimits,
    compiler: Compiler,
    /// The operator's choice (`--allocator`), if any.
    allocator: Option<AllocatorChoice>,
    deploy_key: Option<PathBuf>,
    audit_sink: Option<PathBuf>,
}

impl Context {
    pub fn new(
        state_dir: Option<PathBuf>,
        deadline_ms: u64,
        memory_mib: usize,
        actor: Option<String>,
    ) -> Result<Self, CliError> {
        if deadline_ms == 0 || memory_mib == 0 {
            return Err(CliError::input(
                "--deadline-ms and --memory-mib must be greater than zero",
            ));
        }
        let memory_budget = memory_mib
            .checked_mul(1 << 20)
            .ok_or_else(|| CliError::input(format!("--memory-mib {memory_mib} is too large")))?;
        Ok(Context {
            state_dir_flag: state_dir,
            database_url: None,
            state_dir: None,
            deadline: Duration::from_millis(deadline_ms),
            memory_budget,
            runtime: None,
            conformance_runtime: None,
            actor,
            pack_limits: PackLimits::default(),
            compiler: Compiler::InProcess,
            allocator: None,
            deploy_key: None,
            audit_sink: None,
        })
    }

    /// Every compile this command does runs in a worker (this very binary)
    /// under these limits, after the shape walk with `pack_limits`.
    pub fn bound_compiles(
        &mut self,
        cpu_seconds: u64,
        memory_mib: u64,
        pack_limits: &[String],
    ) -> Result<(), CliError> {
        if cpu_seconds == 0 || memory_mib == 0 {
            return Err(CliError::input(
                "--compile-seconds and --compile-memory-mib must be greater than zero",
            ));
        }
        for assignment in pack_limits {
            self.pack_limits.set(assignment).map_err(CliError::input)?;
        }
        let program = std::env::current_exe()
            .map_err(|e| CliError::State(format!("cannot find the host binary to run its compile worker: {e}")))?;
        self.compiler = Compiler::Worker(WorkerLimits {
            program,
            cpu_seconds,
            memory_bytes: memory_mib.saturating_mul(1 << 20),
        });
        Ok(())
    }

    /// The instance allocator of this command's runtimes (pooling falls
    /// back to on-demand where the pool cannot be reserved); without a
    /// choice, see [`Context::host_config`] and [`Context::conformance_runtime`].
    pub fn allocator(&mut self, choice: Option<AllocatorArg>) {
        self.allocator = choice.map(|choice| match choice {
            AllocatorArg::OnDemand => AllocatorChoice::OnDemand,
            AllocatorArg::Pooling => AllocatorChoice::Auto,
        });
    }

    /// The shape limits this command loads packs under.
    pub fn pack_limits(&self) -> &PackLimits {
        &self.pack_limits
    }

    fn host_config(&self, dir: &StateDir) -> HostConfig {
        HostConfig {
            deadline: self.deadline,
            memory_budget: self.memory_budget,
            cache_dir: Some(dir.cache()),
            pack_limits: self.pack_limits,
            compiler: self.compiler.clone(),
            // A command runs a few verbs: a pool's reservation would cost
            // more than its cheaper instances save.
            allocator: self.allocator.unwrap_or(AllocatorChoice::OnDemand),
            ..HostConfig::default()
        }
    }

    /// The operator's records on PostgreSQL (`--database`), not `state.db`.
    pub fn database(&mut self, url: Option<String>) {
        self.database_url = url;
    }

    pub fn database_url(&self) -> Option<String> {
        self.database_url.clone()
    }

    /// The state directory, created on first use.
    pub fn state_dir(&mut self) -> Result<&StateDir, CliError> {
        // An empty URL (a CI secret that was not set) must not quietly mean
        // "this machine's own state.db": that splits a team's records.
        if self.database_url.as_deref().is_some_and(|u| u.trim().is_empty()) {
            return Err(CliError::Input {
                message: "the database URL (ENVPACK_DATABASE_URL or --database) is set but empty".into(),
                hint: Some(
                    "give a postgres:// URL, or unset ENVPACK_DATABASE_URL to keep the records in this state directory's state.db"
                        .into(),
                ),
            });
        }
        if self.state_dir.is_none() {
            let dir = StateDir::resolve(self.state_dir_flag.clone())
                .map_err(|message| CliError::Input {
                    message,
                    hint: Some("pass --state-dir DIR or set ENVPACK_STATE_DIR".into()),
                })?
                .with_database_url(self.database_url.clone());
            dir.ensure()
                .map_err(|e| CliError::State(format!("cannot create state directory {}: {e}", dir.root().display())))?;
            self.state_dir = Some(dir);
        }
        Ok(self.state_dir.as_ref().expect("just set"))
    }

    pub fn runtime(&mut self) -> Result<&Runtime, CliError> {
        if self.runtime.is_none() {
            let dir = self.state_dir()?.clone();
            self.runtime = Some(new_runtime(self.host_config(&dir))?);
            envpack_host::timing::mark("engine");
        }
        Ok(self.runtime.as_ref().expect("just set"))
    }

    /// A runtime of its own that lives as long as the process, for work on
    /// threads of its own (`host agent` drives each rollout on one).
    pub fn process_runtime(&mut self) -> Result<&'static Runtime, CliError> {
        let dir = self.state_dir()?.clone();
        Ok(Box::leak(Box::new(new_runtime(self.host_config(&dir))?)))
    }

    /// A runtime for the conformance bench: pack state in memory, so that
    /// judging a pack never touches the operator's kv state; the same
    /// default deadline and memory budget as the operator's, so admission
    /// judges by production's limits.
    pub fn conformance_runtime(&mut self) -> Result<&Runtime, CliError> {
        if self.conformance_runtime.is_none() {
            let dir = self.state_dir()?.clone();
            // Metered: the bench judges a pack's speed in fuel, the same on
            // a busy machine and an idle one.
            // Pooled unless the operator chose: a run makes thousands of
            // instances, and a pooled slot keeps the pages an instance dirtied
            // resident, reset to the pack's image, instead of faulting them in
            // again (an interpreter pack's conformance run: 2.0 s against 2.5).
            let config = HostConfig {
                meter_fuel: true,
                allocator: self.allocator.unwrap_or(AllocatorChoice::Auto),
                ..self.host_config(&dir)
            };
            self.conformance_runtime = Some(new_runtime(config)?);
        }
        Ok(self.conformance_runtime.as_ref().expect("just set"))
    }

    /// Leaves this command's runtimes to the process's exit instead of
    /// stopping them: for the end of `main` only.
    pub fn abandon_runtimes(&mut self) {
        std::mem::forget(self.runtime.take());
        std::mem::forget(self.conformance_runtime.take());
    }

    /// The operator's runtime and the bench's, both built.
    pub fn runtimes(&mut self) -> Result<(&Runtime, &Runtime), CliError> {
        self.runtime()?;
        self.conformance_runtime()?;
        match (&self.runtime, &self.conformance_runtime) {
            (Some(runtime), Some(bench)) => Ok((runtime, bench)),
            _ => Err(CliError::State("the runtimes could not be built".into())),
        }
    }

    /// Who is acting: --actor, $ENVPACK_ACTOR, else $USER, else the
    /// process's user as `uid N` (a service or container sets no USER).
    pub fn actor(&self) -> String {
        self.actor
            .clone()
            .filter(|a| !a.trim().is_empty())
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| {
                // SAFETY: getuid cannot fail and touches no memory.
                format!("uid {}", unsafe { libc::getuid() })
            })
    }

    /// The key `--deploy-key` names, to sign traffic changes with.
    pub fn deploy_key(&mut self, path: Option<PathBuf>) {
        self.deploy_key = path;
    }

    pub fn audit_sink(&mut self, path: Option<PathBuf>) {
        self.audit_sink = path;
    }

    /// The audit sink every committed row's head goes to, if one is set.
    pub fn audit_sink_path(&self) -> Option<&std::path::Path> {
        self.audit_sink.as_deref()
    }

    /// The operator over the state database, with the runtime.
    pub fn operator(&mut self, actor: String) -> Result<Operator<'_>, CliError> {
        let dir = self.state_dir()?.clone();
        let signer = match &self.deploy_key {
            Some(path) => Some(crate::input::read_private_key(path)?),
            None => None,
        };
        let sink = self.audit_sink.clone();
        // The engine is built on a thread of its own while the records are
        // opened here: neither needs the other until the pack is loaded.
        // The records take longer, and a thread starts a quarter of a
        // millisecond late on a machine whose other core sleeps: the
        // shorter work goes to the thread.
        let mut operator = if self.runtime.is_none() {
            let config = self.host_config(&dir);
            let building = std::thread::Builder::new()
                .name("engine".into())
                .spawn(move || new_runtime(config));
            let opened = Operator::without_runtime(&dir, actor);
            let built = match building {
                Ok(handle) => handle
                    .join()
                    .map_err(|_| CliError::State("building the engine failed on a thread of its own".into()))?,
                // No thread to be had: built here, after the records.
                Err(_) => new_runtime(self.host_config(&dir)),
            };
            self.runtime = Some(built?);
            envpack_host::timing::mark("engine");
            opened?.with_runtime(self.runtime.as_ref().expect("just set"))
        } else {
            Operator::open(&dir, actor, self.runtime()?)?
        };
        if let Some(key) = signer {
            operator.sign_with(key);
        }
        if let Some(sink) = sink {
            operator.export_audit_to(sink);
        }
        // Long verbs show what the pack is doing as it does it.
        operator.stream_logs(Arc::new(|level: &str, line: &str| {
            eprintln!("host: pack {level}: {}", envpack_model::text::printable(line))
        }));
        Ok(operator)
    }

    /// The operator for commands that run no pack: no engine is built.
    pub fn operator_without_runtime(&mut self, actor: String) -> Result<Operator<'static>, CliError> {
        let dir = self.state_dir()?.clone();
        let mut operator = Operator::without_runtime(&dir, actor)?;
        if let Some(path) = &self.deploy_key {
            operator.sign_with(crate::input::read_private_key(path)?);
        }
        if let Some(sink) = &self.audit_sink {
            operator.export_audit_to(sink.clone());
        }
        Ok(operator)
    }

    pub fn trust(&mut self) -> Result<TrustStore, CliError> {
        Ok(TrustStore::open(&self.state_dir()?.trust_store())?)
    }

    pub fn registry(&mut self) -> Result<Registry, CliError> {
        Ok(Registry::open(&self.state_dir()?.packs())?)
    }
}

/// A runtime whose own pack store is a throwaway: calls that keep pack
/// state pass their own (`Runtime::call_in`): the operator's is its
/// transaction, `host call`'s is `call_kv`, the bench's is in memory.
fn new_runtime(config: HostConfig) -> Result<Runtime, envpack_host::SetupError> {
    Runtime::new(config, Arc::new(MemoryKv::default()))
}
