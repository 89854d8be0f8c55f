//! The live terminal view of `builder build`, end to end: under a real pseudo-terminal (its
//! final screen read back through a terminal emulator), and its fallback when stderr is no
//! terminal.

mod common;

use common::Fixture;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const ROWS: u16 = 50;
const COLS: u16 = 120;

const DOCKERFILE: &str = "\
FROM busybox:local
ARG VERSION=1
COPY app.txt /app/
RUN echo version $VERSION > /version
RUN for i in 1 2 3 4 5 6 7 8; do echo \"unit $i of 8\"; done
";

fn project(f: &Fixture) -> std::path::PathBuf {
    f.context(
        "project",
        &[("Dockerfile", DOCKERFILE), ("app.txt", "application\n")],
    )
}

/// A new pseudo-terminal of `rows` x `cols`: its controlling (master) and terminal (slave) side.
fn open_pty(rows: u16, cols: u16) -> (OwnedFd, OwnedFd) {
    use rustix::fs::{Mode, OFlags};
    use rustix::pty::OpenptFlags;
    let master =
        rustix::pty::openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)
            .expect("open /dev/ptmx");
    rustix::pty::grantpt(&master).expect("grantpt");
    rustix::pty::unlockpt(&master).expect("unlockpt");
    let name = rustix::pty::ptsname(&master, Vec::new()).expect("ptsname");
    let slave = rustix::fs::open(
        name.as_c_str(),
        OFlags::RDWR | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .expect("open the pty's terminal side");
    let size = rustix::termios::Winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    rustix::termios::tcsetwinsize(&slave, size).expect("set the window size");
    (master, slave)
}

/// `builder` running with its stdout and stderr on a pseudo-terminal of [`ROWS`] x [`COLS`],
/// whose output a terminal emulator takes in as it comes.
struct InPty {
    child: Child,
    terminal: Arc<Mutex<vt100::Parser>>,
    reader: JoinHandle<()>,
}

impl InPty {
    /// Runs `cmd` on a new pseudo-terminal, with `TERM=term`.
    fn spawn(mut cmd: Command, term: &str) -> InPty {
        let (master, slave) = open_pty(ROWS, COLS);
        let out: OwnedFd = slave.try_clone().unwrap();
        let child = cmd
            .env("TERM", term)
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(slave))
            .spawn()
            .expect("spawn builder");
        // The parent's copies of the terminal side are gone (moved into the command and dropped
        // with it), so reading ends when the child's end closes.
        drop(cmd);
        let terminal = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
        let screen = terminal.clone();
        let mut master = std::fs::File::from(master);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            // Linux reports EIO on the controlling side once the other side is closed.
            while let Ok(n @ 1..) = master.read(&mut buf) {
                screen.lock().unwrap().process(&buf[..n]);
            }
        });
        InPty {
            child,
            terminal,
            reader,
        }
    }

    fn contents(&self) -> String {
        self.terminal.lock().unwrap().screen().contents()
    }

    /// Waits until the screen shows `needle` (failing, with the screen, after two minutes).
    fn wait_for(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.contents().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "{needle:?} never showed up:\n{}",
                self.contents()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the command to exit and the terminal to take in all it wrote; returns how it
    /// exited and the final screen.
    fn finish(mut self) -> (ExitStatus, String) {
        let status = self.child.wait().unwrap();
        let InPty {
            terminal, reader, ..
        } = self;
        reader.join().unwrap();
        let contents = terminal.lock().unwrap().screen().contents();
        (status, contents)
    }
}

fn build_in_pty(f: &Fixture, context: &Path, args: &[&str]) -> InPty {
    let mut cmd = f.cmd();
    cmd.arg("build").args(args).arg(context);
    InPty::spawn(cmd, "xterm-256color")
}

/// The lines of the screen that start the way the view's header does.
fn headers(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .filter(|l| l.starts_with("[+] Building "))
        .collect()
}

