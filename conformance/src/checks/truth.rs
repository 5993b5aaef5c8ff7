//! Probe truth where the host and the provider disagree: the host records
//! revisions as ready that this pack (in a fresh environment) never warmed,
//! as after a provider lost them. A pack that answers from the host's
//! lifecycle ("ready, so healthy") instead of asking its provider says
//! `healthy`; so does one that confuses a revision with another of the
//! same sequence, a case variant or a prefix of one it did warm.

use std::sync::Arc;

use envpack_model::{Environment, Health, Outcome, Request, quoted};

use super::support::Verdict;
use super::{Ctx, Lane};
use crate::fixture::{Fixture, Ids};

/// Probes each of `revisions` (never warmed by the pack) and returns a
/// problem for each it calls healthy; `context` says what was done before.
async fn never_healthy(
    ctx: &Ctx<'_>,
    env: &Arc<Environment>,
    revisions: &[(&str, &str)],
    context: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (revision, what) in revisions {
        let step = ctx.call(env, Request::Probe(revision.to_string())).await;
        // Unhealthy, unsupported, or an error: none is a lie.
        if let Ok(Outcome::Health {
            health: Health::Healthy,
            ..
        }) = &step.report.result
        {
            problems.push(format!(
                "probe {} ({what}; the host records it ready, the pack never warmed it) answered healthy {context}",
                quoted(revision)
            ));
        }
    }
    problems
}

/// The fixed disagreement cases; the generated cases judge the rest.
pub(super) async fn disagreements(ctx: &Ctx<'_>) -> Vec<String> {
    let ids = Ids::standard();
    let env = Fixture::new(&ctx.env_id("probe-disagree"), ids.clone()).build(&ctx.config.inputs);
    let mut problems = never_healthy(
        ctx,
        &env,
        &[
            (&ids.a1, "a revision"),
            (&ids.a2, "a revision"),
            (&ids.b1, "a revision"),
        ],
        "in a fresh environment",
    )
    .await;
    // A1 warmed; B1 shares its sequence (1) in another deployment.
    ctx.call(&env, Request::Stage(ids.a1.clone())).await;
    ctx.call(&env, Request::Warm(ids.a1.clone())).await;
    problems.extend(
        never_healthy(
            ctx,
            &env,
            &[
                (
                    &ids.b1,
                    "another deployment's revision with the same sequence as a warmed one",
                ),
                (&ids.a2, "a sibling of a warmed revision"),
            ],
            &format!("after {} was warmed", quoted(&ids.a1)),
        )
        .await,
    );
    ctx.retire(&env, Lane::Main).await;
    // Ids a careless pack confuses with the warmed one.
    let confusable = Ids {
        a2: ids.a1.to_lowercase(),
        b1: ids.a1[..ids.a1.len() / 2].to_string(),
        ..ids.clone()
    };
    let env = Fixture::new(&ctx.env_id("probe-confusable"), confusable.clone()).build(&ctx.config.inputs);
    ctx.call(&env, Request::Stage(confusable.a1.clone())).await;
    ctx.call(&env, Request::Warm(confusable.a1.clone())).await;
    problems.extend(
        never_healthy(
            ctx,
            &env,
            &[
                (&confusable.a2, "the warmed revision's id in lower case"),
                (&confusable.b1, "a prefix of the warmed revision's id"),
            ],
            &format!("after {} was warmed", quoted(&confusable.a1)),
        )
        .await,
    );
    ctx.retire(&env, Lane::Main).await;
    problems
}

