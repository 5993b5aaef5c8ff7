//! outsider.deployer.brk-release-unknown (BROKEN on purpose, see README):
//! `keyed` built against contract 1.2 with `teardown`, whose
//! `release-deployment` fails for a deployment it holds no split for.
wit_bindgen::generate!({ path: "wit", world: "pack-with-teardown" });

use envpack::deployer::environment::Environment;
use envpack::deployer::log::{log, Level};
use envpack::deployer::{kv, types::*};
use exports::envpack::deployer::deployer::Guest;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

struct Keyed;

/// Escape an id into a kv key segment: bytes outside `A-Za-z0-9-_.` become
/// `%xx`; if that is longer than 200 bytes, `~` + sha256(id) in hex instead
/// (`~` is itself always escaped, so the two forms never collide).
fn seg(id: &str) -> String {
    let mut out = String::new();
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{:02x}", b));
        }
    }
    if out.len() > 200 {
        let d = Sha256::digest(id.as_bytes());
        out = String::from("~");
        for b in d {
            out.push_str(&format!("{:02x}", b));
        }
    }
    out
}

fn rev_key(id: &str) -> String {
    format!("rev/{}", seg(id))
}
fn split_key(dep: &str) -> String {
    format!("split/{}", seg(dep))
}

fn read(key: &str) -> Option<Value> {
    kv::get(key).and_then(|b| serde_json::from_slice(&b).ok())
}
fn write(key: &str, v: &Value) {
    let bytes = serde_json::to_vec(v).expect("json");
    if kv::get(key).as_deref() != Some(&bytes[..]) {
        kv::set(key, &bytes);
    }
}

fn known(env: &Environment, id: &str) -> Result<Revision, DeployError> {
    env.revision(id)
        .ok_or_else(|| DeployError::RevisionNotFound(id.to_string()))
}

fn phase(id: &str) -> Option<String> {
    read(&rev_key(id)).and_then(|v| v["phase"].as_str().map(str::to_string))
}
fn set_phase(rev: &Revision, p: &str) {
    write(
        &rev_key(&rev.id),
        &json!({"id": rev.id, "deployment": rev.deployment, "digest": rev.artifact_digest, "phase": p}),
    );
}

fn outcome(id: String, detail: String) -> Result<RevisionOutcome, DeployError> {
    Ok(RevisionOutcome { revision: id, detail })
}

impl Guest for Keyed {
    fn describe() -> PackInfo {
        PackInfo {
            descriptor: "outsider.deployer.brk-release-unknown@0.1.0".into(),
            contract_version: "1.2.0".into(),
            capabilities: vec![Capability::Log, Capability::Kv],
            description: "Outsider pack: one kv record per revision, one per deployment's applied split".into(),
        }
    }

    fn stage_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let rev = known(env, &revision)?;
        match phase(&revision) {
            Some(p) => outcome(revision, format!("already {p}")),
            None => {
                set_phase(&rev, "staged");
                log(Level::Info, &format!("staged {}", rev.artifact_location));
                outcome(revision, "staged".into())
            }
        }
    }

    fn warm_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let rev = known(env, &revision)?;
        set_phase(&rev, "warm");
        log(Level::Info, "warm");
        outcome(revision, "warm".into())
    }

    fn drain_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let rev = known(env, &revision)?;
        if phase(&revision).is_some() {
            set_phase(&rev, "drained");
            outcome(revision, format!("drained within {}s", rev.drain_seconds))
        } else {
            outcome(revision, "nothing to drain".into())
        }
    }

    fn archive_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        known(env, &revision)?;
        kv::delete(&rev_key(&revision));
        outcome(revision, "released".into())
    }

    fn apply_traffic_split(env: &Environment, deployment: String) -> Result<SplitOutcome, DeployError> {
        let split = env
            .split(&deployment)
            .ok_or_else(|| DeployError::SplitNotFound(deployment.clone()))?;
        let sum: u64 = split.entries.iter().map(|e| e.weight_bps as u64).sum();
        if sum != 10_000 || split.entries.iter().any(|e| e.weight_bps > 10_000) {
            return Err(DeployError::InvalidSplit(sum));
        }
        let mut blocks = Vec::new();
        for e in &split.entries {
            let rev = known(env, &e.revision)?;
            blocks.push(json!({
                "revision": e.revision,
                "weight": e.weight_bps,
                "digest": rev.artifact_digest,
                "location": rev.artifact_location,
                "settings": rev.settings,
            }));
        }
        write(
            &split_key(&deployment),
            &json!({"deployment": deployment, "generation": split.generation, "entries": blocks}),
        );
        log(Level::Info, &format!("applied generation {}", split.generation));
        Ok(SplitOutcome {
            deployment,
            entries: split.entries,
        })
    }

    fn report_runtime_config(env: &Environment) -> Result<Option<RuntimeConfig>, DeployError> {
        let mut entries = Vec::new();
        for key in kv::list_keys("split/") {
            let Some(doc) = read(&key) else {
                return Err(DeployError::Provider(format!("kv record {key} is not JSON")));
            };
            let dep = doc["deployment"].as_str().unwrap_or_default().to_string();
            for b in doc["entries"].as_array().cloned().unwrap_or_default() {
                let refs = b["settings"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .iter()
                    .map(|kv| {
                        (
                            kv[0].as_str().unwrap_or_default().to_string(),
                            kv[1].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect();
                entries.push(RuntimeEntry {
                    deployment: dep.clone(),
                    revision: b["revision"].as_str().unwrap_or_default().to_string(),
                    bundle_digest: b["digest"].as_str().unwrap_or_default().to_string(),
                    bundle_location: b["location"].as_str().unwrap_or_default().to_string(),
                    refs,
                    weight_bps: b["weight"].as_u64().unwrap_or_default() as u32,
                });
            }
        }
        Ok(Some(RuntimeConfig { env: env.id(), entries }))
    }

    fn probe_revision(env: &Environment, revision: String) -> Result<Health, DeployError> {
        known(env, &revision)?;
        Ok(match phase(&revision).as_deref() {
            Some("warm") => Health::Healthy,
            Some("staged") => Health::Unhealthy("staged but not started".into()),
            Some("drained") => Health::Unhealthy("drained".into()),
            _ => Health::Unhealthy("not running: never warmed by this pack (or archived)".into()),
        })
    }
}

impl exports::envpack::deployer::teardown::Guest for Keyed {
    fn release_deployment(_env: &Environment, deployment: String) -> Result<String, DeployError> {
        // The defect: a deployment this pack never applied a split for is
        // "not found", where the contract says it is released.
        if read(&split_key(&deployment)).is_none() {
            return Err(DeployError::Provider(format!("no deployment {deployment} to release")));
        }
        kv::delete(&split_key(&deployment));
        Ok(format!("released {deployment}"))
    }
}

export!(Keyed);
