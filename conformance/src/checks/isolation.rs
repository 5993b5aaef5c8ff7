//! Isolation, judged by effects rather than names: every step runs twice,
//! side by side, in two environments that differ only in the siblings'
//! names (the main lane and its twin, each with its own pack state). A pack
//! that leaves siblings alone changes the same kv keys in both; one that
//! acts on a sibling changes keys that depend on which sibling is there.
//! The siblings' observable state (their probes, their processes, their
//! blocks of the reported runtime config) must not move either.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envpack_model::{Environment, Health, Outcome, Request};

use super::{Ctx, Lane, Step, label, shifted, view_of};
use crate::fixture::{Fixture, Ids};

/// The verbs on one revision, in the order a revision meets them.
const REVISION_VERBS: [fn(String) -> Request; 5] = [
    Request::Stage,
    Request::Warm,
    Request::Probe,
    Request::Drain,
    Request::Archive,
];

/// The twin's ids: the same target, siblings renamed.
fn twin_ids() -> Ids {
    Ids {
        api: "jobs".into(),
        a1: "01JBW0000000000000000000C1".into(),
        b1: "01JBW0000000000000000000D1".into(),
        ..Ids::standard()
    }
}

/// One environment of each lane, with its ids.
struct Pair {
    main: (Arc<Environment>, Ids),
    twin: (Arc<Environment>, Ids),
}

impl Pair {
    fn new(ctx: &Ctx<'_>, check: &str, shape: impl Fn(Fixture) -> Fixture) -> Self {
        let id = ctx.env_id(check);
        let build = |ids: Ids| (shape(Fixture::new(&id, ids.clone())).build(&ctx.config.inputs), ids);
        Pair {
            main: build(Ids::standard()),
            twin: build(twin_ids()),
        }
    }

    /// Makes the call `request(ids)` in both lanes.
    async fn both(&self, ctx: &Ctx<'_>, request: impl Fn(&Ids) -> Request) -> (Step, Step) {
        (
            ctx.call_in(&self.main.0, request(&self.main.1), Lane::Main).await,
            ctx.call_in(&self.twin.0, request(&self.twin.1), Lane::Twin).await,
        )
    }

    fn kv(&self, ctx: &Ctx<'_>) -> (Kv, Kv) {
        (
            ctx.kv_state_in(&self.main.0, Lane::Main),
            ctx.kv_state_in(&self.twin.0, Lane::Twin),
        )
    }
}

type Kv = BTreeMap<String, Vec<u8>>;

const RENAMED: &str = "with its siblings renamed";

/// Keys whose value a step added, changed or removed.
fn changed(before: &Kv, after: &Kv) -> BTreeSet<String> {
    before
        .keys()
        .chain(after.keys())
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect()
}

/// Keys the call wrote or deleted, whether or not the value changed.
fn written(step: &Step) -> BTreeSet<String> {
    step.report
        .recording
        .calls
        .iter()
        .filter(|c| c.operation == "kv.set" || c.operation == "kv.delete")
        .map(|c| c.detail.clone())
        .collect()
}

/// Runs `request` in both lanes and compares which kv keys it wrote or
/// changed; `twin` says how the twin's environment differs.
async fn differential(ctx: &Ctx<'_>, pair: &Pair, twin: &str, request: impl Fn(&Ids) -> Request) -> Option<String> {
    let (main_before, twin_before) = pair.kv(ctx);
    let (main_step, twin_step) = pair.both(ctx, &request).await;
    let (main_after, twin_after) = pair.kv(ctx);
    let mut main = changed(&main_before, &main_after);
    main.extend(written(&main_step));
    let mut twin_changed = changed(&twin_before, &twin_after);
    twin_changed.extend(written(&twin_step));
    (main != twin_changed).then(|| {
        format!(
            "{} changed kv keys {main:?}; the same call in the same environment {twin} changed {twin_keys:?}: the call acts on state that depends on a sibling",
            label(&request(&pair.main.1)),
            twin_keys = twin_changed
        )
    })
}

/// The siblings' health as the pack reports it (variants only: a reason may vary).
async fn health(
    ctx: &Ctx<'_>,
    env: &Arc<Environment>,
    revisions: &[&String],
) -> Vec<Option<std::mem::Discriminant<Health>>> {
    let mut out = Vec::new();
    for revision in revisions {
        let report = ctx.call(env, Request::Probe((*revision).clone())).await.report;
        out.push(match report.result {
            Ok(Outcome::Health { health, .. }) => Some(std::mem::discriminant(&health)),
            _ => None,
        });
    }
    out
}

/// Processes of `before` no longer running.
fn stopped(ctx: &Ctx<'_>, env: &Environment, before: &[(String, String)]) -> Vec<String> {
    let now = ctx.live_process_list(env);
    before
        .iter()
        .filter(|p| !now.contains(p))
        .map(|(id, command)| format!("{id} ({command})"))
        .collect()
}

