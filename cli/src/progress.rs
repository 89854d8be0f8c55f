//! Renders solver progress the way the user asked: a live terminal view, BuildKit-style plain
//! lines, one JSON object per event, or nothing; and says which steps a Ctrl-C interrupted.
//!
//! The live view lays out its own frame (header, running steps, their last output lines) because
//! indicatif's bars cannot keep a step's output tail cut to the terminal width under its line;
//! the terminal itself is driven through `console` (cursor movement, width, text measuring).

use console::Term;
use engine::solver::progress::{Event, ProgressSink, StepId};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
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
    /// Resolves `auto` against whether stderr is a terminal. An explicit `tty` without one falls
    /// back to `plain` too (a live view written to a file is unreadable); the caller says so.
    pub fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto | ProgressMode::Tty => {
                if std::io::stderr().is_terminal() {
                    ProgressMode::Tty
                } else {
                    ProgressMode::Plain
                }
            }
            m => m,
        }
    }
}

/// A progress renderer as the `build` command drives it: the engine's sink, plus the end of the
/// build and an interruption.
pub trait View: ProgressSink {
    /// The build ended (either way): a live view draws its last frame and stops redrawing.
    fn finish(&self) {}
    /// Ctrl-C: stop drawing and say which steps were running. The process exits right after.
    fn interrupt(&self);
}

/// Builds the view for a mode, saying once on stderr when `tty` cannot be honoured.
pub fn view(mode: ProgressMode) -> Arc<dyn View> {
    let resolved = mode.resolve();
    if mode == ProgressMode::Tty && resolved != ProgressMode::Tty {
        eprintln!("--progress tty: stderr is not a terminal, showing plain progress instead");
    }
    match resolved {
        ProgressMode::Tty => TtyProgress::start(),
        ProgressMode::Plain | ProgressMode::Auto => Arc::new(PlainProgress::default()),
        ProgressMode::Rawjson => Arc::new(JsonProgress::default()),
        ProgressMode::Quiet => Arc::new(QuietProgress::default()),
    }
}

/// On the first SIGINT, `view` says which steps were interrupted and the process exits with 130
/// (128 + SIGINT, as a shell reports it). A second SIGINT while that is printed exits at once.
/// The sandboxes die with the process (their helpers carry a parent-death signal).
pub fn exit_on_interrupt(view: Arc<dyn View>) -> std::io::Result<()> {
    use signal_hook::consts::SIGINT;
    let again = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register_conditional_shutdown(SIGINT, 128 + SIGINT, again.clone())?;
    signal_hook::flag::register(SIGINT, again)?;
    let mut signals = signal_hook::iterator::Signals::new([SIGINT])?;
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                view.interrupt();
                std::process::exit(128 + SIGINT);
            }
        })?;
    Ok(())
}

/// The steps that are running, by id: what an interruption reports.
#[derive(Default)]
struct Running {
    steps: Mutex<BTreeMap<StepId, (String, Instant)>>,
    interrupted: AtomicBool,
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<StepId, (String, Instant)>> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the running steps through `event`.
    fn track(&self, event: &Event) {
        match event {
            Event::Started {
                id,
                name,
                reason: Some(_),
                ..
            } => {
                self.lock().insert(*id, (name.clone(), Instant::now()));
            }
            Event::Done { id, .. } | Event::Failed { id, .. } => {
                self.lock().remove(id);
            }
            _ => {}
        }
    }

    /// Seconds since `id` started (0 for a step never seen running).
    fn elapsed(&self, id: StepId) -> f64 {
        self.lock()
            .get(&id)
            .map(|(_, s)| s.elapsed().as_secs_f64())
            .unwrap_or(0.0)
    }

    /// Marks the build interrupted and takes the running steps (id, name, seconds run).
    fn interrupt(&self) -> Vec<(StepId, String, f64)> {
        self.interrupted.store(true, Ordering::SeqCst);
        self.lock()
            .iter()
            .map(|(id, (name, s))| (*id, name.clone(), s.elapsed().as_secs_f64()))
            .collect()
    }

    fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}

/// The closing line of an interrupted build: which steps it stopped.
fn interrupted_summary(steps: &[(StepId, String, f64)]) -> String {
    if steps.is_empty() {
        return "ERROR: interrupted (Ctrl-C) while no step was running".to_string();
    }
    let mut text = "ERROR: interrupted (Ctrl-C) while running:".to_string();
    for (_, name, secs) in steps {
        text.push_str(&format!("\n - {name} (after {secs:.1}s)"));
    }
    text
}

