//! The messages between the runner (in the build process) and the helper it re-executes, one
//! JSON document per line over a Unix socket pair.
//!
//! runner → helper: [`HelperRequest`], later a [`RunnerReply`] when the helper asks for id maps.
//! helper → runner: [`HelperMessage`]s; the last one is `Exited`, or `Failed` followed by
//! `Exited` when the step's own process could not start.

use super::error::ExecError;
use super::spec::SandboxSpec;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::PathBuf;

/// The argument that turns the binary into the sandbox helper: `<exe> __sandbox-helper <fd>`.
pub const HELPER_ARG: &str = "__sandbox-helper";

/// What the helper is asked to do.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct HelperRequest {
    pub spec: SandboxSpec,
    /// An empty host directory the helper mounts a private tmpfs on (file mounts, discarded
    /// writes, the empty lower layer).
    pub state_dir: PathBuf,
    /// For a step with a terminal of its own: the fd (inherited by the helper and its child)
    /// of the socket over which the step's pid 1 sends the master side of the pty it makes.
    #[serde(default)]
    pub console_fd: Option<i32>,
}

/// Helper → runner.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum HelperMessage {
    /// The helper made a user namespace; the runner writes its id maps.
    NeedIdMap { pid: i32 },
    /// The helper made a network namespace for [`super::spec::Network::Nat`]; the runner
    /// connects it to the outside.
    NeedNetwork { pid: i32 },
    /// Setting up or starting the step failed.
    Failed(ExecError),
    /// The step's pid 1 ended.
    Exited { code: i32, signal: Option<i32> },
}

/// Runner → helper, in answer to [`HelperMessage::NeedIdMap`].
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum RunnerReply {
    /// The runner wrote the maps with `newuidmap`/`newgidmap`.
    Mapped,
    /// No subordinate ids: the helper maps only its own uid and gid to 0.
    MapSelf,
    /// Mapping failed; the helper gives up.
    Abort,
    /// The network namespace is connected.
    NetworkReady,
}

/// Writes one message as a line.
pub(crate) fn send<T: Serialize>(mut w: impl Write, msg: &T) -> Result<(), ExecError> {
    let mut line = serde_json::to_vec(msg).map_err(|e| ExecError::Protocol(e.to_string()))?;
    line.push(b'\n');
    w.write_all(&line)
        .and_then(|()| w.flush())
        .map_err(|e| ExecError::Protocol(format!("write: {e}")))
}

/// Reads one message; `Ok(None)` at end of stream.
pub(crate) fn recv<T: DeserializeOwned>(r: &mut impl BufRead) -> Result<Option<T>, ExecError> {
    let mut line = Vec::new();
    let n = r
        .read_until(b'\n', &mut line)
        .map_err(|e| ExecError::Protocol(format!("read: {e}")))?;
    if n == 0 {
        return Ok(None);
    }
    serde_json::from_slice(&line)
        .map(Some)
        .map_err(|e| ExecError::Protocol(format!("decode: {e}")))
}
