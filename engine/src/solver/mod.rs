//! The solver: cache keys, reuse, and parallel execution of the build graph.
//!
//! A solve runs in three phases, one module each:
//! 1. **Plan** (`plan.rs`, keys in [`key`]): in topological order, every vertex the target needs
//!    gets a cache key from its definition, its inputs' keys, the checksum of the context files it
//!    reads (`contexts.rs` walks each context once) and, for image sources, the resolved manifest
//!    digest.
//! 2. **Lookup** (`lookup.rs`): each step's key is looked up in the key store. A hit is reused as
//!    it is (its inputs are never materialised); a miss gets a [`reason::MissReason`] computed
//!    against the previous build of the same target.
//! 3. **Execute** (`execute.rs`): each vertex is a shared future over its inputs' futures, so
//!    independent stages run in parallel, every vertex runs at most once per build, and only what
//!    the target needs is awaited. The work itself (sandboxed RUN, file copies, layer export)
//!    happens on blocking threads through the [`Worker`] seam, under a per-key file lock so
//!    concurrent builds sharing a cache directory do identical work once.
//!
//! The image config is folded from the chain's metadata (`config.rs`).
//!
//! A failed step records nothing; the steps before it keep their records.

pub mod config;
mod contexts;
mod execute;
pub mod key;
mod lookup;
mod plan;
pub mod progress;
pub mod reason;

use crate::graph::{Definition, ExecOp, FileOp, Op, Platform, Vertex, VertexId};
use crate::image::{ImageConfig, RootFs};
use crate::source::context::{ContextError, PathFilter};
use crate::source::image::ImageSourceError;
use cache::keys::{KeyStore, KeyStoreError, LayerRef};
use cache::records::{BuildRecord, StepReport};
use execute::Executed;
use futures::future::{BoxFuture, Shared};
use plan::Plan;
use progress::{ProgressSink, StepId};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

/// A base image as the solver needs it: identity, config and layers (bottom first).
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The manifest digest the reference resolved to.
    pub manifest_digest: cache::Digest,
    /// The image config (fields it does not model kept in its `extra` maps).
    pub config: ImageConfig,
    /// The layers, bottom first; their blobs are in the content store.
    pub layers: Vec<LayerRef>,
}

/// Resolves image references for `FROM` and `COPY --from=<image>`: the local store first, then,
/// where one is configured, a registry (the seam for pulls).
pub trait ImageSource: Send + Sync {
    /// Resolves `reference` (normalised) for `platform`. Blocking; called off the async threads.
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, ResolveError>;
}

/// Why an image reference could not be resolved. Shared: a build resolves each image once and
/// hands the same outcome to every step that names it.
pub type ResolveError = Arc<ImageSourceError>;

/// A local build context handed to the solver.
#[derive(Clone)]
pub struct ContextInput {
    /// The context directory.
    pub dir: PathBuf,
    /// What the build may see of it (the `.dockerignore` rules).
    pub filter: Arc<dyn PathFilter>,
}

/// The output of a vertex as its consumers see it.
#[derive(Debug, Clone)]
pub enum InputState {
    /// A root filesystem: a stack of layers, bottom first.
    Layers(Vec<LayerRef>),
    /// A local build context (read in place, never turned into a layer), with the paths its
    /// ignore rules hide.
    Context {
        name: String,
        hidden: Arc<Vec<String>>,
    },
}

/// A RUN step for the worker.
pub struct ExecRequest<'a> {
    pub vertex: &'a Vertex,
    pub op: &'a ExecOp,
    /// The state of every input, in input order (input 0 is the root filesystem).
    pub inputs: &'a [InputState],
    /// The image config at input 0 (env, working dir, user and shell of the stage so far).
    pub config: &'a ImageConfig,
    /// The step's progress id.
    pub step: StepId,
}

/// A file step (COPY/ADD/WORKDIR...) for the worker.
pub struct FileRequest<'a> {
    pub vertex: &'a Vertex,
    pub op: &'a FileOp,
    pub inputs: &'a [InputState],
    pub config: &'a ImageConfig,
    pub step: StepId,
}

/// Does the actual work of a step: the seam between scheduling and the sandbox, file operations
/// and layer export (a test double stands in for it in the solver's own tests).
pub trait Worker: Send + Sync {
    /// Runs a command and returns the layer of its changes.
    fn exec(
        &self,
        req: &ExecRequest<'_>,
        progress: &dyn ProgressSink,
    ) -> Result<LayerRef, WorkError>;
    /// Applies file actions and returns the layer of their changes.
    fn file(
        &self,
        req: &FileRequest<'_>,
        progress: &dyn ProgressSink,
    ) -> Result<LayerRef, WorkError>;
    /// Checks that the context inputs are available (called once per build before any work).
    fn set_contexts(&self, _contexts: &HashMap<String, ContextInput>) {}
    /// Downloads `url` (verifying `checksum` when given) into a one-file layer named `filename`;
    /// returns the layer and the sha256 of the body, which keys the source.
    fn fetch_http(
        &self,
        url: &str,
        _checksum: Option<&str>,
        _filename: &str,
    ) -> Result<(LayerRef, String), WorkError> {
        Err(WorkError::Unsupported(format!(
            "this worker cannot download {url}"
        )))
    }
}

