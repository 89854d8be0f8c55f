//! Plain mode, as BuildKit's: `#5 [build 2/4] RUN make`, then `#5 CACHED` or `#5 MISS <reason>`,
//! output lines prefixed with the step number and the time since it started, `#5 DONE 1.2s`.

use super::{context_summary, interrupted_summary, Running, View};
use engine::solver::progress::{Event, ProgressSink, StepId};
use std::io::Write;

/// Writes one line per event on stderr, as they come.
#[derive(Default)]
pub struct PlainProgress {
    running: Running,
}

impl View for PlainProgress {
    fn interrupt(&self) {
        let steps = self.running.interrupt();
        let mut err = std::io::stderr().lock();
        for (id, step) in &steps {
            let _ = writeln!(err, "#{} INTERRUPTED {:.1}s", id + 1, step.secs);
        }
        let summary = interrupted_summary(steps.iter().map(|(_, s)| s));
        let _ = writeln!(err, "{summary}");
    }
}

impl ProgressSink for PlainProgress {
    fn emit(&self, event: Event) {
        if self.running.is_interrupted() {
            return;
        }
        self.running.track(&event);
        let mut err = std::io::stderr().lock();
        let n = |id: StepId| id + 1;
        let _ = match event {
            Event::Planned { .. } => Ok(()),
            Event::Started {
                id, name, reason, ..
            } => match reason {
                None => writeln!(err, "#{} {name}\n#{} CACHED", n(id), n(id)),
                Some(reason) => writeln!(err, "#{} {name}\n#{} MISS {reason}", n(id), n(id)),
            },
            Event::Log { id, line, .. } => {
                let t = self.running.elapsed(id);
                writeln!(err, "#{} {t:.3} {line}", n(id))
            }
            Event::Done { id, duration_ms } => {
                writeln!(err, "#{} DONE {:.1}s", n(id), duration_ms as f64 / 1000.0)
            }
            Event::Failed { id, error } => writeln!(err, "#{} ERROR: {error}", n(id)),
            Event::ContextLoaded {
                id,
                name,
                files,
                bytes,
                hashed,
                duration_ms,
            } => writeln!(
                err,
                "#{id} {name}\n#{id} {}\n#{id} DONE {:.1}s",
                context_summary(files, bytes, hashed),
                duration_ms as f64 / 1000.0,
                id = n(id),
            ),
            Event::Message { text } => writeln!(err, "{text}"),
        };
    }
}
