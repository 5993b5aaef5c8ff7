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
    out.push_str("\ntargets\n");
    for t in &report.targets {
        let mark = if t.met { "met   " } else { "NOT met" };
        out.push_str(&format!(
            "  {mark} {:<22} {:<52} measured {:.2}\n",
            t.name, t.goal, t.measured
        ));
    }
    out
}
