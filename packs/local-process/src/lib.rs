//! `envpack.deployer.local-process`: each revision of a deployment runs as
//! a local process on a port of its own; nginx listens on the deployment's
//! address and spreads requests over the revisions by the recorded split.
//! It uses only the contract's capabilities (`process`, `probe`, `clock`,
//! `log`): the host knows nothing of it. See `settings.rs` for its
//! settings and `state.rs` for how it finds its processes again.
//!
//! Every revision's process can be watched by Prometheus without hand
//! edits: the pack keeps `prometheus-targets.json` at the root of the
//! environment's work directory, a file-based service discovery file
//! (`file_sd_configs`) listing each running revision's `127.0.0.1:PORT`
//! with labels `revision`, `deployment` and `environment`, rewritten
//! whenever a warm, drain or archive changes which revisions run (see
//! `targets.rs`). The app serves its own metrics (e.g. `/metrics`).

// Contract 1.2 with both optional exports: `endpoints` (a rollout's HTTP
// gate reaches one revision on its own port, bypassing nginx) and
// `teardown` (a deployment's route released, nginx stopped with the last).
wit_bindgen::generate!({
    path: "../../wit",
    world: "pack-with-endpoints-and-teardown",
});

mod app;
mod nginx;
mod procs;
mod settings;
mod state;
mod targets;

use envpack::deployer::environment::Environment;
use envpack::deployer::log::{Level, log};
use envpack::deployer::types::{
    Capability, DeployError, Health, PackInfo, Revision, RevisionOutcome, RuntimeConfig, RuntimeEntry, SplitOutcome,
};
use exports::envpack::deployer::deployer::Guest;
use settings::Settings;
use state::{Route, Upstream};

struct LocalProcess;

/// The revision named by a call, or the spec error.
fn revision(env: &Environment, id: &str) -> Result<Revision, DeployError> {
    env.revision(id)
        .ok_or_else(|| DeployError::RevisionNotFound(id.to_string()))
}

fn provider(verb: &str, message: String) -> DeployError {
    log(Level::Error, &format!("{verb}: {message}"));
    DeployError::Provider(format!("{verb}: {message}"))
}

fn done(verb: &str, id: &str, detail: Result<String, String>) -> Result<RevisionOutcome, DeployError> {
    let detail = detail.map_err(|e| provider(verb, e))?;
    log(Level::Info, &format!("{verb} {id}: {detail}"));
    Ok(RevisionOutcome {
        revision: id.to_string(),
        detail,
    })
}

/// `result`, after rewriting the scrape targets from what runs now (a warm,
/// drain or archive may have changed it, whether or not it succeeded).
fn with_targets(env: &Environment, result: Result<String, String>) -> Result<String, String> {
    let synced = targets::sync(env);
    let note = result?;
    synced.map_err(|e| format!("{note}, but the scrape targets were not updated: {e}"))?;
    Ok(note)
}

fn settings(verb: &str, env: &Environment) -> Result<Settings, DeployError> {
    Settings::read(env).map_err(|e| provider(verb, e))
}