pub(super) async fn split_isolation(ctx: &Ctx<'_>) -> super::Verdict {
    let pair = Pair::new(ctx, "isolation", |f| f);
    for request in [Request::Stage, Request::Warm] {
        for pick in [|i: &Ids| i.a1.clone(), |i: &Ids| i.a2.clone(), |i: &Ids| i.b1.clone()] {
            pair.both(ctx, |ids| request(pick(ids))).await;
        }
    }
    // Applying a split routes; it stops nothing that runs.
    let running = ctx.live_process_list(&pair.main.0);
    pair.both(ctx, |ids| Request::ApplyTrafficSplit(ids.web.clone())).await;
    pair.both(ctx, |ids| Request::ApplyTrafficSplit(ids.api.clone())).await;
    let (env, ids) = &pair.main;
    let api_view = view_of(ctx, env, &ids.api).await;
    let api_health = health(ctx, env, &[&ids.b1]).await;
    // New splits for both deployments in both lanes; apply web's only.
    let changed_pair = Pair {
        main: with_new_splits(ctx, &pair.main.0, &pair.main.1),
        twin: with_new_splits(ctx, &pair.twin.0, &pair.twin.1),
    };
    let mut problems: Vec<String> = differential(ctx, &changed_pair, RENAMED, |ids| {
        Request::ApplyTrafficSplit(ids.web.clone())
    })
    .await
    .into_iter()
    .collect();
    let env = &changed_pair.main.0;
    let api_after = view_of(ctx, env, &ids.api).await;
    if api_view != api_after {
        problems.push(format!(
            "applying {}'s split changed the runtime config the pack reports for {}: before {}, after {}",
            ids.web,
            ids.api,
            api_view.unwrap_or_default(),
            api_after.unwrap_or_default()
        ));
    }
    if health(ctx, env, &[&ids.b1]).await != api_health {
        problems.push(format!(
            "applying {}'s split changed what probe says of {}",
            ids.web, ids.b1
        ));
    }
    for process in stopped(ctx, env, &running) {
        problems.push(format!(
            "applying the splits stopped process {process}, which ran before them"
        ));
    }
    super::Verdict::from_problems(
        problems,
        format!(
            "applying {} changed the same keys with its sibling renamed, and left {} as it was",
            ids.web, ids.api
        ),
    )
}

/// The environment of `lane` after the operator recorded new splits for
/// both deployments: web at 50/50, and api with a new revision listed at
/// weight 0. Only web's is applied next; api's must stay unapplied.
fn with_new_splits(ctx: &Ctx<'_>, env: &Environment, ids: &Ids) -> (Arc<Environment>, Ids) {
    let env = Fixture::new(env.id(), ids.clone())
        .with_web_split(&[(&ids.a1, 5000), (&ids.a2, 5000)])
        .with_api_successor(&format!("{}-next", ids.b1))
        .build(&ctx.config.inputs);
    (env, ids.clone())
}

pub(super) async fn revision_isolation(ctx: &Ctx<'_>) -> super::Verdict {
    let base = Pair::new(ctx, "revision-isolation", |f| f);
    // A2 holds no traffic, so that the host would drain and archive it.
    let pair = Pair {
        main: (shifted(&base.main.0, &base.main.1), base.main.1.clone()),
        twin: (shifted(&base.twin.0, &base.twin.1), base.twin.1.clone()),
    };
    for request in [Request::Stage, Request::Warm] {
        pair.both(ctx, |ids| request(ids.a1.clone())).await;
        pair.both(ctx, |ids| request(ids.b1.clone())).await;
    }
    let (env, ids) = &pair.main;
    let siblings = [&ids.a1, &ids.b1];
    let sibling_health = health(ctx, env, &siblings).await;
    let running = ctx.live_process_list(env);
    let mut problems = Vec::new();
    for request in REVISION_VERBS {
        let call = |ids: &Ids| request(ids.a2.clone());
        if let Some(problem) = differential(ctx, &pair, RENAMED, call).await {
            problems.push(problem);
        }
        let what = label(&call(ids));
        if health(ctx, env, &siblings).await != sibling_health {
            problems.push(format!(
                "{what} changed what probe says of its siblings {} and {}",
                ids.a1, ids.b1
            ));
        }
        for process in stopped(ctx, env, &running) {
            problems.push(format!("{what} stopped process {process}, which a sibling started"));
        }
        if !problems.is_empty() {
            break;
        }
    }
    if problems.is_empty() {
        problems.extend(absent_siblings(ctx).await);
    }
    super::Verdict::from_problems(
        problems,
        format!(
            "stage, warm, probe, drain and archive of {} changed the same keys with its siblings renamed or absent, and left them as they were",
            ids.a2
        ),
    )
}

/// The same verbs of A2 where its siblings are recorded (A1 ready with all
/// web's traffic, B1 ready in api) but this pack never staged them, and
/// where A2 is alone: a verb that also prepares a sibling "by
/// anticipation", or writes more when siblings exist, changes other keys.
async fn absent_siblings(ctx: &Ctx<'_>) -> Vec<String> {
    let ids = Ids::standard();
    let id = ctx.env_id("absent-siblings");
    let main = Fixture::new(&id, ids.clone()).build(&ctx.config.inputs);
    let pair = Pair {
        main: (shifted(&main, &ids), ids.clone()),
        twin: (
            Fixture::new(&id, ids.clone()).alone(&ids.a2).build(&ctx.config.inputs),
            ids.clone(),
        ),
    };
    let mut problems = Vec::new();
    for request in REVISION_VERBS {
        let call = |ids: &Ids| request(ids.a2.clone());
        if let Some(problem) = differential(ctx, &pair, "with no sibling at all", call).await {
            problems.push(problem);
            break;
        }
    }
    ctx.retire(&pair.main.0, Lane::Main).await;
    ctx.retire(&pair.twin.0, Lane::Twin).await;
    problems
}
