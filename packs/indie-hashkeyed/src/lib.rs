//! hashkeyed pack: kv keys are sha256 hex of the ids, values are JSON.
//!
//! Written outside this project from `wit/deployer.wit` and the README
//! alone, as a third-party author would: one of the independent correct
//! packs the conformance corpus must pass (see conformance/README.md).
//! Kept as its author wrote it, only formatted to this repository's style.
//!   r:<sha256(revision id)>    {id, deployment, digest, location, drain_seconds, settings, staged, warm, drained}
//!   d:<sha256(deployment id)>  {deployment, generation, entries: [{revision, weight_bps, digest, location, refs}]}
wit_bindgen::generate!({ path: "../../wit/history/1.1.0", world: "pack" });

use envpack::deployer::environment::Environment;
use envpack::deployer::kv;
use envpack::deployer::log::{Level, log};
use envpack::deployer::types::{
    Capability, DeployError, Health, Lifecycle, PackInfo, Revision, RevisionOutcome, RuntimeConfig, RuntimeEntry,
    SplitOutcome,
};
use exports::envpack::deployer::deployer::Guest;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

struct HashKeyed;

#[derive(Serialize, Deserialize, PartialEq, Default)]
struct RevRec {
    id: String,
    deployment: String,
    digest: String,
    location: String,
    drain_seconds: u32,
    settings: Vec<(String, String)>,
    staged: bool,
    warm: bool,
    drained: bool,
}

#[derive(Serialize, Deserialize, PartialEq, Clone)]
struct EntryRec {
    revision: String,
    weight_bps: u32,
    digest: String,
    location: String,
    refs: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize, PartialEq)]
struct DepRec {
    deployment: String,
    generation: u64,
    entries: Vec<EntryRec>,
}

