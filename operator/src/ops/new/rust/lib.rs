//! {{name}}: an envpack deployer pack, in Rust.
//!
//! Its "provider" is the host's `kv` capability: one key per revision
//! (`rev/<id>` -> staged | warm | drained) and one per deployment
//! (`split/<deployment>` -> the entries last applied). Replace the bodies of
//! the verbs with calls to your provider; keep the order every verb follows:
//! validate (spec errors, no side effect), act, echo.

wit_bindgen::generate!({ path: "wit", world: "pack" });

use envpack::deployer::environment::Environment;
use envpack::deployer::types::{
    Capability, DeployError, Health, PackInfo, Revision, RevisionOutcome, RuntimeConfig, RuntimeEntry, SplitEntry,
    SplitOutcome,
};
use envpack::deployer::{kv, log};
use exports::envpack::deployer::deployer::Guest;

const DESCRIPTOR: &str = "{{descriptor}}";
/// The version of the WIT package in wit/deployer.wit this pack is built with.
const CONTRACT: &str = "{{contract}}";

const STAGED: &[u8] = b"staged";
const WARM: &[u8] = b"warm";
const DRAINED: &[u8] = b"drained";

fn info(message: &str) {
    log::log(log::Level::Info, message);
}

/// The revision a verb names, or the spec error for an unknown id.
fn find_revision(env: &Environment, id: &str) -> Result<Revision, DeployError> {
    env.revision(id)
        .ok_or_else(|| DeployError::RevisionNotFound(id.to_string()))
}

fn rev_key(id: &str) -> String {
    format!("rev/{id}")
}

fn split_key(deployment: &str) -> String {
    format!("split/{deployment}")
}

/// Moves a revision to `to` if its provider state is one of `allowed`
/// (already `to` succeeds too: every verb is idempotent).
fn transition(
    env: &Environment,
    verb: &str,
    id: &str,
    allowed: &[Option<&[u8]>],
    to: &[u8],
) -> Result<RevisionOutcome, DeployError> {
    info(&format!("{verb} {id}"));
    let revision = find_revision(env, id)?;
    let current = kv::get(&rev_key(id));
    let state = String::from_utf8_lossy(to);
    if current.as_deref() == Some(to) {
        return Ok(RevisionOutcome {
            revision: revision.id,
            detail: format!("already {state}"),
        });
    }
    if !allowed.contains(&current.as_deref()) {
        let now = current.map_or("absent".to_string(), |c| String::from_utf8_lossy(&c).into_owned());
        return Err(DeployError::Provider(format!(
            "cannot {verb} revision {id}: it is {now} on this provider"
        )));
    }
    kv::set(&rev_key(id), to);
    Ok(RevisionOutcome {
        revision: revision.id,
        detail: format!("{state} at {}", revision.artifact_location),
    })
}

/// One line per entry, `REVISION=WEIGHT` (the last `=` splits: ids may hold one).
fn encode(entries: &[SplitEntry]) -> Vec<u8> {
    let lines: Vec<String> = entries
        .iter()
        .map(|e| format!("{}={}", e.revision, e.weight_bps))
        .collect();
    lines.join("\n").into_bytes()
}

fn decode(deployment: &str, bytes: &[u8]) -> Result<Vec<SplitEntry>, DeployError> {
    String::from_utf8_lossy(bytes)
        .lines()
        .map(|line| {
            let parsed = line
                .rsplit_once('=')
                .and_then(|(revision, weight)| Some((revision, weight.parse().ok()?)));
            let (revision, weight_bps) = parsed.ok_or_else(|| {
                DeployError::Provider(format!("the applied split of {deployment} is corrupt: {line:?}"))
            })?;
            Ok(SplitEntry {
                revision: revision.to_string(),
                weight_bps,
            })
        })
        .collect()
}

struct Pack;

impl Guest for Pack {
    fn describe() -> PackInfo {
        // Pure: no capability calls here.
        PackInfo {
            descriptor: DESCRIPTOR.to_string(),
            contract_version: CONTRACT.to_string(),
            capabilities: vec![Capability::Log, Capability::Kv],
            description: "{{description}}".to_string(),
        }
    }

    fn stage_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        // From warm too: the host re-stages a revision whose warm failed
        // (failed -> staged), whatever the provider did before the failure.
        transition(env, "stage", &revision, &[None, Some(DRAINED), Some(WARM)], STAGED)
    }

    fn warm_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        transition(env, "warm", &revision, &[Some(STAGED), Some(DRAINED)], WARM)
    }

    fn drain_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        transition(env, "drain", &revision, &[Some(STAGED), Some(WARM)], DRAINED)
    }

    fn archive_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        info(&format!("archive {revision}"));
        find_revision(env, &revision)?;
        // Release whatever the revision holds, whatever its state.
        kv::delete(&rev_key(&revision));
        Ok(RevisionOutcome {
            revision,
            detail: "released".to_string(),
        })
    }

    fn apply_traffic_split(env: &Environment, deployment: String) -> Result<SplitOutcome, DeployError> {
        info(&format!("apply-traffic-split {deployment}"));
        let split = env
            .split(&deployment)
            .ok_or_else(|| DeployError::SplitNotFound(deployment.clone()))?;
        // The sum in u64: a u32 sum can wrap to 10000.
        let sum: u64 = split.entries.iter().map(|e| u64::from(e.weight_bps)).sum();
        if split.entries.is_empty() || sum != 10_000 || split.entries.iter().any(|e| e.weight_bps > 10_000) {
            return Err(DeployError::InvalidSplit(sum));
        }
        for entry in &split.entries {
            find_revision(env, &entry.revision)?;
        }
        for entry in split.entries.iter().filter(|e| e.weight_bps > 0) {
            if kv::get(&rev_key(&entry.revision)).as_deref() != Some(WARM) {
                return Err(DeployError::Provider(format!(
                    "revision {} has {} bps but is not warm; warm it first",
                    entry.revision, entry.weight_bps
                )));
            }
        }
        kv::set(&split_key(&deployment), &encode(&split.entries));
        Ok(SplitOutcome {
            deployment,
            entries: split.entries,
        })
    }

    fn report_runtime_config(env: &Environment) -> Result<Option<RuntimeConfig>, DeployError> {
        let mut entries = Vec::new();
        for deployment in env.deployments() {
            let Some(bytes) = kv::get(&split_key(&deployment)) else {
                continue;
            };
            for entry in decode(&deployment, &bytes)? {
                let revision = find_revision(env, &entry.revision)?;
                entries.push(RuntimeEntry {
                    deployment: deployment.clone(),
                    revision: entry.revision,
                    bundle_digest: revision.artifact_digest,
                    bundle_location: revision.artifact_location,
                    refs: revision.settings,
                    weight_bps: entry.weight_bps,
                });
            }
        }
        Ok(Some(RuntimeConfig { env: env.id(), entries }))
    }

    fn probe_revision(env: &Environment, revision: String) -> Result<Health, DeployError> {
        find_revision(env, &revision)?;
        Ok(match kv::get(&rev_key(&revision)) {
            Some(state) if state == WARM => Health::Healthy,
            Some(state) => Health::Unhealthy(format!(
                "revision is {} on this provider",
                String::from_utf8_lossy(&state)
            )),
            None => Health::Unhealthy("revision is not staged on this provider".to_string()),
        })
    }
}

export!(Pack);
