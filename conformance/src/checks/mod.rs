//! Check implementations, dispatched by id. Each check starts from fresh
//! environments (fresh pack state) and returns a verdict whose failure
//! message says what was called, what came back and what was expected.

mod isolation;
mod model;
mod rejections;
mod release;
pub(crate) mod sequences;
mod support;
mod truth;
mod whole_run;

pub(crate) use support::*;

use std::sync::Arc;

use envpack_model::{Capability, Environment, Outcome, Request};
use envpack_trust::Descriptor;

use crate::catalog::Check;
use crate::fixture::{Fixture, Ids};
use sequences::Class;

pub(crate) async fn run(check: Check, ctx: &Ctx<'_>) -> Verdict {
    match check {
        Check::DescribeValid => describe_valid(ctx),
        Check::ManifestAgrees => manifest_agrees(ctx),
        Check::VerbsHappyPath => happy_path(ctx, "happy", Ids::standard(), 0).await,
        Check::VerbsEcho => echo(ctx, Ids::standard()).await,
        Check::Idempotency => idempotency(ctx).await,
        Check::SpecUnknownRevision => rejections::unknown_revision(ctx).await,
        Check::SpecInvalidSplit => rejections::invalid_split(ctx).await,
        Check::SpecSplitNotFound => rejections::split_not_found(ctx).await,
        Check::SpecTypedErrors => rejections::typed_errors(ctx).await,
        Check::SpecNoSideEffectBeforeError => rejections::no_side_effect(ctx).await,
        Check::SplitIsolation => isolation::split_isolation(ctx).await,
        Check::RevisionIsolation => isolation::revision_isolation(ctx).await,
        Check::ModelSequences => generated(ctx, Class::Sequences, "every call the host would send succeeded and echoed, and the pack's runtime config followed the splits it applied").await,
        Check::ProbeTruthful => probe_truthful(ctx).await,
        Check::EndpointTruthful => truth::endpoints(ctx).await,
        Check::TeardownIdempotent => truth::release(ctx).await,
        Check::ArchiveReleases => generated(ctx, Class::Archive, "after every archive, nothing in kv named the revision, its directory was gone and its processes stopped").await,
        Check::RuntimeConfigDrift => drift(ctx).await,
        Check::RobustnessLongIds => long_ids(ctx).await,
        Check::RobustnessLargeEnv => happy_path(ctx, "large", Ids::standard(), ctx.config.history).await,
        Check::ProviderMessage => whole_run::provider_message(ctx).await,
        Check::CapabilityDeclared => whole_run::capability_declared(ctx),
        Check::BudgetsTime => whole_run::budgets_time(ctx),
        Check::BudgetsMemory => whole_run::budgets_memory(ctx),
        Check::SignatureTrusted => whole_run::signature(ctx),
    }
}

fn describe_valid(ctx: &Ctx<'_>) -> Verdict {
    let info = ctx.pack.info();
    match info.descriptor.parse::<Descriptor>() {
        Err(e) => Verdict::fail(format!("describe returned {e}")),
        Ok(_) if !envpack_model::accepts_contract(&info.contract_version) => Verdict::fail(format!(
            "describe returned contract {:?}; this host speaks {} (same major, minor at most its own)",
            info.contract_version,
            envpack_model::CONTRACT_VERSION
        )),
        Ok(_) => match ctx.pack.built_against() {
            Some(built) if built != info.contract_version => Verdict::fail(format!(
                "describe returned contract {:?}, but the component was built against {built} (it exports envpack:deployer/deployer@{built})",
                info.contract_version
            )),
            _ => Verdict::pass(format!("{} (contract {})", info.descriptor, info.contract_version)),
        },
    }
}

fn manifest_agrees(ctx: &Ctx<'_>) -> Verdict {
    match ctx.pack.manifest() {
        Some(m) => Verdict::pass(format!("manifest by {} agrees with describe", m.author)),
        None => Verdict::skip("the pack has no manifest (an unsealed developer build); seal it with `host pack seal`"),
    }
}

fn fixture_env(ctx: &Ctx<'_>, check: &str, ids: Ids, history: u64) -> Arc<Environment> {
    Fixture::new(&ctx.env_id(check), ids)
        .with_history(history)
        .build(&ctx.config.inputs)
}

/// Every call of a sequence that did not succeed, as failure lines.
fn failures(steps: &[Step]) -> Vec<String> {
    steps
        .iter()
        .filter(|s| s.report.result.is_err())
        .map(|s| {
            format!(
                "{} returned {}; expected success",
                label(&s.request),
                describe_result(&s.report)
            )
        })
        .collect()
}

