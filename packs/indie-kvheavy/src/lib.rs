//! kvheavy pack: everything in the host `kv`, one key per field.
//!
//! Written outside this project from `wit/deployer.wit` and the README
//! alone, as a third-party author would: one of the independent correct
//! packs the conformance corpus must pass (see conformance/README.md).
//! Kept as its author wrote it, only formatted to this repository's style.
//!
//! Layout (ids are embedded verbatim; the field is always the last `/`
//! component, so the mapping is injective even for ids containing `/`; no
//! prefix scans are used, so a revision `a` never touches keys of `a/b`):
//!   idx/revisions                 JSON list of revision ids the pack holds
//!   idx/deployments               JSON list of deployments with an applied split
//!   rev/<id>/<field>              deployment, sequence, digest, location,
//!                                 drain-seconds, settings (JSON), staged, warm, drained
//!   split/<dep>/generation        applied generation
//!   split/<dep>/count             number of applied entries
//!   split/<dep>/<i>/<field>       revision, weight, digest, location, refs (JSON)
wit_bindgen::generate!({ path: "../../wit/history/1.1.0", world: "pack" });

use envpack::deployer::environment::Environment;
use envpack::deployer::kv;
use envpack::deployer::log::{Level, log};
use envpack::deployer::types::{
    Capability, DeployError, Health, Lifecycle, PackInfo, Revision, RevisionOutcome, RuntimeConfig, RuntimeEntry,
    SplitOutcome,
};
use exports::envpack::deployer::deployer::Guest;

struct KvHeavy;

const REV_FIELDS: &[&str] = &[
    "deployment",
    "sequence",
    "digest",
    "location",
    "drain-seconds",
    "settings",
    "staged",
    "warm",
    "drained",
];
const ENTRY_FIELDS: &[&str] = &["revision", "weight", "digest", "location", "refs"];

fn get_str(key: &str) -> Option<String> {
    kv::get(key).map(|v| String::from_utf8_lossy(&v).into_owned())
}
fn set_str(key: &str, v: &str) {
    if get_str(key).as_deref() != Some(v) {
        kv::set(key, v.as_bytes());
    }
}
fn del(key: &str) {
    if kv::get(key).is_some() {
        kv::delete(key);
    }
}
fn rkey(id: &str, field: &str) -> String {
    format!("rev/{id}/{field}")
}
fn skey(dep: &str, field: &str) -> String {
    format!("split/{dep}/{field}")
}
fn ekey(dep: &str, i: usize, field: &str) -> String {
    format!("split/{dep}/{i}/{field}")
}

fn load_index(key: &str) -> Vec<String> {
    kv::get(key)
        .and_then(|v| serde_json::from_slice(&v).ok())
        .unwrap_or_default()
}
fn store_index(key: &str, list: &[String]) {
    if list.is_empty() {
        del(key);
    } else {
        set_str(key, &serde_json::to_string(list).unwrap());
    }
}
fn index_add(key: &str, id: &str) {
    let mut l = load_index(key);
    if let Err(pos) = l.binary_search_by(|x| x.as_str().cmp(id)) {
        l.insert(pos, id.to_string());
        store_index(key, &l);
    }
}
fn index_remove(key: &str, id: &str) {
    let mut l = load_index(key);
    if let Ok(pos) = l.binary_search_by(|x| x.as_str().cmp(id)) {
        l.remove(pos);
        store_index(key, &l);
    }
}

fn settings_json(s: &[(String, String)]) -> String {
    serde_json::to_string(s).unwrap()
}

fn lookup(env: &Environment, verb: &str, id: &str) -> Result<Revision, DeployError> {
    match env.revision(id) {
        Some(r) => Ok(r),
        None => {
            log(Level::Warn, &format!("{verb}: revision {id:?} not found"));
            Err(DeployError::RevisionNotFound(id.to_string()))
        }
    }
}

