//! The performance goals (issue 14) and where a report stands against
//! them. Goals are reported, never asserted: these machines are shared.

use crate::{BenchReport, Target, scenario};

fn target(name: &'static str, goal: &str, measured: f64, met: bool) -> Target {
    Target {
        name,
        goal: goal.to_string(),
        measured,
        met,
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

pub fn evaluate(report: &BenchReport) -> Vec<Target> {
    let warm = report.median("load.warm");
    let cold = report.median("load.cold");
    let instantiate = report.median("instantiate");
    let overhead = report.breakdown.iter().map(|r| r.host_overhead_us).fold(0.0, f64::max);
    let growth = scenario::measured()
        .iter()
        .map(|(verb, _)| {
            report.median(&format!("verb.{verb}.10000")) / report.median(&format!("verb.{verb}.10")).max(0.001)
        })
        .fold(0.0, f64::max);
    let throughput = report.median("throughput.verbs_per_second");
    let conformance = report.median("conformance.extended");
    let mut targets = Vec::new();
    for (command, goal_us) in [("traffic-set", 8_000.0), ("status", 4_000.0)] {
        if let Some(us) = command_us(report, command) {
            let name = if command == "status" {
                "cli.status"
            } else {
                "cli.traffic-set"
            };
            targets.push(target(
                name,
                &format!("median <= {goal_us} us end to end"),
                us,
                us <= goal_us,
            ));
        }
    }
    targets.extend([
        target(
            "verb.host-overhead",
            "max over verbs of (host path - bare wasmtime call) median <= 10 us",
            overhead,
            overhead <= 10.0,
        ),
        target("instantiate", "median <= 5 us", instantiate, instantiate <= 5.0),
        target("load.warm", "median <= 500 us", warm, warm <= 500.0),
        target(
            "cache.speedup",
            "cold / warm load >= 10x",
            cold / warm.max(0.001),
            cold >= 10.0 * warm,
        ),
        target(
            "throughput",
            ">= 80000 verbs/s on all cores",
            throughput,
            throughput >= 80_000.0,
        ),
        target(
            "verb.growth.10000",
            "max over verbs of median(10000) / median(10) < 2",
            growth,
            growth < 2.0,
        ),
        target(
            "conformance.extended",
            "median < 1000000 us",
            conformance,
            conformance < 1_000_000.0,
        ),
    ]);
    targets
}
