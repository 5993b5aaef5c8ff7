//! The native baseline: the reference pack's logic in plain Rust, run on the
//! same host preconditions, environment and outcome check, with its state in
//! a map instead of the kv capability. Every WASM figure is reported with its
//! ratio to this.

use std::collections::BTreeMap;

use envpack_model::{
    Environment, Request, SplitEntry, preconditions, runtime_config,
    runtime_config::{Bundle, RuntimeConfig, RuntimeEntry},
    validate_weights,
};

/// The ledger, natively: `rev/<id>` and `split/<deployment>` keys, as the pack keeps them.
#[derive(Default)]
pub struct NativeLedger {
    kv: BTreeMap<String, Vec<u8>>,
    log: Vec<String>,
}

fn state(kv: &BTreeMap<String, Vec<u8>>, id: &str) -> Option<&'static str> {
    match kv.get(&format!("rev/{id}")).map(Vec::as_slice) {
        Some(b"staged") => Some("staged"),
        Some(b"warm") => Some("warm"),
        Some(b"drained") => Some("drained"),
        _ => None,
    }
}

impl NativeLedger {
    /// One verb through preconditions, the ledger logic and the outcome check.
    pub fn call(&mut self, env: &Environment, request: &Request) -> Result<(), String> {
        preconditions::check(env, request).map_err(|e| e.to_string())?;
        self.log.clear();
        match request {
            Request::Stage(id) => self.transition(env, "stage", id, &[None, Some("drained")], "staged"),
            Request::Warm(id) => self.transition(env, "warm", id, &[Some("staged"), Some("drained")], "warm"),
            Request::Drain(id) => self.transition(env, "drain", id, &[Some("staged"), Some("warm")], "drained"),
            Request::Archive(id) => {
                self.log.push(format!("archive {id}"));
                if state(&self.kv, id) == Some("warm") {
                    return Err(format!("cannot archive revision {id}: it is still warm"));
                }
                self.kv.remove(&format!("rev/{id}"));
                Ok(())
            }
            Request::Probe(id) | Request::Endpoint(id) => env
                .revision(id)
                .map(|_| ())
                .ok_or_else(|| "revision-not-found".to_string()),
            Request::ApplyTrafficSplit(deployment) => self.apply(env, deployment),
            Request::ReleaseDeployment(_) => Ok(()),
            Request::ReportRuntimeConfig => {
                let view = self.view(env);
                (view == runtime_config::project(env))
                    .then_some(())
                    .ok_or_else(|| "drift".to_string())
            }
        }
    }

    fn transition(
        &mut self,
        env: &Environment,
        verb: &str,
        id: &str,
        from: &[Option<&str>],
        to: &'static str,
    ) -> Result<(), String> {
        self.log.push(format!("{verb} {id}"));
        let revision = env.revision(id).ok_or("revision-not-found")?;
        let current = state(&self.kv, id);
        if current == Some(to) {
            return Ok(());
        }
        if !from.contains(&current) {
            return Err(format!("cannot {verb} revision {id}"));
        }
        self.kv.insert(format!("rev/{id}"), to.as_bytes().to_vec());
        self.log.push(format!("{to} at {}", revision.artifact.location));
        Ok(())
    }

    fn apply(&mut self, env: &Environment, deployment: &str) -> Result<(), String> {
        self.log.push(format!("apply-traffic-split {deployment}"));
        let split = preconditions::recorded_split(env, deployment).map_err(|e| e.to_string())?;
        validate_weights(&split.entries).map_err(|e| e.to_string())?;
        for entry in split.entries.iter().filter(|e| e.weight_bps > 0) {
            if state(&self.kv, &entry.revision) != Some("warm") {
                return Err(format!("revision {} is not warm", entry.revision));
            }
        }
        let encoded: Vec<String> = split
            .entries
            .iter()
            .map(|e| format!("{}={}", e.revision, e.weight_bps))
            .collect();
        self.kv
            .insert(format!("split/{deployment}"), encoded.join("\n").into_bytes());
        let echoed: Vec<SplitEntry> = split.entries.clone();
        (echoed == split.entries)
            .then_some(())
            .ok_or_else(|| "interference".to_string())
    }

    fn view(&self, env: &Environment) -> RuntimeConfig {
        let mut entries = Vec::new();
        for deployment in env.deployments() {
            let Some(bytes) = self.kv.get(&format!("split/{}", deployment.id)) else {
                continue;
            };
            for line in String::from_utf8_lossy(bytes).lines() {
                let (id, weight) = line.rsplit_once('=').unwrap_or((line, "0"));
                let Some(revision) = env.revision(id) else { continue };
                entries.push(RuntimeEntry {
                    deployment: deployment.id.clone(),
                    revision: id.to_string(),
                    bundle: Bundle {
                        digest: revision.artifact.digest.clone(),
                        location: revision.artifact.location.clone(),
                    },
                    refs: revision.settings.clone(),
                    weight_bps: weight.parse().unwrap_or(0),
                });
            }
        }
        RuntimeConfig {
            schema: runtime_config::SCHEMA.to_string(),
            env: env.id().to_string(),
            entries,
        }
        .canonical()
    }
}
