//! Operations: each command locks its environment, resolves the bound pack
//! through the registry (so a revoked signer stops it at once), runs the verb
//! through the host, and only then applies the transition, the event and the
//! audit row in one transaction. A failure is audited with its message.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use envpack_host::descriptor::Requirement;
use envpack_host::model::{Artifact, Revision, SplitEntry, validate_id};
use envpack_host::registry::Registry;
use envpack_host::signature::Keyring;
use envpack_host::split::validate_weights;
use envpack_host::trust::TrustStore;
use envpack_host::{Capability, Environment, Lifecycle, Outcome, Pack, Request, Runtime};
use rusqlite::{Connection, TransactionBehavior};
use serde_json::json;

use crate::error::StoreError;
use crate::lock::{EnvLock, lock};
use crate::store::{self, Binding};
use crate::{audit, db};

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// What a new revision is made of.
pub struct NewRevision {
    pub id: Option<String>,
    pub deployment: String,
    pub digest: String,
    pub location: String,
    pub drain_seconds: u32,
    pub settings: std::collections::BTreeMap<String, String>,
}

pub struct Operator<'a> {
    pub conn: Connection,
    pub state_dir: PathBuf,
    pub actor: String,
    pub runtime: &'a Runtime,
}

impl<'a> Operator<'a> {
    pub fn open(state_dir: &Path, actor: String, runtime: &'a Runtime) -> Result<Self, StoreError> {
        let conn = db::open(&state_dir.join("state.db"))?;
        Ok(Operator {
            conn,
            state_dir: state_dir.to_path_buf(),
            actor,
            runtime,
        })
    }

    fn lock(&self, env: &str) -> Result<EnvLock, StoreError> {
        lock(&self.state_dir, env)
    }

    /// Runs `change` in one immediate transaction with its audit row.
    fn commit<T>(
        &mut self,
        command: &str,
        args: &serde_json::Value,
        change: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = change(&tx)?;
        audit::append(&tx, now(), &self.actor, command, &args.to_string(), "ok")?;
        tx.commit()?;
        Ok(value)
    }

    /// Records a failed command, then returns its error.
    fn failed<T>(&mut self, command: &str, args: &serde_json::Value, error: StoreError) -> Result<T, StoreError> {
        let outcome = format!("error: {error}");
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        audit::append(&tx, now(), &self.actor, command, &args.to_string(), &outcome)?;
        tx.commit()?;
        Err(error)
    }

    /// Resolves a requirement to an installed, trusted pack and loads it.
    pub async fn resolve(&self, requirement: &str) -> Result<(Pack, String), StoreError> {
        let req: Requirement = requirement
            .parse()
            .map_err(|e: envpack_host::descriptor::DescriptorError| StoreError::Binding(e.to_string()))?;
        let trust = TrustStore::open(&self.state_dir).map_err(|e| StoreError::Binding(e.to_string()))?;
        let registry = Registry::open(&self.state_dir).map_err(|e| StoreError::Binding(e.to_string()))?;
        let keyring = Keyring {
            trust: &trust,
            extra: Vec::new(),
        };
        let (installed, _, bytes) = registry
            .resolve(&req, &keyring)
            .map_err(|e| StoreError::Binding(e.to_string()))?;
        let pack = self
            .runtime
            .load_pack(installed.descriptor.clone(), bytes)
            .await
            .map_err(|e| StoreError::Binding(e.to_string()))?;
        Ok((pack, installed.digest))
    }

    async fn bound_pack(&self, env: &str) -> Result<Pack, StoreError> {
        let binding = store::binding(&self.conn, env)?;
        Ok(self.resolve(&binding.requirement).await?.0)
    }

    async fn run_verb(&self, pack: &Pack, env: Environment, request: &Request) -> Result<Outcome, StoreError> {
        let report = self.runtime.call(pack, &Arc::new(env), request).await;
        report.result.map_err(StoreError::Pack)
    }

