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

pub mod agent;
mod call;
pub mod distribute;
mod endpoint;
mod environment;
pub mod install;
mod new;
mod pack_index;
mod packs;
mod retire;
mod revision;
pub mod rollout;
mod teardown;
mod traffic;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::sql::Db;
use envpack_host::{CallMode, Change, LoadSource, LogSink, Pack, Runtime, StateDir, Workspace, timing};
use envpack_model::{Capability, DeadlinePolicy, Environment, Grants, Outcome, Request};
use envpack_trust::{Checked, InstalledPack, Registry, RegistryError, Requirement, TrustStore};

pub use call::call;
pub use environment::Rebound;
pub use install::{Admission, AdmissionError, install};
pub use new::{Lang, NewError, NewPack, NewProject, new_pack};
pub use pack_index::IndexedPack;
pub use packs::remove_pack;

/// The shared index of installed packs (see [`pack_index`]).
pub mod index {
    pub use super::pack_index::{IndexedPack, find, missing_here, record};
}
pub use retire::{Retirement, Teardown};
pub use revision::NewRevision;
pub use traffic::Applied;

use crate::error::StoreError;
use crate::lock::{EnvLock, lock_env};
use crate::packstate::{self, PackKv};
use crate::store::{self, Binding};
use crate::{audit, db};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// A pack a requirement resolved to: loaded, with the digest and the key
/// id of its signer, which a binding pins.
pub struct Resolved {
    pub pack: Pack,
    pub digest: String,
    pub signer: String,
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
    /// The work directory's budget in MiB; `None` keeps it (4096 if new).
    pub disk_budget_mib: Option<u64>,
}

/// The kv writes of this command's pack call, waiting for its transaction.
struct PendingKv {
    env: String,
    pack: String,
    changes: Vec<Change>,
}

pub struct Operator<'a> {
    conn: Db,
    state_dir: StateDir,
    actor: String,
    runtime: Option<&'a Runtime>,
    pending: Option<PendingKv>,
    log_sink: Option<LogSink>,
    /// The deploy key this command is signed with, if any.
    signer: Option<envpack_trust::PrivateKey>,
    /// The pack this command runs (or pins), named in its audit rows.
    pack_in_use: Option<String>,
    /// Where each committed audit row's head is exported, if anywhere.
    audit_sink: Option<std::path::PathBuf>,
}

impl<'a> Operator<'a> {
    /// An operator that can run packs.
    pub fn open(state_dir: &StateDir, actor: String, runtime: &'a Runtime) -> Result<Self, StoreError> {
        let mut op = Self::without_runtime(state_dir, actor)?;
        op.runtime = Some(runtime);
        Ok(op)
    }

