//! `ledger`: the reference deployer pack.
//!
//! Its "provider" is a ledger kept in the host's `kv` capability: one key per
//! revision (`rev/<id>` → `staged` | `warm` | `drained`) and one per deployment
//! (`split/<deployment>` → the entries last applied). That makes everything a
//! real provider must get right observable from outside: idempotency (the same
//! keys after one call or two), sibling isolation (applying A never writes
//! `split/B`), and "no side effect before a spec error" (no kv write on a
//! rejected call). Its probe answers healthy for a warm revision, unless the
//! environment's `unhealthy` setting names it (a provider's failing health
//! check, for rollouts to react to); drain refuses the revisions its
//! `refuse-drain` setting names (a provider that will not let go).

// The current contract; with `contract-1-0-0`, the frozen 1.0.0 one (a test
// fixture proving a pack built against an older minor version still runs).
#[cfg(not(feature = "contract-1-0-0"))]
wit_bindgen::generate!({
    path: "../../wit/history/1.1.0",
    world: "pack",
});
#[cfg(feature = "contract-1-0-0")]
wit_bindgen::generate!({
    path: "../../wit/history/1.0.0",
    world: "pack",
});

/// The contract version this build was made against (the
/// `claims-old-contract` fault says 1.0.0 though it is built against 1.1.0).
const CONTRACT: &str = if cfg!(any(feature = "contract-1-0-0", feature = "fault-claims-old-contract")) {
    "1.0.0"
} else {
    "1.1.0"
};

mod fault;

use envpack::deployer::environment::Environment;
use envpack::deployer::types::{
    Capability, DeployError, Health, PackInfo, Revision, RevisionOutcome, RuntimeConfig, RuntimeEntry, SplitEntry,
    SplitOutcome, TrafficSplit,
};
use envpack::deployer::{clock, kv, log};
use exports::envpack::deployer::deployer::Guest;

/// Provider state of one revision, as the ledger records it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    Staged,
    Warm,
    Drained,
}

impl State {
    fn as_str(self) -> &'static str {
        match self {
            State::Staged => "staged",
            State::Warm => "warm",
            State::Drained => "drained",
        }
    }

    fn parse(bytes: &[u8]) -> Option<State> {
        match bytes {
            b"staged" => Some(State::Staged),
            b"warm" => Some(State::Warm),
            b"drained" => Some(State::Drained),
            _ => None,
        }
    }
}

fn rev_key(id: &str) -> String {
    if fault::is("long-keys") {
        return format!("rev/{id}/{id}");
    }
    format!("rev/{}", fault::key_id(id))
}

fn split_key(deployment: &str) -> String {
    format!("split/{deployment}")
}

fn info(message: &str) {
    log::log(log::Level::Info, message);
}

/// The revision named by a verb, or the spec error for an unknown id.
fn find_revision(env: &Environment, id: &str) -> Result<Revision, DeployError> {
    if fault::is("ascii-only") && !id.is_ascii() {
        return Err(DeployError::Provider(format!("revision id {id:?} is not ASCII")));
    }
    match env.revision(id) {
        Some(revision) => Ok(revision),
        None if fault::is("accepts-unknown-revision") => Ok(Revision {
            id: id.to_string(),
            deployment: String::new(),
            sequence: 0,
            lifecycle: envpack::deployer::types::Lifecycle::Inactive,
            artifact_digest: String::new(),
            artifact_location: String::new(),
            drain_seconds: 0,
            settings: Vec::new(),
        }),
        None => Err(DeployError::RevisionNotFound(id.to_string())),
    }
}

/// Spec errors as the contract wants them, or (faulty build) as `provider`.
fn spec(error: DeployError) -> DeployError {
    if !fault::is("spec-error-as-provider") {
        return error;
    }
    match error {
        DeployError::Provider(m) => DeployError::Provider(m),
        other => DeployError::Provider(format!("{other:?}")),
    }
}

/// Entry to every verb: logs it and, in the faulty build, writes before validating.
fn enter(verb: &str, target: &str) {
    info(&format!("{verb} {target}"));
    if fault::is("writes-before-rejecting") {
        kv::set("last-call", verb.as_bytes());
    }
}

fn provider_state(id: &str) -> Result<Option<State>, DeployError> {
    match kv::get(&rev_key(id)) {
        None => Ok(None),
        Some(bytes) => State::parse(&bytes).map(Some).ok_or_else(|| {
            DeployError::Provider(format!(
                "ledger entry for revision {id} is corrupt: {:?}",
                String::from_utf8_lossy(&bytes)
            ))
        }),
    }
}

fn record_state(id: &str, state: State) {
    kv::set(&rev_key(id), state.as_str().as_bytes());
}

fn outcome(revision: &Revision, detail: String) -> Result<RevisionOutcome, DeployError> {
    Ok(RevisionOutcome {
        revision: fault::echo_id(&revision.id),
        detail,
    })
}

