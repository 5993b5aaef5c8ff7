//! Environment commands: create and bind (pin an environment to the
//! highest installed, trusted pack its requirement names: that digest and
//! that signer), upgrade (move the pin, on purpose and audited), and
//! remove. An environment with deploy keys needs one of them to be rebound,
//! upgraded or removed, and its keys outlive it: re-creating it takes one.
//!
//! Settings: create and bind check every setting against the `[settings]`
//! the pack's signed manifest declares before anything is stored (an
//! unknown key, a value of the wrong type or a required one missing is
//! refused); bind keeps the environment's settings unless given others,
//! told to unset some, or to reset them all. A pack that declares none
//! gets them unchecked, with a warning.

use std::collections::BTreeMap;

use envpack_model::{Capability, Declared, closest, validate_id};
use serde_json::json;

use super::retire::{RetireCommand, Retirement, Teardown};
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

/// How `env bind` edits the settings it keeps: `--unset KEY` and
/// `--reset-settings` (start from none).
#[derive(Clone, Copy)]
struct SettingsEdit<'a> {
    unset: &'a [String],
    reset: bool,
}

/// The settings a binding gets: the previous ones (unless `edit.reset`),
/// less `edit.unset`, less those the new pack does not declare (when it
/// declares any), with `given` over them; checked against what the pack
/// declares. Returns them with the warnings to show.
fn merge_settings(
    pack: &str,
    declared: Option<&Declared>,
    previous: Option<&BTreeMap<String, String>>,
    given: BTreeMap<String, String>,
    edit: SettingsEdit<'_>,
) -> Result<(BTreeMap<String, String>, Vec<String>), StoreError> {
    let mut warnings = Vec::new();
    let mut settings = match previous {
        Some(previous) if !edit.reset => previous.clone(),
        _ => BTreeMap::new(),
    };
    for key in edit.unset {
        if given.contains_key(key) {
            return Err(StoreError::Invalid(format!(
                "--unset {key} and --setting {key}=... contradict each other; give one of them"
            )));
        }
        if settings.remove(key).is_none() {
            let hint = closest(key, settings.keys().map(String::as_str))
                .map(|k| format!(" (did you mean {k:?}?)"))
                .unwrap_or_default();
            return Err(StoreError::Invalid(format!(
                "--unset {key:?}: the environment has no setting {key:?}{hint}; `host env show` lists them"
            )));
        }
    }
    if let Some(declared) = declared {
        let dropped: Vec<String> = settings
            .keys()
            .filter(|key| !given.contains_key(*key) && declared.lookup(key).is_none())
            .cloned()
            .collect();
        if !dropped.is_empty() {
            for key in &dropped {
                settings.remove(key);
            }
            warnings.push(format!(
                "dropped setting{} {} kept from the previous binding: {pack} does not declare {}",
                if dropped.len() == 1 { "" } else { "s" },
                dropped.join(", "),
                if dropped.len() == 1 { "it" } else { "them" }
            ));
        }
    }
    settings.extend(given);
    match declared {
        Some(declared) => declared
            .check(pack, &settings)
            .map_err(|e| StoreError::Invalid(e.to_string()))?,
        None if !settings.is_empty() => {
            warnings.push(format!("{pack} declares no settings; they are passed unchecked"));
        }
        None => {}
    }
    Ok((settings, warnings))
}

