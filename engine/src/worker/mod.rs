//! The local worker: does a step's work on this machine.
//!
//! It implements the solver's [`Worker`] seam with the real pieces:
//! base layers unpacked once into the snapshot store ([`crate::snapshot`]), RUN in the sandbox
//! ([`crate::executor`]) on an overlay whose upper directory is the step's diff, file operations
//! ([`crate::fileops`]) run through the sandbox helper on an overlay too (so they work the same as
//! root and rootless), and the diff turned into a layer blob ([`crate::layer`]) streamed into the
//! content store. A finished upper directory becomes the snapshot of its own layer, so the next
//! step stacks on it without unpacking anything.

pub(crate) mod exec;
mod file;
mod ssh;
mod unpack;

use crate::layer::{DiffId, LayerOptions};
use crate::snapshot::{OverlayXattrs, SnapshotStore};
use crate::solver::progress::{Event, ProgressSink, StepId};
use crate::solver::{ContextInput, ExecRequest, FileRequest, WorkError, Worker};
use cache::keys::LayerRef;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use file::register_handlers;

/// A secret given to the build (`--secret id=...`): its bytes, held in memory only.
#[derive(Clone)]
pub struct Secret {
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Options of the local worker.
#[derive(Debug, Clone, Default)]
pub struct WorkerOptions {
    /// How layers are written (compression, SOURCE_DATE_EPOCH).
    pub layer: LayerOptions,
    /// Secrets by id.
    pub secrets: HashMap<String, Secret>,
    /// The sandbox helper binary; `None` re-executes the current binary.
    pub helper: Option<PathBuf>,
    /// The `security.insecure` entitlement: `RUN --security=insecure` steps run without the
    /// seccomp filter and with every capability. Off unless the user asks (`--allow`).
    pub allow_insecure: bool,
    /// The `network.host` entitlement: steps may use the host's network namespace
    /// (`RUN --network=host`). Off unless the user asks, as in BuildKit.
    pub allow_network_host: bool,
    /// SSH agent sockets by id (`--ssh`), for `RUN --mount=type=ssh`: bound into the step, so
    /// the step talks to the agent and never sees a key.
    pub ssh: HashMap<String, PathBuf>,
}

/// The worker that runs steps on this machine.
pub struct LocalWorker {
    root: cache::RootDir,
    store: cache::ContentStore,
    snapshots: SnapshotStore,
    opts: WorkerOptions,
    contexts: Mutex<HashMap<String, ContextInput>>,
}

impl LocalWorker {
    /// A worker over the cache root.
    pub fn new(root: cache::RootDir, mut opts: WorkerOptions) -> Result<Self, WorkError> {
        let rootless = crate::executor::is_rootless();
        if rootless && opts.layer.id_map.is_none() {
            // Files in a rootless upper directory belong to host (subordinate) ids.
            opts.layer.id_map = Some(crate::executor::idmap::layer_id_map());
        }
        let xattrs = if rootless {
            OverlayXattrs::User
        } else {
            OverlayXattrs::Trusted
        };
        let snapshots =
            SnapshotStore::open(root.snapshots_dir(), xattrs).map_err(|source| WorkError::Io {
                what: "opening the snapshot store",
                path: root.snapshots_dir(),
                source,
            })?;
        let store = root.content_store()?;
        Ok(LocalWorker {
            root,
            store,
            snapshots,
            opts,
            contexts: Mutex::new(HashMap::new()),
        })
    }

    pub(crate) fn runner(&self) -> Result<crate::executor::Runner, WorkError> {
        match &self.opts.helper {
            Some(h) => Ok(crate::executor::Runner::with_helper(h)),
            None => crate::executor::Runner::new().map_err(|source| WorkError::Sandbox {
                what: "finding the sandbox helper",
                source,
            }),
        }
    }

    /// The snapshot directories of a layer stack, bottom first, unpacking what is missing.
    ///
    /// A layer that occurs twice (steps with identical diffs, such as two empty ones, share one
    /// content-addressed snapshot) is kept only at its topmost place: overlayfs refuses a
    /// directory given twice (ELOOP), and the merged view is the same, since the upper copy
    /// names every path, whiteout and opaque directory the lower one does.
    pub(crate) fn lowers(&self, layers: &[LayerRef]) -> Result<Vec<PathBuf>, WorkError> {
        let dirs = self.snapshot_dirs(layers)?;
        let mut kept: Vec<PathBuf> = Vec::with_capacity(dirs.len());
        for (i, d) in dirs.iter().enumerate() {
            if !dirs[i + 1..].contains(d) {
                kept.push(d.clone());
            }
        }
        Ok(kept)
    }