/// Whether the environment's setting `key` (revision ids, comma
/// separated) names `id`: how a test stands in for a provider's answer.
fn named_by_setting(env: &Environment, key: &str, id: &str) -> bool {
    env.settings()
        .into_iter()
        .any(|(k, ids)| k == key && ids.split(',').any(|i| i.trim() == id))
}

/// Moves a revision to `to`, provided its ledger state is one of `from`
/// (or already `to`, which makes the verb idempotent).
fn transition(
    env: &Environment,
    verb: &str,
    id: &str,
    from: &[Option<State>],
    to: State,
) -> Result<RevisionOutcome, DeployError> {
    enter(verb, id);
    let revision = find_revision(env, id).map_err(spec)?;
    if fault::is("undeclared-capability") {
        clock::now_ms();
    }
    if fault::is("not-idempotent") {
        let count = kv::get(&format!("{verb}-count/{id}")).map_or(0, |v| v.len());
        kv::set(&format!("{verb}-count/{id}"), &vec![b'x'; count + 1]);
    }
    let current = provider_state(id)?;
    if let Some(refusal) = fault::refuses(verb, current == Some(State::Drained)) {
        return Err(DeployError::Provider(refusal));
    }
    if verb == "drain" && named_by_setting(env, "refuse-drain", id) {
        return Err(DeployError::Provider(format!(
            "the provider refuses to drain {id} (the environment's `refuse-drain` setting names it)"
        )));
    }
    if current == Some(to) {
        return outcome(&revision, format!("already {}", to.as_str()));
    }
    if !from.contains(&current) {
        let now = current.map_or("absent", State::as_str);
        return Err(DeployError::Provider(if fault::is("empty-provider-message") {
            String::new()
        } else {
            format!("cannot {verb} revision {id}: it is {now} on this provider")
        }));
    }
    fault::on_transition(verb, &revision);
    record_state(id, to);
    if fault::is("drain-drains-deployment") && to == State::Drained {
        for key in kv::list_keys("rev/") {
            let sibling = env.revision(&key["rev/".len()..]);
            if sibling.is_some_and(|s| s.deployment == revision.deployment) {
                kv::set(&key, State::Drained.as_str().as_bytes());
            }
        }
    }
    if fault::is("stage-touches-other-deployments") && verb == "stage" {
        for deployment in env.deployments() {
            kv::set(&format!("touched/{deployment}"), b"1");
        }
    }
    outcome(&revision, format!("{} at {}", to.as_str(), revision.artifact_location))
}

/// Checks a recorded split the way the contract says, before any side effect.
fn validate_split(env: &Environment, split: &TrafficSplit) -> Result<(), DeployError> {
    let sum: u64 = if fault::is("u32-sum") {
        u64::from(split.entries.iter().fold(0u32, |sum, e| sum.wrapping_add(e.weight_bps)))
    } else {
        split.entries.iter().map(|e| u64::from(e.weight_bps)).sum()
    };
    let bad = split.entries.is_empty() || sum != 10_000 || split.entries.iter().any(|e| e.weight_bps > 10_000);
    if bad && !fault::is("accepts-bad-sum") {
        return Err(spec(DeployError::InvalidSplit(sum)));
    }
    for entry in &split.entries {
        find_revision(env, &entry.revision).map_err(spec)?;
    }
    Ok(())
}