/// Re-installs every route with `revision` no longer routed (drain takes
/// the revision out of nginx before stopping it).
fn unroute(env: &Environment, revision: &str, settings: &Settings) -> Result<Option<String>, String> {
    let mut routes = state::routes()?;
    let mut changed = false;
    for route in &mut routes {
        for upstream in &mut route.upstreams {
            if upstream.revision == revision && upstream.port.is_some() {
                upstream.port = None;
                changed = true;
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    let note = nginx::install(&env.id(), &routes, settings)?;
    for route in &routes {
        state::write(&state::route_path(&route.deployment), route)?;
    }
    Ok(Some(note))
}

impl Guest for LocalProcess {
    fn describe() -> PackInfo {
        PackInfo {
            descriptor: "envpack.deployer.local-process@1.0.0".to_string(),
            contract_version: "1.2.0".to_string(),
            capabilities: vec![
                Capability::Log,
                Capability::Clock,
                Capability::Process,
                Capability::Probe,
            ],
            description: "Revisions as local processes behind nginx, weighted by the recorded split".to_string(),
        }
    }

    fn stage_revision(env: &Environment, id: String) -> Result<RevisionOutcome, DeployError> {
        let revision = revision(env, &id)?;
        let settings = settings("stage", env)?;
        done("stage", &id, app::stage(env, &revision, &settings))
    }

    fn warm_revision(env: &Environment, id: String) -> Result<RevisionOutcome, DeployError> {
        let revision = revision(env, &id)?;
        let settings = settings("warm", env)?;
        done("warm", &id, with_targets(env, app::warm(&revision, &settings)))
    }

    fn drain_revision(env: &Environment, id: String) -> Result<RevisionOutcome, DeployError> {
        let revision = revision(env, &id)?;
        let settings = settings("drain", env)?;
        let result = unroute(env, &id, &settings).and_then(|unrouted| {
            let stopped = app::drain(&revision, &settings)?;
            Ok(match unrouted {
                Some(note) => format!("out of routing ({note}); {stopped}"),
                None => stopped,
            })
        });
        done("drain", &id, with_targets(env, result))
    }

    fn archive_revision(env: &Environment, id: String) -> Result<RevisionOutcome, DeployError> {
        let revision = revision(env, &id)?;
        let settings = settings("archive", env)?;
        let result = unroute(env, &id, &settings).and_then(|_| {
            let mut note = app::archive(&revision)?;
            // The last revision gone: nothing is left for nginx to route.
            if state::revision_dirs().is_empty()
                && let Some(stopped) = nginx::stop(&settings)?
            {
                note.push_str(&format!("; {stopped}"));
            }
            Ok(note)
        });
        done("archive", &id, with_targets(env, result))
    }

    fn apply_traffic_split(env: &Environment, deployment: String) -> Result<SplitOutcome, DeployError> {
        let split = env
            .split(&deployment)
            .ok_or_else(|| DeployError::SplitNotFound(deployment.clone()))?;
        let sum: u64 = split.entries.iter().map(|e| u64::from(e.weight_bps)).sum();
        if sum != 10_000 || split.entries.iter().any(|e| e.weight_bps > 10_000) {
            return Err(DeployError::InvalidSplit(sum));
        }
        let settings = settings("apply-traffic-split", env)?;
        let mut routes = state::routes().map_err(|e| provider("apply-traffic-split", e))?;
        let current = routes
            .iter()
            .find(|r| r.deployment == deployment)
            .map(|r| r.listen.clone());
        let mut taken: Vec<String> = routes
            .iter()
            .filter(|r| r.deployment != deployment)
            .map(|r| r.listen.clone())
            .collect();
        // A port the pack picks from `listen-ports` may be taken between
        // the check and nginx's bind (another environment): pick again.
        let picked = env.setting(&format!("listen.{deployment}")).is_none() && current.is_none();
        let mut upstreams = Vec::new();
        for entry in &split.entries {
            let port = if entry.weight_bps == 0 {
                None
            } else {
                let run = state::read::<state::Run>(&state::run_path(&entry.revision))
                    .map_err(|e| provider("apply-traffic-split", e))?
                    .filter(|run| procs::live(&run.process).is_some())
                    .ok_or_else(|| {
                        provider(
                            "apply-traffic-split",
                            format!(
                                "revision {} has weight but its process is not running here: if the revision is not ready, warm it; \
                                 if it is ready, its process was lost: leave it out of the split (`traffic set`), drain it, and stage its artifact again",
                                entry.revision
                            ),
                        )
                    })?;
                Some(run.port)
            };
            upstreams.push(Upstream {
                revision: entry.revision.clone(),
                weight_bps: entry.weight_bps,
                port,
            });
        }
        routes.retain(|r| r.deployment != deployment);
        let mut attempts = 0;
        let (route, note) = loop {
            attempts += 1;
            let listen = settings::listen(env, &deployment, current.as_deref(), &taken)
                .map_err(|e| provider("apply-traffic-split", e))?;
            let route = Route {
                deployment: deployment.clone(),
                listen: listen.clone(),
                generation: split.generation,
                upstreams: upstreams.clone(),
            };
            let mut all = routes.clone();
            all.push(route.clone());
            all.sort_by(|a, b| a.deployment.cmp(&b.deployment));
            match nginx::install(&env.id(), &all, &settings) {
                Ok(note) => break (route, note),
                Err(e) if picked && attempts < 5 && e.contains("Address already in use") => taken.push(listen),
                Err(e) => return Err(provider("apply-traffic-split", e)),
            }
        };
        state::write(&state::route_path(&deployment), &route).map_err(|e| provider("apply-traffic-split", e))?;
        log(Level::Info, &format!("apply-traffic-split {deployment}: {note}"));
        Ok(SplitOutcome {
            deployment,
            entries: split.entries,
        })
    }

    fn report_runtime_config(env: &Environment) -> Result<Option<RuntimeConfig>, DeployError> {
        let routes = state::routes().map_err(|e| provider("report-runtime-config", e))?;
        let mut entries = Vec::new();
        for route in routes {
            for upstream in route.upstreams {
                let Some(revision) = env.revision(&upstream.revision) else {
                    continue;
                };
                // What nginx routes: an entry taken out of routing routes nothing.
                let weight_bps = if upstream.port.is_some() {
                    upstream.weight_bps
                } else {
                    0
                };
                entries.push(RuntimeEntry {
                    deployment: route.deployment.clone(),
                    revision: upstream.revision,
                    bundle_digest: revision.artifact_digest,
                    bundle_location: revision.artifact_location,
                    refs: revision.settings,
                    weight_bps,
                });
            }
        }
        Ok(Some(RuntimeConfig { env: env.id(), entries }))
    }

    fn probe_revision(env: &Environment, id: String) -> Result<Health, DeployError> {
        let revision = revision(env, &id)?;
        app::probe_health(&revision).map_err(|e| provider("probe", e))
    }
}

impl exports::envpack::deployer::endpoints::Guest for LocalProcess {
    /// `http://127.0.0.1:PORT` of the revision's own process while it runs
    /// and is not being drained: nginx left out.
    fn revision_endpoint(env: &Environment, id: String) -> Result<Option<String>, DeployError> {
        revision(env, &id)?;
        let run: Option<state::Run> = state::read(&state::run_path(&id)).map_err(|e| provider("endpoint", e))?;
        Ok(run
            .filter(|run| run.kill_at_ms.is_none() && procs::live(&run.process).is_some())
            .map(|run| format!("http://127.0.0.1:{}", run.port)))
    }
}

impl exports::envpack::deployer::teardown::Guest for LocalProcess {
    /// Takes the deployment's route out of nginx (nginx stops with the
    /// last route) and forgets it.
    fn release_deployment(env: &Environment, deployment: String) -> Result<String, DeployError> {
        let settings = settings("release", env)?;
        let routes = state::routes().map_err(|e| provider("release", e))?;
        let (gone, kept): (Vec<Route>, Vec<Route>) = routes.into_iter().partition(|r| r.deployment == deployment);
        let mut notes = Vec::new();
        if gone.is_empty() {
            notes.push(format!("nothing routes {deployment}"));
        } else if kept.is_empty() {
            match nginx::stop(&settings).map_err(|e| provider("release", e))? {
                Some(note) => notes.push(note),
                None => notes.push("nginx was not running".into()),
            }
        } else {
            notes.push(nginx::install(&env.id(), &kept, &settings).map_err(|e| provider("release", e))?);
        }
        state::remove(&state::route_path(&deployment)).map_err(|e| provider("release", e))?;
        targets::sync(env).map_err(|e| provider("release", e))?;
        let note = notes.join("; ");
        log(Level::Info, &format!("release {deployment}: {note}"));
        Ok(note)
    }
}

export!(LocalProcess);
