//! Quiet mode: nothing while running; the output of a failing step is kept to show with the error.

use super::{interrupted_summary, Running, View};
use engine::solver::progress::{Event, ProgressSink, StepId};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

/// Output lines kept per step, to show when it fails.
const KEPT_LINES: usize = 20;

/// Keeps each step's last output lines; prints them only when the step fails.
#[derive(Default)]
pub struct QuietProgress {
    logs: Mutex<HashMap<StepId, Vec<String>>>,
    running: Running,
}

impl View for QuietProgress {
    fn interrupt(&self) {
        let steps = self.running.interrupt();
        let summary = interrupted_summary(steps.iter().map(|(_, s)| s));
        let _ = writeln!(std::io::stderr().lock(), "{summary}");
    }
}

impl ProgressSink for QuietProgress {
    fn emit(&self, event: Event) {
        if self.running.is_interrupted() {
            return;
        }
        self.running.track(&event);
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            Event::Log { id, line, .. } => {
                let lines = logs.entry(id).or_default();
                lines.push(line);
                if lines.len() > KEPT_LINES {
                    lines.remove(0);
                }
            }
            Event::Failed { id, .. } => {
                if let Some(lines) = logs.get(&id) {
                    let mut err = std::io::stderr().lock();
                    for l in lines {
                        let _ = writeln!(err, "{l}");
                    }
                }
            }
            _ => {}
        }
    }
}
