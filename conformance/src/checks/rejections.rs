//! The spec-error checks. They share one set of rejected inputs (unknown
//! revisions, invalid splits, missing splits) and judge different things
//! about the answers: that the input was rejected, that the rejection is
//! its typed variant, and that nothing but logging happened before it.

use envpack_model::{Capability, Request, VerbError};

use super::{Ctx, Step, Verdict, describe_result, label};
use crate::fixture::{Fixture, Ids, UNKNOWN_REVISION};

/// The typed error an input must produce.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expected {
    RevisionNotFound(String),
    InvalidSplit(u64),
    SplitNotFound(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    UnknownRevision,
    InvalidSplit,
    SplitNotFound,
}

struct Rejection {
    expected: Expected,
    step: Step,
}

async fn unknown_revisions(ctx: &Ctx<'_>) -> Vec<Rejection> {
    let env = Fixture::new(&ctx.env_id("unknown-revision"), Ids::standard()).build(&ctx.config.inputs);
    let mut out = Vec::new();
    for request in [
        Request::Stage(UNKNOWN_REVISION.into()),
        Request::Warm(UNKNOWN_REVISION.into()),
        Request::Drain(UNKNOWN_REVISION.into()),
        Request::Archive(UNKNOWN_REVISION.into()),
        Request::Probe(UNKNOWN_REVISION.into()),
    ] {
        let step = ctx.call(&env, request).await;
        out.push(Rejection {
            expected: Expected::RevisionNotFound(UNKNOWN_REVISION.into()),
            step,
        });
    }
    out
}

/// Bad splits for web, applied after A1 and A2 are staged and warm, so that a
/// pack skipping validation would really apply them.
async fn invalid_splits(ctx: &Ctx<'_>) -> Vec<Rejection> {
    let ids = Ids::standard();
    let env_id = ctx.env_id("invalid-split");
    let good = Fixture::new(&env_id, ids.clone()).build(&ctx.config.inputs);
    for request in [
        Request::Stage(ids.a1.clone()),
        Request::Stage(ids.a2.clone()),
        Request::Warm(ids.a1.clone()),
        Request::Warm(ids.a2.clone()),
    ] {
        ctx.call(&good, request).await;
    }
    let (a1, a2) = (ids.a1.as_str(), ids.a2.as_str());
    let cases: [&[(&str, u32)]; 5] = [
        &[(a1, 9000)],
        &[(a1, 9000), (a2, 1001)],
        &[(a1, 10_001), (a2, 0)],
        &[],
        // u32::MAX - 5 + 10006 wraps to exactly 10000 in u32 arithmetic.
        &[(a1, u32::MAX - 5), (a2, 10_006)],
    ];
    let mut out = Vec::new();
    for entries in cases {
        let sum = entries.iter().map(|(_, w)| u64::from(*w)).sum();
        let env = Fixture::new(&env_id, ids.clone())
            .with_web_split(entries)
            .build(&ctx.config.inputs);
        let step = ctx.call(&env, Request::ApplyTrafficSplit(ids.web.clone())).await;
        out.push(Rejection {
            expected: Expected::InvalidSplit(sum),
            step,
        });
    }
    out
}

async fn missing_splits(ctx: &Ctx<'_>) -> Vec<Rejection> {
    let ids = Ids::standard();
    let env = Fixture::new(&ctx.env_id("split-not-found"), ids.clone())
        .without_api_split()
        .build(&ctx.config.inputs);
    let mut out = Vec::new();
    for deployment in [ids.api.clone(), "ghost-deployment".to_string()] {
        let step = ctx.call(&env, Request::ApplyTrafficSplit(deployment.clone())).await;
        out.push(Rejection {
            expected: Expected::SplitNotFound(deployment),
            step,
        });
    }
    out
}

async fn inputs(ctx: &Ctx<'_>, families: &[Family]) -> Vec<Rejection> {
    let mut out = Vec::new();
    for family in families {
        out.extend(match family {
            Family::UnknownRevision => unknown_revisions(ctx).await,
            Family::InvalidSplit => invalid_splits(ctx).await,
            Family::SplitNotFound => missing_splits(ctx).await,
        });
    }
    out
}

const ALL: [Family; 3] = [Family::UnknownRevision, Family::InvalidSplit, Family::SplitNotFound];

