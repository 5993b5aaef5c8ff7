//! Reporters, separate from the runner: a line per check for people, the
//! documented JSON, and JUnit XML for CI systems (one test suite per pack,
//! one test case per check).

use std::time::Duration;

use envpack_model::text::printable;
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};

use crate::report::{Report, Status};

/// One line per check; failures followed by their indented message.
pub fn human(report: &Report) -> String {
    let mut out = format!(
        "conformance {} ({}) profile {}\n",
        report.pack,
        if report.descriptor.is_empty() {
            "not loaded"
        } else {
            &report.descriptor
        },
        report.profile.name()
    );
    for check in &report.checks {
        let tag = match check.status {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skip => "SKIP",
        };
        // Messages quote pack text: written out, never acted on.
        out.push_str(&format!("  {tag} {:<34} {}\n", check.id, printable(&first_line(check))));
        if check.status == Status::Fail {
            for line in check.message.lines() {
                out.push_str(&format!("         {}\n", printable(line)));
            }
            if !check.wit.is_empty() {
                out.push_str(&format!("         the contract: {}\n", check.wit));
            }
        }
    }
    let cleanup = &report.cleanup;
    for line in &cleanup.swept {
        out.push_str(&format!("  note: {line}\n"));
    }
    if cleanup.released > 0 {
        out.push_str(&format!(
            "  released: {} fixture revisions archived through the pack at the end\n",
            cleanup.released
        ));
    }
    if !cleanup.left.is_empty() {
        out.push_str(&format!(
            "  warning: {} releases failed; the pack may have left provider resources behind:\n",
            cleanup.left.len()
        ));
        for line in &cleanup.left {
            out.push_str(&format!("         {}\n", printable(line)));
        }
    }
    let calls = &report.calls;
    if !calls.is_empty() {
        // Where the run's time went: a run spent inside the pack (its
        // programs, its waits) is as fast as the pack can be.
        out.push_str(&format!(
            "  {} verb calls in {:.0} ms: {:.0} ms inside the pack ({:.0} ms of it asleep{}), {:.0} ms in the host\n",
            calls.count,
            calls.elapsed_ms,
            calls.in_pack_ms,
            calls.slept_ms,
            match calls.programs {
                0 => String::new(),
                n => format!("; {n} programs started"),
            },
            calls.host_ms()
        ));
        let by_count = |counts: &std::collections::BTreeMap<String, usize>| {
            let mut pairs: Vec<(&String, &usize)> = counts.iter().collect();
            pairs.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
            let pairs: Vec<String> = pairs
                .iter()
                .map(|(name, n)| format!("{} {n}", printable(name)))
                .collect();
            pairs.join(", ")
        };
        let mut parts = Vec::new();
        if !calls.started.is_empty() {
            parts.push(format!("programs started: {}", by_count(&calls.started)));
        }
        if !calls.signals.is_empty() {
            parts.push(format!("signals sent: {}", by_count(&calls.signals)));
        }
        if !parts.is_empty() {
            out.push_str(&format!("  {}\n", parts.join("; ")));
        }
    }
    let s = &report.summary;
    out.push_str(&format!(
        "  {} passed, {} failed, {} skipped in {:.0} ms",
        s.passed, s.failed, s.skipped, report.elapsed_ms
    ));
    if report.dry {
        out.push_str(" (dry run: only the checks that call no verb)");
    } else if let Some(seed) = report.seed {
        out.push_str(&format!(" (generated cases: seed {seed})"));
    }
    out.push('\n');
    out
}

fn first_line(check: &crate::report::CheckResult) -> String {
    match check.status {
        Status::Fail => check.statement.clone(),
        _ => check.message.lines().next().unwrap_or_default().to_string(),
    }
}

/// The documented JSON: one object per report, an array for several.
pub fn json(reports: &[Report]) -> String {
    let value = match reports {
        [one] => serde_json::to_value(one),
        many => serde_json::to_value(many),
    };
    value.map(|v| format!("{v:#}")).unwrap_or_default()
}

/// JUnit XML: `<testsuites>` with a `<testsuite>` per pack.
pub fn junit(reports: &[Report]) -> Result<String, quick_junit::SerializeError> {
    let mut junit = quick_junit::Report::new("envpack-conformance");
    for report in reports {
        let name = if report.descriptor.is_empty() {
            report.pack.clone()
        } else {
            report.descriptor.clone()
        };
        let mut suite = TestSuite::new(name);
        suite.set_time(Duration::from_secs_f64(report.elapsed_ms / 1000.0));
        for check in &report.checks {
            let mut status = match check.status {
                Status::Pass => TestCaseStatus::success(),
                Status::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
                Status::Skip => TestCaseStatus::skipped(),
            };
            if check.status != Status::Pass {
                status.set_message(check.message.lines().next().unwrap_or_default().to_string());
                let description = if check.wit.is_empty() {
                    check.message.clone()
                } else {
                    format!("{}\nthe contract: {}", check.message, check.wit)
                };
                status.set_description(description);
            }
            let mut case = TestCase::new(check.id.clone(), status);
            case.set_classname(format!(
                "{}.{}",
                report.profile.name(),
                check.id.split('.').next().unwrap_or_default()
            ));
            case.set_time(Duration::from_secs_f64(check.elapsed_ms / 1000.0));
            suite.add_test_case(case);
        }
        if !report.cleanup.left.is_empty() {
            suite.set_system_err(format!(
                "releases that failed; the pack may have left provider resources behind:\n{}",
                report.cleanup.left.join("\n")
            ));
        }
        junit.add_test_suite(suite);
    }
    junit.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Profile;
    use crate::report::{CallTotals, Report};

    #[test]
    fn a_run_says_which_programs_it_started_and_which_signals_it_sent_most_first() {
        let mut report = Report::new("p.wasm".into(), "d@1.0.0".into(), Profile::Core, Vec::new(), 10.0);
        report.calls = CallTotals {
            count: 3,
            elapsed_ms: 9.0,
            in_pack_ms: 8.0,
            slept_ms: 1.0,
            programs: 6,
            started: [("python3", 2), ("tar", 3), ("nginx", 1)]
                .map(|(name, n)| (name.to_string(), n))
                .into(),
            signals: [("hup nginx", 2)].map(|(name, n)| (name.to_string(), n)).into(),
        };
        let text = human(&report);
        assert!(
            text.contains("\n  programs started: tar 3, python3 2, nginx 1; signals sent: hup nginx 2\n"),
            "{text}"
        );
        // A run that started nothing says nothing of it.
        report.calls.started.clear();
        report.calls.signals.clear();
        assert!(!human(&report).contains("programs started:"));
    }
}
