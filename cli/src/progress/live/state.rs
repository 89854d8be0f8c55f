//! What the live view knows about a build: every step announced so far, its cache decision and
//! status, and the last lines of its output. Fed by the engine's events, each stamped with the
//! time since the build started, so that drawing it is a pure function of it and the clock.

use crate::progress::{context_summary, Interrupted};
use engine::solver::progress::{Event, StepId};
use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

/// Output lines kept under a running step (as many as buildx shows).
pub const TAIL_LINES: usize = 6;

/// The build as the live view shows it.
#[derive(Debug, Default)]
pub struct LiveState {
    /// How many steps the build will show, once the engine has planned it.
    pub total: Option<usize>,
    /// Steps by id, which is the order the build planned them in.
    pub steps: BTreeMap<StepId, Step>,
    /// When the build ended (or was interrupted): the header's timer stops there.
    pub ended: Option<Ending>,
    /// Build-level messages (warnings, pulls, pushes) not yet printed above the view.
    pub messages: Vec<String>,
}

/// How and when a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Finished(Duration),
    Interrupted(Duration),
}

/// One step of the build.
#[derive(Debug)]
pub struct Step {
    pub name: String,
    /// Why the step ran instead of coming from the cache (the engine's miss reason, as plain
    /// mode prints it), or what a context load read; `None` for a cached step.
    pub note: Option<String>,
    pub status: Status,
    /// Its last [`TAIL_LINES`] lines of output, each made printable on one line.
    pub tail: VecDeque<String>,
}

/// Where a step is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    Cached,
    /// Running since this long after the build started.
    Running {
        since: Duration,
    },
    Done {
        took: Duration,
    },
    Failed {
        took: Duration,
        error: String,
    },
    /// Stopped by Ctrl-C after running this long.
    Interrupted {
        took: Duration,
    },
}

impl Status {
    /// Whether the step counts as done in the header (anything but running).
    pub fn is_finished(&self) -> bool {
        !matches!(self, Status::Running { .. })
    }
}

impl LiveState {
    /// Steps no longer running (cached, done, failed or interrupted).
    pub fn finished(&self) -> usize {
        self.steps
            .values()
            .filter(|s| s.status.is_finished())
            .count()
    }

    /// Takes `event` in, `now` after the build started.
    pub fn apply(&mut self, event: Event, now: Duration) {
        match event {
            Event::Planned { total } => self.total = Some(total),
            Event::Started {
                id, name, reason, ..
            } => {
                let (note, status) = match reason {
                    None => (None, Status::Cached),
                    // The engine's one formatter of miss reasons, as plain mode prints them.
                    Some(reason) => (
                        Some(one_line(&reason.to_string())),
                        Status::Running { since: now },
                    ),
                };
                let step = Step {
                    name: one_line(&name),
                    note,
                    status,
                    tail: VecDeque::with_capacity(TAIL_LINES),
                };
                self.steps.insert(id, step);
            }
            Event::Log { id, line, .. } => {
                if let Some(step) = self.steps.get_mut(&id) {
                    if step.tail.len() == TAIL_LINES {
                        step.tail.pop_front();
                    }
                    step.tail.push_back(printable(&line));
                }
            }
            Event::Done { id, duration_ms } => {
                if let Some(step) = self.steps.get_mut(&id) {
                    step.status = Status::Done {
                        took: Duration::from_millis(duration_ms),
                    };
                }
            }
            Event::Failed { id, error } => {
                if let Some(step) = self.steps.get_mut(&id) {
                    let took = match step.status {
                        Status::Running { since } => now.saturating_sub(since),
                        _ => Duration::ZERO,
                    };
                    step.status = Status::Failed { took, error };
                }
            }
            Event::ContextLoaded {
                id,
                name,
                files,
                bytes,
                hashed,
                duration_ms,
            } => {
                let step = Step {
                    name: one_line(&name),
                    note: Some(context_summary(files, bytes, hashed)),
                    status: Status::Done {
                        took: Duration::from_millis(duration_ms),
                    },
                    tail: VecDeque::new(),
                };
                self.steps.insert(id, step);
            }
            Event::Message { text } => self.messages.push(text),
        }
    }

    /// The build ended, `now` after it started.
    pub fn finish(&mut self, now: Duration) {
        self.ended.get_or_insert(Ending::Finished(now));
    }

    /// Ctrl-C, `now` after the build started: every running step is marked interrupted and
    /// returned.
    pub fn interrupt(&mut self, now: Duration) -> Vec<Interrupted> {
        self.ended = Some(Ending::Interrupted(now));
        let mut stopped = Vec::new();
        for step in self.steps.values_mut() {
            if let Status::Running { since } = step.status {
                let took = now.saturating_sub(since);
                step.status = Status::Interrupted { took };
                stopped.push(Interrupted {
                    name: step.name.clone(),
                    secs: took.as_secs_f64(),
                });
            }
        }
        stopped
    }
}

/// A line of a step's output as the terminal can show it on one line: colours and control
/// characters dropped, tabs expanded, only what follows the last carriage return (a progress
/// bar's latest state).
pub fn printable(line: &str) -> String {
    let plain = console::strip_ansi_codes(line);
    let last = plain
        .trim_end_matches('\r')
        .rsplit('\r')
        .next()
        .unwrap_or("");
    let mut out = String::with_capacity(last.len());
    for c in last.chars() {
        match c {
            '\t' => {
                let col = console::measure_text_width(&out);
                out.push_str(&" ".repeat(8 - col % 8));
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A step's name or note on one line: a heredoc's or an instruction's line breaks (and any other
/// control character) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_keeps_one_printable_line() {
        assert_eq!(printable("a\tb"), "a       b");
        assert_eq!(printable("10%\r50%\r\x1b[1mdone\x1b[0m"), "done");
        assert_eq!(printable("x\x07y"), "xy");
        assert_eq!(printable("crlf\r"), "crlf");
        assert_eq!(one_line("RUN <<EOF\necho hi\nEOF"), "RUN <<EOF echo hi EOF");
    }

    #[test]
    fn a_step_keeps_its_last_six_lines() {
        let mut s = LiveState::default();
        s.apply(
            Event::Started {
                id: 0,
                name: "[1/1] RUN x".into(),
                line: 1,
                reason: Some(engine::solver::reason::MissReason::NewStep),
            },
            Duration::ZERO,
        );
        for n in 1..=10 {
            let line = format!("line {n}");
            s.apply(
                Event::Log {
                    id: 0,
                    stream: "stdout",
                    line,
                },
                Duration::ZERO,
            );
        }
        let tail: Vec<&str> = s.steps[&0].tail.iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            ["line 5", "line 6", "line 7", "line 8", "line 9", "line 10"]
        );
        assert_eq!(s.steps[&0].note.as_deref(), Some("new step"));
    }
}