impl Operator<'_> {
    /// Creates an environment bound to `requirement`, or rebinds an existing
    /// one; `request.settings` go over the settings a rebound environment
    /// keeps (see [`Operator::bind_with_settings`]).
    pub async fn bind(&mut self, env: &str, request: BindRequest, create: bool) -> Result<Binding, StoreError> {
        self.bind_with_settings(env, request, create, &[], false, None)
            .await
            .map(|(binding, _)| binding.binding)
    }

    /// Creates an environment bound to `requirement`, or rebinds an
    /// existing one. Rebinding keeps the environment's settings (those the
    /// new pack declares, when it declares any), less `unset`, or none with
    /// `reset_settings`, and `request.settings` over them. Every setting is
    /// checked against the pack's declared `[settings]` before anything is
    /// stored. Returns the binding and the warnings to show (settings
    /// dropped, or passed unchecked to a pack that declares none).
    ///
    /// Moving an environment to another pack (another descriptor name)
    /// while revisions the old pack made are not archived is refused: the
    /// new pack could neither drain nor archive them. `retire` lets it go
    /// on: every deployment is first retired through the old pack, or its
    /// revisions abandoned (see [`Retirement`]).
    pub async fn bind_with_settings(
        &mut self,
        env: &str,
        request: BindRequest,
        create: bool,
        unset: &[String],
        reset_settings: bool,
        retire: Option<Retirement>,
    ) -> Result<(Rebound, Vec<String>), StoreError> {
        let command = if create { "env create" } else { "env bind" };
        let mut args = json!({ "env": env, "deployer": request.requirement, "capabilities": request.capabilities,
                           "grants": request.grants, "settings": request.settings,
                           "deploy_keys": request.deploy_keys.as_ref().map(|keys| keys.iter().map(|k| &k.name).collect::<Vec<_>>()) });
        if !unset.is_empty() {
            args["unset"] = json!(unset);
        }
        if reset_settings {
            args["reset_settings"] = json!(true);
        }
        match &retire {
            Some(Retirement::ThroughPack) => args["teardown"] = json!(true),
            Some(Retirement::Abandon(reason)) => args["abandon"] = json!(reason),
            None => {}
        }
        let edit = SettingsEdit {
            unset,
            reset: reset_settings,
        };
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
        let result = self.bind_inner(env, request, create, edit).await;
        let mut retired = Teardown::default();
        let result = match result {
            Ok((binding, warnings)) if !create => self
                .leave_old_pack(env, &binding, retire.as_ref(), &args, &mut retired)
                .await
                .map(|()| (binding, warnings)),
            other => other,
        };
        match result {
            Ok((binding, warnings)) => {
                let b = binding.clone();
                self.pack_in_use = Some(pack_text(&b));
                self.commit(command, &args, |tx| {
                    if create {
                        store::create_env(tx, env, now())?;
                        store::forget_retired(tx, env)?;
                    }
                    store::set_binding(tx, env, &b, now())
                })?;
                Ok((Rebound { binding, retired }, warnings))
            }
            Err(e) => self.failed(command, &args, e),
        }
    }

    /// Before `env` moves from its pack to `to`'s: refused while revisions
    /// of the old pack are not archived, unless `retire` says how they go.
    async fn leave_old_pack(
        &mut self,
        env: &str,
        to: &Binding,
        retire: Option<&Retirement>,
        args: &serde_json::Value,
        done: &mut Teardown,
    ) -> Result<(), StoreError> {
        let before = store::binding(&self.conn, env)?;
        let name = envpack_model::descriptor_name;
        if name(&before.descriptor) == name(&to.descriptor) {
            if retire.is_some() {
                // Said and not done would mislead whoever reads the audit log.
                return Err(StoreError::Invalid(format!(
                    "--teardown and --abandon apply when an environment moves to another pack; {env} stays on {} \
                     (retire a deployment with `host deployment retire {env} DEPLOYMENT`)",
                    name(&to.descriptor)
                )));
            }
            return Ok(());
        }
        let live = store::revisions(&self.conn, env, false)?;
        if live.is_empty() {
            return Ok(());
        }
        let Some(how) = retire else {
            return Err(StoreError::Invalid(format!(
                "environment {env:?} has {} revisions made by {} that are not archived ({}); {} cannot drain or archive them. \
                 Add --teardown to retire every deployment through {} first, or --abandon --reason TEXT to record them archived without it \
                 (what the provider runs for them is then left in place)",
                live.len(),
                before.descriptor,
                live.iter()
                    .map(|r| r.id.as_str())
                    .take(5)
                    .collect::<Vec<_>>()
                    .join(", "),
                to.descriptor,
                before.descriptor,
            )));
        };
        self.no_rollout(env)?;
        let bound = match how {
            Retirement::ThroughPack => Some(self.bound(env).await?),
            Retirement::Abandon(reason) if reason.trim().is_empty() => {
                return Err(StoreError::Invalid(
                    "--abandon needs a --reason: it is recorded in the revisions' events".into(),
                ));
            }
            Retirement::Abandon(_) => None,
        };
        // Quoted as a shell reads it back (`^1`, `*` patterns).
        let requirement = shlex::try_quote(&to.requirement).map_or_else(|_| to.requirement.clone(), |q| q.into_owned());
        let retire = RetireCommand {
            command: "env bind",
            what: "the move to another pack",
            again: format!("host env bind {env} --deployer {requirement} --teardown"),
            instead: format!("host env bind {env} --deployer {requirement} --abandon --reason TEXT"),
            authorized_by: args.get("authorized_by").cloned(),
        };
        for deployment in store::deployments(&self.conn, env)? {
            self.retire_locked(&retire, env, bound.as_ref(), &deployment, how, done)
                .await?;
        }
        Ok(())
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
        // The pin moves only if the environment's settings fit what the
        // new pack declares (a version may add a required one or drop one).
        if let Some(declared) = pack.manifest().and_then(|m| m.settings.as_ref())
            && let Err(e) = declared.check(&pack.info().descriptor, &before.settings)
        {
            let error = StoreError::Invalid(format!(
                "{e}; the environment's settings stay as they are: change them and move the pin in one step with \
                 `host env bind {env} --deployer {wanted} --setting KEY=VALUE` (or --unset KEY)"
            ));
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

    async fn bind_inner(
        &self,
        env: &str,
        request: BindRequest,
        create: bool,
        edit: SettingsEdit<'_>,
    ) -> Result<(Binding, Vec<String>), StoreError> {
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
        let dropped = match (&grants, &previous) {
            (Some(given), Some(before)) => dropped_grants(&before.grants, given),
            _ => Vec::new(),
        };
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
        let descriptor = pack.info().descriptor.clone();
        let declared = pack.manifest().and_then(|m| m.settings.as_ref());
        let (settings, mut warnings) = merge_settings(
            &descriptor,
            declared,
            previous.as_ref().map(|b| &b.settings),
            settings.unwrap_or_default(),
            edit,
        )?;
        if !dropped.is_empty() {
            warnings.push(format!(
                "the --allow-* grants given replace the environment's grants as a whole; no longer granted: {} \
                 (repeat them to keep them)",
                dropped.join(", ")
            ));
        }
        let binding = Binding {
            requirement: requirement.to_string(),
            descriptor,
            pack_digest: digest,
            signer,
            settings,
            capabilities,
            grants,
            deadlines,
            disk_budget_mib: disk_budget_mib
                .or_else(|| previous.as_ref().map(|b| b.disk_budget_mib))
                .unwrap_or(store::DEFAULT_DISK_BUDGET_MIB),
            deploy_keys: deploy_keys
                .or_else(|| previous.map(|b| b.deploy_keys))
                .unwrap_or_default(),
            machine: String::new(),
        };
        // Processes live on the machine that starts them.
        let binding = Binding {
            machine: match binding.capabilities.contains(&envpack_model::Capability::Process) {
                true => crate::sql::machine_name(),
                false => String::new(),
            },
            ..binding
        };
        Ok((binding, warnings))
    }

    /// Removes an environment with everything it holds (revisions, events,
    /// splits, its packs' kv state); refused while it has revisions not
    /// archived, unless `force`. Runs no pack.
    pub fn remove_env(&mut self, env: &str, force: bool) -> Result<(), StoreError> {
        // --force may forget an environment whose machine is gone for good
        // (its processes there, if any, are not stopped).
        let _lock = if force {
            self.lock_anywhere(env)?
        } else {
            self.lock(env)?
        };
        let mut args = json!({ "env": env, "force": force });
        // (Without --force, the revisions a rollout moves refuse it anyway.)
        if let Err(e) = self
            .may_remove(env, "env remove", &mut args)
            .and_then(|()| if force { self.no_live_driver(env) } else { Ok(()) })
        {
            return self.failed("env remove", &args, e);
        }
        self.remove_locked(env, force, &args)
    }

    /// No process is driving one of the environment's rollouts: removing
    /// it under a driver would leave that driver acting on nothing.
    fn no_live_driver(&self, env: &str) -> Result<(), StoreError> {
        for deployment in store::deployments(&self.conn, env)? {
            if let Some(r) = super::rollout::record::unfinished(&self.conn, env, &deployment)?
                && let Some(holder) = super::agent::driver(&self.state_dir, &self.conn, &r.id)
            {
                return Err(StoreError::Invalid(format!(
                    "rollout {} of deployment {deployment} is being driven by {holder}: \
                     `host rollout pause {env} {deployment}` (or stop that process) first",
                    r.id
                )));
            }
        }
        Ok(())
    }

    /// The environment exists and the command carries one of its deploy
    /// keys, if it trusts any.
    pub(crate) fn may_remove(
        &mut self,
        env: &str,
        command: &str,
        args: &mut serde_json::Value,
    ) -> Result<(), StoreError> {
        store::require_env(&self.conn, env)?;
        // Removing an environment that trusts deploy keys takes one of them.
        let keys = store::binding(&self.conn, env)
            .map(|b| b.deploy_keys)
            .unwrap_or_default();
        self.authorize_with(&keys, env, command, args)
    }

    /// Removes the environment, its lock held: refused while revisions
    /// are not archived, unless `force`.
    pub(crate) fn remove_locked(&mut self, env: &str, force: bool, args: &serde_json::Value) -> Result<(), StoreError> {
        let keys = store::binding(&self.conn, env)
            .map(|b| b.deploy_keys)
            .unwrap_or_default();
        let live = store::revisions(&self.conn, env, false)?;
        if !live.is_empty() && !force {
            let error = StoreError::Invalid(format!(
                "environment {env:?} still has {} revisions that are not archived: tear it down through its pack with \
                 `host env remove {env} --teardown` (drained, archived, released), or drop its records with --force \
                 (the pack is not called: what the provider runs for it is left)",
                live.len()
            ));
            return self.failed("env remove", args, error);
        }
        // Its processes are stopped and its work directory goes with it.
        let workspace = self.workspace(env)?;
        envpack_host::stop_processes(&workspace, std::time::Duration::from_secs(2)).map_err(StoreError::Invalid)?;
        let actor = self.actor.clone();
        self.commit("env remove", args, |tx| {
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

/// An environment's new binding, and what leaving its old pack retired.
#[derive(Debug)]
pub struct Rebound {
    pub binding: Binding,
    pub retired: Teardown,
}

/// What `before` grants that `after` does not, as `kind value` lines.
fn dropped_grants(before: &envpack_model::Grants, after: &envpack_model::Grants) -> Vec<String> {
    let (Ok(serde_json::Value::Object(before)), Ok(after)) =
        (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return Vec::new();
    };
    let mut dropped = Vec::new();
    for (kind, values) in &before {
        for value in values.as_array().into_iter().flatten() {
            let kept = after[kind].as_array().is_some_and(|a| a.contains(value));
            if !kept {
                let shown = value.as_str().map_or_else(|| value.to_string(), str::to_string);
                dropped.push(format!("{kind} {shown}"));
            }
        }
    }
    dropped
}
