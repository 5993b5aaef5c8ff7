//! The `Runtime`: loads packs and runs verbs. Every call goes the same way:
//! preconditions (no guest code yet), a fresh instance from the pack's
//! `InstancePre` in a fresh `Store`, the export under a CPU deadline and a
//! memory budget, then the host's verdict on what the pack returned. kv
//! writes become durable only if the host accepts the result.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::Instrument;
use wasmtime::component::{Component, Resource};
use wasmtime::{Engine, Store, UpdateDeadline};

use crate::bindings::{self, verbs};
use crate::cache::{CacheEvent, CompileCache};
use crate::capabilities::environment::EnvHandle;
use crate::capabilities::kv::{KvLimit, KvSession};
use crate::capabilities::recording::Recording;
use crate::capability::{Denied, Gate};
use crate::engine::{Allocator, HostConfig, Ticker, build_engine, build_linker};
use crate::error::{LoadError, ProviderCause, SetupError, VerbError};
use crate::kv::{KvError, KvStore};
use crate::manifest::Manifest;
use crate::model::{Environment, EnvironmentDoc};
use crate::pack::{CONTRACT_VERSION, Pack, PackInfo, read_pack_file, sha256_hex};
use crate::preconditions;
use crate::sandbox::{BudgetExceeded, DeadlineExceeded};
use crate::state::CallState;
use crate::verb::{Outcome, Request, Verb};
use crate::verify::{Raw, verdict};

/// Extra wall-clock time past the deadline before the host abandons a call
/// that is blocked in the host (a sleep, a WASI poll) rather than in wasm.
const GRACE: Duration = Duration::from_millis(250);

/// How much of the host path a call goes through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CallMode {
    /// Check preconditions before the pack runs.
    pub preconditions: bool,
    /// Refuse outcomes that do not echo the request (revision, split entries).
    pub verify_outcome: bool,
    /// Let undeclared but granted capability calls through, recorded as undeclared.
    pub audit_capabilities: bool,
}

impl CallMode {
    /// The operator's path: every check on.
    pub const HOST: CallMode = CallMode {
        preconditions: true,
        verify_outcome: true,
        audit_capabilities: false,
    };
    /// The conformance bench's path: the pack is called directly and judged
    /// on what it returns, and capability calls are audited, not refused.
    pub const DIRECT: CallMode = CallMode {
        preconditions: false,
        verify_outcome: false,
        audit_capabilities: true,
    };
}

/// The result of one verb call, with the evidence of what the pack did.
#[derive(Debug, Serialize)]
pub struct CallReport {
    pub verb: Verb,
    #[serde(serialize_with = "serialize_result")]
    pub result: Result<Outcome, VerbError>,
    /// Whether the pack's code ran at all (false for precondition failures).
    pub guest_entered: bool,
    /// Every capability call the pack made, in order.
    pub recording: Recording,
    /// Whether the call's kv writes were made durable.
    pub kv_committed: bool,
    /// Most linear memory the instance held at once, in bytes.
    pub peak_memory: usize,
    #[serde(serialize_with = "serialize_micros")]
    pub elapsed: Duration,
}

fn serialize_result<S: serde::Serializer>(r: &Result<Outcome, VerbError>, s: S) -> Result<S::Ok, S::Error> {
    match r {
        Ok(outcome) => serde_json::json!({ "ok": outcome }).serialize(s),
        Err(e) => serde_json::json!({ "error": { "kind": e.kind(), "message": e.to_string(), "precondition": e.is_precondition() } })
            .serialize(s),
    }
}

fn serialize_micros<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// A pack instance kept alive (see [`Runtime::instantiate`]); dropping it frees it.
pub struct LiveInstance {
    _store: Store<CallState>,
}

/// Loads packs and runs their verbs. Cheap to share behind an `Arc`.
pub struct Runtime {
    engine: Engine,
    linker: wasmtime::component::Linker<CallState>,
    allocator: Allocator,
    config: HostConfig,
    kv: Arc<dyn KvStore>,
    cache: Option<Arc<CompileCache>>,
    _ticker: Ticker,
}