    /// This operator, running its packs on `runtime` (one opened
    /// [`without_runtime`](Self::without_runtime), e.g. on a thread of its
    /// own while the engine was built).
    pub fn with_runtime<'b>(self, runtime: &'b Runtime) -> Operator<'b>
    where
        'a: 'b,
    {
        let mut op: Operator<'b> = self;
        op.runtime = Some(runtime);
        op
    }

    /// An operator for commands that run no pack (`env remove`): no engine is built.
    pub fn without_runtime(state_dir: &StateDir, actor: String) -> Result<Self, StoreError> {
        // With shared records, events and audit rows say which machine acted.
        let actor = match state_dir.database_url() {
            Some(_) => format!("{actor} on {}", crate::sql::machine_name()),
            None => actor,
        };
        Ok(Operator {
            conn: db::Location::of(state_dir).open()?,
            state_dir: state_dir.clone(),
            actor,
            runtime: None,
            pending: None,
            log_sink: None,
            signer: None,
            pack_in_use: None,
            audit_sink: None,
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

    /// Exports every audit row this operator commits (`SEQ:HASH`) to `path`.
    pub fn export_audit_to(&mut self, path: std::path::PathBuf) {
        self.audit_sink = Some(path);
    }

    /// Adds the signature of `command` to `args` (as `authorized_by`) if
    /// the environment trusts deploy keys; refuses the command if this one
    /// is not signed by one of them.
    fn authorize(&self, env: &str, command: &str, args: &mut serde_json::Value) -> Result<(), StoreError> {
        let keys = store::binding(&self.conn, env)?.deploy_keys;
        self.authorize_with(&keys, env, command, args)
    }

    /// [`Self::authorize`] against `keys` (a removed environment's, say).
    fn authorize_with(
        &self,
        keys: &[crate::authz::DeployKey],
        env: &str,
        command: &str,
        args: &mut serde_json::Value,
    ) -> Result<(), StoreError> {
        if let Some(signed) = crate::authz::authorize(keys, self.signer.as_ref(), env, command, args)? {
            args["authorized_by"] = signed;
        }
        Ok(())
    }

    fn runtime(&self) -> Result<&'a Runtime, StoreError> {
        self.runtime
            .ok_or_else(|| StoreError::Invalid("this command needs the pack runtime".into()))
    }

    /// Takes the environment's lock; with shared records, refuses an
    /// environment whose processes run on another machine. On PostgreSQL
    /// the lock is held by this command's own session (never a pooled
    /// one): if the session is lost, so are the lock and every later
    /// commit of this command.
    fn lock(&self, env: &str) -> Result<EnvLock, StoreError> {
        let held = self.lock_anywhere(env)?;
        self.on_this_machine(env)?;
        Ok(held)
    }

    /// The environment's lock, whichever machine its processes run on
    /// (`env remove --force`: forgetting an environment whose machine is gone).
    fn lock_anywhere(&self, env: &str) -> Result<EnvLock, StoreError> {
        lock_env(&self.state_dir, env, self.conn.as_postgres().cloned())
    }

    /// With shared records, refuses an environment whose processes run on
    /// another machine.
    fn on_this_machine(&self, env: &str) -> Result<(), StoreError> {
        if !self.conn.is_postgres() {
            return Ok(());
        }
        match store::binding(&self.conn, env) {
            Ok(binding) => match binding.other_machine(true) {
                Some(machine) => Err(StoreError::OtherMachine {
                    env: env.to_string(),
                    machine: machine.to_string(),
                    here: crate::sql::machine_name(),
                }),
                None => Ok(()),
            },
            Err(_) => Ok(()),
        }
    }

    /// Writes the pack's pending kv writes, if any, into `tx`.
    fn flush_kv(pending: Option<PendingKv>, tx: &Db) -> Result<(), StoreError> {
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
        change: impl FnOnce(&Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.commit_as(command, args, "ok", change)
    }

    /// [`Self::commit`], with the audit row's outcome given.
    fn commit_as<T>(
        &mut self,
        command: &str,
        args: &serde_json::Value,
        outcome: &str,
        change: impl FnOnce(&Db) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pending = self.pending.take();
        let tx = self.conn.transaction()?;
        Self::flush_kv(pending, &tx)?;
        let value = change(&tx)?;
        let outcome = match &self.pack_in_use {
            Some(pack) => format!("{outcome} [pack {pack}]"),
            None => outcome.to_string(),
        };
        let (seq, hash) = audit::append(&tx, now(), &self.actor, command, &args.to_string(), &outcome)?;
        tx.commit()?;
        timing::mark("commit");
        crate::db::fold_wal(&self.conn);
        if let Some(sink) = &self.audit_sink
            && let Err(e) = audit::export_head(sink, seq, &hash)
        {
            // The row is committed: the command stands; verify will name it.
            tracing::warn!(
                "audit row {seq} was committed but not exported to {}: {e}",
                sink.display()
            );
        }
        Ok(value)
    }

    /// Records a failed command (and the kv writes the pack's typed error
    /// kept), then returns its error.
    fn failed<T>(&mut self, command: &str, args: &serde_json::Value, error: StoreError) -> Result<T, StoreError> {
        self.commit_as(command, args, &format!("error: {error}"), |_| Ok(()))?;
        Err(error)
    }

    /// Resolves a requirement to the highest installed, trusted pack and
    /// loads it: what `env create|bind|upgrade` pin an environment to.
    pub async fn resolve(&self, requirement: &str) -> Result<Resolved, StoreError> {
        let req: Requirement = requirement.parse()?;
        let trust = TrustStore::open(&self.state_dir.trust_store())?;
        let registry = Registry::open(&self.state_dir.packs())?;
        let keyring = trust.keyring();
        let (installed, checked) = match registry.resolve(&req, &keyring) {
            Ok(found) => found,
            Err(e @ (RegistryError::UnknownName { .. } | RegistryError::NoMatchingVersion { .. })) => {
                // Another machine sharing the records may have it.
                return Err(
                    match pack_index::elsewhere(&self.conn, &registry, &req).ok().flatten() {
                        Some(pack) => StoreError::PackElsewhere {
                            requirement: requirement.to_string(),
                            here: e.to_string(),
                            pack: Box::new(pack),
                        },
                        None => e.into(),
                    },
                );
            }
            Err(e) => return Err(e.into()),
        };
        timing::mark("verify");
        let signer = checked.verified.key_id.clone();
        let pack = self.load_installed(&registry, &installed, checked).await?;
        Ok(Resolved {
            pack,
            digest: installed.digest,
            signer,
        })
    }

    /// The pack an environment is pinned to: exactly the digest it was
    /// bound to, still intact, still signed by a trusted key — the key it
    /// was bound with. A newer installed version is never picked up here;
    /// `env upgrade` moves the pin. Checked from the registry's seal and
    /// loaded from the compiled-code cache, so that a command costs the
    /// same whatever the pack's size (see `Registry::check`).
    async fn pinned(&self, env: &str, binding: &Binding) -> Result<Pack, StoreError> {
        let trust = TrustStore::open(&self.state_dir.trust_store())?;
        let registry = Registry::open(&self.state_dir.packs())?;
        let installed = registry
            .lookup(&binding.pack_digest)
            .map_err(|_| StoreError::PinnedPackGone {
                env: env.to_string(),
                descriptor: binding.descriptor.clone(),
                digest: binding.pack_digest.clone(),
                elsewhere: pack_index::find(&self.conn, &binding.pack_digest)
                    .ok()
                    .flatten()
                    .map(Box::new),
            })?
            .clone();
        let checked = registry.check(&installed, &trust.keyring())?;
        timing::mark("verify");
        if !binding.signer.is_empty() && checked.verified.key_id != binding.signer {
            return Err(StoreError::SignerChanged {
                env: env.to_string(),
                descriptor: binding.descriptor.clone(),
                pinned: binding.signer.clone(),
                found: checked.verified.key_id,
            });
        }
        self.load_installed(&registry, &installed, checked).await
    }

    /// Loads an installed pack the registry just checked.
    async fn load_installed(
        &self,
        registry: &Registry,
        installed: &InstalledPack,
        checked: Checked,
    ) -> Result<Pack, StoreError> {
        let (source, verified) = LoadSource::installed(registry, installed, checked);
        let loaded = self.runtime()?.load_installed(source, verified).await?;
        timing::mark("load");
        Ok(loaded.pack)
    }

    /// The environment's binding and its pinned pack, read once per command.
    async fn bound(&mut self, env: &str) -> Result<Bound, StoreError> {
        let binding = store::binding(&self.conn, env)?;
        let pack = self.pinned(env, &binding).await?;
        self.pack_in_use = Some(environment::pack_text(&binding));
        Ok(Bound { binding, pack })
    }

    /// Calls the pack with its state read from `state.db` under this
    /// command's lock; its accepted kv writes wait for the command's
    /// transaction.
    async fn run_verb(&mut self, bound: &Bound, env: Environment, request: &Request) -> Result<Outcome, StoreError> {
        let pack = &bound.pack;
        let env_id = env.id().to_string();
        self.check_disk_budget(&env_id, &bound.binding, request)?;
        let name = pack.info().name().to_string();
        // The pack's reads share the command's connection (no transaction
        // is open during the call, so they see what is committed).
        let kv_conn = self.conn.shared();
        let kv = Arc::new(PackKv::over(kv_conn, &env_id, &name, pack.kv_namespace(&env_id)));
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

    /// A read-only verb (`probe-revision`, `revision-endpoint`) under the
    /// environment's lock: what the pack writes to its kv while answering
    /// is not kept (it reports, it does not change). With the binding it ran for.
    pub(crate) async fn read_only_verb(
        &mut self,
        env: &str,
        request: &Request,
    ) -> Result<(Outcome, Binding), StoreError> {
        let _lock = self.lock(env)?;
        let bound = self.bound(env).await?;
        let environment = store::load_environment(&self.conn, env, &bound.binding, &[], None)?;
        let outcome = self.run_verb(&bound, environment, request).await;
        self.pending = None;
        Ok((outcome?, bound.binding))
    }

    /// Refuses a verb that adds to the work directory (stage, warm,
    /// apply-traffic-split) while it is over the environment's budget;
    /// drain, archive and the read-only verbs always run, so space can be
    /// freed.
    fn check_disk_budget(&self, env: &str, binding: &Binding, request: &Request) -> Result<(), StoreError> {
        if !matches!(
            request,
            Request::Stage(_) | Request::Warm(_) | Request::ApplyTrafficSplit(_)
        ) {
            return Ok(());
        }
        let workspace = self.workspace(env)?;
        let (used, _) = workspace.usage(1_000_000);
        let budget = binding.disk_budget_mib.saturating_mul(1 << 20);
        if used > budget {
            return Err(StoreError::OverDiskBudget {
                env: env.to_string(),
                used_mib: used >> 20,
                budget_mib: binding.disk_budget_mib,
            });
        }
        Ok(())
    }

    /// Kills every process tree the environment started for revision `id`.
    pub(crate) fn stop_revision_processes(&self, env: &str, id: &str) -> Result<usize, StoreError> {
        let workspace = self.workspace(env)?;
        envpack_host::stop_revision_processes(&workspace, &envpack_host::revision_dir_name(id))
            .map_err(StoreError::Invalid)
    }

    /// The environment's workspace (work directory, process table, artifacts).
    fn workspace(&self, env: &str) -> Result<Workspace, StoreError> {
        self.state_dir.workspace("env", env).map_err(|e| StoreError::Io {
            path: self.state_dir.work().display().to_string(),
            source: e,
        })
    }
}
