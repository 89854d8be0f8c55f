//! Why a sandboxed step could not run. A step that runs and exits non-zero is not an error: it is
//! an [`crate::executor::ExecOutcome`].

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// A failure to set up or start a sandboxed step, naming the operation that failed.
///
/// The helper process sends these to the runner as JSON, so every field is plain data.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize, PartialEq, Eq)]
pub enum ExecError {
    /// The spec cannot be run as given.
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    /// The helper binary could not be started.
    #[error("spawn sandbox helper {helper}: {message}")]
    HelperSpawn {
        /// Path of the helper binary.
        helper: PathBuf,
        /// OS error.
        message: String,
    },
    /// The helper ended without reporting a result.
    #[error("sandbox helper ended without a result ({status})")]
    HelperDied {
        /// How the helper ended.
        status: String,
    },
    /// The runner and the helper disagreed on the wire protocol.
    #[error("sandbox helper protocol: {0}")]
    Protocol(String),
    /// Preparing host directories or the private state directory failed.
    #[error("prepare {path}: {message}")]
    Prepare {
        /// The directory.
        path: PathBuf,
        /// OS error.
        message: String,
    },
    /// Mapping the user namespace's ids failed.
    #[error("map user namespace ids: {0}")]
    IdMap(String),
    /// `unshare(2)` failed.
    #[error("unshare {namespaces}: {message}")]
    Unshare {
        /// The namespaces asked for.
        namespaces: String,
        /// OS error.
        message: String,
    },
    /// A mount failed.
    #[error("mount {what} at {target}: {message}")]
    Mount {
        /// The filesystem type or source.
        what: String,
        /// Where it was to be mounted (host or container path).
        target: PathBuf,
        /// OS error.
        message: String,
    },
    /// `pivot_root(2)` into the root filesystem failed.
    #[error("pivot_root into {rootfs}: {message}")]
    PivotRoot {
        /// Host path of the root filesystem.
        rootfs: PathBuf,
        /// OS error.
        message: String,
    },
    /// Another set-up step (hostname, loopback, credentials, capabilities, working directory...).
    #[error("{step}: {message}")]
    Setup {
        /// What was being done.
        step: String,
        /// OS error.
        message: String,
    },
    /// The step's `USER` could not be resolved in its root filesystem.
    #[error("{0}")]
    User(String),
    /// The program is not in the step's `PATH`.
    #[error("exec: \"{program}\": executable file not found in $PATH")]
    ExecutableNotFound {
        /// `args[0]`.
        program: String,
    },
    /// `execve(2)` of the program failed.
    #[error("exec: \"{program}\": {message}")]
    Exec {
        /// The program as resolved.
        program: String,
        /// OS error.
        message: String,
    },
    /// No in-process handler is registered under this name in the helper binary.
    #[error("no in-process sandbox handler registered as {kind:?}")]
    UnknownInProcess {
        /// The requested handler name.
        kind: String,
    },
    /// An in-process handler returned an error.
    #[error("{kind}: {message}")]
    InProcess {
        /// The handler name.
        kind: String,
        /// The handler's message.
        message: String,
    },
    /// The step was cancelled through its [`crate::executor::CancelToken`] and killed.
    #[error("cancelled")]
    Cancelled,
    /// Removing mount stubs or the work directory after the step failed.
    #[error("clean up {path}: {message}")]
    Cleanup {
        /// The path being removed.
        path: PathBuf,
        /// OS error.
        message: String,
    },
}
