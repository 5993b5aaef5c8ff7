//! The model-based checks: seeded, generated environments driven through
//! random operator sequences (see `model`), with the host's model as the
//! oracle. One run serves four checks, each judging its own class of
//! violation: `model.sequences` (every call the host would send succeeds,
//! echoes, and the pack's runtime config agrees once every split is
//! applied), `idempotency` (each effectful call repeated leaves the state of
//! once), `probe.truthful` and `archive.releases`. A failing case shrinks to
//! a minimal one; its seed and steps are in the report.

use std::collections::{BTreeMap, BTreeSet};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

use envpack_model::{
    Health, Outcome, Request, quoted,
    runtime_config::{RuntimeEntry, project},
};

use super::model::{Model, Planned, lifecycle_name};
use super::release::released;
use super::{Ctx, Lane, Step, describe_result, echo_problems, label};
use crate::config::RunConfig;
use crate::generate::{Op, Scenario, coverage, scenario};
use crate::progress::Progress;

/// Steps of one generated scenario at most.
const MAX_OPS: usize = 48;

/// The class of a violation, and the check that reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Class {
    Sequences,
    Idempotency,
    Probe,
    Archive,
}

pub(super) struct Violation {
    class: Class,
    message: String,
}

/// One case run: the calls made, and the first violation, if any.
struct CaseRun {
    scenario: Scenario,
    steps: Vec<String>,
    violation: Option<Violation>,
}

/// The minimal failing case of one class.
pub(crate) struct Failure {
    pub class: Class,
    pub text: String,
}

/// What the generated runs found.
pub(crate) struct Findings {
    pub seed: u64,
    pub cases: usize,
    pub calls: usize,
    pub failures: Vec<Failure>,
}

impl Findings {
    /// The failure of `class`, if a case showed one.
    pub fn failure(&self, class: Class) -> Option<&Failure> {
        self.failures.iter().find(|f| f.class == class)
    }
}

/// The findings of this run's generated cases, computed once.
pub(crate) async fn findings<'a>(ctx: &'a Ctx<'_>) -> &'a Findings {
    ctx.generated.get_or_init(|| generate(ctx)).await
}

fn rng(seed: u64) -> TestRng {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

async fn generate(ctx: &Ctx<'_>) -> Findings {
    let seed = ctx.seed;
    let cases = ctx.config.cases;
    let config = Config {
        cases: u32::try_from(cases).unwrap_or(u32::MAX),
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, rng(seed));
    let strategy = scenario(MAX_OPS);
    let calls_before = ctx.all_calls().len();
    let mut failures: Vec<Failure> = Vec::new();
    // The coverage case first: the same in every run, whatever the seed.
    let progress = |done| ctx.config.progress.report(Progress::Cases { done, total: cases + 1 });
    progress(0);
    let first = run_case(ctx, coverage()).await;
    progress(1);
    if let Some(class) = first.violation.as_ref().map(|v| v.class) {
        let (minimal, shrinks) = shrink_steps(ctx, class, first).await;
        failures.push(Failure {
            class,
            text: explain(&minimal, &Origin::Coverage { shrinks }, &replay(ctx, seed)),
        });
    }
    for case in 1..=cases {
        let mut tree = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree,
            Err(reason) => {
                tracing::warn!(%reason, "could not generate a scenario");
                break;
            }
        };
        let first = run_case(ctx, tree.current()).await;
        progress(case + 1);
        let Some(class) = first.violation.as_ref().map(|v| v.class) else {
            continue;
        };
        if failures.iter().any(|f| f.class == class) {
            continue;
        }
        let (minimal, shrinks) = shrink(ctx, &mut tree, class, first).await;
        let origin = Origin::Generated {
            seed,
            case,
            cases,
            shrinks,
        };
        failures.push(Failure {
            class,
            text: explain(&minimal, &origin, &replay(ctx, seed)),
        });
    }
    Findings {
        seed,
        cases,
        calls: ctx.all_calls().len() - calls_before,
        failures,
    }
}

/// Simplifies the failing case while it still fails with `class`, as
/// proptest's runner does: simplify after a failure, complicate after a pass.
async fn shrink(
    ctx: &Ctx<'_>,
    tree: &mut impl ValueTree<Value = Scenario>,
    class: Class,
    first: CaseRun,
) -> (CaseRun, usize) {
    let mut best = first;
    let mut shrinks = 0;
    let mut passed = false;
    for _ in 0..ctx.config.shrinks {
        let moved = if passed { tree.complicate() } else { tree.simplify() };
        if !moved {
            break;
        }
        let run = run_case(ctx, tree.current()).await;
        if run.violation.as_ref().is_some_and(|v| v.class == class) {
            best = run;
            shrinks += 1;
            passed = false;
        } else {
            passed = true;
        }
    }
    (best, shrinks)
}

