//! What a run is doing, as it does it: which check runs (of how many) and,
//! in the model-based checks, how many generated cases are done. The runner
//! reports to a [`ProgressSink`]; the caller decides how to show it (a bar
//! on a terminal, plain lines in a log, nothing in a library).

use std::sync::Arc;

/// One thing a run reports as it goes.
#[derive(Clone, Debug)]
pub enum Progress<'a> {
    /// A check starts: its position among the run's checks, and its id.
    Check {
        pack: &'a str,
        index: usize,
        total: usize,
        id: &'static str,
    },
    /// Generated cases done so far (the coverage case counts as one).
    Cases { done: usize, total: usize },
    /// The run retires its fixture environments (archiving through a pack
    /// that reaches outside the host).
    Releasing { pack: &'a str },
    /// The run is over.
    Done { pack: &'a str },
}

/// What receives a run's progress.
type Report = dyn Fn(&Progress<'_>) + Send + Sync;

/// Where a run reports its progress; nowhere by default.
#[derive(Clone, Default)]
pub struct ProgressSink(Option<Arc<Report>>);

impl ProgressSink {
    pub fn new(report: impl Fn(&Progress<'_>) + Send + Sync + 'static) -> Self {
        ProgressSink(Some(Arc::new(report)))
    }

    pub(crate) fn report(&self, progress: Progress<'_>) {
        if let Some(report) = &self.0 {
            report(&progress);
        }
    }
}

impl std::fmt::Debug for ProgressSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "ProgressSink(..)"
        } else {
            "ProgressSink(none)"
        })
    }
}
