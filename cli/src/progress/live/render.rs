//! Lays out one frame of the live view, as lines no wider than the terminal:
//!
//! ```text
//! [+] Building 12.3s (6/13)
//!  => [internal] load build context (3 files, 1.2 kB, 1 hashed)           0.0s
//!  => [base 1/1] FROM docker.io/library/busybox:latest                  CACHED
//!  => [2/4] COPY app.py /app/ (file app.py content changed)               0.1s
//!  => [3/4] RUN make (parent step missed: [2/4] COPY app.py /app/)        4.2s
//!     cc -c main.c
//!     cc -o app main.o
//! ```
//!
//! A pure function of the state, the terminal's size and the clock, so it is tested without one.

use super::state::{Ending, LiveState, Status, Step, TAIL_LINES};
use console::{measure_text_width, style};
use std::time::Duration;
use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

/// Where the frame goes: its width, and the most lines it may take (`None` for the final frame,
/// printed once and left to scroll).
#[derive(Debug, Clone, Copy)]
pub struct Screen {
    pub width: usize,
    pub height: Option<usize>,
}

/// The frame for `state` at `now` (time since the build started).
///
/// Every running step shows its timer and last output lines, every other step one line with its
/// cache decision, a failed step its output and error. When the frame is taller than the screen
/// (less one line, for the cursor), the oldest finished steps go first, then output lines, then
/// running steps beyond the screen, counted on one line.
pub fn render(state: &LiveState, screen: Screen, now: Duration) -> Vec<String> {
    let width = screen.width.max(1);
    let steps: Vec<&Step> = state.steps.values().collect();
    let mut hidden_finished = 0;
    let mut tail = TAIL_LINES;
    let mut shown_running = usize::MAX;
    if let Some(height) = screen.height {
        // The header and at least one line under it.
        let budget = height.saturating_sub(1).max(2);
        let rows = |hidden: usize, tail: usize| {
            1 + steps
                .iter()
                .filter(|s| !s.status.is_finished())
                .map(|s| 1 + s.tail.len().min(tail))
                .sum::<usize>()
                + steps
                    .iter()
                    .filter(|s| s.status.is_finished())
                    .skip(hidden)
                    .map(|s| block_rows(s, tail))
                    .sum::<usize>()
        };
        let finished = state.finished();
        while hidden_finished < finished && rows(hidden_finished, tail) > budget {
            hidden_finished += 1;
        }
        while tail > 0 && rows(hidden_finished, tail) > budget {
            tail -= 1;
        }
        let running = steps.len() - finished;
        if rows(hidden_finished, tail) > budget {
            // One line each, and one saying how many more there are.
            shown_running = budget.saturating_sub(2).min(running);
        }
    }

    let mut lines = vec![cut(&header(state, now), width)];
    let mut finished_seen = 0;
    let mut running_seen = 0;
    for step in steps {
        if step.status.is_finished() {
            finished_seen += 1;
            if finished_seen <= hidden_finished {
                continue;
            }
        } else {
            running_seen += 1;
            if running_seen > shown_running {
                continue;
            }
        }
        lines.extend(step_block(step, width, tail, now));
    }
    if running_seen > shown_running {
        let more = format!(" => … and {} more running", running_seen - shown_running);
        lines.push(cut(&more, width));
    }
    lines
}

/// `[+] Building 12.3s (6/13)`, then `FINISHED` or `INTERRUPTED` once the build ended.
fn header(state: &LiveState, now: Duration) -> String {
    let done = state.finished();
    let total = state.total.unwrap_or(state.steps.len()).max(done);
    let (at, end) = match state.ended {
        None => (now, ""),
        Some(Ending::Finished(at)) => (at, " FINISHED"),
        Some(Ending::Interrupted(at)) => (at, " INTERRUPTED"),
    };
    format!(
        "[+] Building {:.1}s ({done}/{total}){end}",
        at.as_secs_f64()
    )
}

/// Lines a finished step takes: one, or its output and error when it failed.
fn block_rows(step: &Step, tail: usize) -> usize {
    match &step.status {
        Status::Failed { error, .. } => 1 + step.tail.len().min(tail) + error.lines().count(),
        _ => 1,
    }
}