    /// Creates an environment bound to `requirement`, or rebinds an existing one.
    pub async fn bind(
        &mut self,
        env: &str,
        requirement: &str,
        capabilities: Option<Vec<Capability>>,
        settings: Option<std::collections::BTreeMap<String, String>>,
        create: bool,
    ) -> Result<Binding, StoreError> {
        validate_id("environment id", env).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let _lock = self.lock(env)?;
        let command = if create { "env create" } else { "env bind" };
        let args = json!({ "env": env, "deployer": requirement, "capabilities": capabilities, "settings": settings });
        let result = self.bind_inner(env, requirement, capabilities, settings, create).await;
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

    async fn bind_inner(
        &self,
        env: &str,
        requirement: &str,
        capabilities: Option<Vec<Capability>>,
        settings: Option<std::collections::BTreeMap<String, String>>,
        create: bool,
    ) -> Result<Binding, StoreError> {
        let previous = if create {
            if store::env_exists(&self.conn, env)? {
                return Err(StoreError::EnvExists(env.to_string()));
            }
            None
        } else {
            Some(store::binding(&self.conn, env)?)
        };
        let (pack, digest) = self.resolve(requirement).await?;
        let mut capabilities = capabilities
            .or_else(|| previous.as_ref().map(|b| b.capabilities.clone()))
            .unwrap_or_else(|| vec![Capability::Log]);
        capabilities.sort();
        capabilities.dedup();
        let missing: Vec<&str> = pack
            .info()
            .capabilities
            .iter()
            .filter(|c| !capabilities.contains(c))
            .map(|c| c.name())
            .collect();
        if !missing.is_empty() {
            return Err(StoreError::Binding(format!(
                "{} declares capabilities [{}] that environment {env:?} does not grant; grant them with --capability",
                pack.info().descriptor,
                missing.join(", ")
            )));
        }
        Ok(Binding {
            requirement: requirement.to_string(),
            descriptor: pack.info().descriptor.clone(),
            pack_digest: digest,
            settings: settings.or_else(|| previous.map(|b| b.settings)).unwrap_or_default(),
            capabilities,
        })
    }

    /// Removes an environment; refused while it has revisions not archived, unless `force`.
    pub fn remove_env(&mut self, env: &str, force: bool) -> Result<(), StoreError> {
        let _lock = self.lock(env)?;
        let args = json!({ "env": env, "force": force });
        store::require_env(&self.conn, env)?;
        let live = store::revisions(&self.conn, env, false)?;
        if !live.is_empty() && !force {
            let error = StoreError::Invalid(format!(
                "environment {env:?} still has {} revisions that are not archived; archive them or pass --force",
                live.len()
            ));
            return self.failed("env remove", &args, error);
        }
        self.commit("env remove", &args, |tx| store::remove_env(tx, env))
    }

    /// Creates a revision and stages it through the pack.
    pub async fn stage(&mut self, env: &str, new: NewRevision) -> Result<Revision, StoreError> {
        let _lock = self.lock(env)?;
        let args = json!({ "env": env, "deployment": new.deployment, "id": new.id, "digest": new.digest, "location": new.location });
        let result = self.stage_inner(env, new).await;
        match result {
            Ok((revision, detail)) => {
                let r = revision.clone();
                let actor = self.actor.clone();
                self.commit("revision stage", &args, |tx| {
                    store::ensure_deployment(tx, env, &r.deployment)?;
                    store::insert_revision(tx, env, &r, now())?;
                    store::set_lifecycle(
                        tx,
                        env,
                        &r.id,
                        Lifecycle::Staged,
                        &format!("staged: {detail}"),
                        &actor,
                        now(),
                    )
                })?;
                Ok(Revision {
                    lifecycle: Lifecycle::Staged,
                    ..revision
                })
            }
            Err(e) => self.failed("revision stage", &args, e),
        }
    }

    async fn stage_inner(&self, env: &str, new: NewRevision) -> Result<(Revision, String), StoreError> {
        store::require_env(&self.conn, env)?;
        validate_id("deployment id", &new.deployment).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let id = new.id.unwrap_or_else(|| ulid::Ulid::new().to_string());
        validate_id("revision id", &id).map_err(|e| StoreError::Invalid(e.to_string()))?;
        if store::find_revision(&self.conn, env, &id)?.is_some() {
            return Err(StoreError::DuplicateRevision(id));
        }
        let revision = Revision {
            id: id.clone(),
            deployment: new.deployment.clone(),
            sequence: store::next_sequence(&self.conn, env, &new.deployment)?,
            lifecycle: Lifecycle::Inactive,
            artifact: Artifact {
                digest: new.digest,
                location: new.location,
            },
            drain_seconds: new.drain_seconds,
            settings: new.settings,
        };
        let pack = self.bound_pack(env).await?;
        let environment = store::load_environment(&self.conn, env, std::slice::from_ref(&revision), None)?;
        let detail = match self.run_verb(&pack, environment, &Request::Stage(id)).await? {
            Outcome::Revision { detail, .. } => detail,
            _ => String::new(),
        };
        Ok((revision, detail))
    }

    /// Runs a revision verb: `before` is applied first (own transaction),
    /// the pack is called, then `after` on success or `on_failure` if set.
    async fn revision_verb(&mut self, env: &str, id: &str, plan: Plan) -> Result<Revision, StoreError> {
        let Plan {
            command,
            request,
            before,
            after,
            on_failure,
        } = plan;
        let _lock = self.lock(env)?;
        let args = json!({ "env": env, "revision": id });
        let prepared = self.prepare_revision_verb(env, id, before, after).await;
        let pack = match prepared {
            Ok(pack) => pack,
            Err(e) => return self.failed(command, &args, e),
        };
        if let Some(step) = before {
            let actor = self.actor.clone();
            self.commit(
                command,
                &json!({ "env": env, "revision": id, "step": lifecycle_step(step) }),
                |tx| store::set_lifecycle(tx, env, id, step, &format!("{command} started"), &actor, now()),
            )?;
        }
        let environment = store::load_environment(&self.conn, env, &[], None)?;
        let actor = self.actor.clone();
        match self.run_verb(&pack, environment, &request).await {
            Ok(_) => {
                self.commit(command, &args, |tx| {
                    store::set_lifecycle(tx, env, id, after, &format!("{command} succeeded"), &actor, now())
                })?;
                store::revision(&self.conn, env, id)
            }
            Err(error) => {
                if let Some(failed) = on_failure {
                    let reason = format!("{command} failed: {error}");
                    let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
                    store::set_lifecycle(&tx, env, id, failed, &reason, &actor, now())?;
                    audit::append(
                        &tx,
                        now(),
                        &actor,
                        command,
                        &args.to_string(),
                        &format!("error: {error}"),
                    )?;
                    tx.commit()?;
                    return Err(error);
                }
                self.failed(command, &args, error)
            }
        }
    }

    async fn prepare_revision_verb(
        &self,
        env: &str,
        id: &str,
        before: Option<Lifecycle>,
        after: Lifecycle,
    ) -> Result<Pack, StoreError> {
        let revision = store::revision(&self.conn, env, id)?;
        let first = before.unwrap_or(after);
        crate::lifecycle::check(id, revision.lifecycle, first)?;
        if matches!(first, Lifecycle::Draining | Lifecycle::Archived) {
            let holders = store::weight_holders(&self.conn, env, &revision)?;
            if !holders.is_empty() {
                return Err(StoreError::HasWeight {
                    revision: id.to_string(),
                    holders,
                });
            }
        }
        self.bound_pack(env).await
    }

    pub async fn warm(&mut self, env: &str, id: &str) -> Result<Revision, StoreError> {
        let plan = Plan {
            command: "revision warm",
            request: Request::Warm(id.into()),
            before: Some(Lifecycle::Warming),
            after: Lifecycle::Ready,
            on_failure: Some(Lifecycle::Failed),
        };
        self.revision_verb(env, id, plan).await
    }

    pub async fn drain(&mut self, env: &str, id: &str) -> Result<Revision, StoreError> {
        let plan = Plan {
            command: "revision drain",
            request: Request::Drain(id.into()),
            before: Some(Lifecycle::Draining),
            after: Lifecycle::Inactive,
            on_failure: None,
        };
        self.revision_verb(env, id, plan).await
    }

    pub async fn archive(&mut self, env: &str, id: &str) -> Result<Revision, StoreError> {
        let plan = Plan {
            command: "revision archive",
            request: Request::Archive(id.into()),
            before: None,
            after: Lifecycle::Archived,
            on_failure: None,
        };
        self.revision_verb(env, id, plan).await
    }

    pub async fn retry(&mut self, env: &str, id: &str) -> Result<Revision, StoreError> {
        let plan = Plan {
            command: "revision retry",
            request: Request::Stage(id.into()),
            before: None,
            after: Lifecycle::Staged,
            on_failure: None,
        };
        self.revision_verb(env, id, plan).await
    }

    /// Sets a deployment's split: validated, applied by the pack, then recorded as a new generation.
    pub async fn set_traffic(
        &mut self,
        env: &str,
        deployment: &str,
        entries: Vec<SplitEntry>,
        key: Option<String>,
    ) -> Result<i64, StoreError> {
        let _lock = self.lock(env)?;
        let args = json!({ "env": env, "deployment": deployment, "entries": entries, "idempotency_key": key });
        if let Some(key) = &key
            && let Some(previous) = store::generation_by_key(&self.conn, env, deployment, key)?
        {
            if previous.entries == entries {
                return Ok(previous.generation);
            }
            let error = StoreError::KeyReused {
                key: key.clone(),
                deployment: deployment.to_string(),
            };
            return self.failed("traffic set", &args, error);
        }
        match self.apply_split(env, deployment, &entries).await {
            Ok(()) => {
                let actor = self.actor.clone();
                self.commit("traffic set", &args, |tx| {
                    store::insert_generation(tx, env, deployment, &entries, key.as_deref(), &actor, now())
                })
            }
            Err(e) => self.failed("traffic set", &args, e),
        }
    }

    /// Goes back to the previous generation's entries, as a new generation.
    pub async fn rollback(&mut self, env: &str, deployment: &str) -> Result<i64, StoreError> {
        let _lock = self.lock(env)?;
        let args = json!({ "env": env, "deployment": deployment });
        let generations = store::generations(&self.conn, env, deployment, 2)?;
        let Some(previous) = generations.get(1) else {
            return self.failed(
                "traffic rollback",
                &args,
                StoreError::NoPrevious(deployment.to_string()),
            );
        };
        let entries = previous.entries.clone();
        match self.apply_split(env, deployment, &entries).await {
            Ok(()) => {
                let actor = self.actor.clone();
                self.commit("traffic rollback", &args, |tx| {
                    store::insert_generation(tx, env, deployment, &entries, None, &actor, now())
                })
            }
            Err(e) => self.failed("traffic rollback", &args, e),
        }
    }

    async fn apply_split(&self, env: &str, deployment: &str, entries: &[SplitEntry]) -> Result<(), StoreError> {
        store::require_env(&self.conn, env)?;
        if !store::deployments(&self.conn, env)?.iter().any(|d| d == deployment) {
            return Err(StoreError::UnknownDeployment {
                env: env.to_string(),
                deployment: deployment.to_string(),
            });
        }
        validate_weights(entries).map_err(|e| StoreError::Weights(e.to_string()))?;
        for entry in entries {
            let revision = store::revision(&self.conn, env, &entry.revision)?;
            if revision.deployment != deployment {
                return Err(StoreError::ForeignRevision {
                    revision: entry.revision.clone(),
                    deployment: deployment.to_string(),
                    owner: revision.deployment,
                });
            }
            if entry.weight_bps > 0 && revision.lifecycle != Lifecycle::Ready {
                return Err(StoreError::NotReady {
                    revision: entry.revision.clone(),
                    lifecycle: revision.lifecycle.to_string(),
                });
            }
        }
        let pack = self.bound_pack(env).await?;
        let environment = store::load_environment(&self.conn, env, &[], Some((deployment, entries)))?;
        self.run_verb(&pack, environment, &Request::ApplyTrafficSplit(deployment.to_string()))
            .await?;
        Ok(())
    }
}

/// How a revision verb moves the lifecycle around the pack call.
struct Plan {
    command: &'static str,
    request: Request,
    /// Applied (and committed) before the pack is called.
    before: Option<Lifecycle>,
    /// Applied after the pack succeeds.
    after: Lifecycle,
    /// Applied, with the pack's message, if it fails.
    on_failure: Option<Lifecycle>,
}

fn lifecycle_step(l: Lifecycle) -> &'static str {
    crate::lifecycle::name(l)
}