fn hex(id: &str) -> String {
    let d = Sha256::digest(id.as_bytes());
    let mut s = String::with_capacity(64);
    for b in d {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
fn rkey(id: &str) -> String {
    format!("r:{}", hex(id))
}
fn dkey(dep: &str) -> String {
    format!("d:{}", hex(dep))
}

fn load<T: for<'de> Deserialize<'de>>(key: &str) -> Option<T> {
    kv::get(key).and_then(|v| serde_json::from_slice(&v).ok())
}
fn store<T: Serialize>(key: &str, v: &T) {
    let bytes = serde_json::to_vec(v).unwrap();
    if kv::get(key).as_deref() != Some(&bytes[..]) {
        kv::set(key, &bytes);
    }
}

fn load_rev(id: &str) -> Option<RevRec> {
    load::<RevRec>(&rkey(id)).filter(|r| r.id == id)
}
fn load_dep(dep: &str) -> Option<DepRec> {
    load::<DepRec>(&dkey(dep)).filter(|d| d.deployment == dep)
}

fn lookup(env: &Environment, verb: &str, id: &str) -> Result<Revision, DeployError> {
    env.revision(id).ok_or_else(|| {
        log(Level::Warn, &format!("{verb}: revision {id:?} not found"));
        DeployError::RevisionNotFound(id.to_string())
    })
}

fn update_rev(r: &Revision, f: impl FnOnce(&mut RevRec)) {
    let mut rec = load_rev(&r.id).unwrap_or_default();
    rec.id = r.id.clone();
    rec.deployment = r.deployment.clone();
    rec.digest = r.artifact_digest.clone();
    rec.location = r.artifact_location.clone();
    rec.drain_seconds = r.drain_seconds;
    rec.settings = r.settings.clone();
    f(&mut rec);
    store(&rkey(&r.id), &rec);
}

fn ok(id: String, detail: &str) -> Result<RevisionOutcome, DeployError> {
    Ok(RevisionOutcome {
        revision: id,
        detail: detail.to_string(),
    })
}

impl Guest for HashKeyed {
    fn describe() -> PackInfo {
        PackInfo {
            descriptor: "indie.deployer.hashkeyed@0.1.0".to_string(),
            contract_version: "1.1.0".to_string(),
            capabilities: vec![Capability::Log, Capability::Kv],
            description: "Independent pack keeping JSON state in kv under sha256-keyed ids".to_string(),
        }
    }

    fn stage_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let r = lookup(env, "stage", &revision)?;
        log(Level::Info, &format!("stage {revision:?} -> {}", rkey(&revision)));
        update_rev(&r, |rec| rec.staged = true);
        ok(revision, "staged")
    }

    fn warm_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let r = lookup(env, "warm", &revision)?;
        log(Level::Info, &format!("warm {revision:?}"));
        update_rev(&r, |rec| {
            rec.warm = true;
            rec.drained = false;
        });
        ok(revision, "warm")
    }

    fn drain_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let r = lookup(env, "drain", &revision)?;
        log(Level::Info, &format!("drain {revision:?}"));
        update_rev(&r, |rec| {
            rec.warm = false;
            rec.drained = true;
        });
        ok(revision, "drained")
    }

    fn archive_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let r = lookup(env, "archive", &revision)?;
        log(Level::Info, &format!("archive {revision:?}"));
        let key = rkey(&revision);
        if kv::get(&key).is_some() {
            kv::delete(&key);
        }
        if let Some(mut d) = load_dep(&r.deployment) {
            let before = d.entries.len();
            d.entries.retain(|e| e.revision != revision);
            if d.entries.len() != before {
                // Keep the applied generation even if no entry is left.
                store(&dkey(&r.deployment), &d);
            }
        }
        ok(revision, "archived")
    }

    fn apply_traffic_split(env: &Environment, deployment: String) -> Result<SplitOutcome, DeployError> {
        let Some(split) = env.split(&deployment) else {
            log(Level::Warn, &format!("apply: {deployment:?} has no split"));
            return Err(DeployError::SplitNotFound(deployment));
        };
        let sum: u64 = split.entries.iter().map(|e| u64::from(e.weight_bps)).sum();
        if sum != 10000 || split.entries.iter().any(|e| e.weight_bps > 10000) {
            log(Level::Warn, &format!("apply: {deployment:?} split sums to {sum}"));
            return Err(DeployError::InvalidSplit(sum));
        }
        let mut entries = Vec::with_capacity(split.entries.len());
        for e in &split.entries {
            let Some(r) = env.revision(&e.revision) else {
                log(
                    Level::Warn,
                    &format!("apply: split names unknown revision {:?}", e.revision),
                );
                return Err(DeployError::RevisionNotFound(e.revision.clone()));
            };
            entries.push(EntryRec {
                revision: e.revision.clone(),
                weight_bps: e.weight_bps,
                digest: r.artifact_digest,
                location: r.artifact_location,
                refs: r.settings,
            });
        }
        log(
            Level::Info,
            &format!("apply {deployment:?} generation {}", split.generation),
        );
        store(
            &dkey(&deployment),
            &DepRec {
                deployment: deployment.clone(),
                generation: split.generation,
                entries,
            },
        );
        Ok(SplitOutcome {
            deployment,
            entries: split.entries,
        })
    }

    fn report_runtime_config(env: &Environment) -> Result<Option<RuntimeConfig>, DeployError> {
        let mut entries = Vec::new();
        for key in kv::list_keys("d:") {
            let Some(d) = load::<DepRec>(&key) else { continue };
            // Archive drops a revision from the stored entries (kv must not
            // name it afterwards); while the recorded split is still the
            // generation the pack applied, read that generation's entries
            // back from the host's record of it.
            if let Some(rec) = env.split(&d.deployment).filter(|s| s.generation == d.generation) {
                let revs: Option<Vec<_>> = rec.entries.iter().map(|e| env.revision(&e.revision)).collect();
                if let Some(revs) = revs {
                    for (e, r) in rec.entries.into_iter().zip(revs) {
                        entries.push(RuntimeEntry {
                            deployment: d.deployment.clone(),
                            revision: e.revision,
                            bundle_digest: r.artifact_digest,
                            bundle_location: r.artifact_location,
                            refs: r.settings,
                            weight_bps: e.weight_bps,
                        });
                    }
                    continue;
                }
            }
            for e in d.entries {
                entries.push(RuntimeEntry {
                    deployment: d.deployment.clone(),
                    revision: e.revision,
                    bundle_digest: e.digest,
                    bundle_location: e.location,
                    refs: e.refs,
                    weight_bps: e.weight_bps,
                });
            }
        }
        log(Level::Debug, &format!("report: {} entries", entries.len()));
        Ok(Some(RuntimeConfig { env: env.id(), entries }))
    }

    fn probe_revision(env: &Environment, revision: String) -> Result<Health, DeployError> {
        let r = lookup(env, "probe", &revision)?;
        log(Level::Debug, &format!("probe {revision:?}"));
        let rec = load_rev(&revision);
        Ok(match rec {
            _ if r.lifecycle == Lifecycle::Archived => Health::Unhealthy("archived".to_string()),
            Some(rec) if rec.warm => Health::Healthy,
            Some(rec) if rec.drained => Health::Unhealthy("drained".to_string()),
            _ => Health::Unhealthy("not warmed".to_string()),
        })
    }
}

export!(HashKeyed);
