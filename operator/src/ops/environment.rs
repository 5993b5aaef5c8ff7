//! Environment commands: create and bind (pin an environment to the
//! highest installed, trusted pack its requirement names: that digest and
//! that signer), upgrade (move the pin, on purpose and audited), and
//! remove. An environment with deploy keys needs one of them to be rebound,
//! upgraded or removed, and its keys outlive it: re-creating it takes one.

use envpack_model::{Capability, validate_id};
use serde_json::json;

use super::{BindRequest, Operator, Resolved, now};
use crate::error::StoreError;
use crate::store::{self, Binding};

/// How an audit row names the pack a binding pins.
pub(crate) fn pack_text(binding: &Binding) -> String {
    let signer = if binding.signer.is_empty() {
        "any trusted key".to_string()
    } else {
        format!("key {}", binding.signer)
    };
    format!(
        "{} sha256:{} signed by {signer}",
        binding.descriptor, binding.pack_digest
    )
}

impl Operator<'_> {
    /// Creates an environment bound to `requirement`, or rebinds an existing one.
    pub async fn bind(&mut self, env: &str, request: BindRequest, create: bool) -> Result<Binding, StoreError> {
        let command = if create { "env create" } else { "env bind" };
        let mut args = json!({ "env": env, "deployer": request.requirement, "capabilities": request.capabilities,
                           "grants": request.grants, "settings": request.settings,
                           "deploy_keys": request.deploy_keys.as_ref().map(|keys| keys.iter().map(|k| &k.name).collect::<Vec<_>>()) });
        if let Err(e) = validate_id("environment id", env) {
            // Refused before the environment's lock: the id names no lock file.
            return self.failed(command, &args, StoreError::Invalid(e.to_string()));
        }
        let _lock = self.lock(env)?;
        // Rebinding an environment that trusts deploy keys takes one of
        // them; so does re-creating a removed one that did.
        let authorized = if create {
            let retired = store::retired_keys(&self.conn, env)?;
            self.authorize_with(&retired, env, command, &mut args)
        } else if store::env_exists(&self.conn, env)? {
            self.authorize(env, command, &mut args)
        } else {
            Ok(())
        };
        if let Err(e) = authorized {
            return self.failed(command, &args, e);
        }
        let result = self.bind_inner(env, request, create).await;
        match result {
            Ok(binding) => {
                let b = binding.clone();
                self.pack_in_use = Some(pack_text(&b));
                self.commit(command, &args, |tx| {
                    if create {
                        store::create_env(tx, env, now())?;
                        store::forget_retired(tx, env)?;
                    }
                    store::set_binding(tx, env, &b, now())
                })?;
                Ok(binding)
            }
            Err(e) => self.failed(command, &args, e),
        }
    }

    /// Moves an environment's pin to the highest installed, trusted pack
    /// its requirement (or `requirement`, if given) names: the one way a
    /// newer version reaches an environment. Returns the binding before and
    /// after; nothing changes (and nothing is recorded but the audit row)
    /// when the pin stays.
    pub async fn upgrade(&mut self, env: &str, requirement: Option<String>) -> Result<(Binding, Binding), StoreError> {
        let _lock = self.lock(env)?;
        let command = "env upgrade";
        let mut args = json!({ "env": env, "deployer": requirement });
        let before = match store::binding(&self.conn, env) {
            Ok(binding) => binding,
            Err(e) => return self.failed(command, &args, e),
        };
        if let Err(e) = self.authorize(env, command, &mut args) {
            return self.failed(command, &args, e);
        }
        let wanted = requirement.unwrap_or_else(|| before.requirement.clone());
        let resolved = match self.resolve(&wanted).await {
            Ok(resolved) => resolved,
            Err(e) => return self.failed(command, &args, e),
        };
        let Resolved { pack, digest, signer } = resolved;
        let missing: Vec<String> = pack
            .info()
            .capabilities
            .iter()
            .filter(|c| !before.capabilities.contains(c))
            .map(|c| c.name().to_string())
            .collect();
        if !missing.is_empty() {
            let error = StoreError::Ungranted {
                descriptor: pack.info().descriptor.clone(),
                env: env.to_string(),
                missing,
            };
            return self.failed(command, &args, error);
        }
        let after = Binding {
            requirement: wanted,
            descriptor: pack.info().descriptor.clone(),
            pack_digest: digest,
            signer,
            ..before.clone()
        };
        self.pack_in_use = Some(format!("{} -> {}", pack_text(&before), pack_text(&after)));
        let b = after.clone();
        self.commit(command, &args, |tx| store::set_binding(tx, env, &b, now()))?;
        Ok((before, after))
    }

    async fn bind_inner(&self, env: &str, request: BindRequest, create: bool) -> Result<Binding, StoreError> {
        let BindRequest {
            requirement,
            capabilities,
            grants,
            deadlines,
            settings,
            deploy_keys,
            disk_budget_mib,
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
        let Resolved { pack, digest, signer } = self.resolve(requirement).await?;
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
            signer,
            settings: settings
                .or_else(|| previous.as_ref().map(|b| b.settings.clone()))
                .unwrap_or_default(),
            capabilities,
            grants,
            deadlines,
            disk_budget_mib: disk_budget_mib
                .or_else(|| previous.as_ref().map(|b| b.disk_budget_mib))
                .unwrap_or(store::DEFAULT_DISK_BUDGET_MIB),
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
        let mut args = json!({ "env": env, "force": force });
        if let Err(e) = store::require_env(&self.conn, env) {
            return self.failed("env remove", &args, e);
        }
        // Removing an environment that trusts deploy keys takes one of them.
        let keys = store::binding(&self.conn, env)
            .map(|b| b.deploy_keys)
            .unwrap_or_default();
        if let Err(e) = self.authorize_with(&keys, env, "env remove", &mut args) {
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
        let actor = self.actor.clone();
        self.commit("env remove", &args, |tx| {
            store::remove_env(tx, env)?;
            if keys.is_empty() {
                Ok(())
            } else {
                // Its keys outlive it: re-creating it takes one of them.
                store::retire_env(tx, env, &keys, &actor, now())
            }
        })?;
        workspace.remove().map_err(|e| StoreError::Io {
            path: workspace.work_dir.display().to_string(),
            source: e,
        })
    }
}