/// Simplifies the failing coverage case while it still fails with
/// `class`: drops runs of steps, halving their length down to one step,
/// from the last, keeping each drop after which it still fails.
/// Deterministic, so the same case shrinks to the same steps in every run.
async fn shrink_steps(ctx: &Ctx<'_>, class: Class, first: CaseRun) -> (CaseRun, usize) {
    let mut best = first;
    let mut shrinks = 0;
    let mut tries = 0;
    let mut size = best.scenario.ops.len().div_ceil(2);
    while size > 0 {
        let mut at = best.scenario.ops.len();
        while at > 0 && tries < ctx.config.shrinks {
            let start = at.saturating_sub(size);
            tries += 1;
            let mut fewer = best.scenario.clone();
            fewer.ops.drain(start..at);
            let run = run_case(ctx, fewer).await;
            if run.violation.as_ref().is_some_and(|v| v.class == class) {
                best = run;
                shrinks += 1;
            }
            at = start;
        }
        size /= 2;
    }
    (best, shrinks)
}

/// Where a failing case came from.
enum Origin {
    /// The coverage case every run starts with.
    Coverage { shrinks: usize },
    Generated {
        seed: u64,
        case: usize,
        cases: usize,
        shrinks: usize,
    },
}

/// The command that runs the same generated cases again.
fn replay(ctx: &Ctx<'_>, seed: u64) -> String {
    let mut command = format!("host conformance {} --seed {seed}", ctx.source);
    if ctx.config.cases != RunConfig::default().cases {
        command.push_str(&format!(" --cases {}", ctx.config.cases));
    }
    command
}

fn explain(run: &CaseRun, origin: &Origin, replay: &str) -> String {
    let violation = run.violation.as_ref().map_or("", |v| v.message.as_str());
    let whence = match origin {
        Origin::Coverage { shrinks } => format!(
            "the coverage case (every run starts with it, whatever the seed), shrunk {shrinks} times; replay with `{replay}`"
        ),
        Origin::Generated {
            seed,
            case,
            cases,
            shrinks,
        } => format!("seed {seed}, case {case} of {cases}, shrunk {shrinks} times; replay with `{replay}`"),
    };
    let mut text = format!("{violation}\n  {whence}\n  environment:");
    for d in &run.scenario.deployments {
        let revisions: Vec<String> = d.revisions.iter().map(|r| quoted(&r.id)).collect();
        text.push_str(&format!(
            "\n    deployment {:?}: revisions [{}]{}",
            quoted(&d.id),
            revisions.join(", "),
            if d.history.is_empty() {
                String::new()
            } else {
                format!(", {} archived before", d.history.len())
            }
        ));
    }
    text.push_str("\n  steps:");
    for (n, step) in run.steps.iter().enumerate() {
        text.push_str(&format!("\n    {}. {step}", n + 1));
    }
    text
}

pub(super) fn fail(class: Class, message: String) -> Result<(), Violation> {
    Err(Violation { class, message })
}

async fn run_case(ctx: &Ctx<'_>, scenario: Scenario) -> CaseRun {
    let mut model = Model::new(ctx.env_id("model"), &scenario, &ctx.config.inputs);
    let mut steps = Vec::new();
    let mut spawned: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut outcome = Ok(());
    for op in &scenario.ops {
        let Some(planned) = model.plan(op) else {
            if matches!(op, Op::Split(..)) {
                let line = model.recorded.take();
                steps.push(line.unwrap_or_else(|| "record a split (no revision is ready: none recorded)".into()));
            }
            continue;
        };
        steps.push(label(&planned.request));
        outcome = step(ctx, &mut model, &planned, &mut spawned).await;
        if outcome.is_err() {
            break;
        }
    }
    ctx.retire(&model.env(), Lane::Main).await;
    CaseRun {
        scenario,
        steps,
        violation: outcome.err(),
    }
}

/// Makes one planned call and judges it.
async fn step(
    ctx: &Ctx<'_>,
    model: &mut Model,
    planned: &Planned,
    spawned: &mut BTreeMap<String, BTreeSet<String>>,
) -> Result<(), Violation> {
    let env = &planned.during;
    let request = &planned.request;
    let live_before = ids(&ctx.live_process_list(env));
    let first = ctx.call(env, request.clone()).await;
    if first.report.result.is_err() {
        return fail(
            Class::Sequences,
            format!(
                "{} returned {}; expected success: the host sends this call because {}",
                label(request),
                describe_result(&first.report),
                planned.why
            ),
        );
    }
    if let Some(problem) = echo_problems(std::slice::from_ref(&first)).into_iter().next() {
        return fail(Class::Sequences, problem);
    }
    if let Some(revision) = request.revision() {
        let new: BTreeSet<String> = ids(&ctx.live_process_list(env))
            .difference(&live_before)
            .cloned()
            .collect();
        spawned.entry(revision.to_string()).or_default().extend(new);
    }
    model.commit(planned);
    if !matches!(request, Request::Probe(_) | Request::ReportRuntimeConfig) {
        repeat(ctx, &first).await?;
    }
    probe_truth(ctx, model, &first).await?;
    if let Request::Archive(revision) = request {
        released(ctx, model, revision, spawned.get(revision.as_str()))?;
    }
    if matches!(request, Request::ApplyTrafficSplit(_) | Request::ReportRuntimeConfig) {
        agrees(ctx, model, request).await?;
    }
    Ok(())
}

