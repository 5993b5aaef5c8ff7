//! The spec-error checks. They share one set of rejected inputs (unknown
//! revisions of every id shape, invalid splits, missing splits) and judge
//! different things about the answers: that the input was rejected, that
//! the rejection is its typed variant, and that nothing but logging
//! happened before it. Inputs the host never forwards (ids past the
//! documented lengths, splits naming revisions the deployment does not
//! have) are in the set too: "spec errors come before any side effect"
//! holds for every spec error a pack returns, whatever reached it.

use envpack_model::{Capability, Request, VerbError};

use super::{Ctx, Step, Verdict, describe_result, label};
use crate::fixture::{Fixture, Ids, UNKNOWN_REVISION};

/// The typed error an input must produce.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Expected {
    RevisionNotFound(String),
    InvalidSplit(u64),
    SplitNotFound(String),
    /// An input the host never sends (`why`): the pack may accept it or
    /// reject it, but a rejection must come before any side effect.
    Unforwarded(&'static str),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    UnknownRevision,
    InvalidSplit,
    SplitNotFound,
    Unforwarded,
}

/// Unknown revision ids of every shape: the fixture's unknown ULID, ids at
/// and past the documented 256 bytes (and past kv's 512-byte keys), in
/// ASCII and two-byte characters, unicode, and ids that are a prefix, an
/// extension and the other case of a revision the environment has.
fn unknown_ids(ids: &Ids) -> Vec<String> {
    vec![
        UNKNOWN_REVISION.to_string(),
        "u".repeat(envpack_model::MAX_ID_BYTES),
        "é".repeat(envpack_model::MAX_ID_BYTES / 2),
        "u".repeat(envpack_model::MAX_ID_BYTES + 1),
        "ü".repeat(300),
        "未知-ревизия-✓".to_string(),
        ids.a1[..ids.a1.len() / 2].to_string(),
        format!("{}-1", ids.a1),
        ids.a1.to_lowercase(),
    ]
}

struct Rejection {
    expected: Expected,
    step: Step,
}

async fn unknown_revisions(ctx: &Ctx<'_>) -> Vec<Rejection> {
    let ids = Ids::standard();
    let env = Fixture::new(&ctx.env_id("unknown-revision"), ids.clone()).build(&ctx.config.inputs);
    let mut out = Vec::new();
    for unknown in unknown_ids(&ids) {
        for request in [
            Request::Stage,
            Request::Warm,
            Request::Drain,
            Request::Archive,
            Request::Probe,
        ] {
            let step = ctx.call(&env, request(unknown.clone())).await;
            out.push(Rejection {
                expected: Expected::RevisionNotFound(unknown.clone()),
                step,
            });
        }
    }
    out
}

