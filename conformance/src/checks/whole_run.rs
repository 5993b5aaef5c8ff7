//! Checks over every call the run made: provider messages, capability
//! honesty, time and memory budgets; and the signature status.

use envpack_model::{ProviderCause, Request, VerbError};

use std::time::Duration;

use envpack_host::FUEL_PER_MS;

use super::{CallStat, Ctx, Lane, Verdict, shifted, verb_of};
use crate::config::SignatureStatus;
use crate::fixture::{Fixture, Ids};

/// Artifact locations no provider can fetch: schemes a pack may not
/// support, hosts that do not answer, a file that is not there.
const UNFETCHABLE: [&str; 5] = [
    "ftp://builds.invalid/app-1.tar.gz",
    "s3://envpack-conformance-no-such-bucket/app-1.tar.gz",
    "oci://127.0.0.1:9/envpack/no-such-image:1",
    "https://127.0.0.1:9/app-1.tar.gz",
    "file:///nonexistent/envpack-conformance/app-1.tar.gz",
];

/// Calls a provider may well fail, so that the run sees the pack's
/// provider errors on more than one path: stage of each unfetchable
/// artifact, warm of a revision never staged, a split applied whose
/// revisions the provider never ran, drain of a revision never warmed.
async fn provoke_provider_failures(ctx: &Ctx<'_>) {
    let ids = Ids::standard();
    for location in UNFETCHABLE {
        let env = Fixture::new(&ctx.env_id("provider-artifact"), ids.clone())
            .with_location(&ids.a1, location)
            .build(&ctx.config.inputs);
        ctx.call(&env, Request::Stage(ids.a1.clone())).await;
        ctx.retire(&env, Lane::Main).await;
    }
    let env = Fixture::new(&ctx.env_id("provider"), ids.clone()).build(&ctx.config.inputs);
    ctx.call(&env, Request::Warm(ids.b1.clone())).await;
    ctx.call(&env, Request::ApplyTrafficSplit(ids.web.clone())).await;
    ctx.call(&shifted(&env, &ids), Request::Drain(ids.a2.clone())).await;
    ctx.retire(&env, Lane::Main).await;
}

pub(super) async fn provider_message(ctx: &Ctx<'_>) -> Verdict {
    provoke_provider_failures(ctx).await;
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
    // One line per undeclared operation: how many calls made it, and the first.
    let mut seen: Vec<(String, &'static str, usize, String)> = Vec::new();
    for call in &calls {
        for c in &call.undeclared {
            match seen.iter_mut().find(|(op, _, _, _)| *op == c.operation) {
                Some((_, _, count, _)) => *count += 1,
                None => seen.push((c.operation.to_string(), c.capability.name(), 1, call.label.clone())),
            }
        }
    }
    let wasi = seen.iter().any(|(op, _, _, _)| op.starts_with("wasi:"));
    let mut problems: Vec<String> = seen
        .iter()
        .map(|(operation, capability, count, first)| {
            format!(
                "{operation} (capability `{capability}`, which the pack does not declare in describe): in {count} calls, first {first}"
            )
        })
        .collect();
    if wasi {
        problems.push(
            "a pack reads WASI's clocks or randomness when its language runtime starts or hashes: declare `clock`, or build without them (componentize-py: --stub-wasi; ComponentizeJS: disableFeatures ['clocks', 'random'])"
                .to_string(),
        );
    }
    let declared: Vec<&str> = ctx.pack.info().capabilities.iter().map(|c| c.name()).collect();
    Verdict::from_problems(
        problems,
        format!("{} calls used only [{}]", calls.len(), declared.join(", ")),
    )
}

/// A call's work as time: fuel at [`FUEL_PER_MS`] per millisecond, plus
/// the sleeps it asked for. `None` on a runtime that does not meter fuel.
fn work(call: &CallStat) -> Option<Duration> {
    let fuel = call.fuel?;
    Some(Duration::from_micros(fuel.saturating_mul(1000) / FUEL_PER_MS) + call.slept)
}

pub(super) fn budgets_time(ctx: &Ctx<'_>) -> Verdict {
    let calls: Vec<CallStat> = ctx.all_calls().into_iter().filter(|c| verb_of(c).is_some()).collect();
    if !calls.is_empty() && calls.iter().all(|c| c.fuel.is_none()) {
        return Verdict::skip(
            "the bench's runtime does not meter fuel (HostConfig::meter_fuel), so there is no deterministic measure of work",
        );
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let problems = calls
        .iter()
        .filter_map(|c| {
            let work = work(c);
            if matches!(&c.error, Some(e) if e.is_deadline()) {
                return Some(format!(
                    "{} did not finish within its deadline of {} ms ({})",
                    c.label,
                    c.deadline.as_millis(),
                    work.map_or("no fuel measure".to_string(), |w| format!("{:.1} ms of work", ms(w)))
                ));
            }
            let work = work?;
            (work * 2 > c.deadline).then(|| {
                format!(
                    "{} did {:.1} ms of work ({} fuel at {FUEL_PER_MS} a millisecond, plus {} ms asked to sleep), over half its deadline of {} ms (the deadline an operator's environment gives it)",
                    c.label,
                    ms(work),
                    c.fuel.unwrap_or(0),
                    c.slept.as_millis(),
                    c.deadline.as_millis()
                )
            })
        })
        .collect();
    let heaviest = calls.iter().filter_map(|c| Some((work(c)?, c))).max_by_key(|(w, _)| *w);
    let note = heaviest.map_or("no metered calls".to_string(), |(w, c)| {
        format!(
            "heaviest of {} calls: {} with {:.2} ms of work of its {} ms deadline",
            calls.len(),
            c.label,
            ms(w),
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
