//! The instance harness: every call gets a fresh instance of the pack's
//! pre-linked `InstancePre` in a fresh `Store`, with the memory budget as
//! its limiter and an epoch deadline that yields to tokio every tick and
//! stops the call at the deadline (plus a short grace for calls blocked in
//! the host).

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime::{Store, UpdateDeadline};

use crate::contract::bindings::EnvHandle;
use crate::contract::bindings::{self, Exports};
use crate::contract::dispatch::call_export;
use crate::contract::pack::Pack;
use crate::error::DeadlineExceeded;
use crate::sandbox::call_state::CallState;
use crate::sandbox::classify::classify;
use crate::sandbox::phases::Phase;
use crate::sandbox::runtime::Runtime;
use envpack_model::{Environment, Gate, Request, Verb, VerbError};

/// Extra wall-clock time past the deadline before the host abandons a call
/// that is blocked in the host (a sleep, a WASI poll) rather than in wasm.
const GRACE: Duration = Duration::from_millis(250);

/// A pack instance kept alive (see [`Runtime::instantiate`]); dropping it frees it.
pub struct LiveInstance {
    _store: Store<CallState>,
}

/// The two parts of making an instance a verb can be called on.
#[derive(Clone, Copy, Debug)]
pub struct InstantiateTimes {
    /// wasmtime's `InstancePre::instantiate_async`.
    pub instance: Duration,
    /// The `deployer` exports looked up and checked against the host's types.
    pub exports: Duration,
}

impl Runtime {
    /// Runs `body` against a fresh instance, under the deadline and budget.
    pub(crate) async fn in_instance<R>(
        &self,
        pre: &bindings::PackPre<CallState>,
        state: CallState,
        env: &Arc<Environment>,
        body: impl AsyncFnOnce(&Exports<'_>, &mut Store<CallState>, Resource<EnvHandle>) -> wasmtime::Result<R>,
    ) -> (wasmtime::Result<R>, CallState) {
        let deadline = state.ledger.deadline();
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.budget);
        // Metered: the deadline as fuel, so that a pack that computes too
        // long fails the same way on a busy machine and an idle one.
        // (A metered call without a fuel deadline, such as describe at load,
        // may burn all it wants: its wall-clock deadline still applies.)
        // Unmetered: all the fuel there is (every engine counts fuel).
        let fuel = self.config.meter_fuel.then(|| {
            store.data().fuel_deadline.map_or(u64::MAX, |d| {
                let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
                ms.saturating_mul(crate::sandbox::engine::FUEL_PER_MS)
            })
        });
        if let Err(e) = store.set_fuel(fuel.unwrap_or(u64::MAX)) {
            return (Err(e), store.into_data());
        }
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |store| {
            if store.data().ledger.started().elapsed() >= deadline {
                Err(wasmtime::Error::new(DeadlineExceeded(deadline)))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.data_mut().laps.lap(Phase::State);
        let run = async {
            let pack = pre.instantiate_async(&mut store).await?;
            store.data_mut().laps.lap(Phase::Instantiate);
            let handle = store.data_mut().table.push(EnvHandle(env.clone()))?;
            store.data_mut().laps.lap(Phase::Lend);
            let result = body(&pack, &mut store, handle).await;
            store.data_mut().laps.lap(Phase::Guest);
            result
        };
        let result = match tokio::time::timeout(deadline + GRACE, run).await {
            Ok(result) => result,
            Err(_) => Err(wasmtime::Error::new(DeadlineExceeded(deadline))),
        };
        if let Some(fuel) = fuel {
            let left = store.get_fuel().unwrap_or(0);
            store.data_mut().fuel_used = Some(fuel.saturating_sub(left));
        }
        let mut state = store.into_data();
        state.laps.lap(Phase::Teardown);
        (result, state)
    }

    /// Instantiates the pack in a fresh store and keeps it alive, without
    /// calling anything: what benchmarks measure as instantiation and as
    /// memory per live instance.
    pub async fn instantiate(&self, pack: &Pack) -> Result<LiveInstance, VerbError> {
        Ok(self.instantiate_timed(pack).await?.0)
    }

    /// [`Self::instantiate`], timed in two parts: wasmtime's
    /// `InstancePre::instantiate_async` alone, then the `deployer` exports
    /// looked up and type-checked, as every verb call does (the store and
    /// its state made before, the instance dropped after).
    pub async fn instantiate_timed(&self, pack: &Pack) -> Result<(LiveInstance, InstantiateTimes), VerbError> {
        let state = self.new_state(Gate::default(), self.kv.clone(), String::new());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.budget);
        store.set_epoch_deadline(u64::MAX / 2);
        if let Err(e) = store.set_fuel(u64::MAX) {
            return Err(classify(Verb::Describe, &e, store.data()));
        }
        let started = std::time::Instant::now();
        let instance = match pack.pre.instance_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => return Err(classify(Verb::Describe, &e, store.data())),
        };
        let instance_time = started.elapsed();
        let started = std::time::Instant::now();
        if let Err(e) = pack.pre.exports(&mut store, instance) {
            return Err(classify(Verb::Describe, &e, store.data()));
        }
        let times = InstantiateTimes {
            instance: instance_time,
            exports: started.elapsed(),
        };
        Ok((LiveInstance { _store: store }, times))
    }

    /// The floor a verb's host path is measured against (`host bench`):
    /// the same export on a fresh instance in a fresh store, with the
    /// capabilities the pack calls served as usual, but no preconditions,
    /// deadline, memory limiter, verdict or kv commit. What any wasmtime
    /// embedding with WASI pays for one call of this pack.
    pub async fn call_bare(&self, pack: &Pack, env: &Arc<Environment>, request: &Request) -> wasmtime::Result<()> {
        let gate = Gate::new(&pack.info.capabilities, env.granted());
        let state = self.new_state(gate, self.kv.clone(), pack.kv_namespace(env.id()));
        let mut store = Store::new(&self.engine, state);
        store.set_epoch_deadline(u64::MAX / 2);
        store.set_fuel(u64::MAX)?;
        let guest = pack.pre.instantiate_async(&mut store).await?;
        let handle = store.data_mut().table.push(EnvHandle(env.clone()))?;
        call_export(&guest, &mut store, handle, request).await?;
        Ok(())
    }
}