/// A step's line, and under it the output lines it shows.
fn step_block(step: &Step, width: usize, tail: usize, now: Duration) -> Vec<String> {
    let secs = |d: Duration| format!("{:.1}s", d.as_secs_f64());
    let (status, shows_output) = match &step.status {
        Status::Cached => (style("CACHED".to_string()).for_stderr().cyan(), false),
        Status::Running { since } => (style(secs(now.saturating_sub(*since))).for_stderr(), true),
        Status::Done { took } => (style(secs(*took)).for_stderr().blue(), false),
        Status::Failed { took, .. } => (
            style(format!("ERROR {}", secs(*took))).for_stderr().red(),
            true,
        ),
        Status::Interrupted { took } => (
            style(format!("INTERRUPTED {}", secs(*took)))
                .for_stderr()
                .yellow(),
            false,
        ),
    };
    let mut lines = vec![step_line(
        &step.name,
        step.note.as_deref(),
        &status.to_string(),
        width,
    )];
    if shows_output {
        let skip = step.tail.len().saturating_sub(tail);
        for out in step.tail.iter().skip(skip) {
            let out = cut(&format!("    {out}"), width);
            lines.push(style(out).for_stderr().dim().to_string());
        }
    }
    if let Status::Failed { error, .. } = &step.status {
        for line in error.lines() {
            let line = cut(&format!("    ERROR: {line}"), width);
            lines.push(style(line).for_stderr().red().to_string());
        }
    }
    lines
}

/// Columns the step's name keeps at least when the note has to be cut.
const NAME_MIN: usize = 24;

/// ` => [2/3] RUN make (file app.py content changed)      1.2s`: the step, why it ran, and its
/// status at the right edge. When the line is too long the name is cut first (down to
/// [`NAME_MIN`] columns) so that the cache decision stays in sight, then the note.
fn step_line(name: &str, note: Option<&str>, status: &str, width: usize) -> String {
    const ARROW: &str = " => ";
    let status_width = measure_text_width(status);
    let note = note.map(|n| format!("({n})"));
    let note_width = note.as_deref().map_or(0, |n| 1 + measure_text_width(n));
    // Room left of the status, less one space before it.
    let Some(room) = width.checked_sub(ARROW.len() + status_width + 1) else {
        return cut(&format!("{ARROW}{name}"), width);
    };
    let name_width = measure_text_width(name);
    let name_room = if name_width + note_width <= room {
        name_width
    } else {
        room.saturating_sub(note_width)
            .max(NAME_MIN.min(name_width))
            .min(room)
    };
    let mut left = format!("{ARROW}{}", cut_with_ellipsis(name, name_room));
    if let Some(note) = note {
        let note_room = room.saturating_sub(measure_text_width(&left) - ARROW.len());
        if note_room > 1 {
            let note = cut_with_ellipsis(note.as_str(), note_room - 1);
            left.push(' ');
            left.push_str(&style(note).for_stderr().yellow().to_string());
        }
    }
    let pad = width.saturating_sub(measure_text_width(&left) + status_width);
    format!("{left}{}{status}", " ".repeat(pad))
}

/// `text` (no escape sequences) cut to `width` columns; a wide character that would straddle the
/// edge goes.
fn cut(text: &str, width: usize) -> String {
    if text.width() <= width {
        return text.to_string();
    }
    let mut used = 0;
    text.chars()
        .take_while(|c| {
            used += c.width().unwrap_or(0);
            used <= width
        })
        .collect()
}

