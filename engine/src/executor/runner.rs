//! The build-process side: start the helper, feed it the spec, map ids when rootless, stream the
//! step's output and collect the result. Blocking; call it from `spawn_blocking`.

use super::error::ExecError;
use super::idmap;
use super::network::Slirp;
use super::protocol::{recv, send, HelperMessage, HelperRequest, RunnerReply, HELPER_ARG};
use super::spec::{Action, BindAccess, MountKind, SandboxSpec};
use super::sys::os_message;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// One line of a step's output (without its newline; invalid UTF-8 replaced).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct OutputLine {
    /// Where it was written.
    pub stream: Stream,
    /// The text.
    pub text: String,
}

/// How a step that ran ended. A non-zero exit is an outcome, not an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The exit code; 128 + signal number when killed by a signal (as a shell reports it).
    pub exit_code: i32,
    /// The signal that killed the step, if one did.
    pub signal: Option<i32>,
    /// The last lines of output, both streams interleaved in arrival order (exact within a
    /// stream, approximate between them).
    pub tail: Vec<OutputLine>,
    /// Wall time from spawning the helper to its report.
    pub duration: Duration,
}

impl ExecOutcome {
    /// Whether the step exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0 && self.signal.is_none()
    }
}

/// Longest line passed to the sink; longer output is split (a step printing megabytes without a
/// newline must not hold them all in one line).
const MAX_LINE_BYTES: u64 = 64 * 1024;

/// Asks a running step to stop: the step's processes are killed, the helper still cleans up and
/// the run returns [`ExecError::Cancelled`]. Clones share the same flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that has not been cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every run this token was given to.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Where a step's standard streams go.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StepIo {
    /// Captured line by line and handed to the sink (build steps); standard input is empty.
    #[default]
    Lines,
    /// The step writes straight to this process's standard output and error, and reads its
    /// standard input when `stdin` (else an empty one): `builder run` without `-t`.
    Inherit {
        /// Whether the step reads this process's standard input.
        stdin: bool,
    },
    /// The step gets a terminal of its own (a pty made in its own `/dev/pts`, its controlling
    /// terminal), relayed to this process's standard input (when `stdin`) and output; this
    /// process's terminal, if it has one, is put in raw mode meanwhile: `builder run -t`.
    Terminal {
        /// Whether this process's standard input is relayed to the step's terminal.
        stdin: bool,
    },
}

/// Signals to pass on to a running step's pid 1 (a signal to `builder run` reaches the
/// container's process). As for any pid 1, the kernel drops those the process has no handler
/// for. Clones share the same queue.
#[derive(Debug, Clone, Default)]
pub struct StepSignals(Arc<Mutex<Vec<i32>>>);

impl StepSignals {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `signal` for the step of every run this handle was given to.
    pub fn send(&self, signal: i32) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(signal);
    }

    fn take(&self) -> Vec<i32> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Runs sandbox specs through a helper binary.
#[derive(Debug, Clone)]
pub struct Runner {
    helper: PathBuf,
    tail_lines: usize,
    io: StepIo,
    signals: StepSignals,
}

impl Runner {
    /// A runner re-executing the current binary, whose `main` must call
    /// [`crate::executor::maybe_run_helper`] first.
    pub fn new() -> Result<Self, ExecError> {
        let helper = std::env::current_exe().map_err(|e| ExecError::HelperSpawn {
            helper: PathBuf::from("/proc/self/exe"),
            message: os_message(e),
        })?;
        Ok(Self::with_helper(helper))
    }

    /// A runner using another binary as the helper (tests, benchmarks).
    pub fn with_helper(helper: impl Into<PathBuf>) -> Self {
        Runner {
            helper: helper.into(),
            tail_lines: 50,
            io: StepIo::Lines,
            signals: StepSignals::new(),
        }
    }

    /// Where the step's standard streams go (default [`StepIo::Lines`]). With any other, the
    /// sink sees no lines and the helper runs in a process group of its own, so that a ^C
    /// typed at this process's terminal does not kill it before it cleans up.
    pub fn io(mut self, io: StepIo) -> Self {
        self.io = io;
        self
    }

    /// Passes the signals queued on `signals` to the step's pid 1 while it runs.
    pub fn signals(mut self, signals: StepSignals) -> Self {
        self.signals = signals;
        self
    }