fn encode_entries(entries: &[SplitEntry]) -> Vec<u8> {
    entries
        .iter()
        .map(|e| format!("{}={}", e.revision, fault::stored_weight(e.weight_bps)))
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

fn decode_entries(bytes: &[u8]) -> Result<Vec<SplitEntry>, DeployError> {
    let text = String::from_utf8_lossy(bytes);
    text.lines()
        .map(|line| {
            let (revision, weight) = line.rsplit_once('=').unwrap_or((line, ""));
            let weight_bps = weight
                .parse()
                .map_err(|_| DeployError::Provider(format!("ledger split entry is corrupt: {line:?}")))?;
            Ok(SplitEntry {
                revision: revision.to_string(),
                weight_bps,
            })
        })
        .collect()
}

fn runtime_entries(env: &Environment, deployment: &str) -> Result<Vec<RuntimeEntry>, DeployError> {
    let Some(bytes) = kv::get(&split_key(deployment)) else {
        return Ok(Vec::new());
    };
    decode_entries(&bytes)?
        .into_iter()
        .map(|entry| {
            let revision = find_revision(env, &entry.revision)?;
            Ok(RuntimeEntry {
                deployment: deployment.to_string(),
                revision: entry.revision,
                bundle_digest: revision.artifact_digest,
                bundle_location: revision.artifact_location,
                refs: fault::refs(revision.settings),
                weight_bps: entry.weight_bps,
            })
        })
        .collect()
}

struct Ledger;

impl Guest for Ledger {
    fn describe() -> PackInfo {
        PackInfo {
            descriptor: match fault::active() {
                Some(f) => format!("envpack.faulty.{f}@1.0.0"),
                None => "envpack.deployer.ledger@1.0.0".to_string(),
            },
            contract_version: CONTRACT.to_string(),
            capabilities: if fault::is("sleeps-too-long") {
                vec![Capability::Log, Capability::Kv, Capability::Clock]
            } else {
                vec![Capability::Log, Capability::Kv]
            },
            description: "Reference pack: records deployments in the host's kv".to_string(),
        }
    }

    fn stage_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        transition(env, "stage", &revision, &[None, Some(State::Drained)], State::Staged)
    }

    fn warm_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        transition(
            env,
            "warm",
            &revision,
            &[Some(State::Staged), Some(State::Drained)],
            State::Warm,
        )
    }

    fn drain_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        transition(
            env,
            "drain",
            &revision,
            &[Some(State::Staged), Some(State::Warm)],
            State::Drained,
        )
    }

    fn archive_revision(env: &Environment, revision: String) -> Result<RevisionOutcome, DeployError> {
        enter("archive", &revision);
        let found = find_revision(env, &revision).map_err(spec)?;
        // Archive releases whatever the revision holds, warm or not: the
        // host archives ready revisions that carry no traffic.
        let state = provider_state(&revision)?;
        if state.is_none() && fault::is("archive-refuses-unstaged") {
            return Err(DeployError::Provider(format!(
                "revision {revision} was never staged here"
            )));
        }
        if fault::is("archive-by-prefix") {
            for key in kv::list_keys(&rev_key(&revision)) {
                kv::delete(&key);
            }
        } else if !fault::is("archive-keeps-state") {
            kv::delete(&rev_key(&revision));
        }
        outcome(&found, "released".to_string())
    }

    fn apply_traffic_split(env: &Environment, deployment: String) -> Result<SplitOutcome, DeployError> {
        enter("apply-traffic-split", &deployment);
        let split = env
            .split(&deployment)
            .ok_or_else(|| spec(fault::split_not_found(env, &deployment)))?;
        if fault::is("validates-after-write") {
            kv::set(&split_key(&deployment), &encode_entries(&split.entries));
        }
        validate_split(env, &split)?;
        if fault::is("rejects-zero-weight") && split.entries.iter().any(|e| e.weight_bps == 0) {
            return Err(DeployError::Provider("entries of weight 0 are not supported".into()));
        }
        for entry in split.entries.iter().filter(|e| e.weight_bps > 0) {
            if provider_state(&entry.revision)? != Some(State::Warm) {
                return Err(DeployError::Provider(format!(
                    "revision {} has {} bps but is not warm on this provider; warm it first",
                    entry.revision, entry.weight_bps
                )));
            }
        }
        if !(fault::is("first-split-wins") && kv::get(&split_key(&deployment)).is_some()) {
            kv::set(&split_key(&deployment), &encode_entries(&split.entries));
        }
        if fault::is("apply-applies-all") {
            for other in env.deployments() {
                if let Some(recorded) = env.split(&other) {
                    kv::set(&split_key(&other), &encode_entries(&recorded.entries));
                }
            }
        }
        if fault::is("touches-sibling") {
            for sibling in env.deployments().into_iter().filter(|d| *d < deployment) {
                kv::delete(&split_key(&sibling));
            }
        }
        let echoed = match env.deployments().into_iter().find(|d| *d != deployment) {
            Some(other) if fault::is("echoes-wrong-deployment") => other,
            _ => deployment,
        };
        Ok(SplitOutcome {
            deployment: echoed,
            entries: fault::echo_entries(split.entries),
        })
    }

    fn report_runtime_config(env: &Environment) -> Result<Option<RuntimeConfig>, DeployError> {
        let mut entries = Vec::new();
        for deployment in env.deployments() {
            entries.extend(runtime_entries(env, &deployment)?);
        }
        if fault::is("drifting-runtime-config") {
            for entry in &mut entries {
                entry.bundle_location.push_str("?stale");
            }
        }
        Ok(Some(RuntimeConfig { env: env.id(), entries }))
    }

    fn probe_revision(env: &Environment, revision: String) -> Result<Health, DeployError> {
        find_revision(env, &revision).map_err(spec)?;
        if fault::is("probe-always-healthy") {
            return Ok(Health::Healthy);
        }
        // The environment's `unhealthy` setting (revision ids, comma
        // separated) stands for a provider whose health checks fail.
        let marked = named_by_setting(env, "unhealthy", &revision);
        Ok(match provider_state(&revision)? {
            Some(State::Warm) if marked => {
                Health::Unhealthy("marked unhealthy by the environment's `unhealthy` setting".to_string())
            }
            Some(State::Warm) => Health::Healthy,
            Some(state) => Health::Unhealthy(format!("revision is {}, not running", state.as_str())),
            None => Health::Unhealthy("revision is not staged on this provider".to_string()),
        })
    }
}

export!(Ledger);
