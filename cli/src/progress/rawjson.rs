//! Rawjson mode: one JSON object per event on stderr; an interruption is one more
//! (`{"event":"interrupted","steps":[{"id":..,"name":..,"duration_ms":..}]}`).

use super::{Running, View};
use engine::solver::progress::{Event, ProgressSink};
use std::io::Write;

/// Writes each event as a JSON line.
#[derive(Default)]
pub struct JsonProgress {
    running: Running,
}

impl View for JsonProgress {
    fn interrupt(&self) {
        let steps: Vec<_> = self
            .running
            .interrupt()
            .into_iter()
            .map(|(id, step)| {
                let ms = (step.secs * 1000.0) as u64;
                serde_json::json!({"id": id, "name": step.name, "duration_ms": ms})
            })
            .collect();
        let line = serde_json::json!({"event": "interrupted", "steps": steps});
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}

impl ProgressSink for JsonProgress {
    fn emit(&self, event: Event) {
        if self.running.is_interrupted() {
            return;
        }
        self.running.track(&event);
        if let Ok(line) = serde_json::to_string(&event) {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
}
