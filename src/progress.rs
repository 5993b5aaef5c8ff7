//! Progress of conformance runs (`host conformance`, `pack install`) on
//! stderr: a bar on a terminal (the check running, its place among the
//! run's checks, generated cases done), a plain line per check otherwise,
//! so that a log shows where a slow run is without control characters.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

use envpack_conformance::{Progress, ProgressSink};
use indicatif::{ProgressBar, ProgressStyle};

/// The sink for this process's stderr.
pub fn sink() -> ProgressSink {
    if std::io::stderr().is_terminal() {
        terminal()
    } else {
        ProgressSink::new(|progress| {
            if let Progress::Check { pack, index, total, id } = progress {
                eprintln!("conformance: {pack}: [{}/{total}] {id}", index + 1);
            }
        })
    }
}

fn terminal() -> ProgressSink {
    let bar: Arc<Mutex<Option<ProgressBar>>> = Arc::default();
    let style = ProgressStyle::with_template("{spinner} conformance {prefix} [{pos}/{len}] {msg} ({elapsed})")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    ProgressSink::new(move |progress| {
        let mut bar = bar.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match progress {
            Progress::Check { pack, index, total, id } => {
                let current = bar.get_or_insert_with(|| {
                    let new = ProgressBar::new(*total as u64).with_style(style.clone());
                    new.set_prefix(pack.to_string());
                    new.enable_steady_tick(std::time::Duration::from_millis(120));
                    new
                });
                current.set_position(*index as u64);
                current.set_message(id.to_string());
            }
            Progress::Cases { done, total } => {
                if let Some(current) = bar.as_ref() {
                    let id = current.message();
                    let check = id.split(" (").next().unwrap_or_default().to_string();
                    current.set_message(format!("{check} (case {done} of {total})"));
                }
            }
            Progress::Releasing { .. } => {
                if let Some(current) = bar.as_ref() {
                    current.set_message("releasing the fixtures");
                }
            }
            Progress::Done { .. } => {
                if let Some(done) = bar.take() {
                    done.finish_and_clear();
                }
            }
        }
    })
}