/// Compiles `bytes`, through the cache when there is one.
fn compile(engine: &Engine, cache: Option<&CompileCache>, bytes: &[u8]) -> wasmtime::Result<(Component, CacheEvent)> {
    match cache {
        Some(cache) => cache.load(engine, &sha256_hex(bytes), bytes),
        None => Ok((Component::new(engine, bytes)?, CacheEvent::Disabled)),
    }
}

impl Runtime {
    pub fn new(config: HostConfig, kv: Arc<dyn KvStore>) -> Result<Self, SetupError> {
        let (engine, allocator) = build_engine(&config)?;
        let linker = build_linker(&engine)?;
        let ticker = Ticker::start(&engine)?;
        let cache = match &config.cache_dir {
            Some(dir) => Some(Arc::new(
                CompileCache::open(dir).map_err(|e| SetupError::Cache(e.to_string()))?,
            )),
            None => None,
        };
        Ok(Runtime {
            engine,
            linker,
            allocator,
            config,
            kv,
            cache,
            _ticker: ticker,
        })
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn allocator(&self) -> Allocator {
        self.allocator
    }

    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    pub fn kv(&self) -> &Arc<dyn KvStore> {
        &self.kv
    }

    /// Reads, compiles, links and describes a pack file.
    pub async fn load_pack_file(&self, path: &Path) -> Result<Pack, LoadError> {
        let source = path.display().to_string();
        let bytes = read_pack_file(path).map_err(|source_err| LoadError::Read {
            path: source.clone(),
            source: source_err,
        })?;
        self.load_pack(source, bytes).await
    }

    /// Compiles, links and describes pack bytes; `source` names them in errors.
    pub async fn load_pack(&self, source: String, bytes: Vec<u8>) -> Result<Pack, LoadError> {
        let span = tracing::info_span!("load", pack = %source, bytes = bytes.len());
        async move {
            let manifest = Manifest::read(&bytes).map_err(|e| LoadError::Manifest {
                path: source.clone(),
                source: e,
            })?;
            let engine = self.engine.clone();
            let cache = self.cache.clone();
            let compiled = tokio::task::spawn_blocking(move || {
                let component = compile(&engine, cache.as_deref(), &bytes);
                (component, bytes)
            })
            .await
            .map_err(|e| LoadError::NotAComponent {
                path: source.clone(),
                detail: format!("the compiler thread failed: {e}"),
            })?;
            let (component, bytes) = compiled;
            let (component, cache_event) = component.map_err(|e| LoadError::NotAComponent {
                path: source.clone(),
                detail: format!("{e:#}"),
            })?;
            let contract = |e: wasmtime::Error| LoadError::Contract {
                path: source.clone(),
                detail: format!("{e:#}"),
            };
            let instance_pre = self.linker.instantiate_pre(&component).map_err(contract)?;
            let pre = bindings::PackPre::new(instance_pre).map_err(contract)?;
            let info = self.describe(&pre).await.map_err(|e| LoadError::Describe {
                path: source.clone(),
                source: e,
            })?;
            if info.contract_version != CONTRACT_VERSION {
                return Err(LoadError::ContractVersion {
                    path: source,
                    found: info.contract_version,
                    expected: CONTRACT_VERSION,
                });
            }
            if let Some(manifest) = &manifest {
                manifest.agrees_with(&info).map_err(|e| LoadError::Manifest {
                    path: source.clone(),
                    source: e,
                })?;
            }
            let mut pack = Pack::new(pre, info, source, &bytes, &self.engine, &component);
            pack.manifest = manifest;
            pack.cache_event = cache_event;
            Ok(pack)
        }
        .instrument(span)
        .await
    }

    async fn describe(&self, pre: &bindings::PackPre<CallState>) -> Result<PackInfo, VerbError> {
        let empty = Arc::new(
            Environment::from_doc(EnvironmentDoc {
                id: "describe".into(),
                capabilities: Vec::new(),
                settings: Default::default(),
                deployments: Vec::new(),
            })
            .map_err(|e| VerbError::Provider {
                verb: Verb::Describe,
                cause: ProviderCause::Instantiate(e.to_string()),
            })?,
        );
        // describe must be pure: nothing is declared, so every capability call is refused.
        let state = self.new_state(Gate::default(), self.kv.clone(), String::new());
        let (result, state) = self
            .in_instance(pre, state, &empty, async |guest, store, handle| {
                // describe takes no environment; the handle is lent and dropped unused.
                let _ = handle;
                guest.call_describe(store).await
            })
            .await;
        result
            .map(PackInfo::from)
            .map_err(|e| self.classify(Verb::Describe, &e, &state))
    }

    fn new_state(&self, gate: Gate, store: Arc<dyn KvStore>, namespace: String) -> CallState {
        let kv = KvSession::new(store, namespace);
        CallState::new(gate, kv, self.config.memory_budget, self.config.deadline)
    }

    /// Runs `body` against a fresh instance, under the deadline and budget.
    async fn in_instance<R>(
        &self,
        pre: &bindings::PackPre<CallState>,
        state: CallState,
        env: &Arc<Environment>,
        body: impl AsyncFnOnce(&verbs::Guest, &mut Store<CallState>, Resource<EnvHandle>) -> wasmtime::Result<R>,
    ) -> (wasmtime::Result<R>, CallState) {
        let deadline = self.config.deadline;
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.budget);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |store| {
            if store.data().started.elapsed() >= deadline {
                Err(wasmtime::Error::new(DeadlineExceeded(deadline)))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let run = async {
            let pack = pre.instantiate_async(&mut store).await?;
            let handle = store.data_mut().table.push(EnvHandle(env.clone()))?;
            body(pack.envpack_deployer_deployer(), &mut store, handle).await
        };
        let result = match tokio::time::timeout(deadline + GRACE, run).await {
            Ok(result) => result,
            Err(_) => Err(wasmtime::Error::new(DeadlineExceeded(deadline))),
        };
        (result, store.into_data())
    }

    /// Instantiates the pack in a fresh store and keeps it alive, without
    /// calling anything: what benchmarks measure as instantiation and as
    /// memory per live instance.
    pub async fn instantiate(&self, pack: &Pack) -> Result<LiveInstance, VerbError> {
        let state = self.new_state(Gate::default(), self.kv.clone(), String::new());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.budget);
        store.set_epoch_deadline(u64::MAX / 2);
        match pack.pre.instantiate_async(&mut store).await {
            Ok(_) => Ok(LiveInstance { _store: store }),
            Err(e) => Err(self.classify(Verb::Describe, &e, store.data())),
        }
    }

    /// Runs one verb through the full host path.
    pub async fn call(&self, pack: &Pack, env: &Arc<Environment>, request: &Request) -> CallReport {
        self.call_with(pack, env, request, CallMode::HOST).await
    }

    /// Runs one verb through as much of the host path as `mode` says, with
    /// the runtime's own kv store.
    pub async fn call_with(
        &self,
        pack: &Pack,
        env: &Arc<Environment>,
        request: &Request,
        mode: CallMode,
    ) -> CallReport {
        self.call_in(pack, env, request, mode, self.kv.clone()).await
    }

    /// Runs one verb with pack state read from and committed to `kv`: the
    /// operator passes a store scoped to its command, whose commit is part of
    /// the command's database transaction.
    pub async fn call_in(
        &self,
        pack: &Pack,
        env: &Arc<Environment>,
        request: &Request,
        mode: CallMode,
        kv: Arc<dyn KvStore>,
    ) -> CallReport {
        let verb = request.verb();
        let span = tracing::info_span!("verb", verb = %verb, env = %env.id(), pack = %pack.info.descriptor);
        async move {
            let started = Instant::now();
            let checked = if mode.preconditions {
                preconditions::check(env, request)
            } else {
                Ok(())
            };
            if let Err(error) = checked {
                tracing::info!(%error, "refused before the pack ran");
                return CallReport {
                    verb,
                    result: Err(error),
                    guest_entered: false,
                    recording: Recording::default(),
                    kv_committed: false,
                    peak_memory: 0,
                    elapsed: started.elapsed(),
                };
            }
            let mut gate = Gate::new(&pack.info.capabilities, env.granted());
            if mode.audit_capabilities {
                gate = gate.audit();
            }
            let namespace = pack.kv_namespace(env.id());
            let state = self.new_state(gate, kv, namespace);
            let (raw, state) = self
                .in_instance(&pack.pre, state, env, async |guest, store, handle| {
                    call_export(guest, store, handle, request).await
                })
                .await;
            let result = match raw {
                Ok(raw) => verdict(env, request, raw, self.config.result_caps, mode.verify_outcome),
                Err(e) => Err(self.classify(verb, &e, &state)),
            };
            let peak_memory = state.budget.peak();
            let (result, kv_committed) = match self.settle_kv(&result, state.kv) {
                Ok(committed) => (result, committed),
                Err(e) => (
                    Err(VerbError::StateNotSaved {
                        verb,
                        detail: e.to_string(),
                    }),
                    false,
                ),
            };
            if let Err(error) = &result {
                tracing::info!(%error, "verb failed");
            }
            CallReport {
                verb,
                result,
                guest_entered: true,
                recording: state.recording,
                kv_committed,
                peak_memory,
                elapsed: started.elapsed(),
            }
        }
        .instrument(span)
        .await
    }

    /// Commits the call's kv writes if the host accepted its result or the
    /// pack reported a typed error; discards them otherwise. A store that
    /// cannot save them is an error of the call, never a log line.
    fn settle_kv(&self, result: &Result<Outcome, VerbError>, kv: KvSession) -> Result<bool, KvError> {
        let accepted = match result {
            Ok(_) => true,
            Err(VerbError::Provider { cause, .. }) => {
                matches!(cause, ProviderCause::Reported(_) | ProviderCause::EmptyMessage)
            }
            Err(e) => {
                !e.is_precondition()
                    && !matches!(
                        e,
                        VerbError::CrossDeploymentInterference { .. } | VerbError::OutcomeMismatch { .. }
                    )
            }
        };
        if !accepted || !kv.is_dirty() {
            return Ok(false);
        }
        kv.commit().map(|()| true)
    }

    /// Names the cause of a failed call.
    fn classify(&self, verb: Verb, error: &wasmtime::Error, state: &CallState) -> VerbError {
        let cause = cause_of(error, state);
        VerbError::Provider { verb, cause }
    }
}

fn cause_of(error: &wasmtime::Error, state: &CallState) -> ProviderCause {
    for e in error.chain() {
        if let Some(d) = e.downcast_ref::<DeadlineExceeded>() {
            return ProviderCause::Deadline(d.0);
        }
        if let Some(b) = e.downcast_ref::<BudgetExceeded>() {
            return ProviderCause::MemoryBudget {
                requested: b.requested,
                budget: b.budget,
            };
        }
        if let Some(d) = e.downcast_ref::<Denied>() {
            return ProviderCause::CapabilityDenied(d.clone());
        }
        if let Some(k) = e.downcast_ref::<KvLimit>() {
            return ProviderCause::CapabilityLimit {
                what: "kv",
                detail: k.0.clone(),
            };
        }
    }
    let stderr = state.panic_message();
    let trap = match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => trap.to_string(),
        None => error.to_string(),
    };
    if stderr.is_empty() {
        ProviderCause::Trap(trap)
    } else {
        ProviderCause::Trap(format!("{trap}; the pack's stderr says: {stderr}"))
    }
}

async fn call_export(
    guest: &verbs::Guest,
    store: &mut Store<CallState>,
    env: Resource<EnvHandle>,
    request: &Request,
) -> wasmtime::Result<Raw> {
    Ok(match request {
        Request::Stage(id) => Raw::Revision(guest.call_stage_revision(store, env, id).await?),
        Request::Warm(id) => Raw::Revision(guest.call_warm_revision(store, env, id).await?),
        Request::Drain(id) => Raw::Revision(guest.call_drain_revision(store, env, id).await?),
        Request::Archive(id) => Raw::Revision(guest.call_archive_revision(store, env, id).await?),
        Request::Probe(id) => Raw::Health(guest.call_probe_revision(store, env, id).await?),
        Request::ApplyTrafficSplit(deployment) => Raw::Split(
            deployment.clone(),
            guest.call_apply_traffic_split(store, env, deployment).await?,
        ),
        Request::ReportRuntimeConfig => Raw::Config(guest.call_report_runtime_config(store, env).await?),
    })
}
