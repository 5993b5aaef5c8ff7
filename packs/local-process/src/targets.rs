//! The running revisions as Prometheus scrape targets: `prometheus-targets.json`
//! at the root of the work directory, in the format of Prometheus's
//! file-based service discovery (`file_sd_configs`):
//!
//! ```json
//! [{"targets": ["127.0.0.1:20417"],
//!   "labels": {"deployment": "web", "environment": "prod", "revision": "R2"}}]
//! ```
//!
//! One entry per revision whose process runs and is not being drained,
//! sorted by deployment and revision. Rewritten whole (temp file, then
//! rename) from the `run.json` records after every warm, drain and archive,
//! and only when it changes; so a revision is listed once its warm
//! succeeded and is gone once a drain began, an archive stopped it or a
//! failed warm killed it. A process that exits by itself stays listed
//! until the next of those verbs (Prometheus shows it `up == 0`).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::envpack::deployer::environment::Environment;
use crate::procs::live;
use crate::state;

pub const PATH: &str = "/prometheus-targets.json";

/// One target group of the file.
#[derive(Serialize)]
struct Group {
    targets: Vec<String>,
    labels: BTreeMap<&'static str, String>,
}

/// Rewrites the file from the revisions running now, if that changes it.
pub fn sync(env: &Environment) -> Result<(), String> {
    let environment = env.id();
    let mut running: Vec<(String, String, u16)> = Vec::new();
    for (name, run) in state::runs() {
        if run.kill_at_ms.is_some() || live(&run.process).is_none() {
            continue;
        }
        // A record from before the pack kept ids: its directory's name and
        // the host's record of the revision say them.
        let revision = if run.revision.is_empty() {
            match state::id_of(&name) {
                Some(id) => id,
                None => continue,
            }
        } else {
            run.revision
        };
        let deployment = if run.deployment.is_empty() {
            match env.revision(&revision) {
                Some(known) => known.deployment,
                None => continue,
            }
        } else {
            run.deployment
        };
        running.push((deployment, revision, run.port));
    }
    running.sort();
    let groups: Vec<Group> = running
        .into_iter()
        .map(|(deployment, revision, port)| Group {
            targets: vec![format!("127.0.0.1:{port}")],
            labels: BTreeMap::from([
                ("deployment", deployment),
                ("environment", environment.clone()),
                ("revision", revision),
            ]),
        })
        .collect();
    let mut bytes = serde_json::to_vec_pretty(&groups).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    if std::fs::read(PATH).is_ok_and(|current| current == bytes) {
        return Ok(());
    }
    state::write_bytes(PATH, &bytes)
}