async fn happy_path(ctx: &Ctx<'_>, check: &str, ids: Ids, history: u64) -> Verdict {
    let env = fixture_env(ctx, check, ids.clone(), history);
    let steps = ctx.happy_path(&env, &ids).await;
    let note = if history > 0 {
        format!(
            "{} calls succeeded with {} revisions in the environment",
            steps.len(),
            env.revision_count()
        )
    } else {
        format!("{} calls succeeded", steps.len())
    };
    Verdict::from_problems(failures(&steps), note)
}

/// Echo problems of successful calls in `steps`.
pub(crate) fn echo_problems(steps: &[Step]) -> Vec<String> {
    let mut problems = Vec::new();
    for step in steps {
        let env = &step.env;
        match (&step.request, &step.report.result) {
            (request, Ok(Outcome::Revision { revision, .. })) => {
                let wanted = request.revision().unwrap_or_default();
                if revision != wanted {
                    problems.push(format!(
                        "{} echoed revision {revision:?}; expected {wanted:?}",
                        label(request)
                    ));
                }
            }
            (
                Request::ApplyTrafficSplit(deployment),
                Ok(Outcome::Split {
                    deployment: got,
                    entries,
                }),
            ) => {
                let recorded = env
                    .deployment(deployment)
                    .and_then(|d| d.split.as_ref())
                    .map(|s| &s.entries);
                if got != deployment || Some(entries) != recorded {
                    problems.push(format!(
                        "apply-traffic-split {deployment} echoed deployment {got:?} with {entries:?}; expected {deployment:?} with {recorded:?}"
                    ));
                }
            }
            _ => {}
        }
    }
    problems
}

async fn echo(ctx: &Ctx<'_>, ids: Ids) -> Verdict {
    let env = fixture_env(ctx, "echo", ids.clone(), 0);
    let steps = ctx.happy_path(&env, &ids).await;
    Verdict::from_problems(echo_problems(&steps), "every outcome echoed its request")
}

async fn long_ids(ctx: &Ctx<'_>) -> Verdict {
    let ids = Ids::unusual();
    let env = fixture_env(ctx, "long-ids", ids.clone(), 0);
    let steps = ctx.happy_path(&env, &ids).await;
    let mut problems = failures(&steps);
    // Mangled ids show in revision outcomes; split echoes are `verbs.echo`'s concern.
    let revision_steps: Vec<Step> = steps.into_iter().filter(|s| s.request.revision().is_some()).collect();
    problems.extend(echo_problems(&revision_steps));
    Verdict::from_problems(problems, "256-byte and unicode ids round-tripped")
}

/// The pack state a check can observe: its kv and its reported runtime config.
async fn observe(
    ctx: &Ctx<'_>,
    env: &Arc<Environment>,
) -> (std::collections::BTreeMap<String, Vec<u8>>, Option<String>) {
    let view = ctx
        .pack_view(env)
        .await
        .map(|v| serde_json::to_string(&v.entries).unwrap_or_default());
    (ctx.kv_state(env), view)
}

/// Whether the pack has state the bench can see: kv, or processes.
fn observable(ctx: &Ctx<'_>) -> bool {
    let declared = &ctx.pack.info().capabilities;
    declared.contains(&Capability::Kv) || declared.contains(&Capability::Process)
}

