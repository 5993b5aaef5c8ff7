//! The host's model of a generated environment as an operator drives it:
//! which call each operator step becomes (only calls the host would send:
//! lifecycles as the transition table allows, drains and archives only of
//! revisions without weight, splits whose weights are valid), the
//! environment the pack sees during the call, and the state after it.

use std::collections::BTreeSet;
use std::sync::Arc;

use envpack_model::{
    Capability, DeploymentDoc, Environment, EnvironmentDoc, Lifecycle, Request, Revision, SplitEntry, TrafficSplit,
    quoted,
};

use crate::fixture::{Inputs, revision};
use crate::generate::{Op, Scenario};

/// Total weight of a split, in basis points.
const FULL: u64 = 10_000;

struct Deployment {
    id: String,
    revisions: Vec<Revision>,
    history: Vec<Revision>,
    split: Option<TrafficSplit>,
    /// The split the pack last applied.
    applied: Option<TrafficSplit>,
}

/// What the host knows of one generated environment.
pub(crate) struct Model {
    env_id: String,
    deployments: Vec<Deployment>,
    inputs: Inputs,
    /// Revisions warmed at least once.
    pub warmed: BTreeSet<String>,
    /// The last split recorded, as a step line.
    pub recorded: Option<String>,
}

/// A call the host would make for one operator step.
pub(crate) struct Planned {
    pub request: Request,
    /// The environment as the pack sees it during the call.
    pub during: Arc<Environment>,
    /// What the host records once the call succeeded.
    after: After,
    /// Why the host sends this call now, for failure messages.
    pub why: String,
}

enum After {
    Lifecycle(usize, usize, Lifecycle),
    Applied(usize, TrafficSplit),
    Nothing,
}

impl Model {
    pub fn new(env_id: String, scenario: &Scenario, inputs: &Inputs) -> Self {
        // Numbers are unique in the environment; sequences rise per
        // deployment, so deployments share them.
        let mut number = 0;
        let deployments = scenario
            .deployments
            .iter()
            .map(|d| {
                let mut sequence = 0;
                let mut next = |id: &str, lifecycle| {
                    number += 1;
                    sequence += 1;
                    let mut r = revision(id, number, sequence, lifecycle);
                    r.deployment = d.id.clone();
                    r
                };
                let history: Vec<Revision> = d.history.iter().map(|id| next(id, Lifecycle::Archived)).collect();
                let revisions = d
                    .revisions
                    .iter()
                    .map(|g| {
                        let mut r = next(&g.id, Lifecycle::Inactive);
                        r.settings = g.settings.clone();
                        r.drain_seconds = g.drain_seconds;
                        r
                    })
                    .collect();
                Deployment {
                    id: d.id.clone(),
                    revisions,
                    history,
                    split: None,
                    applied: None,
                }
            })
            .collect();
        Model {
            env_id,
            deployments,
            inputs: inputs.clone(),
            warmed: BTreeSet::new(),
            recorded: None,
        }
    }

    /// The environment as recorded now.
    pub fn env(&self) -> Arc<Environment> {
        self.env_with(None, false)
    }

    /// The environment with the splits the pack applied in place of those
    /// recorded: what the pack's own runtime config must describe.
    pub fn applied_env(&self) -> Arc<Environment> {
        self.env_with(None, true)
    }

    fn env_with(&self, during: Option<(usize, usize, Lifecycle)>, applied: bool) -> Arc<Environment> {
        let deployments = self
            .deployments
            .iter()
            .enumerate()
            .map(|(di, d)| DeploymentDoc {
                id: d.id.clone(),
                split: if applied { d.applied.clone() } else { d.split.clone() },
                revisions: d
                    .history
                    .iter()
                    .cloned()
                    .chain(d.revisions.iter().enumerate().map(|(ri, r)| {
                        let mut r = r.clone();
                        if let Some((dj, rj, lifecycle)) = during
                            && (dj, rj) == (di, ri)
                        {
                            r.lifecycle = lifecycle;
                        }
                        r
                    }))
                    .collect(),
            })
            .collect();
        let mut doc = EnvironmentDoc {
            id: self.env_id.clone(),
            capabilities: Capability::ALL.to_vec(),
            grants: Default::default(),
            settings: Default::default(),
            deployments,
        };
        self.inputs.apply(&mut doc);
        Arc::new(Environment::from_doc(doc).expect("generated environments are valid"))
    }