/// `revision-endpoint` (contract 1.2, optional): an unknown id is
/// `revision-not-found`; a revision the pack never warmed (though the host
/// records it ready) or archived has no address; a warmed one has an
/// http(s) URL; and asking changes nothing the pack keeps.
pub(super) async fn endpoints(ctx: &Ctx<'_>) -> Verdict {
    if !ctx
        .pack
        .exports()
        .iter()
        .any(|e| e.starts_with("envpack:deployer/endpoints@"))
    {
        return Verdict::skip("the pack exports no `endpoints` (contract 1.0 or 1.1, or 1.2 without it)");
    }
    let ids = Ids::standard();
    let env = Fixture::new(&ctx.env_id("endpoints"), ids.clone()).build(&ctx.config.inputs);
    let mut problems = Vec::new();
    let ask = async |revision: &str| ctx.call(&env, Request::Endpoint(revision.to_string())).await;
    let unknown = format!("{}-unknown", ids.a1);
    let step = ask(&unknown).await;
    match &step.report.result {
        Err(e) if e.to_string().contains("revision-not-found") || e.is_precondition() => {}
        other => problems.push(format!(
            "revision-endpoint of the unknown {} answered {other:?}, not revision-not-found",
            quoted(&unknown)
        )),
    }
    let address = |step: &super::support::Step| match &step.report.result {
        Ok(Outcome::Endpoint { url, .. }) => Ok(url.clone()),
        Err(e) => Err(e.to_string()),
        Ok(other) => Err(format!("{other:?}")),
    };
    let never = ask(&ids.a2).await;
    match address(&never) {
        Ok(None) => {}
        other => problems.push(format!(
            "revision-endpoint of {} (the host records it ready, the pack never warmed it) answered {other:?}, not none",
            quoted(&ids.a2)
        )),
    }
    ctx.call(&env, Request::Stage(ids.a1.clone())).await;
    ctx.call(&env, Request::Warm(ids.a1.clone())).await;
    let warmed = ask(&ids.a1).await;
    match address(&warmed) {
        Ok(Some(url)) if url.starts_with("http://") || url.starts_with("https://") => {}
        Ok(None) => {} // a provider may have no direct route: allowed
        other => problems.push(format!(
            "revision-endpoint of the warmed {} answered {other:?}, not an http(s) URL or none",
            quoted(&ids.a1)
        )),
    }
    for step in [&never, &warmed] {
        let effects: Vec<String> = step
            .report
            .recording
            .side_effects()
            .map(|c| format!("{} {}", c.operation, c.detail))
            .collect();
        if !effects.is_empty() {
            problems.push(format!(
                "revision-endpoint had side effects ({}): it must be read-only",
                effects.join(", ")
            ));
        }
    }
    ctx.call(&env, Request::Drain(ids.a1.clone())).await;
    let archived = ctx.call(&env, Request::Archive(ids.a1.clone())).await;
    // Judged only where the archive went through (other checks judge it).
    if archived.report.result.is_ok() {
        match address(&ask(&ids.a1).await) {
            Ok(None) => {}
            other => problems.push(format!(
                "revision-endpoint of the archived {} answered {other:?}, not none",
                quoted(&ids.a1)
            )),
        }
    }
    Verdict::from_problems(
        problems,
        "no address for unknown, never-warmed or archived revisions; an http(s) URL or none for a warmed one",
    )
}

/// `release-deployment` (contract 1.2, optional): a deployment the pack
/// never set up is released, and released again, while another deployment
/// of the environment runs: nothing the pack keeps changes and none of its
/// processes stops. (A pack that fails here wedges `env remove --teardown`
/// on a deployment that never got traffic.)
pub(super) async fn release(ctx: &Ctx<'_>) -> Verdict {
    if !ctx
        .pack
        .exports()
        .iter()
        .any(|e| e.starts_with("envpack:deployer/teardown@"))
    {
        return Verdict::skip("the pack exports no `teardown` (contract 1.0 or 1.1, or 1.2 without it)");
    }
    let ids = Ids::standard();
    let env = Fixture::new(&ctx.env_id("release"), ids.clone()).build(&ctx.config.inputs);
    // Another deployment runs a revision beside the one released.
    ctx.call(&env, Request::Stage(ids.a1.clone())).await;
    ctx.call(&env, Request::Warm(ids.a1.clone())).await;
    let (kv, live) = (ctx.kv_state(&env), ctx.live_processes(&env));
    let never = "conformance-never-set-up";
    let mut problems = Vec::new();
    for attempt in ["the first time", "again"] {
        let step = ctx.call(&env, Request::ReleaseDeployment(never.to_string())).await;
        if let Err(e) = &step.report.result {
            problems.push(format!(
                "release-deployment of {} (never set up), {attempt}, failed: {e}; it must be released",
                quoted(never)
            ));
        }
    }
    if ctx.kv_state(&env) != kv {
        problems.push(format!(
            "release-deployment of {} (never set up) changed the pack's kv state",
            quoted(never)
        ));
    }
    let after = ctx.live_processes(&env);
    if after != live {
        problems.push(format!(
            "release-deployment of {} (never set up) left {after} processes running; before, {live}",
            quoted(never)
        ));
    }
    ctx.call(&env, Request::Drain(ids.a1.clone())).await;
    ctx.call(&env, Request::Archive(ids.a1.clone())).await;
    ctx.retire(&env, Lane::Main).await;
    Verdict::from_problems(
        problems,
        "a deployment never set up is released, twice, and nothing else changes",
    )
}