/// Plain mode: `#5 [build 2/4] RUN make`, output lines prefixed with the step number and the time
/// since it started, `#5 DONE 1.2s`, `#5 CACHED`.
#[derive(Default)]
pub struct PlainProgress {
    running: Running,
}

impl View for PlainProgress {
    fn interrupt(&self) {
        let steps = self.running.interrupt();
        let mut err = std::io::stderr().lock();
        for (id, _, secs) in &steps {
            let _ = writeln!(err, "#{} INTERRUPTED {secs:.1}s", id + 1);
        }
        let _ = writeln!(err, "{}", interrupted_summary(&steps));
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

/// `20000 files, 314.57 MB, 1 hashed`: what a context load saw and had to read.
fn context_summary(files: usize, bytes: u64, hashed: usize) -> String {
    format!(
        "{files} file{}, {}, {hashed} hashed",
        if files == 1 { "" } else { "s" },
        indicatif::DecimalBytes(bytes)
    )
}

/// Rawjson mode: one JSON object per event on stderr; an interruption is one more
/// (`{"event":"interrupted","steps":[{"id":..,"name":..}]}`).
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
            .map(|(id, name, secs)| {
                serde_json::json!({"id": id, "name": name, "duration_ms": (secs * 1000.0) as u64})
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

/// Quiet mode: nothing while running; the output of a failing step is kept to show with the error.
#[derive(Default)]
pub struct QuietProgress {
    logs: Mutex<HashMap<StepId, Vec<String>>>,
    running: Running,
}

impl View for QuietProgress {
    fn interrupt(&self) {
        let steps = self.running.interrupt();
        let _ = writeln!(std::io::stderr().lock(), "{}", interrupted_summary(&steps));
    }
}

impl ProgressSink for QuietProgress {
    fn emit(&self, event: Event) {
        if self.running.is_interrupted() {
            return;
        }
        self.running.track(&event);
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

/// Output lines kept and shown under a running step (as many as buildx shows).
const TAIL_LINES: usize = 6;

/// How often the live view redraws (the timers move, output arrives).
const TICK: Duration = Duration::from_millis(100);

/// Terminal mode, buildx's view with the cache decisions: a header with the elapsed time and
/// steps done/total, each running step with its reason, timer and last output lines, redrawn in
/// place; a finished step leaves the live area as one line (`CACHED`, `DONE 1.2s`, `ERROR`)
/// printed above it.
pub struct TtyProgress {
    state: Arc<Mutex<TtyState>>,
}

/// What the live view shows, and what of it is on the screen.
struct TtyState {
    term: Term,
    started: Instant,
    total: Option<usize>,
    done: usize,
    running: BTreeMap<StepId, LiveStep>,
    /// Lines of the live area on the screen now.
    drawn: usize,
    /// The build ended or was interrupted: nothing redraws any more.
    stopped: bool,
}

/// A running step in the live view.
struct LiveStep {
    name: String,
    reason: String,
    started: Instant,
    tail: VecDeque<String>,
}

impl TtyProgress {
    /// Starts the view and the thread that redraws it.
    fn start() -> Arc<dyn View> {
        let state = Arc::new(Mutex::new(TtyState {
            term: Term::buffered_stderr(),
            started: Instant::now(),
            total: None,
            done: 0,
            running: BTreeMap::new(),
            drawn: 0,
            stopped: false,
        }));
        let weak: Weak<Mutex<TtyState>> = Arc::downgrade(&state);
        let _ = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                let Some(state) = weak.upgrade() else { break };
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                if state.stopped {
                    break;
                }
                state.redraw(&[]);
            });
        Arc::new(TtyProgress { state })
    }

    fn lock(&self) -> MutexGuard<'_, TtyState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl TtyState {
    /// Clears the live area, prints `above` for good, and draws the live area again.
    fn redraw(&mut self, above: &[String]) {
        let (rows, cols) = self.term.size();
        let frame = frame(self, cols as usize, rows as usize, Instant::now());
        let _ = self.term.clear_last_lines(self.drawn);
        for line in above {
            let _ = self.term.write_line(line);
        }
        for line in &frame {
            let _ = self.term.write_line(line);
        }
        self.drawn = frame.len();
        let _ = self.term.flush();
    }

    fn header(&self, now: Instant) -> String {
        let total = self.total.unwrap_or(self.done + self.running.len());
        let secs = now.duration_since(self.started).as_secs_f64();
        format!("[+] Building {secs:.1}s ({}/{total})", self.done)
    }
}

/// The live area: the header, then each running step's line and its last output lines, cut to
/// `width` and to `height - 1` lines (output lines go first, then steps beyond the screen).
fn frame(state: &TtyState, width: usize, height: usize, now: Instant) -> Vec<String> {
    let budget = height.saturating_sub(2).max(1);
    let steps = state.running.len();
    // The most output lines per step that let every step's line fit.
    let tail = (0..=TAIL_LINES)
        .rev()
        .find(|t| steps * (1 + t) <= budget)
        .unwrap_or(0);
    let mut lines = vec![cut(&state.header(now), width)];
    // Beyond the screen, one line says how many more there are.
    let shown = if steps <= budget { steps } else { budget - 1 };
    for (i, step) in state.running.values().enumerate() {
        if i == shown {
            let more = format!(" => … and {} more running", steps - shown);
            lines.push(cut(&more, width));
            break;
        }
        let secs = now.duration_since(step.started).as_secs_f64();
        lines.push(step_line(&step.name, &step.reason, &format!("{secs:.1}s"), width));
        let skip = step.tail.len().saturating_sub(tail);
        for out in step.tail.iter().skip(skip) {
            lines.push(console::style(cut(&format!("    {out}"), width)).dim().to_string());
        }
    }
    lines
}

/// ` => [2/3] RUN make (file app.py changed)      1.2s`: the step, why it ran, and its status at
/// the right edge; the left part is cut first when the terminal is narrow.
fn step_line(name: &str, reason: &str, status: &str, width: usize) -> String {
    let left = if reason.is_empty() {
        format!(" => {name}")
    } else {
        format!(" => {name} ({reason})")
    };
    let status_width = console::measure_text_width(status);
    if status_width + 2 > width {
        return cut(&format!("{left} {status}"), width);
    }
    let left = console::truncate_str(&left, width - status_width - 1, "…");
    let pad = width - status_width - console::measure_text_width(&left);
    format!("{left}{}{status}", " ".repeat(pad))
}

/// `text` cut to `width` columns.
fn cut(text: &str, width: usize) -> String {
    console::truncate_str(text, width, "").into_owned()
}

/// A line of a step's output as the terminal can show it on one line: colours and control
/// characters dropped, tabs expanded, only what follows the last carriage return.
fn sanitize(line: &str) -> String {
    let plain = console::strip_ansi_codes(line);
    let last = plain.rsplit('\r').next().unwrap_or("");
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

impl View for TtyProgress {
    fn finish(&self) {
        let mut state = self.lock();
        if state.stopped {
            return;
        }
        let (_, cols) = state.term.size();
        let header = format!("{} FINISHED", state.header(Instant::now()));
        state.running.clear();
        let _ = state.term.clear_last_lines(state.drawn);
        state.drawn = 0;
        let _ = state.term.write_line(&cut(&header, cols as usize));
        let _ = state.term.flush();
        state.stopped = true;
    }

    fn interrupt(&self) {
        let mut state = self.lock();
        let (_, cols) = state.term.size();
        let width = cols as usize;
        let now = Instant::now();
        let mut lines = Vec::new();
        let mut steps = Vec::new();
        for (&id, step) in &state.running {
            let secs = now.duration_since(step.started).as_secs_f64();
            let status = format!("INTERRUPTED {secs:.1}s");
            lines.push(step_line(&step.name, &step.reason, &status, width));
            steps.push((id, step.name.clone(), secs));
        }
        let header = format!("{} INTERRUPTED", state.header(now));
        lines.push(cut(&header, width));
        lines.push(interrupted_summary(&steps));
        state.running.clear();
        let _ = state.term.clear_last_lines(state.drawn);
        state.drawn = 0;
        for line in &lines {
            let _ = state.term.write_line(line);
        }
        let _ = state.term.flush();
        state.stopped = true;
    }
}

impl ProgressSink for TtyProgress {
    fn emit(&self, event: Event) {
        let mut state = self.lock();
        if state.stopped {
            return;
        }
        let (_, cols) = state.term.size();
        let width = cols as usize;
        let mut above = Vec::new();
        match event {
            Event::Planned { total } => state.total = Some(total),
            Event::Started {
                id, name, reason, ..
            } => match reason {
                None => {
                    state.done += 1;
                    above.push(step_line(&name, "", "CACHED", width));
                }
                Some(reason) => {
                    let step = LiveStep {
                        name,
                        // The one formatter of miss reasons, as plain mode prints them.
                        reason: reason.to_string(),
                        started: Instant::now(),
                        tail: VecDeque::with_capacity(TAIL_LINES),
                    };
                    state.running.insert(id, step);
                }
            },
            Event::Log { id, line, .. } => {
                if let Some(step) = state.running.get_mut(&id) {
                    if step.tail.len() == TAIL_LINES {
                        step.tail.pop_front();
                    }
                    step.tail.push_back(sanitize(&line));
                }
                // The next tick shows it: a chatty step does not redraw per line.
                return;
            }
            Event::Done { id, duration_ms } => {
                if let Some(step) = state.running.remove(&id) {
                    state.done += 1;
                    let status = format!("DONE {:.1}s", duration_ms as f64 / 1000.0);
                    above.push(step_line(&step.name, &step.reason, &status, width));
                }
            }
            Event::Failed { id, error } => {
                if let Some(step) = state.running.remove(&id) {
                    state.done += 1;
                    let secs = step.started.elapsed().as_secs_f64();
                    let status = format!("ERROR {secs:.1}s");
                    above.push(step_line(&step.name, &step.reason, &status, width));
                    for out in &step.tail {
                        above.push(cut(&format!("    {out}"), width));
                    }
                    above.push(format!("    ERROR: {error}"));
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
                state.done += 1;
                let status = format!("DONE {:.1}s", duration_ms as f64 / 1000.0);
                let summary = context_summary(files, bytes, hashed);
                above.push(step_line(&name, &summary, &status, width));
            }
            Event::Message { text } => above.push(text),
        }
        state.redraw(&above);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(steps: &[(&str, usize)]) -> TtyState {
        let now = Instant::now();
        let running = steps
            .iter()
            .enumerate()
            .map(|(i, (name, lines))| {
                let tail = (1..=*lines)
                    .map(|n| format!("line {n}"))
                    .skip(lines.saturating_sub(TAIL_LINES))
                    .collect();
                let step = LiveStep {
                    name: name.to_string(),
                    reason: "file app.py content changed".into(),
                    started: now,
                    tail,
                };
                (i, step)
            })
            .collect();
        TtyState {
            term: Term::buffered_stderr(),
            started: now,
            total: Some(5),
            done: 2,
            running,
            drawn: 0,
            stopped: false,
        }
    }

    fn plain(lines: &[String]) -> Vec<String> {
        lines
            .iter()
            .map(|l| console::strip_ansi_codes(l).into_owned())
            .collect()
    }

    #[test]
    fn frame_shows_the_header_each_step_and_its_last_six_lines() {
        let s = state(&[("[2/3] RUN make", 10)]);
        let lines = plain(&frame(&s, 60, 30, s.started));
        assert_eq!(lines[0], "[+] Building 0.0s (2/5)");
        assert!(lines[1].starts_with(" => [2/3] RUN make (file app.py content changed)"));
        assert!(lines[1].ends_with(" 0.0s"), "{}", lines[1]);
        let tail: Vec<&str> = lines[2..].iter().map(|l| l.trim()).collect();
        assert_eq!(tail, ["line 5", "line 6", "line 7", "line 8", "line 9", "line 10"]);
    }

    #[test]
    fn frame_lines_fit_the_terminal_width_and_height() {
        let steps: Vec<(&str, usize)> = (0..12)
            .map(|_| ("[2/3] RUN a very long command line that does not fit", 9))
            .collect();
        let s = state(&steps);
        let lines = plain(&frame(&s, 40, 12, s.started));
        assert!(lines.len() < 12, "{lines:#?}");
        assert!(lines.iter().all(|l| console::measure_text_width(l) <= 40));
        assert!(lines.last().unwrap().contains("more running"), "{lines:#?}");
        // The status stays at the right edge of a cut line.
        assert!(lines[1].ends_with(" 0.0s") && lines[1].contains('…'), "{lines:#?}");
    }

    #[test]
    fn sanitize_keeps_one_printable_line() {
        assert_eq!(sanitize("a\tb"), "a       b");
        assert_eq!(sanitize("10%\r50%\r\x1b[1mdone\x1b[0m"), "done");
        assert_eq!(sanitize("x\x07y"), "xy");
    }
}
