//! Runs a build step in an isolated sandbox: namespaces, overlayfs, `pivot_root`, a minimal
//! `/dev` and `/proc`, a network of its own behind user-mode NAT (or `none`, or the host's),
//! Docker's default capabilities and seccomp profile, as root or rootless. The defences against a
//! hostile step, and where each lives, are in `docs/SECURITY.md` (part 1).
//!
//! The build process is a multithreaded tokio program, and `unshare`/`fork` from it is unsound,
//! so [`run`] re-executes a binary (by default the current one) as a small single-threaded
//! *helper*: its `main` must call [`maybe_run_helper`] before anything else. The helper makes
//! the namespaces, mounts the overlays of the [`SandboxSpec`] and either forks the step's program
//! as pid 1 of a new pid namespace (inside the overlay root, after `pivot_root`), or calls an
//! in-process handler (file operations on an overlay-mounted rootfs) registered with
//! [`register_in_process`].
//!
//! Promises:
//! - after a step, an overlay's upper directory holds the step's changes and nothing else:
//!   mount points the sandbox had to create (`/proc` in a `scratch` image, `/etc/resolv.conf`,
//!   secret targets) are removed, and the work directory is deleted;
//! - file mounts (secrets) live in a private tmpfs and never reach an upper directory;
//! - nothing mounted for a step is visible outside its helper;
//! - a step that exits non-zero is an [`ExecOutcome`], not an [`ExecError`].
//!
//! - output lines keep their order within a stream; stdout and stderr are separate pipes, so
//!   their relative order is only approximate.
//!
//! Layout: [`spec`](SandboxSpec) is the data, `runner` the build-process side, `helper` the
//! namespace-making process, `container` the step's pid 1, `kernel` the one seam through which
//! every kernel call of the set-up goes (namespaces, ids, mounts, `pivot_root`, capabilities,
//! seccomp, `execve`; with a recording double for unprivileged tests), `mount_stubs` the mount points
//! made in the root and their removal, `network` the name-resolution files and slirp4netns,
//! `seccomp` Docker's profile, `idmap` rootless id maps, [`user`] `USER` resolution, `console`
//! the terminal of a step run with [`StepIo::Terminal`].
//!
//! A step's standard streams are captured line by line by default ([`StepIo::Lines`], build
//! steps); `builder run` inherits them ([`StepIo::Inherit`]) or gives the step a pty of its own
//! ([`StepIo::Terminal`]), and passes signals on to the step's pid 1 ([`StepSignals`]).
//!
//! When not root, the helper makes a user namespace first; the runner maps the user to root and
//! the user's `/etc/subuid`/`/etc/subgid` range to 1..N with `newuidmap`/`newgidmap` (or only
//! the user when there is no range).
//!
//! A `RUN` step over two cached layers, from async code:
//!
//! ```no_run
//! use engine::executor::{self, Action, ExecSpec, Network, OverlayMount, SandboxSpec, StepUser, UpperDir};
//! # async fn step() -> Result<(), Box<dyn std::error::Error>> {
//! let spec = SandboxSpec {
//!     overlays: vec![OverlayMount {
//!         lower: vec!["/cache/layers/base".into(), "/cache/layers/deps".into()], // bottom → top
//!         upper: Some(UpperDir { upper: "/cache/tmp/step1/diff".into(), work: "/cache/tmp/step1/work".into() }),
//!         target: "/cache/tmp/step1/rootfs".into(),
//!     }],
//!     mounts: executor::network_files(Network::Host, "buildsandbox"),
//!     network: Network::Host,
//!     hostname: "buildsandbox".into(),
//!     action: Action::Exec(ExecSpec {
//!         rootfs: "/cache/tmp/step1/rootfs".into(),
//!         args: vec!["/bin/sh".into(), "-c".into(), "make".into()],
//!         env: vec!["PATH=/usr/local/bin:/usr/bin:/bin".into()],
//!         cwd: "/src".into(),
//!         user: StepUser::Named("app".into()),
//!         insecure: false,
//!         shm_size_bytes: None,
//!         rlimits: Vec::new(),
//!     }),
//! };
//! let outcome = tokio::task::spawn_blocking(move || {
//!     executor::run(&spec, &mut |line| eprintln!("{}", line.text))
//! })
//! .await??;
//! if !outcome.success() {
//!     // exit code and the last lines of output are in `outcome`
//! }
//! // /cache/tmp/step1/diff is now the layer diff (whiteouts as 0:0 char devices).
//! # Ok(()) }
//! ```