    /// Every working revision as (deployment, revision) indices.
    fn working(&self) -> Vec<(usize, usize)> {
        self.deployments
            .iter()
            .enumerate()
            .flat_map(|(di, d)| (0..d.revisions.len()).map(move |ri| (di, ri)))
            .collect()
    }

    fn pick(&self, index: usize) -> (usize, usize) {
        let all = self.working();
        all[index % all.len()]
    }

    fn weight(&self, di: usize, id: &str) -> Option<u32> {
        let split = self.deployments[di].split.as_ref()?;
        split.entries.iter().find(|e| e.revision == id).map(|e| e.weight_bps)
    }

    /// Whether the pack applied the deployment's recorded split (or it has none).
    fn synced(&self, di: usize) -> bool {
        let d = &self.deployments[di];
        d.split.is_none() || d.applied == d.split
    }

    /// Whether every recorded split has been applied: the pack's view of the
    /// runtime config must then equal the host's projection.
    pub fn all_synced(&self) -> bool {
        (0..self.deployments.len()).all(|di| self.synced(di))
    }

    /// Every id of the environment but `except`: revisions, deployments.
    pub fn other_ids(&self, except: &str) -> Vec<String> {
        let mut ids = vec![self.env_id.clone()];
        for d in &self.deployments {
            ids.push(d.id.clone());
            ids.extend(d.revisions.iter().chain(&d.history).map(|r| r.id.clone()));
        }
        // Only the revision itself is left out: a deployment or environment
        // that happens to share its id stays, so callers can see the clash.
        if let Some(at) = ids.iter().rposition(|id| id == except) {
            ids.remove(at);
        }
        ids
    }

    /// The lifecycle of revision `id`, if it is a revision of the environment.
    pub fn lifecycle(&self, id: &str) -> Option<Lifecycle> {
        self.deployments
            .iter()
            .flat_map(|d| d.revisions.iter().chain(&d.history))
            .find(|r| r.id == id)
            .map(|r| r.lifecycle)
    }

    /// The call an operator step becomes, or `None` when the host would not
    /// send one (a split change is recorded here and sends nothing).
    pub fn plan(&mut self, op: &Op) -> Option<Planned> {
        match op {
            Op::Stage(i) => self.revision_verb(
                *i,
                Request::Stage,
                &[Lifecycle::Inactive, Lifecycle::Failed],
                None,
                Lifecycle::Staged,
            ),
            Op::Warm(i) => self.revision_verb(
                *i,
                Request::Warm,
                &[Lifecycle::Staged],
                Some(Lifecycle::Warming),
                Lifecycle::Ready,
            ),
            Op::Drain(i) => self.revision_verb(
                *i,
                Request::Drain,
                &[Lifecycle::Ready],
                Some(Lifecycle::Draining),
                Lifecycle::Inactive,
            ),
            Op::Archive(i) => self.revision_verb(
                *i,
                Request::Archive,
                &[
                    Lifecycle::Inactive,
                    Lifecycle::Staged,
                    Lifecycle::Ready,
                    Lifecycle::Failed,
                ],
                None,
                Lifecycle::Archived,
            ),
            Op::Split(d, raw, reverse) => {
                self.record_split(*d, raw, *reverse);
                None
            }
            Op::Apply(d) => {
                let with_split: Vec<usize> = (0..self.deployments.len())
                    .filter(|&di| self.deployments[di].split.is_some())
                    .collect();
                let &di = with_split.get(d % with_split.len().max(1))?;
                let split = self.deployments[di].split.clone()?;
                Some(Planned {
                    request: Request::ApplyTrafficSplit(self.deployments[di].id.clone()),
                    during: self.env(),
                    why: format!(
                        "the deployment's recorded split is valid (generation {})",
                        split.generation
                    ),
                    after: After::Applied(di, split),
                })
            }
            Op::Probe(i) => {
                let (di, ri) = self.pick(*i);
                let id = self.deployments[di].revisions[ri].id.clone();
                Some(Planned {
                    request: Request::Probe(id),
                    during: self.env(),
                    after: After::Nothing,
                    why: "probe may be called whatever the lifecycle".into(),
                })
            }
            Op::Report => Some(Planned {
                request: Request::ReportRuntimeConfig,
                during: self.env(),
                after: After::Nothing,
                why: "report-runtime-config may be called at any time".into(),
            }),
        }
    }