/// `text` cut to `width` columns, ending in `…` when cut.
fn cut_with_ellipsis(text: &str, width: usize) -> String {
    if text.width() <= width || width == 0 {
        return cut(text, width);
    }
    let mut out = cut(text, width - 1);
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::solver::progress::Event;
    use engine::solver::reason::MissReason;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn start(state: &mut LiveState, id: usize, name: &str, reason: Option<MissReason>, at: f64) {
        let name = name.to_string();
        let event = Event::Started {
            id,
            name,
            line: 1,
            reason,
        };
        state.apply(event, secs(at));
    }

    fn log(state: &mut LiveState, id: usize, lines: usize) {
        for n in 1..=lines {
            let line = format!("line {n}");
            let event = Event::Log {
                id,
                stream: "stdout",
                line,
            };
            state.apply(event, secs(1.0));
        }
    }

    fn arg_changed() -> MissReason {
        MissReason::ArgChanged {
            name: "VERSION".into(),
            old: Some("1".into()),
            new: Some("2".into()),
        }
    }

    fn file_changed() -> MissReason {
        MissReason::FileChanged {
            path: "app.py".into(),
            old: None,
            new: None,
        }
    }

    /// A build of five steps: a context load, a cached base image, a copy that ran and
    /// finished, a RUN still running with ten lines of output, and nothing yet for the fifth.
    fn building() -> LiveState {
        let mut s = LiveState::default();
        s.apply(Event::Planned { total: 5 }, secs(0.0));
        let load = Event::ContextLoaded {
            id: 0,
            name: "[internal] load build context".into(),
            files: 3,
            bytes: 1200,
            hashed: 1,
            duration_ms: 20,
        };
        s.apply(load, secs(0.0));
        start(&mut s, 1, "[base 1/1] FROM busybox:local", None, 0.1);
        start(
            &mut s,
            2,
            "[2/4] COPY app.py /app/",
            Some(file_changed()),
            0.1,
        );
        s.apply(
            Event::Done {
                id: 2,
                duration_ms: 300,
            },
            secs(0.4),
        );
        start(&mut s, 3, "[3/4] RUN make", Some(arg_changed()), 0.5);
        log(&mut s, 3, 10);
        s
    }

    fn plain(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .map(|l| console::strip_ansi_codes(l).into_owned())
            .collect()
    }

    fn wide(width: usize) -> Screen {
        Screen {
            width,
            height: Some(40),
        }
    }

    #[test]
    fn header_shows_elapsed_time_and_steps_done_of_total() {
        let s = building();
        let lines = plain(&render(&s, wide(80), secs(12.34)));
        assert_eq!(lines[0], "[+] Building 12.3s (3/5)");
    }

    #[test]
    fn header_stops_at_the_end_and_says_how_it_ended() {
        let mut s = building();
        s.apply(
            Event::Done {
                id: 3,
                duration_ms: 2000,
            },
            secs(2.5),
        );
        s.finish(secs(2.5));
        let lines = plain(&render(&s, wide(80), secs(99.0)));
        assert_eq!(lines[0], "[+] Building 2.5s (4/5) FINISHED");
        let mut s = building();
        let stopped = s.interrupt(secs(3.0));
        assert_eq!(stopped.len(), 1);
        assert_eq!(stopped[0].name, "[3/4] RUN make");
        let lines = plain(&render(&s, wide(80), secs(3.0)));
        assert_eq!(lines[0], "[+] Building 3.0s (4/5) INTERRUPTED");
        assert!(lines[4].ends_with(" INTERRUPTED 2.5s"), "{lines:#?}");
        assert_eq!(lines.len(), 5, "an interrupted step collapses: {lines:#?}");
    }

    #[test]
    fn every_step_line_carries_its_cache_decision_and_status() {
        let s = building();
        let lines = plain(&render(&s, wide(80), secs(1.7)));
        let context = &lines[1];
        assert!(
            context.starts_with(" => [internal] load build context (3 files, 1.20 kB, 1 hashed)"),
            "{context}"
        );
        assert!(context.ends_with(" 0.0s"), "{context}");
        let base = &lines[2];
        assert!(
            base.starts_with(" => [base 1/1] FROM busybox:local "),
            "{base}"
        );
        assert!(base.ends_with(" CACHED"), "{base}");
        let copy = &lines[3];
        assert!(
            copy.starts_with(" => [2/4] COPY app.py /app/ (file app.py changed)"),
            "{copy}"
        );
        assert!(copy.ends_with(" 0.3s"), "{copy}");
        let run = &lines[4];
        assert!(
            run.starts_with(" => [3/4] RUN make (ARG VERSION changed (1 → 2))"),
            "{run}"
        );
        assert!(run.ends_with(" 1.2s"), "the running step's timer: {run}");
        for line in &lines[1..5] {
            assert_eq!(
                console::measure_text_width(line),
                80,
                "full width: {line:?}"
            );
        }
    }

    #[test]
    fn a_running_step_shows_its_last_six_lines_and_a_finished_one_collapses() {
        let mut s = building();
        let lines = plain(&render(&s, wide(80), secs(1.7)));
        let tail: Vec<&str> = lines[5..].iter().map(|l| l.trim()).collect();
        assert_eq!(
            tail,
            ["line 5", "line 6", "line 7", "line 8", "line 9", "line 10"]
        );
        s.apply(
            Event::Done {
                id: 3,
                duration_ms: 1500,
            },
            secs(2.0),
        );
        let lines = plain(&render(&s, wide(80), secs(2.0)));
        assert_eq!(lines.len(), 5, "one line per step: {lines:#?}");
        assert!(lines[4].ends_with(" 1.5s"), "{lines:#?}");
    }

    #[test]
    fn a_failed_step_keeps_its_output_and_error() {
        let mut s = building();
        let failed = Event::Failed {
            id: 3,
            error: "process exited with 2".into(),
        };
        s.apply(failed, secs(2.0));
        let lines = plain(&render(&s, wide(80), secs(2.0)));
        assert!(lines[4].ends_with(" ERROR 1.5s"), "{lines:#?}");
        assert_eq!(lines[10].trim(), "line 10");
        assert_eq!(lines[11], "    ERROR: process exited with 2");
    }

    #[test]
    fn lines_are_cut_to_the_width_keeping_the_status_and_the_reason() {
        let mut s = building();
        let long = format!("[4/4] RUN {}", "x".repeat(200));
        start(&mut s, 4, &long, Some(arg_changed()), 1.0);
        for width in [10, 20, 40, 60, 79] {
            let lines = plain(&render(&s, wide(width), secs(1.7)));
            for line in &lines {
                assert!(
                    console::measure_text_width(line) <= width,
                    "{width}: {line:?}"
                );
            }
        }
        let lines = plain(&render(&s, wide(70), secs(1.7)));
        let last_step = lines.iter().find(|l| l.contains("[4/4]")).unwrap();
        // The name gives way first, so the reason and the timer stay.
        assert!(
            last_step.contains("xxx… (ARG VERSION changed (1 → 2))"),
            "{last_step}"
        );
        assert!(last_step.ends_with(" 0.7s"), "{last_step}");
        // Narrower, the name keeps enough to be recognised and the reason is cut.
        let lines = plain(&render(&s, wide(50), secs(1.7)));
        let last_step = lines.iter().find(|l| l.contains("[4/4]")).unwrap();
        assert!(
            last_step.starts_with(" => [4/4] RUN xxxxxxxxxxxxx… (ARG"),
            "{last_step}"
        );
        assert!(last_step.ends_with("… 0.7s"), "{last_step}");
    }

    #[test]
    fn cutting_is_unicode_safe() {
        let mut s = LiveState::default();
        let name = format!("[1/1] RUN echo {}", "日本語✓é".repeat(20));
        start(&mut s, 0, &name, Some(MissReason::NewStep), 0.0);
        let out = Event::Log {
            id: 0,
            stream: "stdout",
            line: "日本語".repeat(40),
        };
        s.apply(out, secs(0.0));
        for width in 5..50 {
            let lines = plain(&render(&s, wide(width), secs(0.5)));
            for line in &lines {
                assert!(
                    console::measure_text_width(line) <= width,
                    "{width}: {line:?}"
                );
            }
        }
    }

    #[test]
    fn a_frame_taller_than_the_screen_drops_finished_steps_then_output_then_steps() {
        let mut s = building();
        let short = |height| Screen {
            width: 80,
            height: Some(height),
        };
        // 11 lines in all: at 10 rows (9 usable) the two oldest finished steps go.
        let lines = plain(&render(&s, short(10), secs(1.7)));
        assert_eq!(lines.len(), 9, "{lines:#?}");
        assert!(lines[1].contains("[2/4] COPY"), "{lines:#?}");
        // Fewer rows: the output lines shrink too.
        let lines = plain(&render(&s, short(5), secs(1.7)));
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[1].contains("[3/4] RUN make"), "{lines:#?}");
        assert_eq!(lines[3].trim(), "line 10");
        // More running steps than rows: one line says how many are not shown.
        for id in 5..20 {
            start(
                &mut s,
                id,
                &format!("[{id}/20] RUN step"),
                Some(MissReason::NewStep),
                1.0,
            );
        }
        let lines = plain(&render(&s, short(8), secs(1.7)));
        assert_eq!(lines.len(), 7, "{lines:#?}");
        assert_eq!(lines[6], " => … and 11 more running", "{lines:#?}");
        // The final frame is not cut to the screen.
        let lines = plain(&render(
            &s,
            Screen {
                width: 80,
                height: None,
            },
            secs(1.7),
        ));
        assert_eq!(lines.len(), 1 + 4 + 6 + 15, "{lines:#?}");
    }
}