mod console;
mod container;
mod error;
mod helper;
pub mod idmap;
mod kernel;
mod mount_stubs;
mod network;
mod protocol;
mod runner;
mod seccomp;
#[cfg(test)]
mod setup_tests;
mod spec;
mod sys;
pub mod user;

pub use error::ExecError;
pub use network::network_files;
pub use protocol::HELPER_ARG;
pub use runner::{CancelToken, ExecOutcome, OutputLine, Runner, StepIo, StepSignals, Stream};
pub use spec::{
    Action, BindAccess, ExecSpec, ExecUser, MountKind, MountSpec, Network, OverlayMount, Rlimit,
    SandboxSpec, StepUser, UpperDir, RLIMIT_NAMES,
};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

/// Turns this process into the sandbox helper when its arguments say so
/// (`<exe> __sandbox-helper <fd>`); otherwise returns at once. Call it first thing in `main`,
/// after registering in-process handlers and before starting any thread or runtime.
pub fn maybe_run_helper() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(std::ffi::OsStr::new(HELPER_ARG)) {
        return;
    }
    let fd = args
        .next()
        .and_then(|a| a.to_str().and_then(|s| s.parse::<i32>().ok()));
    match fd {
        Some(fd) if fd >= 0 => helper::helper_main(fd),
        _ => {
            eprintln!("{HELPER_ARG}: expected a control fd number");
            std::process::exit(2);
        }
    }
}

/// Runs `spec` with the current binary as helper, calling `sink` for each output line.
/// Blocking: from async code, call it inside `tokio::task::spawn_blocking`.
pub fn run(
    spec: &SandboxSpec,
    sink: &mut dyn FnMut(&OutputLine),
) -> Result<ExecOutcome, ExecError> {
    Runner::new()?.run(spec, sink)
}

/// Whether sandboxes run rootless (in a user namespace) because the process is not root.
pub fn is_rootless() -> bool {
    !rustix::process::geteuid().is_root()
}

/// What an in-process handler is given.
#[derive(Debug, Clone)]
pub struct InProcessContext {
    /// The `target` of each overlay of the spec, in spec order, mounted.
    pub mounts: Vec<PathBuf>,
    /// Whether the handler runs in a user namespace (ids are then container ids).
    pub rootless: bool,
}

/// What an in-process handler fails with: each handler's own error type, boxed. The handler runs
/// in the helper process, so only its message crosses to the runner (as
/// [`ExecError::InProcess`]); the typed error is for the handler's own code and tests.
pub type InProcessError = Box<dyn std::error::Error + Send + Sync>;

/// A function run inside the sandbox's mount namespace by [`Action::InProcess`].
pub type InProcessHandler = fn(&InProcessContext, &[u8]) -> Result<(), InProcessError>;

static IN_PROCESS: Mutex<BTreeMap<String, InProcessHandler>> = Mutex::new(BTreeMap::new());

/// Registers `handler` under `kind` for [`Action::InProcess`]. The helper binary must register
/// its handlers before calling [`maybe_run_helper`]; registering a kind again replaces it.
pub fn register_in_process(kind: &str, handler: InProcessHandler) {
    let mut map = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    map.insert(kind.to_string(), handler);
}

pub(crate) fn lookup_in_process(kind: &str) -> Option<InProcessHandler> {
    let map = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    map.get(kind).copied()
}
