//! Progress events: what the solver tells the user interface while a build runs.
//!
//! The solver emits [`Event`]s to a [`ProgressSink`]; the CLI renders them as a live terminal
//! view, BuildKit-style plain lines, raw JSON, or nothing.

use super::reason::MissReason;
use serde::Serialize;
use std::sync::Mutex;

/// Identifies a step within one build (its position in the order steps were announced).
pub type StepId = usize;

/// One thing that happened during a build.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// How many steps this build will show (context loads, base images and steps, cached or
    /// not), sent once before the first of them, so a view can say how far along it is.
    Planned { total: usize },
    /// A step's cache lookup is decided: it is cached (`reason` is `None`) or it will run for
    /// `reason`.
    Started {
        id: StepId,
        name: String,
        line: usize,
        #[serde(serialize_with = "reason_text")]
        reason: Option<MissReason>,
    },
    /// A line of output from a running step (stdout or stderr).
    Log {
        id: StepId,
        stream: &'static str,
        line: String,
    },
    /// The step finished.
    Done { id: StepId, duration_ms: u64 },
    /// The step failed.
    Failed { id: StepId, error: String },
    /// A build context was walked and checksummed (an `[internal]` step that always runs).
    ContextLoaded {
        id: StepId,
        name: String,
        /// Regular files the build can see.
        files: usize,
        /// Their total size in bytes.
        bytes: u64,
        /// Files read and hashed because the stat cache could not vouch for them.
        hashed: usize,
        duration_ms: u64,
    },
    /// A build-level message (warnings, export progress).
    Message { text: String },
}

fn reason_text<S: serde::Serializer>(r: &Option<MissReason>, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    match r {
        None => s.serialize_none(),
        Some(r) => {
            let mut m = s.serialize_map(Some(2))?;
            m.serialize_entry("text", &r.to_string())?;
            m.serialize_entry("detail", r)?;
            m.end()
        }
    }
}

/// Receives progress events. Implementations must be cheap: they run on the solver's threads.
pub trait ProgressSink: Send + Sync {
    fn emit(&self, event: Event);
}

/// Discards every event.
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn emit(&self, _event: Event) {}
}

/// Keeps every event in memory (tests and metadata).
#[derive(Default)]
pub struct RecordingProgress {
    pub events: Mutex<Vec<Event>>,
}

impl ProgressSink for RecordingProgress {
    fn emit(&self, event: Event) {
        self.events.lock().expect("progress events").push(event);
    }
}