pub(super) fn ids(list: &[(String, String)]) -> BTreeSet<String> {
    list.iter().map(|(id, _)| id.clone()).collect()
}

/// The same call again, as a host retrying it would make it.
async fn repeat(ctx: &Ctx<'_>, first: &Step) -> Result<(), Violation> {
    let (kv, live) = (ctx.kv_state(&first.env), ctx.live_processes(&first.env));
    let second = ctx.call(&first.env, first.request.clone()).await;
    let what = label(&first.request);
    if second.report.result.is_err() {
        return fail(
            Class::Idempotency,
            format!(
                "{what} succeeded, then returned {} when called again",
                describe_result(&second.report)
            ),
        );
    }
    if ctx.kv_state(&first.env) != kv {
        return fail(
            Class::Idempotency,
            format!("calling {what} a second time changed the pack's kv state"),
        );
    }
    let again = ctx.live_processes(&first.env);
    if again != live {
        return fail(
            Class::Idempotency,
            format!("calling {what} a second time left {again} processes running; once left {live}"),
        );
    }
    Ok(())
}

/// Probes the revision a step concerns and checks the answer against what
/// the host knows: a revision never warmed, or archived, is not healthy. (A
/// revision just warmed may not be healthy yet: a provider may start it
/// asynchronously, and saying so is the truth.)
async fn probe_truth(ctx: &Ctx<'_>, model: &Model, step: &Step) -> Result<(), Violation> {
    let (revision, report) = match &step.request {
        Request::Probe(r) => (r.clone(), step.report.result.clone()),
        Request::Warm(r) | Request::Archive(r) => {
            let probe = ctx.call(&model.env(), Request::Probe(r.clone())).await;
            (r.clone(), probe.report.result)
        }
        _ => return Ok(()),
    };
    let Some(lifecycle) = model.lifecycle(&revision) else {
        return Ok(());
    };
    let health = match report {
        Ok(Outcome::Health { health, .. }) => health,
        Ok(_) => return Ok(()),
        Err(e) => {
            return fail(
                Class::Probe,
                format!(
                    "probe {} of a {} revision returned {e}; expected its health",
                    quoted(&revision),
                    lifecycle_name(lifecycle)
                ),
            );
        }
    };
    let never_warmed = !model.warmed.contains(&revision);
    let lie: Option<String> = match (&health, lifecycle) {
        (Health::Healthy, envpack_model::Lifecycle::Archived) => {
            Some("healthy after archive-revision succeeded".into())
        }
        (Health::Healthy, _) if never_warmed => Some("healthy, but it was never warmed".into()),
        _ => None,
    };
    match lie {
        Some(lie) => fail(
            Class::Probe,
            format!(
                "probe {} ({}) answered {lie}",
                quoted(&revision),
                lifecycle_name(lifecycle)
            ),
        ),
        None => Ok(()),
    }
}

/// The pack's runtime config, where it reports one, describes the splits
/// it applied (which, once every recorded split is applied, is the host's
/// projection).
async fn agrees(ctx: &Ctx<'_>, model: &Model, after: &Request) -> Result<(), Violation> {
    let step = ctx.call(&model.env(), Request::ReportRuntimeConfig).await;
    let view = match step.report.result {
        Ok(Outcome::RuntimeConfig { pack: Some(view), .. }) => view,
        Ok(_) => return Ok(()),
        Err(e) => {
            return fail(
                Class::Sequences,
                format!("report-runtime-config returned {e}; expected the pack's view or none"),
            );
        }
    };
    let expected = project(&model.applied_env());
    let got = view.canonical();
    if got.entries == expected.entries {
        return Ok(());
    }
    let synced = if model.all_synced() {
        "every recorded split applied"
    } else {
        "some recorded splits not applied yet"
    };
    let show = |e: &RuntimeEntry| {
        format!(
            "{}/{} at {} bps ({} refs, bundle {})",
            quoted(&e.deployment),
            quoted(&e.revision),
            e.weight_bps,
            e.refs.len(),
            quoted(&e.bundle.location)
        )
    };
    let only = |a: &[RuntimeEntry], b: &[RuntimeEntry]| -> Vec<String> {
        a.iter().filter(|e| !b.contains(e)).map(show).collect()
    };
    fail(
        Class::Sequences,
        format!(
            "after {} ({synced}) report-runtime-config disagrees with the splits applied: it has [{}], which they do not; they have [{}], which it does not",
            label(after),
            only(&got.entries, &expected.entries).join("; "),
            only(&expected.entries, &got.entries).join("; ")
        ),
    )
}