    /// The call `request` on the `index`-th revision (modulo their count)
    /// of those the host would send it for now, if there is one.
    fn revision_verb(
        &self,
        index: usize,
        request: fn(String) -> Request,
        from: &[Lifecycle],
        during: Option<Lifecycle>,
        to: Lifecycle,
    ) -> Option<Planned> {
        let candidates: Vec<(usize, usize)> = self
            .working()
            .into_iter()
            .filter(|&(di, ri)| self.sendable(di, ri, from, to))
            .collect();
        let &(di, ri) = candidates.get(index % candidates.len().max(1))?;
        let r = &self.deployments[di].revisions[ri];
        let lifecycle = during.unwrap_or(r.lifecycle);
        Some(Planned {
            request: request(r.id.clone()),
            during: self.env_with(Some((di, ri, lifecycle)), false),
            after: After::Lifecycle(di, ri, to),
            why: format!("the revision is {}", lifecycle_name(r.lifecycle)),
        })
    }

    /// Whether the host would move revision `(di, ri)` from its lifecycle to `to`.
    fn sendable(&self, di: usize, ri: usize, from: &[Lifecycle], to: Lifecycle) -> bool {
        let r = &self.deployments[di].revisions[ri];
        if !from.contains(&r.lifecycle) {
            return false;
        }
        // The host refuses to drain or archive a revision that holds
        // traffic. It would archive one listed at weight 0, but the contract
        // lets the applied split keep naming such a revision, so the model
        // archives only revisions no split lists: then every mention left
        // is a fault (the happy path covers the listed-at-0 case).
        let leaving = matches!(to, Lifecycle::Inactive | Lifecycle::Archived);
        if leaving && (self.weight(di, &r.id).unwrap_or(0) > 0 || !self.synced(di)) {
            return false;
        }
        !(to == Lifecycle::Archived && self.weight(di, &r.id).is_some())
    }

