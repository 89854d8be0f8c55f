//! Terminal mode: buildx's live view with the cache decisions. A frame (see [`render`]) is
//! redrawn in place about ten times a second; when the build ends the whole build is printed one
//! last time, every step on one line (a failed one with its output), and left on the screen.
//!
//! Redrawing overwrites the previous frame line by line and clears only what is left below it,
//! in one write, so the screen does not flicker; `console` measures and cuts text by columns.

mod render;
mod state;

use super::{interrupted_summary, View};
use engine::solver::progress::{Event, ProgressSink};
use render::{render, Screen};
use state::LiveState;
use std::io::Write;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// How often the live view redraws (the timers move, output arrives).
const TICK: Duration = Duration::from_millis(100);

/// The live view: the build's state, and what of it is on the terminal (stderr).
pub struct TtyProgress {
    live: Arc<Mutex<Live>>,
}

struct Live {
    state: LiveState,
    /// When the build started: events and frames are timed from here.
    clock: Instant,
    /// Lines of the last frame, which the next one overwrites.
    drawn: usize,
    /// The terminal's width when the last frame was drawn.
    drawn_width: usize,
    /// The build ended or was interrupted: nothing is drawn any more.
    stopped: bool,
}

impl TtyProgress {
    /// Starts the view and the thread that redraws it.
    pub fn start() -> Arc<dyn View> {
        let live = Arc::new(Mutex::new(Live {
            state: LiveState::default(),
            clock: Instant::now(),
            drawn: 0,
            drawn_width: 0,
            stopped: false,
        }));
        let weak: Weak<Mutex<Live>> = Arc::downgrade(&live);
        // Without the thread the view still prints the build when it ends.
        let _ = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                let Some(live) = weak.upgrade() else { break };
                let mut live = live.lock().unwrap_or_else(|e| e.into_inner());
                if live.stopped {
                    break;
                }
                live.draw(false);
            });
        Arc::new(TtyProgress { live })
    }

    fn lock(&self) -> MutexGuard<'_, Live> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Live {
    /// Prints the pending messages above the view, then the frame over the previous one; the
    /// last frame (`last`) is not cut to the screen's height and stays.
    fn draw(&mut self, last: bool) {
        let (rows, cols) = console::Term::stderr().size();
        let width = cols as usize;
        let screen = Screen {
            width,
            height: (!last).then_some(rows as usize),
        };
        let frame = render(&self.state, screen, self.clock.elapsed());
        // After a resize the old frame may take other rows than it did (some terminals re-wrap
        // it, others cut it): it is left where it is rather than overwriting what is above it.
        let over = if width == self.drawn_width {
            self.drawn
        } else {
            0
        };
        let messages = std::mem::take(&mut self.state.messages);
        let out = redraw(over, &messages, &frame, width);
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(out.as_bytes());
        let _ = err.flush();
        self.drawn = if last { 0 } else { frame.len() };
        self.drawn_width = width;
    }
}

/// What goes to the terminal to replace the `over` lines above the cursor (the last frame) with
/// `messages`, printed for good, and `frame`: the cursor goes up, each line is written over the
/// old one and the rest of it erased, and what is left below is cleared; all in one write,
/// so nothing is blank in between.
fn redraw(over: usize, messages: &[String], frame: &[String], width: usize) -> String {
    let mut out = String::new();
    if over > 0 {
        out.push_str(&format!("\r\x1b[{over}A"));
    }
    if !messages.is_empty() {
        // Messages may wrap: the old frame goes first, then they scroll up above the view.
        out.push_str("\x1b[J");
        for text in messages {
            out.push_str(text);
            out.push('\n');
        }
    }
    for line in frame {
        out.push_str(line);
        // A line as wide as the terminal covers the old one (and erasing in the last column
        // would erase its last character).
        if console::measure_text_width(line) < width {
            out.push_str("\x1b[K");
        }
        out.push('\n');
    }
    out.push_str("\x1b[J");
    out
}

impl View for TtyProgress {
    fn finish(&self) {
        let mut live = self.lock();
        if live.stopped {
            return;
        }
        let now = live.clock.elapsed();
        live.state.finish(now);
        live.draw(true);
        live.stopped = true;
    }

    fn interrupt(&self) {
        let mut live = self.lock();
        let mut stopped = Vec::new();
        if !live.stopped {
            let now = live.clock.elapsed();
            stopped = live.state.interrupt(now);
            live.draw(true);
            live.stopped = true;
        }
        let _ = writeln!(
            std::io::stderr().lock(),
            "{}",
            interrupted_summary(&stopped)
        );
    }
}

impl ProgressSink for TtyProgress {
    fn emit(&self, event: Event) {
        let mut live = self.lock();
        if live.stopped {
            return;
        }
        let now = live.clock.elapsed();
        // The next tick draws it: a chatty step does not redraw per line.
        live.state.apply(event, now);
    }
}

#[cfg(test)]
mod tests {
    use super::redraw;

    #[test]
    fn redraw_overwrites_the_last_frame_in_place() {
        let frame = ["header".to_string(), "x".repeat(10)];
        let out = redraw(3, &[], &frame, 10);
        // Up over the 3 old lines, each new line over an old one (the full-width one not
        // erased), the old frame's last line cleared below.
        assert_eq!(
            out,
            format!("\r\x1b[3Aheader\x1b[K\n{}\n\x1b[J", "x".repeat(10))
        );
        assert_eq!(redraw(0, &[], &frame[..1], 10), "header\x1b[K\n\x1b[J");
    }

    #[test]
    fn redraw_prints_messages_above_the_frame() {
        let messages = ["1 warning found:\n - rule".to_string()];
        let out = redraw(2, &messages, &["header".to_string()], 80);
        assert_eq!(
            out,
            "\r\x1b[2A\x1b[J1 warning found:\n - rule\nheader\x1b[K\n\x1b[J"
        );
    }
}