fn expected_name(expected: &Expected) -> String {
    match expected {
        Expected::RevisionNotFound(id) => format!("revision-not-found({id})"),
        Expected::InvalidSplit(sum) => format!("invalid-split({sum})"),
        Expected::SplitNotFound(d) => format!("split-not-found({d})"),
    }
}

fn describe_input(r: &Rejection) -> String {
    match &r.expected {
        Expected::InvalidSplit(sum) => format!("{} with a split summing to {sum}", label(&r.step.request)),
        _ => label(&r.step.request),
    }
}

/// Inputs the pack did not reject, as failure lines: accepted, or never
/// answered (a trap, a deadline overrun, a budget stop is no rejection).
fn accepted(rejections: &[Rejection]) -> Vec<String> {
    rejections
        .iter()
        .filter(|r| r.step.report.result.as_ref().err().is_none_or(|e| !e.is_pack_answer()))
        .map(|r| {
            format!(
                "{} returned {}; expected {}",
                describe_input(r),
                describe_result(&r.step.report),
                expected_name(&r.expected)
            )
        })
        .collect()
}

pub(super) async fn unknown_revision(ctx: &Ctx<'_>) -> Verdict {
    let rejections = inputs(ctx, &[Family::UnknownRevision]).await;
    Verdict::from_problems(
        accepted(&rejections),
        "every revision verb rejected the unknown revision",
    )
}

pub(super) async fn split_not_found(ctx: &Ctx<'_>) -> Verdict {
    let rejections = inputs(ctx, &[Family::SplitNotFound]).await;
    Verdict::from_problems(accepted(&rejections), "missing splits were rejected")
}

pub(super) async fn invalid_split(ctx: &Ctx<'_>) -> Verdict {
    let rejections = inputs(ctx, &[Family::InvalidSplit]).await;
    let mut problems = accepted(&rejections);
    for r in &rejections {
        if let (Expected::InvalidSplit(want), Err(VerbError::InvalidSplit { sum, .. })) =
            (&r.expected, &r.step.report.result)
            && sum != want
        {
            problems.push(format!(
                "{} returned invalid-split({sum}); expected invalid-split({want}), the sum in u64",
                describe_input(r)
            ));
        }
    }
    Verdict::from_problems(problems, "every invalid split was rejected with its u64 sum")
}

fn is_typed(expected: &Expected, error: &VerbError) -> bool {
    match (expected, error) {
        (Expected::RevisionNotFound(want), VerbError::RevisionNotFound { revision, .. }) => revision == want,
        (Expected::InvalidSplit(_), VerbError::InvalidSplit { .. }) => true,
        (Expected::SplitNotFound(want), VerbError::SplitNotFound { deployment, .. }) => deployment == want,
        _ => false,
    }
}

pub(super) async fn typed_errors(ctx: &Ctx<'_>) -> Verdict {
    let rejections = inputs(ctx, &ALL).await;
    let problems = rejections
        .iter()
        .filter_map(|r| match &r.step.report.result {
            Err(e) if !is_typed(&r.expected, e) => Some(format!(
                "{} returned {e}; expected {}",
                describe_input(r),
                expected_name(&r.expected)
            )),
            _ => None,
        })
        .collect();
    Verdict::from_problems(problems, "every rejection was its typed variant")
}

pub(super) async fn no_side_effect(ctx: &Ctx<'_>) -> Verdict {
    let declared = &ctx.pack.info().capabilities;
    if declared
        .iter()
        .all(|c| matches!(c, Capability::Log | Capability::Clock))
    {
        return Verdict::skip(
            "the pack declares no capability with effects (only log and clock), so it can have no side effect to check",
        );
    }
    let rejections = inputs(ctx, &ALL).await;
    let problems = rejections
        .iter()
        .filter(|r| r.step.report.result.is_err())
        .filter_map(|r| {
            let effects: Vec<String> = r
                .step
                .report
                .recording
                .side_effects()
                .map(|c| format!("{} {}", c.operation, c.detail))
                .collect();
            (!effects.is_empty()).then(|| {
                format!(
                    "{} called [{}] before returning {}; a rejection must come before any side effect",
                    describe_input(r),
                    effects.join(", "),
                    describe_result(&r.step.report)
                )
            })
        })
        .collect();
    Verdict::from_problems(
        problems,
        "no side effect (kv write, spawn, signal, artifact, non-GET http) preceded any rejection",
    )
}
