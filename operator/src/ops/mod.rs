//! Operations: every mutating command locks its environment, resolves the
//! bound pack through the registry (so a revoked signer stops it at once),
//! runs the verb through the host, and only then commits, in **one**
//! transaction, the pack's kv writes, the lifecycle transition, the event and
//! the audit row. A failure is audited with its message (and the pack's kv
//! writes, when the pack reported a typed error, as the host's call path
//! keeps them).
//!
//! What is serialized, exactly:
//! - mutating commands on one environment, by that environment's lock
//!   ([`crate::lock`]), held for the whole command, pack call included;
//! - every database write, by SQLite, for the few milliseconds of a
//!   transaction; nothing holds a write transaction across a pack call.
//!
//! Read-only commands (`status`, `events`, `traffic show`, lists) take no
//! lock and read a WAL snapshot, so a long verb never blocks them, and
//! commands on other environments never wait for it.

mod call;
pub mod install;
mod packs;
mod revision;
pub mod rollout;
mod traffic;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use envpack_host::{CallMode, Change, LogSink, Pack, Runtime, SignaturePolicy, StateDir, Workspace, timing};
use envpack_model::{Capability, DeadlinePolicy, Environment, Grants, Outcome, Request, validate_id};
use envpack_trust::{Registry, Requirement, TrustStore};
use rusqlite::{Connection, TransactionBehavior};
use serde_json::json;

pub use call::call;
pub use install::{Admission, AdmissionError, install};
pub use packs::remove_pack;
pub use revision::NewRevision;
pub use traffic::Applied;

use crate::error::StoreError;
use crate::lock::{EnvLock, lock};
use crate::packstate::{self, PackKv};
use crate::store::{self, Binding};
use crate::{audit, db};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// An environment's binding and the pack it resolves to.
struct Bound {
    binding: Binding,
    pack: Pack,
}

/// What `env create|bind` asks for; `None` keeps what the binding had.
pub struct BindRequest {
    pub requirement: String,
    pub capabilities: Option<Vec<Capability>>,
    pub grants: Option<Grants>,
    pub deadlines: Option<DeadlinePolicy>,
    pub settings: Option<std::collections::BTreeMap<String, String>>,
    /// The keys whose holders alone may move traffic; `None` keeps them.
    pub deploy_keys: Option<Vec<crate::authz::DeployKey>>,
}

/// The kv writes of this command's pack call, waiting for its transaction.
struct PendingKv {
    env: String,
    pack: String,
    changes: Vec<Change>,
}

pub struct Operator<'a> {
    conn: Connection,
    state_dir: StateDir,
    actor: String,
    runtime: Option<&'a Runtime>,
    pending: Option<PendingKv>,
    log_sink: Option<LogSink>,
    /// The deploy key this command is signed with, if any.
    signer: Option<envpack_trust::PrivateKey>,
}

impl<'a> Operator<'a> {
    /// An operator that can run packs.
    pub fn open(state_dir: &StateDir, actor: String, runtime: &'a Runtime) -> Result<Self, StoreError> {
        let mut op = Self::without_runtime(state_dir, actor)?;
        op.runtime = Some(runtime);
        Ok(op)
    }

    /// An operator for commands that run no pack (`env remove`): no engine is built.
    pub fn without_runtime(state_dir: &StateDir, actor: String) -> Result<Self, StoreError> {
        Ok(Operator {
            conn: db::open(&state_dir.database())?,
            state_dir: state_dir.clone(),
            actor,
            runtime: None,
            pending: None,
            log_sink: None,
            signer: None,
        })
    }

    /// Sends the packs' log lines to `sink` as they happen.
    pub fn stream_logs(&mut self, sink: LogSink) {
        self.log_sink = Some(sink);
    }

    /// Signs this command's traffic changes with `key` (see [`crate::authz`]).
    pub fn sign_with(&mut self, key: envpack_trust::PrivateKey) {
        self.signer = Some(key);
    }

    /// Adds the signature of `command` to `args` (as `authorized_by`) if
    /// the environment trusts deploy keys; refuses the command if this one
    /// is not signed by one of them.
    fn authorize(&self, env: &str, command: &str, args: &mut serde_json::Value) -> Result<(), StoreError> {
        let keys = store::binding(&self.conn, env)?.deploy_keys;
        if let Some(signed) = crate::authz::authorize(&keys, self.signer.as_ref(), env, command, args)? {
            args["authorized_by"] = signed;
        }
        Ok(())
    }