async fn idempotency(ctx: &Ctx<'_>) -> Verdict {
    let ids = Ids::standard();
    let twice = fixture_env(ctx, "twice", ids.clone(), 0);
    let mut problems = Vec::new();
    let twice_shifted = shifted(&twice, &ids);
    for (request, later) in happy_plan(&ids) {
        let env = if later { &twice_shifted } else { &twice };
        let first = ctx.call(env, request.clone()).await;
        let after_one = ctx.kv_state(&twice);
        let live_after_one = ctx.live_processes(&twice);
        let second = ctx.call(env, request.clone()).await;
        if ctx.kv_state(&twice) != after_one {
            problems.push(format!(
                "calling {} a second time changed the pack's kv state",
                label(&request)
            ));
        }
        let live = ctx.live_processes(&twice);
        if live != live_after_one {
            problems.push(format!(
                "calling {} a second time left {live} processes running; once left {live_after_one}",
                label(&request)
            ));
        }
        if first.report.result.is_ok() != second.report.result.is_ok() {
            problems.push(format!(
                "{} returned {} the first time and {} the second",
                label(&request),
                describe_result(&first.report),
                describe_result(&second.report)
            ));
        }
    }
    let once = fixture_env(ctx, "once", ids.clone(), 0);
    ctx.happy_path(&once, &ids).await;
    let many = fixture_env(ctx, "many", ids.clone(), 0);
    for _ in 0..ctx.config.repeat {
        ctx.happy_path(&many, &ids).await;
    }
    let (once_kv, once_view) = observe(ctx, &shifted(&once, &ids)).await;
    let (many_kv, many_view) = observe(ctx, &shifted(&many, &ids)).await;
    let (once_live, many_live) = (ctx.live_processes(&once), ctx.live_processes(&many));
    if once_live != many_live {
        problems.push(format!(
            "after the sequence {} times {many_live} processes run; after once, {once_live}",
            ctx.config.repeat
        ));
    }
    if !observable(ctx) && once_view.is_none() {
        let findings = sequences::findings(ctx).await;
        if let Some(failure) = findings.failure(Class::Idempotency) {
            return Verdict::fail(failure.text.clone());
        }
        return Verdict::skip("the pack declares no kv and does not report a runtime config: no state to compare");
    }
    // What the pack tracks must match; the values may not: a revision
    // drained and warmed again holds a new provider id (a new process).
    let keys = |m: &std::collections::BTreeMap<String, Vec<u8>>| m.keys().cloned().collect::<Vec<_>>();
    if keys(&once_kv) != keys(&many_kv) {
        problems.push(format!(
            "after the sequence {} times the pack's kv keys are {:?}; after once they are {:?}",
            ctx.config.repeat,
            keys(&many_kv),
            keys(&once_kv)
        ));
    }
    if once_view != many_view {
        problems.push(format!(
            "after the sequence {} times the reported runtime config differs from after once",
            ctx.config.repeat
        ));
    }
    let findings = sequences::findings(ctx).await;
    if let Some(failure) = findings.failure(Class::Idempotency) {
        problems.push(failure.text.clone());
    }
    Verdict::from_problems(
        problems,
        format!(
            "each verb twice and the sequence {} times left the state of once; so did every effectful call repeated in {} generated cases (seed {})",
            ctx.config.repeat, findings.cases, findings.seed
        ),
    )
}

/// A check judged on the generated cases' findings of one class.
async fn generated(ctx: &Ctx<'_>, class: Class, note: &str) -> Verdict {
    let findings = sequences::findings(ctx).await;
    match findings.failure(class) {
        Some(failure) => Verdict::fail(failure.text.clone()),
        None => Verdict::pass(format!(
            "{note} (the coverage case and {} generated cases, {} calls, seed {})",
            findings.cases, findings.calls, findings.seed
        )),
    }
}

/// Probe truth: the fixed cases where the host records revisions ready
/// that the pack never warmed, then the generated cases.
async fn probe_truthful(ctx: &Ctx<'_>) -> Verdict {
    let problems = truth::disagreements(ctx).await;
    if !problems.is_empty() {
        return Verdict::fail(problems.join("\n"));
    }
    generated(
        ctx,
        Class::Probe,
        "probe never said a never-warmed or archived revision was healthy, nor one the host records ready and the pack never warmed",
    )
    .await
}

/// Blocks of `deployment` in the pack's runtime config view.
pub(crate) async fn view_of(ctx: &Ctx<'_>, env: &Arc<Environment>, deployment: &str) -> Option<String> {
    let view = ctx.pack_view(env).await?;
    let blocks: Vec<_> = view
        .entries
        .into_iter()
        .filter(|e| e.deployment == deployment)
        .collect();
    serde_json::to_string(&blocks).ok()
}

async fn drift(ctx: &Ctx<'_>) -> Verdict {
    let ids = Ids::standard();
    let env = fixture_env(ctx, "drift", ids.clone(), 0);
    ctx.happy_path(&env, &ids).await;
    let step = ctx.call(&shifted(&env, &ids), Request::ReportRuntimeConfig).await;
    match step.report.result {
        Ok(Outcome::RuntimeConfig { pack: None, .. }) => {
            Verdict::skip("the pack does not override report-runtime-config; the host's projection stands")
        }
        Ok(Outcome::RuntimeConfig {
            pack: Some(view),
            host,
            drift: true,
        }) => Verdict::fail(format!(
            "report-runtime-config returned {}; the host's projection is {}",
            serde_json::to_string(&view.entries).unwrap_or_default(),
            serde_json::to_string(&host.entries).unwrap_or_default()
        )),
        Ok(_) => Verdict::pass("the pack's view equals the host's projection"),
        Err(e) => Verdict::fail(format!("report-runtime-config returned {e}; expected the pack's view")),
    }
}