    /// How many trailing output lines [`ExecOutcome::tail`] keeps (default 50).
    pub fn tail_lines(mut self, lines: usize) -> Self {
        self.tail_lines = lines;
        self
    }

    /// Runs `spec`, calling `sink` for every output line as it arrives.
    pub fn run(
        &self,
        spec: &SandboxSpec,
        sink: &mut dyn FnMut(&OutputLine),
    ) -> Result<ExecOutcome, ExecError> {
        self.run_cancellable(spec, sink, &CancelToken::new())
    }

    /// [`Runner::run`], stopping the step when `cancel` is cancelled.
    pub fn run_cancellable(
        &self,
        spec: &SandboxSpec,
        sink: &mut dyn FnMut(&OutputLine),
        cancel: &CancelToken,
    ) -> Result<ExecOutcome, ExecError> {
        let started = Instant::now();
        validate(spec)?;
        let spec = &prepare_host_dirs(spec)?;
        let state_dir = tempfile::Builder::new()
            .prefix("builder-sandbox-")
            .tempdir()
            .map_err(|e| ExecError::Prepare {
                path: std::env::temp_dir(),
                message: os_message(e),
            })?;
        let (ours, theirs) = UnixStream::pair().map_err(|e| spawn_error(&self.helper, e))?;
        let their_fd = theirs.as_raw_fd();
        let console = match self.io {
            StepIo::Terminal { .. } => {
                Some(UnixStream::pair().map_err(|e| spawn_error(&self.helper, e))?)
            }
            _ => None,
        };
        let console_fd = console.as_ref().map(|(_, theirs)| theirs.as_raw_fd());
        let own_group = self.io != StepIo::Lines;
        let mut command = Command::new(&self.helper);
        command
            .arg(HELPER_ARG)
            .arg(their_fd.to_string())
            .env_clear();
        match self.io {
            StepIo::Lines => command
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            StepIo::Inherit { stdin } => command
                .stdin(if stdin {
                    Stdio::inherit()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit()),
            StepIo::Terminal { .. } => command
                .stdin(Stdio::null())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit()),
        };
        // SAFETY: only fcntl, setpgid and prctl, which are async-signal-safe, run between fork
        // and exec: the helper's ends of the sockets must survive exec, every other fd of ours
        // must not. The fds are open in the child, as in this process.
        unsafe {
            command.pre_exec(move || {
                for fd in std::iter::once(their_fd).chain(console_fd) {
                    let fd = rustix::fd::BorrowedFd::borrow_raw(fd);
                    rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
                }
                if own_group {
                    rustix::process::setpgid(None, None)?;
                }
                // A killed build takes its sandbox with it (prctl is async-signal-safe). The
                // signal follows the forking thread, which stays blocked in `run` meanwhile.
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))?;
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| spawn_error(&self.helper, e))?;
        drop(theirs);
        let resize = Arc::new(AtomicBool::new(false));
        let relay = match (console, self.io) {
            (Some((ours, theirs)), StepIo::Terminal { stdin }) => {
                drop(theirs);
                Some(super::console::relay(ours, stdin, resize.clone()))
            }
            _ => None,
        };

        let (tx, rx) = mpsc::channel::<OutputLine>();
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(read_lines(out, Stream::Stdout, tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(read_lines(err, Stream::Stderr, tx.clone()));
        }
        drop(tx);

        let request = HelperRequest {
            spec: spec.clone(),
            state_dir: state_dir.path().to_path_buf(),
            console_fd,
        };
        let control = std::thread::spawn(move || converse(ours, &request));

        let mut tail = VecDeque::with_capacity(self.tail_lines.min(1024));
        let mut signalled = false;
        let mut lines_open = true;
        let helper_pid = child.id() as i32;
        loop {
            let line = if lines_open {
                rx.recv_timeout(Duration::from_millis(50))
            } else if control.is_finished() {
                break;
            } else {
                std::thread::sleep(Duration::from_millis(20));
                Err(mpsc::RecvTimeoutError::Timeout)
            };
            let line = match line {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if cancel.is_cancelled() && !signalled {
                        // The helper kills the step's pid 1 on SIGTERM, then cleans up.
                        if let Some(pid) = rustix::process::Pid::from_raw(helper_pid) {
                            let _ =
                                rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                        }
                        signalled = true;
                    }
                    for signal in self.signals.take() {
                        if signal == libc::SIGWINCH && relay.is_some() {
                            // The relay copies the new size to the step's terminal, whose
                            // kernel then signals the step's foreground process group.
                            resize.store(true, Ordering::SeqCst);
                        } else if let Some(pid) = step_pid(helper_pid) {
                            // libc: the signal may be any number, which rustix's `Signal` takes
                            // only unchecked.
                            // SAFETY: kill(2) with a pid and a signal number.
                            unsafe {
                                libc::kill(pid, signal);
                            }
                        }
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // Captured output ends with the helper; otherwise wait for its report.
                    if self.io == StepIo::Lines {
                        break;
                    }
                    lines_open = false;
                    continue;
                }
            };
            sink(&line);
            if self.tail_lines > 0 {
                if tail.len() == self.tail_lines {
                    tail.pop_front();
                }
                tail.push_back(line);
            }
        }
        for reader in readers {
            let _ = reader.join();
        }
        let reported = control
            .join()
            .unwrap_or_else(|_| Err(ExecError::Protocol("control thread panicked".to_string())));
        let status = child.wait().map_err(|e| spawn_error(&self.helper, e))?;
        if let Some(relay) = relay {
            let _ = relay.join();
        }
        if signalled {
            return Err(ExecError::Cancelled);
        }
        let (exit_code, signal) = match reported? {
            Some(done) => done,
            None => {
                return Err(ExecError::HelperDied {
                    status: status.to_string(),
                })
            }
        };
        Ok(ExecOutcome {
            exit_code,
            signal,
            tail: tail.into(),
            duration: started.elapsed(),
        })
    }
}

impl Runner {
    /// [`Runner::run_cancellable`] on tokio's blocking pool. Dropping the future (an aborted
    /// build) cancels the step.
    pub async fn run_async(
        &self,
        spec: SandboxSpec,
        mut sink: impl FnMut(&OutputLine) + Send + 'static,
        cancel: CancelToken,
    ) -> Result<ExecOutcome, ExecError> {
        /// Cancels the step unless disarmed by completion.
        struct CancelOnDrop(Option<CancelToken>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                if let Some(token) = self.0.take() {
                    token.cancel();
                }
            }
        }
        let mut guard = CancelOnDrop(Some(cancel.clone()));
        let runner = self.clone();
        let result =
            tokio::task::spawn_blocking(move || runner.run_cancellable(&spec, &mut sink, &cancel))
                .await;
        guard.0 = None;
        result.unwrap_or_else(|e| Err(ExecError::Protocol(format!("runner task: {e}"))))
    }
}