/// Why a step's work failed.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    /// The command ran and exited non-zero.
    #[error("process \"{command}\" did not complete successfully: exit code: {code}")]
    ExitCode {
        command: String,
        code: i32,
        /// The last lines of its output.
        last_lines: Vec<String>,
    },
    /// The sandbox could not run the step's process.
    #[error("{what}: {source}")]
    Sandbox {
        what: &'static str,
        #[source]
        source: crate::executor::ExecError,
    },
    /// Work done in the sandbox helper failed; its message crossed the process boundary as
    /// text (a file operation's own error, or the helper's last lines).
    #[error("{0}")]
    InSandbox(String),
    /// A file operation done in this process failed (a download's copy, a COPY's plan).
    #[error(transparent)]
    FileOp(Box<crate::fileops::FileOpError>),
    /// Reading or writing the step's scratch files.
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Preparing a layer's snapshot.
    #[error(transparent)]
    Snapshot(#[from] crate::snapshot::SnapshotError),
    /// Writing the step's layer.
    #[error("{what}: {source}")]
    Layer {
        what: &'static str,
        #[source]
        source: crate::layer::LayerError,
    },
    /// The content store refused a blob.
    #[error("storing layer: {0}")]
    Store(#[from] cache::CasError),
    /// The root directory could not be opened.
    #[error(transparent)]
    Root(#[from] cache::lock::LockError),
    /// A bound on what an archive may expand to could not be decided.
    #[error(transparent)]
    Archive(#[from] crate::fileops::archive::ArchiveError),
    /// A job for the sandbox helper could not be encoded.
    #[error("encoding the job for {what}: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The step needs an input the solver did not provide.
    #[error("{0}")]
    MissingInput(String),
    /// This worker cannot do what the step asks.
    #[error("{0}")]
    Unsupported(String),
    /// A `RUN --mount` source leaves the root it is taken from.
    #[error("mount source {path:?} resolves outside its root")]
    MountOutsideRoot { path: String },
    /// A `RUN --mount` source does not exist.
    #[error("mount source {path:?}: {source}")]
    MountSourceMissing {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A `RUN --mount` source of the build context that `.dockerignore` hides.
    #[error(
        "mount source {path:?}: not in the build context (.dockerignore excludes {pattern:?})"
    )]
    MountSourceIgnored { path: String, pattern: String },
    /// A bind mount whose input the solver did not provide.
    #[error("bind mount at {target} has no source")]
    MountWithoutSource { target: String },
    /// A cache mount's lock could not be taken.
    #[error("cache mount {id}: {source}")]
    CacheMountLock {
        id: String,
        #[source]
        source: cache::lock::LockError,
    },
    /// A required `RUN --mount=type=secret` whose secret was not given.
    #[error("secret {id}: not provided (use --secret id={id},src=FILE)")]
    SecretMissing { id: String },
    /// A required `RUN --mount=type=ssh` whose agent was not given.
    #[error("ssh mount {id}: no agent given (build with --ssh {id}=SOCKET, or --ssh default for $SSH_AUTH_SOCK)")]
    SshAgentMissing { id: String },
    /// The relay socket of an ssh mount could not be made.
    #[error("ssh mount {id}: {source}")]
    SshRelay {
        id: String,
        #[source]
        source: std::io::Error,
    },
    /// The step asks for what the build did not allow (`--allow ENTITLEMENT`).
    #[error("{what} needs the {entitlement} entitlement, which is not granted (build with --allow {entitlement})")]
    Entitlement {
        what: &'static str,
        entitlement: &'static str,
    },
}

impl From<crate::fileops::FileOpError> for WorkError {
    fn from(e: crate::fileops::FileOpError) -> Self {
        WorkError::FileOp(Box::new(e))
    }
}

/// Errors of a solve.
#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    /// A step failed; carries where it came from in the Dockerfile.
    #[error("{name}: {source}")]
    Step {
        name: String,
        line_range: Option<(usize, usize)>,
        #[source]
        source: Box<WorkError>,
    },
    /// A base image (`FROM`, `COPY --from`) could not be resolved; carries where it is named.
    #[error("failed to resolve image {reference}: {source}")]
    Image {
        reference: String,
        #[source]
        source: ResolveError,
        line_range: Option<(usize, usize)>,
    },
    #[error("build context {0:?} was not provided")]
    MissingContext(String),
    #[error(transparent)]
    Context(#[from] ContextError),
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
    #[error("cache lock: {0}")]
    Lock(String),
    #[error("the graph has no target")]
    NoTarget,
    #[error("{0} is not supported yet")]
    Unsupported(String),
    #[error("the target {0} is a build context, not a filesystem")]
    TargetIsContext(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Options of one solve.
#[derive(Default)]
pub struct SolveOptions {
    /// `--no-cache`: run every step.
    pub no_cache: bool,
    /// `--no-cache-filter`: stage names whose steps always run.
    pub no_cache_stages: HashSet<String>,
    /// Named build contexts (`context` is the main one).
    pub contexts: HashMap<String, ContextInput>,
    /// `SOURCE_DATE_EPOCH`: history and config times are clamped to it.
    pub source_date_epoch: Option<i64>,
    /// The previous build of the same target, to explain misses against.
    pub previous: Option<BuildRecord>,
}

/// What a solve produced.
#[derive(Debug, Clone)]
pub struct SolveResult {
    /// The target's layers, bottom first.
    pub layers: Vec<LayerRef>,
    /// The target's image config, history and rootfs filled in.
    pub config: ImageConfig,
    /// One report per step, in the order they were decided.
    pub steps: Vec<StepReport>,
    /// Where the time went.
    pub timings: SolveTimings,
}

/// Wall time of the phases of a solve, in milliseconds.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct SolveTimings {
    /// Walking build contexts (one `lstat` per visible entry).
    pub walk_ms: u64,
    /// Checksumming the context files steps read (stat-cache lookups and hashing).
    pub hash_ms: u64,
    /// Computing every key, walk and hash included, plus image resolution.
    pub keys_ms: u64,
    /// Cache lookups, running the steps that missed and exporting their layers.
    pub execute_ms: u64,
}

/// Solves build graphs against one cache root.
pub struct Solver {
    root: cache::RootDir,
    keys: KeyStore,
    store: cache::ContentStore,
    images: Arc<dyn ImageSource>,
    worker: Arc<dyn Worker>,
    progress: Arc<dyn ProgressSink>,
}

/// The resolved output of a vertex.
#[derive(Debug, Clone)]
pub(super) struct Resolved {
    state: InputState,
}

type SharedResult = Shared<BoxFuture<'static, Result<Arc<Resolved>, Arc<SolveError>>>>;

fn is_step(op: &Op) -> bool {
    matches!(op, Op::Exec(_) | Op::File(_) | Op::Merge(_))
}

impl Solver {
    /// A solver over `root`, resolving images with `images`, doing work with `worker` and
    /// reporting to `progress`.
    pub fn new(
        root: cache::RootDir,
        images: Arc<dyn ImageSource>,
        worker: Arc<dyn Worker>,
        progress: Arc<dyn ProgressSink>,
    ) -> Result<Self, SolveError> {
        let keys = KeyStore::open(root.path())?;
        let store = root
            .content_store()
            .map_err(|e| SolveError::Lock(e.to_string()))?;
        Ok(Solver {
            root,
            keys,
            store,
            images,
            worker,
            progress,
        })
    }

    /// Solves the graph's target.
    pub async fn solve(
        &self,
        def: Arc<Definition>,
        opts: SolveOptions,
    ) -> Result<SolveResult, SolveError> {
        let target = def.target().ok_or(SolveError::NoTarget)?;
        self.worker.set_contexts(&opts.contexts);
        let opts = Arc::new(opts);

        // Phase 1: keys (blocking: context walks, hashing, image resolution).
        let keys_started = Instant::now();
        let Plan {
            planned,
            walk,
            hash,
            context_loads,
        } = self.plan(&def, target, &opts).await?;
        let planned = Arc::new(planned);
        let keys_ms = keys_started.elapsed().as_millis() as u64;
        let execute_started = Instant::now();
        // Phase 2: lookups and reasons.
        let order = def.ancestors(target);
        let lookups = self.look_up(&def, &order, &planned, &opts)?;
        // Phase 3: execution.
        let Executed {
            layers,
            steps,
            created,
        } = self
            .execute(
                &def,
                target,
                &order,
                &planned,
                lookups,
                &context_loads,
                &opts,
            )
            .await?;

        // The image config: the chain's metadata folded over the base, with creation times.
        let mut config =
            config::fold_config(&def, &planned, target, &created, opts.source_date_epoch);
        let mut steps = steps;
        link_history(&def, target, &config, &mut steps);
        config.rootfs = RootFs {
            diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
            ..RootFs::default()
        };
        Ok(SolveResult {
            layers,
            config,
            steps,
            timings: SolveTimings {
                walk_ms: walk.as_millis() as u64,
                hash_ms: hash.as_millis() as u64,
                keys_ms,
                execute_ms: execute_started.elapsed().as_millis() as u64,
            },
        })
    }
}

/// Marks each step of the target's chain with the index of the history entry it wrote in the
/// image's config (the base image's entries come first, then one per vertex that has one, in
/// chain order), so that `history` can show how the step went.
fn link_history(
    def: &Definition,
    target: VertexId,
    config: &ImageConfig,
    steps: &mut [StepReport],
) {
    let entries = config.history.len();
    let names: Vec<&str> = def
        .chain(target)
        .into_iter()
        .filter_map(|v| def.vertex(v))
        .filter(|v| v.history.is_some())
        .map(|v| v.name.as_str())
        .collect();
    let Some(first) = entries.checked_sub(names.len()) else {
        return;
    };
    for step in steps.iter_mut() {
        step.history = names
            .iter()
            .position(|n| *n == step.name)
            .map(|i| first + i);
    }
}

#[cfg(test)]
mod tests;