    /// Records a new split: positive weights only for ready revisions,
    /// zero for others listed, summing to exactly 10000.
    fn record_split(&mut self, d: usize, raw: &[u32], reverse: bool) {
        let ready: Vec<usize> = (0..self.deployments.len())
            .filter(|&di| {
                self.deployments[di]
                    .revisions
                    .iter()
                    .any(|r| r.lifecycle == Lifecycle::Ready)
            })
            .collect();
        let Some(&di) = ready.get(d % ready.len().max(1)) else {
            return;
        };
        let deployment = &self.deployments[di];
        let mut picks: Vec<(String, u64, bool)> = Vec::new();
        for (k, r) in deployment.revisions.iter().enumerate() {
            let w = u64::from(raw[k % raw.len()]);
            match r.lifecycle {
                Lifecycle::Ready => picks.push((r.id.clone(), w, true)),
                Lifecycle::Archived => {}
                // Listed at weight 0 now and then.
                _ if w % 2 == 0 => picks.push((r.id.clone(), 0, false)),
                _ => {}
            }
        }
        let total: u64 = picks.iter().filter(|p| p.2).map(|p| p.1).sum();
        let Some(first_ready) = picks.iter().position(|p| p.2) else {
            return;
        };
        if total == 0 {
            picks[first_ready].1 = 1;
        }
        let total = total.max(1);
        let mut entries: Vec<SplitEntry> = picks
            .iter()
            .map(|(id, w, _)| SplitEntry {
                revision: id.clone(),
                weight_bps: u32::try_from(w * FULL / total).unwrap_or(0),
            })
            .collect();
        let sum: u64 = entries.iter().map(|e| u64::from(e.weight_bps)).sum();
        let heaviest = (0..entries.len())
            .filter(|k| picks[*k].2)
            .max_by_key(|k| entries[*k].weight_bps)
            .unwrap_or(first_ready);
        entries[heaviest].weight_bps += u32::try_from(FULL - sum).unwrap_or(0);
        if reverse {
            entries.reverse();
        }
        let generation = deployment.split.as_ref().map_or(1, |s| s.generation + 1);
        let shown: Vec<String> = entries
            .iter()
            .map(|e| format!("{}={}", quoted(&e.revision), e.weight_bps))
            .collect();
        self.recorded = Some(format!(
            "record split of {} (generation {generation}): {}",
            quoted(&deployment.id),
            shown.join(", ")
        ));
        self.deployments[di].split = Some(TrafficSplit { generation, entries });
    }

    /// Records what the host records after `planned` succeeded.
    pub fn commit(&mut self, planned: &Planned) {
        match &planned.after {
            &After::Lifecycle(di, ri, lifecycle) => {
                let r = &mut self.deployments[di].revisions[ri];
                r.lifecycle = lifecycle;
                if lifecycle == Lifecycle::Ready {
                    self.warmed.insert(r.id.clone());
                }
            }
            After::Applied(di, split) => self.deployments[*di].applied = Some(split.clone()),
            After::Nothing => {}
        }
    }
}

pub(crate) fn lifecycle_name(l: Lifecycle) -> &'static str {
    match l {
        Lifecycle::Inactive => "inactive",
        Lifecycle::Staged => "staged",
        Lifecycle::Warming => "warming",
        Lifecycle::Ready => "ready",
        Lifecycle::Draining => "draining",
        Lifecycle::Failed => "failed",
        Lifecycle::Archived => "archived",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{GenDeployment, GenRevision};

    fn scenario() -> Scenario {
        let rev = |id: &str| GenRevision {
            id: id.into(),
            settings: Default::default(),
            drain_seconds: 0,
        };
        Scenario {
            deployments: vec![GenDeployment {
                id: "web".into(),
                revisions: vec![rev("a"), rev("ab")],
                history: vec!["old".into()],
            }],
            ops: Vec::new(),
        }
    }

    #[test]
    fn steps_follow_the_lifecycle_table() {
        let mut model = Model::new("e".into(), &scenario(), &Inputs::default());
        assert!(model.plan(&Op::Warm(0)).is_none(), "warm before stage");
        let stage = model.plan(&Op::Stage(0)).unwrap();
        assert_eq!(stage.request, Request::Stage("a".into()));
        model.commit(&stage);
        let warm = model.plan(&Op::Warm(0)).unwrap();
        assert_eq!(warm.during.revision("a").unwrap().lifecycle, Lifecycle::Warming);
        model.commit(&warm);
        assert!(model.plan(&Op::Apply(0)).is_none(), "no split recorded yet");
        model.plan(&Op::Split(0, vec![3, 7], false));
        let split = model.env().deployment("web").unwrap().split.clone().unwrap();
        let sum: u32 = split.entries.iter().map(|e| e.weight_bps).sum();
        assert_eq!(sum, 10_000);
        assert!(
            model.plan(&Op::Drain(0)).is_none(),
            "a revision with weight is not drained"
        );
        let apply = model.plan(&Op::Apply(0)).unwrap();
        model.commit(&apply);
        assert!(model.all_synced());
        assert!(model.plan(&Op::Archive(1)).is_none() || model.weight(0, "ab").is_none());
    }
}
