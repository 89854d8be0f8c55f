//! Renders solver progress the way the user asked: a live terminal view, BuildKit-style plain
//! lines, one JSON object per event, or nothing; and says which steps a Ctrl-C interrupted.

mod live;
mod plain;
mod quiet;
mod rawjson;

use engine::solver::progress::{Event, ProgressSink, StepId};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

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
    /// Resolves `auto` against whether stderr (where progress goes) is a terminal that can move
    /// its cursor. An explicit `tty` without one falls back to `plain` too (a live view written
    /// to a file or a pipe is unreadable); [`view`] says so.
    pub fn resolve(self) -> ProgressMode {
        match self {
            ProgressMode::Auto | ProgressMode::Tty => {
                let dumb = std::env::var_os("TERM").is_some_and(|t| t == "dumb");
                if std::io::stderr().is_terminal() && !dumb {
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
        eprintln!(
            "--progress tty: stderr is not a terminal (or TERM=dumb), showing plain progress instead"
        );
    }
    match resolved {
        ProgressMode::Tty => live::TtyProgress::start(),
        ProgressMode::Plain | ProgressMode::Auto => Arc::new(plain::PlainProgress::default()),
        ProgressMode::Rawjson => Arc::new(rawjson::JsonProgress::default()),
        ProgressMode::Quiet => Arc::new(quiet::QuietProgress::default()),
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

/// A step an interruption stopped: its name and how long it had run, in seconds.
pub(crate) struct Interrupted {
    name: String,
    secs: f64,
}

/// The steps that are running, by id: what an interruption reports in the line-based modes.
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

    /// Marks the build interrupted and takes the running steps, by id.
    fn interrupt(&self) -> Vec<(StepId, Interrupted)> {
        self.interrupted.store(true, Ordering::SeqCst);
        self.lock()
            .iter()
            .map(|(id, (name, s))| {
                let step = Interrupted {
                    name: name.clone(),
                    secs: s.elapsed().as_secs_f64(),
                };
                (*id, step)
            })
            .collect()
    }

    fn is_interrupted(&self) -> bool {
        self.interrupted.load(Ordering::SeqCst)
    }
}

/// The closing lines of an interrupted build: which steps it stopped, and after how long.
fn interrupted_summary<'a>(steps: impl IntoIterator<Item = &'a Interrupted>) -> String {
    let mut text = "ERROR: interrupted (Ctrl-C) while running:".to_string();
    let mut any = false;
    for step in steps {
        any = true;
        text.push_str(&format!("\n - {} (after {:.1}s)", step.name, step.secs));
    }
    if !any {
        return "ERROR: interrupted (Ctrl-C) while no step was running".to_string();
    }
    text
}

/// `20000 files, 314.57 MB, 1 hashed`: what a context load saw and had to read.
fn context_summary(files: usize, bytes: u64, hashed: usize) -> String {
    format!(
        "{files} file{}, {}, {hashed} hashed",
        if files == 1 { "" } else { "s" },
        indicatif::DecimalBytes(bytes)
    )
}
