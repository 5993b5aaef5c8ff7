//! The bench report for people: one table of figures, the WASM/native
//! ratios, and where each target stands.

use crate::BenchReport;

pub fn table(report: &BenchReport) -> String {
    let m = &report.machine;
    let mut out = format!(
        "envpack host bench: {} cores, {} build, {} allocator{}\n\n",
        m.cores,
        m.build,
        m.allocator,
        if report.quick { ", quick run" } else { "" }
    );
    if m.build == "debug" {
        out.push_str("note: a debug build; run `cargo run --release -- bench` for representative figures\n\n");
    }
    out.push_str(&format!(
        "{:<38} {:>12} {:>12} {:>8}  unit\n",
        "figure", "median", "p99", "samples"
    ));
    for f in report.figures.iter().filter(|f| !f.name.starts_with("native.")) {
        out.push_str(&format!(
            "{:<38} {:>12.2} {:>12.2} {:>8}  {}\n",
            f.name, f.median, f.p99, f.samples, f.unit
        ));
    }
    out.push_str(&format!(
        "\n{:<38} {:>12} {:>12} {:>8} {:>12}\n",
        "verb.size", "wasm us", "native us", "ratio", "overhead us"
    ));
    for r in &report.ratios {
        out.push_str(&format!(
            "{:<38} {:>12.2} {:>12.2} {:>8.1} {:>12.2}\n",
            r.name, r.wasm_median_us, r.native_median_us, r.ratio, r.overhead_us
        ));
    }
    out.push_str(&breakdown(report));
    out.push_str(&commands(report));
    for skipped in &report.skipped {
        out.push_str(&format!("\nnot measured: {skipped}"));
    }
    if !report.skipped.is_empty() {
        out.push('\n');
    }
    out.push_str("\ntargets\n");
    for t in &report.targets {
        // An unreachable target says so at the head of its floor.
        let mark = if t.met { "met   " } else { "NOT met" };
        out.push_str(&format!(
            "  {mark} {:<24} {:<52} measured {:.2}\n",
            t.name, t.goal, t.measured
        ));
        if let Some(floor) = &t.floor {
            out.push_str(&format!("          floor: {floor}\n"));
        }
    }
    out
}

/// Each verb's host path, phase by phase (µs, medians), against the bare call.
fn breakdown(report: &BenchReport) -> String {
    let Some(first) = report.breakdown.first() else {
        return String::new();
    };
    let mut out = format!("\n{:<24}", "phases (us, size 10)");
    for p in &first.phases {
        out.push_str(&format!(" {:>9}", short(&p.phase)));
    }
    out.push_str(&format!(" {:>6} {:>9} {:>9} {:>9}\n", "calls", "full", "bare", "host"));
    for row in &report.breakdown {
        out.push_str(&format!("{:<24}", row.verb));
        for p in &row.phases {
            out.push_str(&format!(" {:>9.2}", p.median_us));
        }
        out.push_str(&format!(
            " {:>6} {:>9.2} {:>9.2} {:>9.2}\n",
            row.capability_calls, row.full_us, row.bare_us, row.host_overhead_us
        ));
    }
    out
}

fn short(phase: &str) -> &str {
    match phase {
        "preconditions" => "precond",
        "instantiate" => "instant",
        "recording" => "record",
        "teardown" => "drop",
        other => other,
    }
}

/// Whole commands through the real binary: each phase's median (µs).
fn commands(report: &BenchReport) -> String {
    let mut out = String::new();
    for c in &report.commands {
        out.push_str(&format!(
            "\ncommand {} ({} build, {} runs): median {:.0} us, p99 {:.0} us\n",
            c.command, c.build, c.runs, c.total_median_us, c.total_p99_us
        ));
        for p in &c.phases {
            out.push_str(&format!("  {:<14} {:>9.0}\n", p.phase, p.median_us));
        }
    }
    out
}