/// The step's pid 1 as this process sees it: the helper's only child.
fn step_pid(helper: i32) -> Option<i32> {
    std::fs::read_to_string(format!("/proc/{helper}/task/{helper}/children"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn spawn_error(helper: &Path, e: std::io::Error) -> ExecError {
    ExecError::HelperSpawn {
        helper: helper.to_path_buf(),
        message: os_message(e),
    }
}

/// Sends the request, answers id-map requests and returns the helper's final report
/// (`None` if it ended without one).
fn converse(
    socket: UnixStream,
    request: &HelperRequest,
) -> Result<Option<(i32, Option<i32>)>, ExecError> {
    let writer = socket
        .try_clone()
        .map_err(|e| ExecError::Protocol(e.to_string()))?;
    let mut reader = BufReader::new(socket);
    send(&writer, request)?;
    let mut failure = None;
    // Lives until the step has ended (this function returns).
    let mut _slirp = None;
    loop {
        match recv::<HelperMessage>(&mut reader)? {
            Some(HelperMessage::NeedNetwork { pid }) => {
                match Slirp::start(pid, super::is_rootless()) {
                    Ok(slirp) => {
                        _slirp = Some(slirp);
                        send(&writer, &RunnerReply::NetworkReady)?;
                    }
                    Err(e) => {
                        send(&writer, &RunnerReply::Abort)?;
                        failure.get_or_insert(e);
                    }
                }
            }
            None => return failure.map_or(Ok(None), Err),
            Some(HelperMessage::NeedIdMap { pid }) => {
                let (reply, error) = match idmap::write_maps(pid) {
                    Ok(true) => (RunnerReply::Mapped, None),
                    Ok(false) => (RunnerReply::MapSelf, None),
                    Err(e) => (RunnerReply::Abort, Some(e)),
                };
                send(&writer, &reply)?;
                if let Some(e) = error {
                    failure.get_or_insert(e);
                }
            }
            Some(HelperMessage::Failed(e)) => {
                failure.get_or_insert(e);
            }
            Some(HelperMessage::Exited { code, signal }) => {
                return match failure {
                    Some(e) => Err(e),
                    None => Ok(Some((code, signal))),
                }
            }
        }
    }
}

fn read_lines(
    stream: impl Read + Send + 'static,
    which: Stream,
    tx: mpsc::Sender<OutputLine>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match (&mut reader)
                .take(MAX_LINE_BYTES)
                .read_until(b'\n', &mut buf)
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    let line = OutputLine {
                        stream: which,
                        text: String::from_utf8_lossy(&buf).into_owned(),
                    };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// Refuses specs the helper would misread: relative host paths, relative container paths.
fn validate(spec: &SandboxSpec) -> Result<(), ExecError> {
    let absolute = |p: &Path, what: &str| {
        if p.is_absolute() {
            Ok(())
        } else {
            Err(ExecError::InvalidSpec(format!(
                "{what} {} is not an absolute path",
                p.display()
            )))
        }
    };
    for overlay in &spec.overlays {
        absolute(&overlay.target, "overlay target")?;
        for lower in &overlay.lower {
            absolute(lower, "lower directory")?;
        }
        if let Some(upper) = &overlay.upper {
            absolute(&upper.upper, "upper directory")?;
            absolute(&upper.work, "work directory")?;
        }
    }
    for mount in &spec.mounts {
        absolute(&mount.target, "mount target")?;
        match &mount.kind {
            MountKind::Bind { source, .. } => absolute(source, "bind source")?,
            MountKind::Layers { lower, access, .. } => {
                for layer in lower {
                    absolute(layer, "layer directory")?;
                }
                if *access == BindAccess::ReadWrite {
                    return Err(ExecError::InvalidSpec(format!(
                        "layers mounted at {} cannot be read-write",
                        mount.target.display()
                    )));
                }
            }
            MountKind::Tmpfs { .. } | MountKind::File { .. } => {}
        }
    }
    if let Action::Exec(exec) = &spec.action {
        absolute(&exec.rootfs, "rootfs")?;
        if exec.args.is_empty() {
            return Err(ExecError::InvalidSpec("empty argument list".to_string()));
        }
        if !exec.cwd.as_os_str().is_empty() {
            absolute(&exec.cwd, "working directory")?;
        }
    }
    Ok(())
}

/// Creates overlay targets, upper and work directories (the work directory must be empty), and
/// returns the spec with those host paths and the rootfs canonical, as the helper compares them
/// with paths the kernel reports.
fn prepare_host_dirs(spec: &SandboxSpec) -> Result<SandboxSpec, ExecError> {
    let prepared = |p: &Path, e: std::io::Error| ExecError::Prepare {
        path: p.to_path_buf(),
        message: os_message(e),
    };
    let create = |p: &mut PathBuf| -> Result<(), ExecError> {
        std::fs::create_dir_all(&*p).map_err(|e| prepared(p, e))?;
        *p = std::fs::canonicalize(&*p).map_err(|e| prepared(p, e))?;
        Ok(())
    };
    let mut spec = spec.clone();
    let original_targets: Vec<PathBuf> = spec.overlays.iter().map(|o| o.target.clone()).collect();
    for overlay in &mut spec.overlays {
        create(&mut overlay.target)?;
        if let Some(upper) = &mut overlay.upper {
            create(&mut upper.upper)?;
            create(&mut upper.work)?;
            let empty = std::fs::read_dir(&upper.work)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false);
            if !empty {
                return Err(ExecError::InvalidSpec(format!(
                    "work directory {} is not empty",
                    upper.work.display()
                )));
            }
        }
    }
    if let Action::Exec(exec) = &mut spec.action {
        match original_targets.iter().position(|t| *t == exec.rootfs) {
            Some(i) => exec.rootfs = spec.overlays[i].target.clone(),
            None => {
                exec.rootfs =
                    std::fs::canonicalize(&exec.rootfs).map_err(|e| prepared(&exec.rootfs, e))?
            }
        }
    }
    Ok(spec)
}
