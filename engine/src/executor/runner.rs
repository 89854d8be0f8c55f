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
use std::sync::{mpsc, Arc};
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

/// Runs sandbox specs through a helper binary.
#[derive(Debug, Clone)]
pub struct Runner {
    helper: PathBuf,
    tail_lines: usize,
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
        }
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
        let mut command = Command::new(&self.helper);
        command
            .arg(HELPER_ARG)
            .arg(their_fd.to_string())
            .env_clear()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: only fcntl, which is async-signal-safe, runs between fork and exec: the
        // helper's end of the socket must survive exec, every other fd of ours must not.
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(their_fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // A killed build takes its sandbox with it (prctl is async-signal-safe). The
                // signal follows the forking thread, which stays blocked in `run` meanwhile.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|e| spawn_error(&self.helper, e))?;
        drop(theirs);

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
        };
        let control = std::thread::spawn(move || converse(ours, &request));

        let mut tail = VecDeque::with_capacity(self.tail_lines.min(1024));
        let mut signalled = false;
        loop {
            let line = match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if cancel.is_cancelled() && !signalled {
                        // The helper kills the step's pid 1 on SIGTERM, then cleans up.
                        let _ = nix::sys::signal::kill(
                            nix::unistd::Pid::from_raw(child.id() as i32),
                            nix::sys::signal::Signal::SIGTERM,
                        );
                        signalled = true;
                    }
                    continue;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
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