    fn runtime(&self) -> Result<&'a Runtime, StoreError> {
        self.runtime
            .ok_or_else(|| StoreError::Invalid("this command needs the pack runtime".into()))
    }

    fn lock(&self, env: &str) -> Result<EnvLock, StoreError> {
        lock(&self.state_dir.locks(), env)
    }

    /// Writes the pack's pending kv writes, if any, into `tx`.
    fn flush_kv(pending: Option<PendingKv>, tx: &Connection) -> Result<(), StoreError> {
        match pending {
            Some(p) => packstate::apply(tx, &p.env, &p.pack, &p.changes),
            None => Ok(()),
        }
    }

    /// Runs `change` in one immediate transaction with the pack's kv writes
    /// and the audit row.
    fn commit<T>(
        &mut self,
        command: &str,
        args: &serde_json::Value,
        change: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.commit_as(command, args, "ok", change)
    }

    /// [`Self::commit`], with the audit row's outcome given.
    fn commit_as<T>(
        &mut self,
        command: &str,
        args: &serde_json::Value,
        outcome: &str,
        change: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pending = self.pending.take();
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        Self::flush_kv(pending, &tx)?;
        let value = change(&tx)?;
        audit::append(&tx, now(), &self.actor, command, &args.to_string(), outcome)?;
        tx.commit()?;
        timing::mark("commit");
        Ok(value)
    }

    /// Records a failed command (and the kv writes the pack's typed error
    /// kept), then returns its error.
    fn failed<T>(&mut self, command: &str, args: &serde_json::Value, error: StoreError) -> Result<T, StoreError> {
        self.commit_as(command, args, &format!("error: {error}"), |_| Ok(()))?;
        Err(error)
    }

    /// Resolves a requirement to an installed, trusted pack and loads it.
    pub async fn resolve(&self, requirement: &str) -> Result<(Pack, String), StoreError> {
        let req: Requirement = requirement.parse()?;
        let trust = TrustStore::open(&self.state_dir.trust_store())?;
        let registry = Registry::open(&self.state_dir.packs())?;
        let keyring = trust.keyring();
        let (installed, verified, bytes) = registry.resolve(&req, &keyring)?;
        timing::mark("verify");
        let policy = SignaturePolicy::Verified(verified);
        let loaded = self
            .runtime()?
            .load(installed.descriptor.clone(), bytes, policy)
            .await?;
        timing::mark("load");
        Ok((loaded.pack, installed.digest))
    }

    /// The environment's binding and its pack, read once per command.
    async fn bound(&self, env: &str) -> Result<Bound, StoreError> {
        let binding = store::binding(&self.conn, env)?;
        let pack = self.resolve(&binding.requirement).await?.0;
        Ok(Bound { binding, pack })
    }

    /// Calls the pack with its state read from `state.db` under this
    /// command's lock; its accepted kv writes wait for the command's
    /// transaction.
    async fn run_verb(&mut self, bound: &Bound, env: Environment, request: &Request) -> Result<Outcome, StoreError> {
        let pack = &bound.pack;
        let env_id = env.id().to_string();
        let name = pack.info().name().to_string();
        let kv = Arc::new(PackKv::open(
            &self.state_dir.database(),
            &env_id,
            &name,
            pack.kv_namespace(&env_id),
        )?);
        let runtime = self.runtime()?;
        let policy = &bound.binding.deadlines;
        let expected = pack.manifest().map(|m| m.deadlines.clone()).unwrap_or_default();
        let mut services = self
            .state_dir
            .services("env", &env_id, kv.clone())
            .map_err(StoreError::Invalid)?;
        services.deadline = Some(policy.deadline(request.verb(), &expected, runtime.config().deadline));
        services.log_sink = self.log_sink.clone();
        let report = self
            .runtime()?
            .call_in(pack, &Arc::new(env), request, CallMode::HOST, services)
            .await;
        timing::mark("verb");
        let changes = kv.take_pending();
        if !changes.is_empty() {
            self.pending = Some(PendingKv {
                env: env_id,
                pack: name,
                changes,
            });
        }
        report.result.map_err(StoreError::Pack)
    }

    /// The environment's workspace (work directory, process table, artifacts).
    fn workspace(&self, env: &str) -> Result<Workspace, StoreError> {
        self.state_dir.workspace("env", env).map_err(|e| StoreError::Io {
            path: self.state_dir.work().display().to_string(),
            source: e,
        })
    }

    /// Creates an environment bound to `requirement`, or rebinds an existing one.
    pub async fn bind(&mut self, env: &str, request: BindRequest, create: bool) -> Result<Binding, StoreError> {
        validate_id("environment id", env).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let _lock = self.lock(env)?;
        let command = if create { "env create" } else { "env bind" };
        let mut args = json!({ "env": env, "deployer": request.requirement, "capabilities": request.capabilities,
                           "grants": request.grants, "settings": request.settings,
                           "deploy_keys": request.deploy_keys.as_ref().map(|keys| keys.iter().map(|k| &k.name).collect::<Vec<_>>()) });
        // Rebinding an environment that trusts deploy keys takes one of them.
        if !create
            && store::env_exists(&self.conn, env)?
            && let Err(e) = self.authorize(env, command, &mut args)
        {
            return self.failed(command, &args, e);
        }
        let result = self.bind_inner(env, request, create).await;
        match result {
            Ok(binding) => {
                let b = binding.clone();
                self.commit(command, &args, |tx| {
                    if create {
                        store::create_env(tx, env, now())?;
                    }
                    store::set_binding(tx, env, &b, now())
                })?;
                Ok(binding)
            }
            Err(e) => self.failed(command, &args, e),
        }
    }

    async fn bind_inner(&self, env: &str, request: BindRequest, create: bool) -> Result<Binding, StoreError> {
        let BindRequest {
            requirement,
            capabilities,
            grants,
            deadlines,
            settings,
            deploy_keys,
        } = request;
        let requirement = requirement.as_str();
        let previous = if create {
            if store::env_exists(&self.conn, env)? {
                return Err(StoreError::EnvExists(env.to_string()));
            }
            None
        } else {
            Some(store::binding(&self.conn, env)?)
        };
        let (pack, digest) = self.resolve(requirement).await?;
        let grants = grants
            .or_else(|| previous.as_ref().map(|b| b.grants.clone()))
            .unwrap_or_default();
        let deadlines = deadlines
            .or_else(|| previous.as_ref().map(|b| b.deadlines.clone()))
            .unwrap_or_default();
        let mut capabilities = capabilities
            .or_else(|| previous.as_ref().map(|b| b.capabilities.clone()))
            .unwrap_or_else(|| vec![Capability::Log]);
        capabilities.extend(grants.capabilities());
        capabilities.sort();
        capabilities.dedup();
        let missing: Vec<String> = pack
            .info()
            .capabilities
            .iter()
            .filter(|c| !capabilities.contains(c))
            .map(|c| c.name().to_string())
            .collect();
        if !missing.is_empty() {
            return Err(StoreError::Ungranted {
                descriptor: pack.info().descriptor.clone(),
                env: env.to_string(),
                missing,
            });
        }
        Ok(Binding {
            requirement: requirement.to_string(),
            descriptor: pack.info().descriptor.clone(),
            pack_digest: digest,
            settings: settings
                .or_else(|| previous.as_ref().map(|b| b.settings.clone()))
                .unwrap_or_default(),
            capabilities,
            grants,
            deadlines,
            deploy_keys: deploy_keys
                .or_else(|| previous.map(|b| b.deploy_keys))
                .unwrap_or_default(),
        })
    }

    /// Removes an environment with everything it holds (revisions, events,
    /// splits, its packs' kv state); refused while it has revisions not
    /// archived, unless `force`. Runs no pack.
    pub fn remove_env(&mut self, env: &str, force: bool) -> Result<(), StoreError> {
        let _lock = self.lock(env)?;
        let args = json!({ "env": env, "force": force });
        if let Err(e) = store::require_env(&self.conn, env) {
            return self.failed("env remove", &args, e);
        }
        let live = store::revisions(&self.conn, env, false)?;
        if !live.is_empty() && !force {
            let error = StoreError::Invalid(format!(
                "environment {env:?} still has {} revisions that are not archived; archive them or pass --force",
                live.len()
            ));
            return self.failed("env remove", &args, error);
        }
        // Its processes are stopped and its work directory goes with it.
        let workspace = self.workspace(env)?;
        envpack_host::stop_processes(&workspace, std::time::Duration::from_secs(2)).map_err(StoreError::Invalid)?;
        self.commit("env remove", &args, |tx| store::remove_env(tx, env))?;
        workspace.remove().map_err(|e| StoreError::Io {
            path: workspace.work_dir.display().to_string(),
            source: e,
        })
    }
}