    /// The snapshot directory of each layer, bottom first, unpacking what is missing.
    fn snapshot_dirs(&self, layers: &[LayerRef]) -> Result<Vec<PathBuf>, WorkError> {
        layers
            .iter()
            .map(|l| {
                let diff_id: &DiffId = &l.diff_id;
                let blob = self.store.path(&l.digest);
                if crate::executor::is_rootless() && !self.snapshots.contains(diff_id) {
                    unpack::unpack_in_sandbox(self, &blob, &self.snapshots.path(diff_id), diff_id)?;
                }
                Ok(self.snapshots.ensure(&blob, diff_id)?)
            })
            .collect()
    }

    /// A fresh scratch directory for one step, removed when dropped.
    pub(crate) fn step_dir(&self) -> Result<tempfile::TempDir, WorkError> {
        tempfile::Builder::new()
            .prefix("step-")
            .tempdir_in(self.root.tmp_dir())
            .map_err(|source| WorkError::Io {
                what: "creating a step directory in",
                path: self.root.tmp_dir(),
                source,
            })
    }

    /// Turns a finished upper directory over `lowers` (bottom first) into a layer blob in the
    /// content store, and keeps the directory as that layer's snapshot. Entries the overlay only
    /// copied up from `lowers` are left out first, as BuildKit's differ does.
    fn commit_upper(&self, upper: &Path, lowers: &[PathBuf]) -> Result<LayerRef, WorkError> {
        let stack = crate::snapshot::LayerStack::open(lowers, self.snapshots.xattrs()).map_err(
            |source| WorkError::Io {
                what: "opening the layers below",
                path: upper.to_path_buf(),
                source,
            },
        )?;
        crate::layer::prune_copied_up(upper, &stack).map_err(|source| WorkError::Layer {
            what: "diffing the layer",
            source,
        })?;
        let mut writer = self.store.writer()?;
        let desc = {
            let mut buffered = std::io::BufWriter::with_capacity(1 << 20, &mut writer);
            let desc = crate::layer::write_layer(upper, &mut buffered, &self.opts.layer).map_err(
                |source| WorkError::Layer {
                    what: "exporting the layer",
                    source,
                },
            )?;
            std::io::Write::flush(&mut buffered).map_err(|source| WorkError::Layer {
                what: "exporting the layer",
                source: crate::layer::LayerError::Write(source),
            })?;
            desc
        };
        writer.commit(Some(&desc.digest))?;
        let snapshot = self.snapshots.path(&desc.diff_id);
        if !snapshot.exists() {
            // The upper directory is already in overlay form: it becomes the snapshot as is.
            // A concurrent process may win the rename; either copy is the same layer.
            let _ = std::fs::rename(upper, &snapshot);
        }
        Ok(LayerRef {
            digest: desc.digest,
            diff_id: desc.diff_id,
            size: desc.size,
            media_type: desc.media_type,
        })
    }

    fn context(&self, name: &str) -> Result<ContextInput, WorkError> {
        self.contexts
            .lock()
            .expect("contexts")
            .get(name)
            .cloned()
            .ok_or_else(|| {
                WorkError::MissingInput(format!("build context {name:?} was not provided"))
            })
    }
}

impl Worker for LocalWorker {
    fn exec(
        &self,
        req: &ExecRequest<'_>,
        progress: &dyn ProgressSink,
    ) -> Result<LayerRef, WorkError> {
        exec::run(self, req, progress)
    }

    fn file(
        &self,
        req: &FileRequest<'_>,
        progress: &dyn ProgressSink,
    ) -> Result<LayerRef, WorkError> {
        file::run(self, req, progress)
    }

    fn set_contexts(&self, contexts: &HashMap<String, ContextInput>) {
        *self.contexts.lock().expect("contexts") = contexts.clone();
    }

    fn fetch_http(
        &self,
        url: &str,
        checksum: Option<&str>,
        filename: &str,
    ) -> Result<(LayerRef, String), WorkError> {
        file::fetch_http(self, url, checksum, filename)
    }
}

/// Forwards a step's output lines to progress.
fn log_sink<'a>(
    progress: &'a dyn ProgressSink,
    step: StepId,
) -> impl FnMut(&crate::executor::OutputLine) + 'a {
    move |line| {
        progress.emit(Event::Log {
            id: step,
            stream: match line.stream {
                crate::executor::Stream::Stdout => "stdout",
                crate::executor::Stream::Stderr => "stderr",
            },
            line: line.text.clone(),
        })
    }
}
