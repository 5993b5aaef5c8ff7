//! The performance goals (issues 14 and 30) and where a report stands
//! against them, each beside the floor it stands on, measured in the same
//! run. Goals are reported, never asserted: these machines are shared.

use crate::{BenchReport, Target, scenario};

fn target(name: &'static str, goal: &str, measured: f64, met: bool, floor: Option<String>) -> Target {
    Target {
        name,
        goal: goal.to_string(),
        measured,
        met,
        floor,
    }
}

/// A command's median wall time in this build, if it was measured.
fn command_us(report: &BenchReport, command: &str) -> Option<f64> {
    report
        .commands
        .iter()
        .find(|c| c.command == command && c.build == "this")
        .map(|c| c.total_median_us)
}

/// A command's phase's median in this build.
fn phase_us(report: &BenchReport, command: &str, phase: &str) -> Option<f64> {
    report
        .commands
        .iter()
        .find(|c| c.command == command && c.build == "this")
        .and_then(|c| c.phases.iter().find(|p| p.phase == phase))
        .map(|p| p.median_us)
}

fn figure(report: &BenchReport, name: &str) -> Option<f64> {
    report.figures.iter().find(|f| f.name == name).map(|f| f.median)
}

/// A target that could not be measured in this run (a pack or tool is missing).
fn unmeasured(name: &'static str, goal: &str, why: &str) -> Target {
    target(name, goal, 0.0, false, Some(format!("not measured: {why}")))
}

pub fn evaluate(report: &BenchReport) -> Vec<Target> {
    let mut targets = commands(report);
    targets.extend(in_process(report));
    targets.extend(installs(report));
    targets
}

/// The command targets: a verb command, `status`, and the interpreter pack's command.
fn commands(report: &BenchReport) -> Vec<Target> {
    let mut targets = Vec::new();
    let version = command_us(report, "version");
    let commit = figure(report, "floor.sqlite-commit");
    let process = figure(report, "floor.process-start");
    let floors = |extra: &str| {
        let mut parts = Vec::new();
        if let Some(v) = version {
            parts.push(format!("`host --version` {v:.0} us"));
        }
        if let Some(p) = process {
            parts.push(format!("bare process start {p:.0} us"));
        }
        if let Some(c) = commit {
            parts.push(format!("bare SQLite commit {c:.0} us"));
        }
        if !extra.is_empty() {
            parts.push(extra.to_string());
        }
        (!parts.is_empty()).then(|| parts.join(", "))
    };
    if let Some(us) = command_us(report, "traffic-set") {
        targets.push(target(
            "cli.traffic-set",
            "median <= 6000 us end to end",
            us,
            us <= 6000.0,
            floors(""),
        ));
        if let Some(v) = version {
            let ratio = us / v.max(1.0);
            targets.push(target(
                "cli.traffic-set/version",
                "traffic set <= 3x `host --version`, same run",
                ratio,
                ratio <= 3.0,
                floors(""),
            ));
        }
    }
    if let Some(us) = command_us(report, "status") {
        targets.push(target(
            "cli.status",
            "median <= 4000 us end to end",
            us,
            us <= 4000.0,
            floors(""),
        ));
    }
    let goal = "traffic set on the interpreter pack <= 2x on the reference, same run";
    match (
        command_us(report, "traffic-set-interpreter"),
        command_us(report, "traffic-set"),
    ) {
        (Some(interpreter), Some(reference)) => {
            let ratio = interpreter / reference.max(1.0);
            let guest = phase_us(report, "traffic-set-interpreter", "verb").unwrap_or(0.0);
            let cache = phase_us(report, "traffic-set-interpreter", "cache").unwrap_or(0.0);
            targets.push(target(
                "cli.interpreter",
                goal,
                ratio,
                ratio <= 2.0,
                Some(format!(
                    "interpreter {interpreter:.0} us against {reference:.0} us; of it, mapping its code {cache:.0} us and its verb (a CPython instance) {guest:.0} us"
                )),
            ));
        }
        _ if !report.commands.is_empty() => targets.push(unmeasured(
            "cli.interpreter",
            goal,
            "no interpreter pack (build it with `packs/py-stateless/build`)",
        )),
        _ => {}
    }
    targets
}