fn record_revision(r: &Revision) {
    let id = &r.id;
    set_str(&rkey(id, "deployment"), &r.deployment);
    set_str(&rkey(id, "sequence"), &r.sequence.to_string());
    set_str(&rkey(id, "digest"), &r.artifact_digest);
    set_str(&rkey(id, "location"), &r.artifact_location);
    set_str(&rkey(id, "drain-seconds"), &r.drain_seconds.to_string());
    set_str(&rkey(id, "settings"), &settings_json(&r.settings));
    index_add("idx/revisions", id);
}

struct Applied {
    generation: u64,
    entries: Vec<RuntimeEntry>,
}

fn load_split(dep: &str) -> Option<Applied> {
    let count: usize = get_str(&skey(dep, "count"))?.parse().ok()?;
    let generation = get_str(&skey(dep, "generation"))
        .and_then(|g| g.parse().ok())
        .unwrap_or(0);
    let mut entries = Vec::with_capacity(count);
    for i in 0..count {
        entries.push(RuntimeEntry {
            deployment: dep.to_string(),
            revision: get_str(&ekey(dep, i, "revision")).unwrap_or_default(),
            weight_bps: get_str(&ekey(dep, i, "weight"))
                .and_then(|w| w.parse().ok())
                .unwrap_or(0),
            bundle_digest: get_str(&ekey(dep, i, "digest")).unwrap_or_default(),
            bundle_location: get_str(&ekey(dep, i, "location")).unwrap_or_default(),
            refs: kv::get(&ekey(dep, i, "refs"))
                .and_then(|v| serde_json::from_slice(&v).ok())
                .unwrap_or_default(),
        });
    }
    Some(Applied { generation, entries })
}

fn store_split(dep: &str, a: &Applied) {
    let old: usize = get_str(&skey(dep, "count")).and_then(|c| c.parse().ok()).unwrap_or(0);
    set_str(&skey(dep, "generation"), &a.generation.to_string());
    set_str(&skey(dep, "count"), &a.entries.len().to_string());
    for (i, e) in a.entries.iter().enumerate() {
        set_str(&ekey(dep, i, "revision"), &e.revision);
        set_str(&ekey(dep, i, "weight"), &e.weight_bps.to_string());
        set_str(&ekey(dep, i, "digest"), &e.bundle_digest);
        set_str(&ekey(dep, i, "location"), &e.bundle_location);
        set_str(&ekey(dep, i, "refs"), &settings_json(&e.refs));
    }
    for i in a.entries.len()..old {
        for f in ENTRY_FIELDS {
            del(&ekey(dep, i, f));
        }
    }
    index_add("idx/deployments", dep);
}

/// The entries the pack applied for `dep`. Archive removes a revision from
/// the stored entries (kv must not name it afterwards), so when the recorded
/// split is still the generation the pack applied, its entries are read back
/// from the host's record of that very generation; otherwise the stored
/// entries stand.
fn current_view(env: &Environment, dep: &str, a: Applied) -> Vec<RuntimeEntry> {
    let Some(rec) = env.split(dep) else { return a.entries };
    if rec.generation != a.generation {
        return a.entries;
    }
    let mut out = Vec::with_capacity(rec.entries.len());
    for e in rec.entries {
        let Some(r) = env.revision(&e.revision) else {
            return a.entries;
        };
        out.push(RuntimeEntry {
            deployment: dep.to_string(),
            revision: e.revision,
            bundle_digest: r.artifact_digest,
            bundle_location: r.artifact_location,
            refs: r.settings,
            weight_bps: e.weight_bps,
        });
    }
    out
}

fn outcome(id: String, detail: &str) -> RevisionOutcome {
    RevisionOutcome {
        revision: id,
        detail: detail.to_string(),
    }
}

impl Guest for KvHeavy {
    fn describe() -> PackInfo {
        PackInfo {
            descriptor: "indie.deployer.kvheavy@0.1.0".to_string(),
            contract_version: "1.1.0".to_string(),
            capabilities: vec![Capability::Log, Capability::Kv],
            description: "Independent pack keeping fine-grained state in kv".to_string(),
        }
    }

