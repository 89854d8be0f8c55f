//! Renders solver progress the way the user asked: a live terminal view, BuildKit-style plain
//! lines, one JSON object per event, or nothing.

use engine::solver::progress::{Event, ProgressSink, StepId};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The `--progress` modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// `tty` on a terminal, `plain` otherwise.
    Auto,
    Tty,
    Plain,
    Rawjson,
    Quiet,
}

impl ProgressMode {
    /// Resolves `auto` against whether stderr is a terminal.
    pub fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto => {
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    ProgressMode::Tty
                } else {
                    ProgressMode::Plain
                }
            }
            m => m,
        }
    }
}

/// Builds the sink for a mode.
pub fn sink(mode: ProgressMode) -> Box<dyn ProgressSink> {
    match mode.resolve() {
        ProgressMode::Tty => Box::new(TtyProgress::new()),
        ProgressMode::Plain | ProgressMode::Auto => Box::new(PlainProgress::default()),
        ProgressMode::Rawjson => Box::new(JsonProgress),
        ProgressMode::Quiet => Box::new(QuietProgress::default()),
    }
}

/// Plain mode: `#5 [build 2/4] RUN make`, output lines prefixed with the step number and the time
/// since it started, `#5 DONE 1.2s`, `#5 CACHED`.
#[derive(Default)]
pub struct PlainProgress {
    started: Mutex<HashMap<StepId, Instant>>,
}

impl ProgressSink for PlainProgress {
    fn emit(&self, event: Event) {
        let mut err = std::io::stderr().lock();
        let n = |id: StepId| id + 1;
        let _ = match event {
            Event::Started {
                id, name, reason, ..
            } => match reason {
                None => writeln!(err, "#{} {name}\n#{} CACHED", n(id), n(id)),
                Some(reason) => {
                    self.started
                        .lock()
                        .expect("progress state")
                        .insert(id, Instant::now());
                    writeln!(err, "#{} {name}\n#{} MISS {reason}", n(id), n(id))
                }
            },
            Event::Log { id, line, .. } => {
                let t = self
                    .started
                    .lock()
                    .expect("progress state")
                    .get(&id)
                    .map(|s| s.elapsed().as_secs_f64())
                    .unwrap_or(0.0);
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

/// `20000 files, 314.57 MB, 1 hashed`: what a context load saw and had to read.
fn context_summary(files: usize, bytes: u64, hashed: usize) -> String {
    format!(
        "{files} file{}, {}, {hashed} hashed",
        if files == 1 { "" } else { "s" },
        indicatif::DecimalBytes(bytes)
    )
}

/// Rawjson mode: one JSON object per event on stderr.
pub struct JsonProgress;

impl ProgressSink for JsonProgress {
    fn emit(&self, event: Event) {
        if let Ok(line) = serde_json::to_string(&event) {
            let _ = writeln!(std::io::stderr().lock(), "{line}");
        }
    }
}

/// Quiet mode: nothing while running; the output of a failing step is kept to show with the error.
#[derive(Default)]
pub struct QuietProgress {
    logs: Mutex<HashMap<StepId, Vec<String>>>,
}

impl ProgressSink for QuietProgress {
    fn emit(&self, event: Event) {
        match event {
            Event::Log { id, line, .. } => {
                let mut logs = self.logs.lock().expect("progress state");
                let lines = logs.entry(id).or_default();
                lines.push(line);
                if lines.len() > 20 {
                    lines.remove(0);
                }
            }
            Event::Failed { id, .. } => {
                if let Some(lines) = self.logs.lock().expect("progress state").get(&id) {
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

/// Terminal mode: one line per running step with a timer and its last output line; finished steps
/// stay as a summary line.
pub struct TtyProgress {
    multi: MultiProgress,
    bars: Mutex<HashMap<StepId, (ProgressBar, String)>>,
}

impl TtyProgress {
    pub fn new() -> Self {
        TtyProgress {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }
}

impl Default for TtyProgress {
    fn default() -> Self {
        Self::new()
    }
}

fn running_style() -> ProgressStyle {
    ProgressStyle::with_template("{spinner} {prefix} {elapsed:>4} {wide_msg:.dim}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner())
}

impl ProgressSink for TtyProgress {
    fn emit(&self, event: Event) {
        let mut bars = self.bars.lock().expect("progress state");
        match event {
            Event::Started {
                id, name, reason, ..
            } => match reason {
                None => {
                    let _ = self.multi.println(format!("✔ {name}  CACHED"));
                }
                Some(reason) => {
                    let bar = self.multi.add(ProgressBar::new_spinner());
                    bar.set_style(running_style());
                    bar.set_prefix(name.clone());
                    bar.set_message(reason.to_string());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    bars.insert(id, (bar, name));
                }
            },
            Event::Log { id, line, .. } => {
                if let Some((bar, _)) = bars.get(&id) {
                    bar.set_message(line);
                }
            }
            Event::Done { id, duration_ms } => {
                if let Some((bar, name)) = bars.remove(&id) {
                    bar.finish_and_clear();
                    let _ = self
                        .multi
                        .println(format!("✔ {name}  {:.1}s", duration_ms as f64 / 1000.0));
                }
            }
            Event::Failed { id, error } => {
                if let Some((bar, name)) = bars.remove(&id) {
                    bar.finish_and_clear();
                    let _ = self.multi.println(format!("✘ {name}  ERROR: {error}"));
                }
            }
            Event::ContextLoaded {
                name,
                files,
                bytes,
                hashed,
                duration_ms,
                ..
            } => {
                let _ = self.multi.println(format!(
                    "✔ {name}  {}  {:.1}s",
                    context_summary(files, bytes, hashed),
                    duration_ms as f64 / 1000.0
                ));
            }
            Event::Message { text } => {
                let _ = self.multi.println(text);
            }
        }
    }
}