/// The targets measured in this process.
fn in_process(report: &BenchReport) -> Vec<Target> {
    let median = |name: &str| figure(report, name).unwrap_or(0.0);
    let warm = median("load.warm");
    let cold = median("load.cold");
    let instantiate = median("instantiate");
    let overhead = report.breakdown.iter().map(|r| r.host_overhead_us).fold(0.0, f64::max);
    let bare_min = report.breakdown.iter().map(|r| r.bare_us).fold(f64::INFINITY, f64::min);
    let growth = scenario::measured()
        .iter()
        .filter_map(|(verb, _)| {
            let big = figure(report, &format!("verb.{verb}.10000"))?;
            Some(big / figure(report, &format!("verb.{verb}.10"))?.max(0.001))
        })
        .fold(0.0, f64::max);
    let throughput = median("throughput.verbs_per_second");
    let one_task = median("throughput.one-task");
    let effective = median("machine.effective-cores");
    let conformance = median("conformance.extended");
    let cores = report.machine.cores as f64;
    vec![
        target(
            "verb.host-overhead",
            "max over verbs of (host path - bare wasmtime call) median <= 10 us",
            overhead,
            overhead <= 10.0,
            None,
        ),
        target(
            "instantiate",
            "median <= 5 us",
            instantiate,
            instantiate <= 5.0,
            Some(format!(
                "wasmtime's own InstancePre::instantiate_async on the pooling allocator, nothing of the host's in it; with the host's call state and Store made first: {:.2} us",
                median("instantiate.with-store")
            )),
        ),
        target("load.warm", "median <= 500 us", warm, warm <= 500.0, None),
        target(
            "cache.speedup",
            "cold / warm load >= 10x",
            cold / warm.max(0.001),
            cold >= 10.0 * warm,
            None,
        ),
        target(
            "throughput",
            ">= 80000 verbs/s on all cores",
            throughput,
            throughput >= 80_000.0,
            bare_min.is_finite().then(|| {
                format!(
                    "one task alone serves {one_task:.0} verbs/s, and this process gets {effective:.2} of the {cores} cores now (the rest is other tenants'): {:.0} verbs/s at best; the cheapest bare wasmtime call (fresh instance, the export, dropped) is {bare_min:.1} us: {:.0} verbs/s on {cores} idle cores",
                    one_task * effective,
                    cores * 1e6 / bare_min.max(0.001)
                )
            }),
        ),
        target(
            "verb.growth.10000",
            "max over verbs of median(10000) / median(10) < 2",
            growth,
            growth < 2.0,
            None,
        ),
        target(
            "conformance.extended",
            "median < 1000000 us",
            conformance,
            conformance < 1_000_000.0,
            None,
        ),
    ]
}

/// `pack install`: the local-process pack's, and the interpreter pack's against its compile time.
fn installs(report: &BenchReport) -> Vec<Target> {
    let mut targets = Vec::new();
    let goal = "pack install of the local-process pack <= 10 s";
    match figure(report, "install.local-process") {
        Some(us) => targets.push(target(
            "install.local-process",
            goal,
            us / 1e6,
            us <= 10e6,
            figure(report, "local-process.compile").map(|compile| {
                let admission = |part: &str| figure(report, &format!("local-process.admission{part}"));
                let run = match (
                    admission(""),
                    admission(".in-pack"),
                    admission(".asleep"),
                    admission(".calls"),
                    admission(".programs"),
                ) {
                    (Some(run), Some(in_pack), Some(asleep), Some(calls), Some(programs)) => format!(
                        "admission's conformance run {:.1} s, of it {calls:.0} verb calls {:.1} s inside the pack ({:.1} s asleep while it waits): {programs:.0} real programs started (tar, nginx, the Python app{}) and waited for",
                        run / 1e6,
                        in_pack / 1e6,
                        asleep / 1e6,
                        figure(report, "floor.app-start")
                            .map(|us| format!(": it answers {:.0} ms after its start, alone", us / 1e3))
                            .unwrap_or_default()
                    ),
                    _ => "the rest is admission's conformance run, whose calls start real programs (tar, Python apps, nginx) and wait for them".into(),
                };
                format!("its compile (pack seal) {:.1} s; {run}", compile / 1e6)
            }),
        )),
        None if !report.commands.is_empty() => {
            let why = report
                .skipped
                .iter()
                .find(|s| s.starts_with("local-process"))
                .map_or("not asked for", String::as_str);
            targets.push(unmeasured("install.local-process", goal, why));
        }
        None => {}
    }
    let goal = "pack install of the interpreter pack <= 1.5x its compile time";
    match (
        figure(report, "install.interpreter"),
        figure(report, "interpreter.compile"),
    ) {
        (Some(install), Some(compile)) => {
            let ratio = install / compile.max(1.0);
            targets.push(target(
                "install.interpreter",
                goal,
                ratio,
                ratio <= 1.5,
                Some(format!(
                    "install {:.1} s, compile (in process, no cache) {:.1} s",
                    install / 1e6,
                    compile / 1e6
                )),
            ));
        }
        _ if !report.commands.is_empty() => targets.push(unmeasured(
            "install.interpreter",
            goal,
            "no interpreter pack (build it with `packs/py-stateless/build`)",
        )),
        _ => {}
    }
    targets
}