    fn stage_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let r = lookup(env, "stage", &revision)?;
        log(Level::Info, &format!("stage: {revision:?} of {:?}", r.deployment));
        record_revision(&r);
        set_str(&rkey(&revision, "staged"), "1");
        Ok(outcome(revision, "staged in kv"))
    }

    fn warm_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let r = lookup(env, "warm", &revision)?;
        log(Level::Info, &format!("warm: {revision:?}"));
        record_revision(&r);
        set_str(&rkey(&revision, "warm"), "1");
        del(&rkey(&revision, "drained"));
        Ok(outcome(revision, "warm"))
    }

    fn drain_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let r = lookup(env, "drain", &revision)?;
        log(Level::Info, &format!("drain: {revision:?} within {}s", r.drain_seconds));
        record_revision(&r);
        del(&rkey(&revision, "warm"));
        set_str(&rkey(&revision, "drained"), "1");
        Ok(outcome(revision, "drained"))
    }

    fn archive_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        let r = lookup(env, "archive", &revision)?;
        log(Level::Info, &format!("archive: {revision:?}"));
        for f in REV_FIELDS {
            del(&rkey(&revision, f));
        }
        index_remove("idx/revisions", &revision);
        // The revision can only be routed by its own deployment's split.
        if let Some(mut a) = load_split(&r.deployment) {
            let before = a.entries.len();
            a.entries.retain(|e| e.revision != revision);
            if a.entries.len() != before {
                store_split(&r.deployment, &a);
            }
        }
        Ok(outcome(revision, "archived"))
    }

    fn apply_traffic_split(env: &Environment, deployment: String) -> Result<SplitOutcome, DeployError> {
        // Spec errors in the contract's order, all before the one write.
        let split = match env.split(&deployment) {
            Some(split) => split,
            None => {
                log(Level::Warn, &format!("no split recorded for {deployment}"));
                return Err(DeployError::SplitNotFound(deployment));
            }
        };
        let total = split
            .entries
            .iter()
            .fold(0u64, |acc, entry| acc + u64::from(entry.weight_bps));
        let oversized = split.entries.iter().any(|entry| entry.weight_bps > 10_000);
        if oversized || total != 10_000 {
            log(
                Level::Warn,
                &format!("split for {deployment} is invalid (total {total})"),
            );
            return Err(DeployError::InvalidSplit(total));
        }
        let entries = split
            .entries
            .iter()
            .map(|entry| match env.revision(&entry.revision) {
                Some(r) => Ok(RuntimeEntry {
                    deployment: deployment.clone(),
                    revision: entry.revision.clone(),
                    bundle_digest: r.artifact_digest,
                    bundle_location: r.artifact_location,
                    refs: r.settings,
                    weight_bps: entry.weight_bps,
                }),
                None => {
                    log(Level::Warn, &format!("split for {deployment} names {}", entry.revision));
                    Err(DeployError::RevisionNotFound(entry.revision.clone()))
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        let generation = split.generation;
        store_split(&deployment, &Applied { generation, entries });
        log(Level::Info, &format!("applied generation {generation} to {deployment}"));
        let applied = split.entries;
        Ok(SplitOutcome {
            entries: applied,
            deployment,
        })
    }

    fn report_runtime_config(env: &Environment) -> Result<Option<RuntimeConfig>, DeployError> {
        let mut entries = Vec::new();
        for dep in load_index("idx/deployments") {
            let Some(a) = load_split(&dep) else { continue };
            entries.extend(current_view(env, &dep, a));
        }
        log(Level::Debug, &format!("report: {} entries", entries.len()));
        Ok(Some(RuntimeConfig { env: env.id(), entries }))
    }

    fn probe_revision(env: &Environment, revision: String) -> Result<Health, DeployError> {
        let r = lookup(env, "probe", &revision)?;
        let warm = get_str(&rkey(&revision, "warm")).as_deref() == Some("1");
        let h = if r.lifecycle == Lifecycle::Archived {
            Health::Unhealthy("archived".to_string())
        } else if warm {
            Health::Healthy
        } else if get_str(&rkey(&revision, "drained")).is_some() {
            Health::Unhealthy("drained".to_string())
        } else {
            Health::Unhealthy("not warmed".to_string())
        };
        log(Level::Debug, &format!("probe: {revision:?}"));
        Ok(h)
    }
}

export!(KvHeavy);
