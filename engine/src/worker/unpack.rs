//! Rootless layer unpacking: a plain user cannot give files the ids a layer records (root's, or
//! any other), so the unpack runs as an in-process action of the sandbox helper, inside the
//! user namespace whose map (the user → 0, the subordinate ids → 1…) puts each file on the host
//! id the rootless overlay will show as the layer's id.

use super::LocalWorker;
use crate::executor::{self, Action, InProcessContext, InProcessError, Network, SandboxSpec};
use crate::fileops::archive::expansion_limit;
use crate::layer::DiffId;
use crate::snapshot::{unpack_layer_limited, OverlayXattrs};
use crate::solver::WorkError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The in-process action name of a layer unpack.
pub(super) const UNPACK_KIND: &str = "builder.unpack-layer";

/// What the helper receives.
#[derive(Serialize, Deserialize)]
struct UnpackJob {
    blob: PathBuf,
    dest: PathBuf,
    diff_id: String,
    /// The expansion limit, decided here: the helper's environment is cleared.
    limit: u64,
}

/// Why the helper could not start an unpack job (the unpack's own failures are
/// [`crate::snapshot::SnapshotError`]s).
#[derive(Debug, thiserror::Error)]
enum UnpackJobError {
    /// The payload is not an [`UnpackJob`].
    #[error("unpack job: {0}")]
    Decode(#[source] serde_json::Error),
    /// The job's diff id is not a digest.
    #[error("bad diffID {diff_id}: {source}")]
    BadDiffId {
        diff_id: String,
        #[source]
        source: cache::DigestError,
    },
}

/// The helper side: unpacks with container ids, as root of the user namespace.
pub(super) fn apply_job(_ctx: &InProcessContext, payload: &[u8]) -> Result<(), InProcessError> {
    let job: UnpackJob = serde_json::from_slice(payload).map_err(UnpackJobError::Decode)?;
    let diff_id: DiffId = job
        .diff_id
        .parse()
        .map_err(|source| UnpackJobError::BadDiffId {
            diff_id: job.diff_id.clone(),
            source,
        })?;
    unpack_layer_limited(
        &job.blob,
        &job.dest,
        Some(&diff_id),
        OverlayXattrs::User,
        job.limit,
    )?;
    Ok(())
}

/// Unpacks `blob` into `dest` through the helper (rootless only).
pub(super) fn unpack_in_sandbox(
    worker: &LocalWorker,
    blob: &Path,
    dest: &Path,
    diff_id: &DiffId,
) -> Result<(), WorkError> {
    let limit = expansion_limit(dest.parent().unwrap_or(Path::new(".")))?;
    let payload = serde_json::to_vec(&UnpackJob {
        blob: blob.to_path_buf(),
        dest: dest.to_path_buf(),
        diff_id: diff_id.to_string(),
        limit,
    })
    .map_err(|source| WorkError::Encode {
        what: "unpacking a layer",
        source,
    })?;
    let spec = SandboxSpec {
        overlays: Vec::new(),
        mounts: Vec::new(),
        network: Network::None,
        hostname: "buildkitsandbox".to_string(),
        action: Action::InProcess {
            kind: UNPACK_KIND.to_string(),
            payload,
        },
    };
    let mut sink = |_: &executor::OutputLine| {};
    let outcome = worker
        .runner()?
        .run(&spec, &mut sink)
        .map_err(|source| WorkError::Sandbox {
            what: "unpacking a layer",
            source,
        })?;
    if !outcome.success() {
        let message: Vec<String> = outcome.tail.iter().map(|l| l.text.clone()).collect();
        return Err(WorkError::InSandbox(format!(
            "unpacking layer {diff_id}: {}",
            if message.is_empty() {
                format!("exit code {}", outcome.exit_code)
            } else {
                message.join("\n")
            }
        )));
    }
    Ok(())
}
