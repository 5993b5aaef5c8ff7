//! outsider.deployer.docs: one JSON document per deployment, holding what the
//! pack did to each of its revisions and the split it last applied.
wit_bindgen::generate!({ path: "wit", world: "pack" });

use envpack::deployer::environment::Environment;
use envpack::deployer::log::{log, Level};
use envpack::deployer::{kv, types::*};
use exports::envpack::deployer::deployer::Guest;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

struct Docs;

/// The document key of a deployment: `deployment/` + the id in lowercase hex
/// when that fits (so ids differing only by case stay apart), else
/// `deployment/#` + sha256 hex.
fn doc_key(dep: &str) -> String {
    let hex: String = dep.bytes().map(|b| format!("{:02x}", b)).collect();
    if hex.len() <= 400 {
        format!("deployment/{hex}")
    } else {
        let d: String = Sha256::digest(dep.as_bytes())
            .iter()
            .map(|b| format!("{:02x}", b))
            .collect();
        format!("deployment/#{d}")
    }
}

fn load(dep: &str) -> Option<Value> {
    kv::get(&doc_key(dep)).and_then(|b| serde_json::from_slice(&b).ok())
}

fn empty_doc(dep: &str) -> Value {
    json!({"deployment": dep, "revisions": {}, "applied": null})
}

fn save(dep: &str, doc: &Value) {
    let bytes = serde_json::to_vec(doc).expect("json");
    let key = doc_key(dep);
    if kv::get(&key).as_deref() != Some(&bytes[..]) {
        kv::set(&key, &bytes);
    }
}

fn known(env: &Environment, id: &str) -> Result<Revision, DeployError> {
    env.revision(id)
        .ok_or_else(|| DeployError::RevisionNotFound(id.to_string()))
}

fn phase_of(rev: &Revision) -> Option<String> {
    load(&rev.deployment).and_then(|d| d["revisions"][&rev.id]["phase"].as_str().map(str::to_string))
}

/// Set the revision's phase in its deployment's document. `create`: whether
/// a revision the document does not list yet gets an entry.
fn set_phase(rev: &Revision, phase: &str, create: bool) -> bool {
    let mut doc = load(&rev.deployment).unwrap_or_else(|| empty_doc(&rev.deployment));
    let revs = doc["revisions"].as_object_mut().expect("revisions map");
    if !create && !revs.contains_key(&rev.id) {
        return false;
    }
    revs.insert(
        rev.id.clone(),
        json!({"phase": phase, "digest": rev.artifact_digest, "location": rev.artifact_location}),
    );
    save(&rev.deployment, &doc);
    true
}

fn ok(revision: String, detail: impl Into<String>) -> Result<RevisionOutcome, DeployError> {
    Ok(RevisionOutcome {
        revision,
        detail: detail.into(),
    })
}

impl Guest for Docs {
    fn describe() -> PackInfo {
        PackInfo {
            descriptor: "outsider.deployer.docs@0.1.0".into(),
            contract_version: "1.1.0".into(),
            capabilities: vec![Capability::Log, Capability::Kv],
            description: "Outsider pack: one JSON document per deployment".into(),
        }
    }

    fn stage_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let rev = known(env, &revision)?;
        if let Some(p) = phase_of(&rev) {
            return ok(revision, format!("already {p}"));
        }
        set_phase(&rev, "staged", true);
        log(Level::Info, "staged");
        ok(revision, format!("staged from {}", rev.artifact_location))
    }

    fn warm_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let rev = known(env, &revision)?;
        set_phase(&rev, "running", true);
        log(Level::Info, "running");
        ok(revision, "running")
    }

    fn drain_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let rev = known(env, &revision)?;
        if set_phase(&rev, "drained", false) {
            ok(revision, format!("drained (at most {}s)", rev.drain_seconds))
        } else {
            ok(revision, "not running here; nothing to drain")
        }
    }

    fn archive_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let rev = known(env, &revision)?;
        if let Some(mut doc) = load(&rev.deployment) {
            let revs = doc["revisions"].as_object_mut().expect("revisions map");
            if revs.remove(&rev.id).is_some() {
                save(&rev.deployment, &doc);
            }
        }
        log(Level::Info, "archived");
        ok(revision, "released")
    }

    fn apply_traffic_split(env: &Environment, deployment: String) -> Result<SplitOutcome, DeployError> {
        let split = env
            .split(&deployment)
            .ok_or_else(|| DeployError::SplitNotFound(deployment.clone()))?;
        let mut sum: u64 = 0;
        let mut over = false;
        for e in &split.entries {
            sum += u64::from(e.weight_bps);
            over |= e.weight_bps > 10_000;
        }
        if over || sum != 10_000 {
            return Err(DeployError::InvalidSplit(sum));
        }
        let mut applied = Vec::new();
        for e in &split.entries {
            let rev = known(env, &e.revision)?;
            let settings: Vec<Value> = rev.settings.iter().map(|(k, v)| json!([k, v])).collect();
            applied.push(json!({
                "revision": e.revision, "weight_bps": e.weight_bps,
                "digest": rev.artifact_digest, "location": rev.artifact_location,
                "settings": settings,
            }));
        }
        let mut doc = load(&deployment).unwrap_or_else(|| empty_doc(&deployment));
        doc["applied"] = json!({"generation": split.generation, "entries": applied});
        save(&deployment, &doc);
        log(Level::Info, &format!("routing generation {}", split.generation));
        Ok(SplitOutcome {
            deployment,
            entries: split.entries,
        })
    }

    fn report_runtime_config(env: &Environment) -> Result<Option<RuntimeConfig>, DeployError> {
        let mut entries = Vec::new();
        for key in kv::list_keys("deployment/") {
            let doc: Value = kv::get(&key)
                .and_then(|b| serde_json::from_slice(&b).ok())
                .ok_or_else(|| DeployError::Provider(format!("document {key} is unreadable")))?;
            let dep = doc["deployment"].as_str().unwrap_or_default();
            let Some(applied) = doc["applied"].as_object() else {
                continue;
            };
            for e in applied["entries"].as_array().into_iter().flatten() {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                let refs = e["settings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|p| {
                        (
                            p[0].as_str().unwrap_or_default().into(),
                            p[1].as_str().unwrap_or_default().into(),
                        )
                    })
                    .collect();
                entries.push(RuntimeEntry {
                    deployment: dep.to_string(),
                    revision: s("revision"),
                    bundle_digest: s("digest"),
                    bundle_location: s("location"),
                    refs,
                    weight_bps: e["weight_bps"].as_u64().unwrap_or_default() as u32,
                });
            }
        }
        let _ = Map::<String, Value>::new();
        Ok(Some(RuntimeConfig { env: env.id(), entries }))
    }

    fn probe_revision(env: &Environment, revision: String) -> Result<Health, DeployError> {
        let rev = known(env, &revision)?;
        Ok(match phase_of(&rev).as_deref() {
            Some("running") => Health::Healthy,
            Some(p) => Health::Unhealthy(format!("{p}, not running")),
            None => Health::Unhealthy("this pack never started it (or archived it)".into()),
        })
    }
}

export!(Docs);
