//! Checks over every call the run made: provider messages, capability
//! honesty, time and memory budgets; and the signature status.

use envpack_host::{ProviderCause, Request, VerbError};

use super::{Ctx, Verdict, verb_of};
use crate::bench::SignatureStatus;
use crate::fixture::{Fixture, Ids};

pub(super) async fn provider_message(ctx: &Ctx<'_>) -> Verdict {
    // Warming a revision the provider never staged is a natural provider error.
    let ids = Ids::standard();
    let env = Fixture::new(&ctx.env_id("provider"), ids.clone()).build(&ctx.config.inputs);
    ctx.call(&env, Request::Warm(ids.b1.clone())).await;
    let calls = ctx.all_calls();
    let mut seen = 0;
    let mut problems = Vec::new();
    for call in &calls {
        if let Some(VerbError::Provider { cause, .. }) = &call.error {
            seen += 1;
            if matches!(cause, ProviderCause::EmptyMessage) {
                problems.push(format!(
                    "{} returned provider(\"\"); a provider error must say what failed",
                    call.label
                ));
            }
        }
    }
    Verdict::from_problems(
        problems,
        format!("{seen} provider errors in the run, each with a message"),
    )
}

pub(super) fn capability_declared(ctx: &Ctx<'_>) -> Verdict {
    let calls = ctx.all_calls();
    let problems: Vec<String> = calls
        .iter()
        .flat_map(|call| {
            call.undeclared.iter().map(move |c| {
                format!(
                    "{} called {} (capability `{}`), which the pack does not declare in describe",
                    call.label, c.operation, c.capability
                )
            })
        })
        .collect();
    let declared: Vec<&str> = ctx.pack.info().capabilities.iter().map(|c| c.name()).collect();
    Verdict::from_problems(
        problems,
        format!("{} calls used only [{}]", calls.len(), declared.join(", ")),
    )
}

pub(super) fn budgets_time(ctx: &Ctx<'_>) -> Verdict {
    let calls = ctx.all_calls();
    let slowest = calls.iter().max_by_key(|c| c.elapsed);
    let problems = calls
        .iter()
        .filter(|c| verb_of(c).is_some())
        .filter(|c| c.elapsed * 2 > c.deadline || matches!(&c.error, Some(e) if e.is_deadline()))
        .map(|c| {
            format!(
                "{} took {:.1} ms, over half its deadline of {} ms (the deadline an operator's environment gives it; a busy machine would time it out)",
                c.label,
                c.elapsed.as_secs_f64() * 1000.0,
                c.deadline.as_millis()
            )
        })
        .collect();
    let note = slowest.map_or("no calls".to_string(), |c| {
        format!(
            "slowest of {} calls: {} in {:.2} ms of its {} ms deadline",
            calls.len(),
            c.label,
            c.elapsed.as_secs_f64() * 1000.0,
            c.deadline.as_millis()
        )
    });
    Verdict::from_problems(problems, note)
}

pub(super) fn budgets_memory(ctx: &Ctx<'_>) -> Verdict {
    let budget = ctx.config.memory_budget;
    let calls = ctx.all_calls();
    let peak = calls.iter().map(|c| c.peak_memory).max().unwrap_or(0);
    let problems = calls
        .iter()
        .filter(|c| c.peak_memory > budget)
        .map(|c| {
            format!(
                "{} held {} bytes of linear memory; the budget is {budget}",
                c.label, c.peak_memory
            )
        })
        .collect();
    Verdict::from_problems(problems, format!("peak linear memory {} KiB", peak / 1024))
}

pub(super) fn signature(ctx: &Ctx<'_>) -> Verdict {
    match ctx.signature {
        SignatureStatus::Trusted { name, key_id } => Verdict::pass(format!("signed by {name} ({key_id})")),
        SignatureStatus::Unsigned => {
            Verdict::skip("unsigned developer build; sign it with `host sign` before shipping")
        }
        SignatureStatus::Untrusted(why) => Verdict::skip(format!("not signed by a trusted key: {why}")),
        SignatureStatus::Tampered(why) => Verdict::fail(why.clone()),
    }
}