/// Splits the host never records, applied after A1 and A2 are staged and
/// warm: web's split naming a revision the environment does not have, one
/// of api's, and an unknown 256-byte id.
async fn unforwarded_splits(ctx: &Ctx<'_>) -> Vec<Rejection> {
    let ids = Ids::standard();
    let env_id = ctx.env_id("unforwarded-split");
    let good = Fixture::new(&env_id, ids.clone()).build(&ctx.config.inputs);
    for request in [
        Request::Stage(ids.a1.clone()),
        Request::Stage(ids.a2.clone()),
        Request::Warm(ids.a1.clone()),
        Request::Warm(ids.a2.clone()),
    ] {
        ctx.call(&good, request).await;
    }
    let long = "u".repeat(envpack_model::MAX_ID_BYTES);
    let cases: [(&str, &'static str); 3] = [
        (
            UNKNOWN_REVISION,
            "a split naming a revision the environment does not have",
        ),
        (ids.b1.as_str(), "a split naming another deployment's revision"),
        (long.as_str(), "a split naming an unknown 256-byte revision id"),
    ];
    let mut out = Vec::new();
    for (stranger, why) in cases {
        let env = Fixture::new(&env_id, ids.clone())
            .with_web_split(&[(&ids.a1, 9000), (stranger, 1000)])
            .build(&ctx.config.inputs);
        let step = ctx.call(&env, Request::ApplyTrafficSplit(ids.web.clone())).await;
        out.push(Rejection {
            expected: Expected::Unforwarded(why),
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
            Family::Unforwarded => unforwarded_splits(ctx).await,
        });
    }
    out
}

/// The families whose every input a pack must reject as typed.
const TYPED: [Family; 3] = [Family::UnknownRevision, Family::InvalidSplit, Family::SplitNotFound];
/// Every family, for the side-effect rule.
const ALL: [Family; 4] = [
    Family::UnknownRevision,
    Family::InvalidSplit,
    Family::SplitNotFound,
    Family::Unforwarded,
];

fn expected_name(expected: &Expected) -> String {
    match expected {
        Expected::RevisionNotFound(id) => format!("revision-not-found({})", envpack_model::quoted(id)),
        Expected::InvalidSplit(sum) => format!("invalid-split({sum})"),
        Expected::SplitNotFound(d) => format!("split-not-found({d})"),
        Expected::Unforwarded(_) => "success or a spec error".to_string(),
    }
}

fn describe_input(r: &Rejection) -> String {
    match &r.expected {
        Expected::InvalidSplit(sum) => format!("{} with a split summing to {sum}", label(&r.step.request)),
        Expected::Unforwarded(why) => format!("{} with {why}", label(&r.step.request)),
        _ => label(&r.step.request),
    }
}

/// Inputs the pack did not reject, as failure lines: accepted, or never
/// answered (a trap, a deadline overrun, a budget stop is no rejection).
/// The verbs of one input that got the same kind of answer share a line.
fn accepted(rejections: &[Rejection]) -> Vec<String> {
    grouped(
        rejections
            .iter()
            .filter(|r| r.step.report.result.as_ref().err().is_none_or(|e| !e.is_pack_answer())),
    )
}

/// A failure line per input and kind of answer: "stage-revision,
/// warm-revision X returned ok; expected revision-not-found(X)".
fn grouped<'a>(rejections: impl Iterator<Item = &'a Rejection>) -> Vec<String> {
    let mut lines: Vec<(String, Vec<String>)> = Vec::new();
    for r in rejections {
        let verb = r.step.request.verb().to_string();
        let tail = format!(
            "{} returned {}; expected {}",
            subject(r),
            answer_kind(&r.step.report),
            expected_name(&r.expected)
        );
        match lines.iter_mut().find(|(t, _)| *t == tail) {
            Some((_, verbs)) => verbs.push(verb),
            None => lines.push((tail, vec![verb])),
        }
    }
    lines
        .into_iter()
        .map(|(tail, verbs)| format!("{} {tail}", verbs.join(", ")))
        .collect()
}

/// What a rejection was about, after the verb: the id, or the split.
fn subject(r: &Rejection) -> String {
    let label = describe_input(r);
    match label.split_once(' ') {
        Some((_, rest)) => rest.to_string(),
        None => label,
    }
}

/// A result without what varies from verb to verb (the verb's name, the
/// echoed id), so that verbs answering alike share a line.
fn answer_kind(report: &envpack_host::CallReport) -> String {
    match &report.result {
        Ok(_) => "ok".to_string(),
        Err(e) => {
            let text = e.to_string();
            let verb = report.verb.to_string();
            text.replace(&format!("{verb} failed"), "the verb failed")
        }
    }
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
        (Expected::Unforwarded(_), _) => true,
        _ => false,
    }
}

fn is_spec_error(error: &VerbError) -> bool {
    matches!(
        error,
        VerbError::RevisionNotFound { .. } | VerbError::InvalidSplit { .. } | VerbError::SplitNotFound { .. }
    )
}

pub(super) async fn typed_errors(ctx: &Ctx<'_>) -> Verdict {
    let rejections = inputs(ctx, &TYPED).await;
    let problems = grouped(
        rejections
            .iter()
            .filter(|r| matches!(&r.step.report.result, Err(e) if !is_typed(&r.expected, e))),
    );
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
        .filter(|r| match (&r.expected, &r.step.report.result) {
            // An input the host never sends may fail any way; only a spec
            // error is held to the rule.
            (Expected::Unforwarded(_), Err(e)) => is_spec_error(e),
            (_, result) => result.is_err(),
        })
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
