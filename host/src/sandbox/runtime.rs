//! The `Runtime`: owns the engine, the linker and the cache, and runs verbs
//! (loading is in [`super::load`], the instance harness in `instance`).
//! Every call goes the same way:
//! preconditions (no guest code yet), a fresh instance from the pack's
//! `InstancePre` in a fresh `Store`, the export under a CPU deadline and a
//! memory budget, then the host's verdict on what the pack returned. kv
//! writes become durable only if the host accepts the result.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::Instrument;
use wasmtime::Engine;

use crate::capabilities::CallEnv;
use crate::capabilities::kv::{KvSession, settle};
use crate::capabilities::kv_store::KvStore;
use crate::contract::convert;
use crate::contract::dispatch::call_export;
use crate::contract::pack::Pack;
use crate::error::SetupError;
use crate::sandbox::cache::CompileCache;
use crate::sandbox::call_state::CallState;
use crate::sandbox::classify::classify;
use crate::sandbox::engine::{Allocator, HostConfig, Linking, Ticker, build_engine};
use crate::sandbox::phases::{Laps, Phase, VerbPhases};
use crate::sandbox::services::Services;
use envpack_model::{Environment, Gate, Outcome, Recording, Request, Verb, VerbError, outcome::verdict, preconditions};

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

/// On a metered runtime, how many deadlines of wall-clock time a call may
/// take before it is stopped anyway (its work is judged in fuel).
const METERED_BACKSTOP: u32 = 4;

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
    /// Where the call's time went.
    pub phases: VerbPhases,
    /// Fuel the guest burned, on a metered runtime (`HostConfig::meter_fuel`).
    pub fuel: Option<u64>,
    /// Time the pack asked to sleep through `clock.sleep-ms`.
    #[serde(serialize_with = "serialize_micros")]
    pub slept: Duration,
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

/// Loads packs and runs their verbs. Cheap to share behind an `Arc`.
pub struct Runtime {
    pub(super) engine: Engine,
    pub(super) linker: Linking,
    pub(super) allocator: Allocator,
    pub(super) config: HostConfig,
    pub(super) kv: Arc<dyn KvStore>,
    pub(super) cache: Option<Arc<CompileCache>>,
    pub(super) _ticker: Ticker,
}

impl Runtime {
    pub fn new(config: HostConfig, kv: Arc<dyn KvStore>) -> Result<Self, SetupError> {
        let (engine, allocator) = build_engine(&config)?;
        let linker = Linking::start(&engine);
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

    pub(super) fn new_state(&self, gate: Gate, store: Arc<dyn KvStore>, namespace: String) -> CallState {
        let kv = KvSession::new(store, namespace);
        CallState::new(gate, kv, self.config.memory_budget, self.config.deadline)
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
        self.call_in(pack, env, request, mode, Services::with_kv(self.kv.clone()))
            .await
    }

    /// Runs one verb with the given services: pack state read from and
    /// committed to `services.kv` (the operator passes a store scoped to its
    /// command, whose commit is part of the command's transaction), the
    /// environment's workspace and its secrets.
    pub async fn call_in(
        &self,
        pack: &Pack,
        env: &Arc<Environment>,
        request: &Request,
        mode: CallMode,
        services: Services,
    ) -> CallReport {
        let verb = request.verb();
        let span = tracing::info_span!("verb", verb = %verb, env = %env.id(), pack = %pack.info.descriptor);
        async move {
            let started = Instant::now();
            let mut laps = Laps::start(started);
            let checked = if mode.preconditions {
                preconditions::check(env, request)
            } else {
                Ok(())
            };
            laps.lap(Phase::Preconditions);
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
                    phases: laps.phases,
                    fuel: None,
                    slept: Duration::ZERO,
                };
            }
            let mut gate = Gate::new(&pack.info.capabilities, env.granted());
            if mode.audit_capabilities {
                gate = gate.audit();
            }
            let namespace = pack.kv_namespace(env.id());
            let kv = KvSession::new(services.kv.clone(), namespace);
            let deadline = services.deadline.unwrap_or(self.config.deadline);
            // Metered, the deadline is fuel and the clock only a backstop
            // against a pack blocked in the host.
            let (wall, fuel_deadline) = if self.config.meter_fuel {
                (deadline.saturating_mul(METERED_BACKSTOP), Some(deadline))
            } else {
                (deadline, None)
            };
            let mut state = CallState::for_env(
                gate,
                kv,
                self.config.memory_budget,
                wall,
                CallEnv {
                    id: env.id().to_string(),
                    grants: env.grants().clone(),
                },
                services,
            );
            state.laps = laps;
            state.fuel_deadline = fuel_deadline;
            let (raw, mut state) = self
                .in_instance(&pack.pre, state, env, async |guest, store, handle| {
                    call_export(guest, store, handle, request).await
                })
                .await;
            state.finish_recording();
            state.laps.lap(Phase::Recording);
            let result = match raw {
                Ok(raw) => convert::check_size(&raw, self.config.result_caps, verb)
                    .and_then(|()| verdict(env, request, convert::returned(raw), mode.verify_outcome)),
                Err(e) => Err(classify(verb, &e, &state)),
            };
            state.laps.lap(Phase::Outcome);
            let peak_memory = state.budget.peak();
            let (fuel, slept) = (state.fuel_used, state.clock.slept_total());
            let mut laps = state.laps;
            let (recording, kv) = state.into_parts();
            let (result, kv_committed) = match settle(&result, kv) {
                Ok(committed) => (result, committed),
                Err(e) => (
                    Err(VerbError::StateNotSaved {
                        verb,
                        detail: e.to_string(),
                    }),
                    false,
                ),
            };
            laps.lap(Phase::Settle);
            if let Err(error) = &result {
                tracing::info!(%error, "verb failed");
            }
            CallReport {
                verb,
                result,
                guest_entered: true,
                recording,
                kv_committed,
                peak_memory,
                elapsed: started.elapsed(),
                phases: laps.phases,
                fuel,
                slept,
            }
        }
        .instrument(span)
        .await
    }
}