/// The line of the screen about the step whose name contains `name`.
fn step_line<'a>(screen: &'a str, name: &str) -> &'a str {
    screen
        .lines()
        .find(|l| l.starts_with(" => ") && l.contains(name))
        .unwrap_or_else(|| panic!("no line for {name:?} on the screen:\n{screen}"))
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn live_view_ends_with_every_step_on_one_line_with_its_cache_decision() {
    common::require_build();
    let f = Fixture::new();
    let ctx = project(&f);
    f.build_ok(&ctx, &["--build-arg", "VERSION=1"]);

    // The default mode on a terminal is the live view.
    let (status, screen) = build_in_pty(&f, &ctx, &["--build-arg", "VERSION=2"]).finish();
    assert!(status.success(), "{screen}");
    let shown = headers(&screen);
    assert_eq!(shown.len(), 1, "one header, no stale frame:\n{screen}");
    let header = shown[0];
    assert!(header.ends_with(" FINISHED"), "{screen}");
    let counts = header
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(counts, _)| counts)
        .unwrap_or_else(|| panic!("no (done/total) in {header:?}"));
    let (done, total) = counts.split_once('/').unwrap();
    assert_eq!(done, total, "{header}");
    // The context load, the base image and three steps.
    assert_eq!(total, "5", "{header}");

    // The cached steps say so, the others why they ran, each on its one line.
    assert!(step_line(&screen, "FROM ").ends_with(" CACHED"), "{screen}");
    assert!(
        step_line(&screen, "COPY app.txt").ends_with(" CACHED"),
        "{screen}"
    );
    let run = step_line(&screen, "RUN echo version");
    assert!(run.contains("(ARG VERSION changed (1 → 2))"), "{screen}");
    assert!(run.ends_with('s') && !run.ends_with("CACHED"), "{screen}");
    // A finished step collapses: its output is gone from the screen.
    assert!(!screen.contains("unit 8 of 8"), "{screen}");
    assert!(
        screen.lines().all(|l| l.chars().count() <= COLS as usize),
        "{screen}"
    );

    // An unchanged rebuild: every step cached.
    let (status, screen) = build_in_pty(&f, &ctx, &["--build-arg", "VERSION=2"]).finish();
    assert!(status.success(), "{screen}");
    let shown = headers(&screen);
    assert_eq!(shown.len(), 1, "{screen}");
    assert!(shown[0].ends_with(" (5/5) FINISHED"), "{screen}");
    let cached = screen.lines().filter(|l| l.ends_with(" CACHED")).count();
    assert_eq!(cached, 4, "{screen}");

    // A terminal that cannot move its cursor gets plain lines.
    let mut cmd = f.cmd();
    cmd.arg("build").arg(&ctx);
    let (status, screen) = InPty::spawn(cmd, "dumb").finish();
    assert!(status.success(), "{screen}");
    assert!(headers(&screen).is_empty(), "{screen}");
    assert!(screen.lines().any(|l| l == "#2 CACHED"), "{screen}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn live_view_shows_a_running_step_with_its_output_and_ctrl_c_names_it() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "slow",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN echo first; echo second; echo waiting; sleep 600\n",
        )],
    );
    let pty = build_in_pty(&f, &ctx, &["--progress", "tty"]);
    // The running step, its reason, and its output under it.
    pty.wait_for("    waiting");
    let screen = pty.contents();
    let running = step_line(&screen, "RUN echo first");
    assert!(running.contains("(no previous build record)"), "{screen}");
    assert!(screen.contains("    first\n    second\n"), "{screen}");
    let header = headers(&screen);
    assert_eq!(header.len(), 1, "{screen}");
    // The base image is done, the RUN is not (nothing reads the context: no load step).
    assert!(header[0].ends_with(" (1/2)"), "{screen}");

    let pid = rustix::process::Pid::from_child(&pty.child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let (status, screen) = pty.finish();
    assert_eq!(status.code(), Some(130), "{screen}");
    let header = headers(&screen);
    assert_eq!(header.len(), 1, "{screen}");
    assert!(header[0].ends_with(" (2/2) INTERRUPTED"), "{screen}");
    let stopped = step_line(&screen, "RUN echo first");
    assert!(stopped.contains(" INTERRUPTED "), "{screen}");
    assert!(
        screen.contains(
            "ERROR: interrupted (Ctrl-C) while running:\n - [2/2] RUN echo first; echo second"
        ),
        "{screen}"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn progress_tty_without_a_terminal_says_so_and_prints_plain_progress() {
    common::require_build();
    let f = Fixture::new();
    let ctx = project(&f);
    let out = f
        .cmd()
        .args(["build", "--progress", "tty"])
        .arg(&ctx)
        .env("TERM", "xterm-256color")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("--progress tty: stderr is not a terminal"),
        "{stderr}"
    );
    // BuildKit's plain lines: the step, its cache decision, its output, its end.
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('#') && l.ends_with(" RUN echo version 1 > /version")),
        "{stderr}"
    );
    // The base image.
    assert!(lines.contains(&"#2 CACHED"), "{stderr}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('#') && l.ends_with(" unit 8 of 8")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with('#') && l.contains(" DONE ")),
        "{stderr}"
    );
    assert!(!stderr.contains('\x1b'), "no escape sequences: {stderr:?}");

    // `auto` (the default) without a terminal is plain without a word about it.
    let out = f.cmd().arg("build").arg(&ctx).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.starts_with("#1 [internal] load build context\n"),
        "{stderr}"
    );
    assert!(stderr.lines().any(|l| l == "#5 CACHED"), "{stderr}");
}
