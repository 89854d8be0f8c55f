//! The solver: cache keys, reuse, and parallel execution of the build graph.
//!
//! A solve runs in three phases:
//! 1. **Keys** ([`key`]): in topological order, every vertex the target needs gets a cache key from
//!    its definition, its inputs' keys, the checksum of the context files it reads and, for image
//!    sources, the resolved manifest digest.
//! 2. **Lookup**: each step's key is looked up in the key store. A hit is reused as it is (its
//!    inputs are never materialised); a miss gets a [`MissReason`] computed against the previous
//!    build of the same target.
//! 3. **Execution**: each vertex is a shared future over its inputs' futures, so independent
//!    stages run in parallel, every vertex runs at most once per build, and only what the target
//!    needs is awaited. The work itself (sandboxed RUN, file copies, layer export) happens on
//!    blocking threads through the [`Worker`] seam, under a per-key file lock so concurrent builds
//!    sharing a cache directory do identical work once.
//!
//! A failed step records nothing; the steps before it keep their records.

pub mod config;
pub mod key;
pub mod progress;
pub mod reason;

use crate::graph::{Definition, ExecOp, FileOp, Op, Platform, SourceOp, Vertex, VertexId};
use crate::source::context::{ContextError, ContextSnapshot, PathFilter, StatCache};
use cache::keys::{now_secs, CacheKey, KeyStore, KeyStoreError, LayerRef, StepRecord};
use cache::records::{BuildRecord, StepInputs, StepReport};
use futures::future::{BoxFuture, FutureExt, Shared};
use progress::{Event, ProgressSink, StepId};
use reason::MissReason;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A base image as the solver needs it: identity, config and layers (bottom first).
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The manifest digest the reference resolved to (`sha256:...`).
    pub manifest_digest: String,
    /// The image config JSON.
    pub config: Value,
    /// The layers, bottom first; their blobs are in the content store.
    pub layers: Vec<LayerRef>,
}

/// Resolves image references for `FROM` and `COPY --from=<image>`: the local store first, then,
/// where one is configured, a registry (the seam for pulls).
pub trait ImageSource: Send + Sync {
    /// Resolves `reference` (normalised) for `platform`. Blocking; called off the async threads.
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String>;
}

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
    pub config: &'a Value,
    /// The step's progress id.
    pub step: StepId,
}

/// A file step (COPY/ADD/WORKDIR...) for the worker.
pub struct FileRequest<'a> {
    pub vertex: &'a Vertex,
    pub op: &'a FileOp,
    pub inputs: &'a [InputState],
    pub config: &'a Value,
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
        Err(WorkError::Failed(format!(
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
    /// Anything else, with a message that names what failed.
    #[error("{0}")]
    Failed(String),
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
        source: WorkError,
    },
    #[error("failed to resolve image {reference}: {message}")]
    Image { reference: String, message: String },
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
    pub config: Value,
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
    root: cache::Root,
    keys: KeyStore,
    store: cache::ContentStore,
    images: Arc<dyn ImageSource>,
    worker: Arc<dyn Worker>,
    progress: Arc<dyn ProgressSink>,
}

/// The resolved output of a vertex.
#[derive(Debug, Clone)]
struct Resolved {
    state: InputState,
}

type SharedResult = Shared<BoxFuture<'static, Result<Arc<Resolved>, Arc<SolveError>>>>;

/// What phase 1 learned about a vertex.
#[derive(Debug, Clone)]
struct Planned {
    key: CacheKey,
    /// Set for vertices that are steps (exec/file/merge): their inputs for explanations.
    step_inputs: Option<StepInputs>,
    /// The state of a source vertex.
    source_state: Option<InputState>,
    /// The base config of an image/scratch source.
    base_config: Option<Value>,
}

/// Context snapshots and stat caches, opened once per build per context name.
struct ContextCache {
    cache_root: PathBuf,
    inputs: HashMap<String, ContextInput>,
    opened: HashMap<String, (ContextSnapshot, StatCache)>,
    /// Time spent on each context, for the metadata's timings and for progress.
    times: HashMap<String, ContextTimes>,
}

/// Time spent reading one build context.
#[derive(Debug, Clone, Copy, Default)]
struct ContextTimes {
    /// Walking it and loading its stat cache.
    walk: std::time::Duration,
    /// Selecting and checksumming what steps read from it.
    hash: std::time::Duration,
}

impl ContextCache {
    fn get(&mut self, name: &str) -> Result<&(ContextSnapshot, StatCache), SolveError> {
        if !self.opened.contains_key(name) {
            let input = self
                .inputs
                .get(name)
                .ok_or_else(|| SolveError::MissingContext(name.to_string()))?;
            let started = Instant::now();
            // The stat cache loads (deserialises) while the walk waits on the kernel.
            let (snapshot, stat) = std::thread::scope(|scope| {
                let stat = scope.spawn(|| StatCache::load(&self.cache_root, &input.dir));
                let snapshot = ContextSnapshot::walk(&input.dir, input.filter.as_ref());
                let stat = stat.join().unwrap_or_else(|_| StatCache::in_memory());
                (snapshot, stat)
            });
            let snapshot = snapshot?;
            self.times.entry(name.to_string()).or_default().walk += started.elapsed();
            self.opened.insert(name.to_string(), (snapshot, stat));
        }
        Ok(&self.opened[name])
    }

    fn save(&self) {
        for (snapshot, stat) in self.opened.values() {
            // A stat cache that cannot be saved only costs rehashing next time.
            let _ = stat.save(Some(snapshot));
        }
    }

    /// What each context this build read cost, by context name.
    fn loads(&self) -> Vec<ContextLoad> {
        let mut loads: Vec<ContextLoad> = self
            .opened
            .iter()
            .map(|(name, (snapshot, stat))| {
                let (files, bytes) = snapshot
                    .entries()
                    .iter()
                    .filter(|e| e.kind == crate::source::context::EntryKind::File)
                    .fold((0, 0), |(n, b), e| (n + 1, b + e.size));
                let times = self.times.get(name).copied().unwrap_or_default();
                ContextLoad {
                    name: name.clone(),
                    files,
                    bytes,
                    hashed: stat.hashed(),
                    duration: times.walk + times.hash,
                }
            })
            .collect();
        loads.sort_by(|a, b| a.name.cmp(&b.name));
        loads
    }
}

/// What loading one build context cost: shown as an `[internal] load build context` step.
#[derive(Debug, Clone)]
struct ContextLoad {
    name: String,
    /// Regular files visible to the build.
    files: usize,
    /// Their total size.
    bytes: u64,
    /// Files whose content was read because the stat cache could not vouch for them.
    hashed: usize,
    /// Walk and checksum time.
    duration: std::time::Duration,
}

/// Most per-file digests a step record keeps; bigger selections are summarised per directory.
const MAX_RECORDED_FILES: usize = 4000;

/// The first `depth` parent directories of a slash-separated path (all of them when it has
/// fewer), as a prefix of it: `parent_prefix("a/b/c/d", 2) == "a/b"`.
fn parent_prefix(path: &str, depth: usize) -> &str {
    if depth == 0 {
        return "";
    }
    let parents_end = path.rfind('/').unwrap_or(0);
    path.match_indices('/')
        .nth(depth - 1)
        .map_or(&path[..parents_end], |(i, _)| &path[..i])
}

fn summarise_files(entries: &[(&str, [u8; 32])]) -> BTreeMap<String, String> {
    if entries.len() <= MAX_RECORDED_FILES {
        return entries
            .iter()
            .map(|(p, d)| (p.to_string(), hex::encode(&d[..16])))
            .collect();
    }
    // Too many files to keep one by one: one digest per directory prefix, shallower until few
    // enough (a change is then reported as `dir/**` changed). No allocation per file: a group
    // is a prefix of the path, and a depth gives up as soon as it has too many groups.
    let limit = MAX_RECORDED_FILES / 10;
    for depth in [2usize, 1, 0] {
        // (depth 0: everything in one group)
        let mut groups: HashMap<&str, blake3::Hasher> = HashMap::new();
        // Sorted paths keep a group's entries together, so the group being filled is kept
        // aside and goes into the map only when the next entry belongs elsewhere.
        let mut current: Option<(&str, blake3::Hasher)> = None;
        let mut too_many = false;
        for (p, d) in entries {
            let group = parent_prefix(p, depth);
            if current.as_ref().is_none_or(|(g, _)| *g != group) {
                if let Some((g, h)) = current.take() {
                    groups.insert(g, h);
                }
                let h = match groups.remove(group) {
                    Some(h) => h,
                    None if groups.len() + 1 > limit && depth > 0 => {
                        too_many = true;
                        break;
                    }
                    None => blake3::Hasher::new(),
                };
                current = Some((group, h));
            }
            if let Some((_, h)) = current.as_mut() {
                h.update(p.as_bytes());
                h.update(d);
            }
        }
        if let Some((g, h)) = current {
            groups.insert(g, h);
        }
        if !too_many {
            return groups
                .into_iter()
                .map(|(g, h)| {
                    let key = if g.is_empty() {
                        "**".to_string()
                    } else {
                        format!("{g}/**")
                    };
                    (key, h.finalize().to_hex()[..32].to_string())
                })
                .collect();
        }
    }
    BTreeMap::new()
}

/// The instruction text of a step: its progress name without the `[stage n/m] ` prefix.
fn instruction_of(name: &str) -> String {
    match name.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((_, rest)) => rest.to_string(),
        None => name.to_string(),
    }
}

fn is_step(op: &Op) -> bool {
    matches!(op, Op::Exec(_) | Op::File(_) | Op::Merge(_))
}

impl Solver {
    /// A solver over `root`, resolving images with `images`, doing work with `worker` and
    /// reporting to `progress`.
    pub fn new(
        root: cache::Root,
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
        } = {
            let def = def.clone();
            let opts = opts.clone();
            let images = self.images.clone();
            let worker = self.worker.clone();
            let cache_root = self.root.path().to_path_buf();
            tokio::task::spawn_blocking(move || {
                plan(
                    &def,
                    target,
                    &opts,
                    images.as_ref(),
                    worker.as_ref(),
                    cache_root,
                )
            })
            .await
            .map_err(|e| SolveError::Internal(e.to_string()))??
        };
        let planned = Arc::new(planned);
        let keys_ms = keys_started.elapsed().as_millis() as u64;
        let execute_started = Instant::now();

        // Phase 2: lookups and reasons.
        let previous_steps: Vec<&StepReport> = opts
            .previous
            .as_ref()
            .map(|r| r.steps.iter().collect())
            .unwrap_or_default();
        let order = def.ancestors(target);
        let mut records: HashMap<VertexId, StepRecord> = HashMap::new();
        let mut reasons: HashMap<VertexId, MissReason> = HashMap::new();
        let mut missed_name: HashMap<VertexId, String> = HashMap::new();
        // Steps that must run whatever the cache holds, by the name of the step that forced it.
        let mut forced: HashMap<VertexId, String> = HashMap::new();
        let mut stage_positions: HashMap<Option<usize>, usize> = HashMap::new();
        for &v in &order {
            let vertex = def.vertex(v).ok_or(SolveError::NoTarget)?;
            let plan = &planned[&v];
            // The first input (looking through metadata-only vertices) that missed, if any.
            let parent_missed = vertex
                .inputs
                .iter()
                .find_map(|i| missed_name.get(i).cloned());
            if !is_step(&vertex.op) {
                if let (Op::Config(_), Some(name)) = (&vertex.op, parent_missed) {
                    missed_name.insert(v, name);
                }
                if let Some(name) = vertex.inputs.iter().find_map(|i| forced.get(i).cloned()) {
                    forced.insert(v, name);
                }
                continue;
            }
            let position = stage_positions.entry(vertex.stage).or_default();
            *position += 1;
            let stage_name = stage_name(&def, vertex);
            // `--no-cache-filter` re-runs a stage's steps and, since their results are new,
            // every step that uses them.
            let forced_parent = vertex.inputs.iter().find_map(|i| forced.get(i).cloned());
            let no_cache = opts.no_cache || opts.no_cache_stages.contains(&stage_name);
            let store = &self.store;
            let hit = if no_cache || forced_parent.is_some() {
                None
            } else {
                self.keys.get(&plan.key, |d| {
                    d.parse::<cache::Digest>().is_ok_and(|d| store.has(&d))
                })?
            };
            match hit {
                Some(record) => {
                    records.insert(v, record);
                }
                None => {
                    let inputs = plan.step_inputs.clone().unwrap_or_default();
                    let reason = if no_cache {
                        MissReason::NoCache
                    } else if let Some(parent) = forced_parent {
                        MissReason::ParentMissed { parent }
                    } else {
                        let prev = find_previous(&previous_steps, &stage_name, &inputs, *position);
                        reason::explain(
                            prev,
                            &inputs,
                            &plan.key.to_hex(),
                            parent_missed.as_deref(),
                            opts.previous.is_some(),
                        )
                    };
                    if no_cache
                        || matches!(reason, MissReason::ParentMissed { .. })
                            && forced_parent_is(&forced, vertex)
                    {
                        forced.insert(v, vertex.name.clone());
                    }
                    reasons.insert(v, reason);
                    missed_name.insert(v, vertex.name.clone());
                }
            }
        }

        // Phase 3: execution.
        let reports: Arc<Mutex<Vec<StepReport>>> = Arc::new(Mutex::new(Vec::new()));
        let created_times: Arc<Mutex<HashMap<VertexId, i64>>> = Arc::default();
        let mut step_ids: HashMap<VertexId, StepId> = HashMap::new();
        for &v in &order {
            let op = &def.vertex(v).ok_or(SolveError::NoTarget)?.op;
            // Base images are shown too (`[base 1/3] FROM ...`), as BuildKit shows them.
            if is_step(op) || matches!(op, Op::Source(SourceOp::Image { .. })) {
                let id = context_loads.len() + step_ids.len();
                step_ids.insert(v, id);
            }
        }
        self.progress.emit(Event::Planned {
            total: context_loads.len() + step_ids.len(),
        });
        // Loading the build contexts comes first, as `[internal]` steps.
        for (id, load) in context_loads.iter().enumerate() {
            self.progress.emit(Event::ContextLoaded {
                id,
                name: if load.name == "context" {
                    "[internal] load build context".to_string()
                } else {
                    format!("[internal] load build context {}", load.name)
                },
                files: load.files,
                bytes: load.bytes,
                hashed: load.hashed,
                duration_ms: load.duration.as_millis() as u64,
            });
        }
        let mut futures: HashMap<VertexId, SharedResult> = HashMap::new();
        for &v in &order {
            let vertex = def.vertex(v).ok_or(SolveError::NoTarget)?;
            let plan = planned[&v].clone();
            let fut: SharedResult = match &vertex.op {
                Op::Source(source) => {
                    let state = plan.source_state.clone().ok_or_else(|| {
                        SolveError::Internal(format!("source {} has no state", vertex.name))
                    })?;
                    if let (SourceOp::Image { .. }, Some(&id)) = (source, step_ids.get(&v)) {
                        // Resolved (and pulled when missing) while keys were computed: here it
                        // is already in the store.
                        self.progress.emit(Event::Started {
                            id,
                            name: vertex.name.clone(),
                            line: vertex.line_range.map(|r| r.0).unwrap_or(0),
                            reason: None,
                        });
                    }
                    futures::future::ready(Ok(Arc::new(Resolved { state })))
                        .boxed()
                        .shared()
                }
                Op::Config(_) => {
                    let input = vertex.inputs.first().and_then(|i| futures.get(i)).cloned();
                    match input {
                        Some(f) => f,
                        None => {
                            return Err(SolveError::Internal(format!(
                                "{} has no input",
                                vertex.name
                            )))
                        }
                    }
                }
                _ => {
                    let step = step_ids[&v];
                    let inputs = plan.step_inputs.clone().unwrap_or_default();
                    if let Some(record) = records.get(&v) {
                        self.progress.emit(Event::Started {
                            id: step,
                            name: vertex.name.clone(),
                            line: vertex.line_range.map(|r| r.0).unwrap_or(0),
                            reason: None,
                        });
                        reports
                            .lock()
                            .expect("reports")
                            .push(report(&def, vertex, true, None, 0, &plan.key, inputs));
                        let resolved = Resolved {
                            state: InputState::Layers(record.layers.clone()),
                        };
                        futures::future::ready(Ok(Arc::new(resolved)))
                            .boxed()
                            .shared()
                    } else {
                        let input_futs: Vec<SharedResult> = vertex
                            .inputs
                            .iter()
                            .map(|i| {
                                futures.get(i).cloned().ok_or_else(|| {
                                    SolveError::Internal(format!(
                                        "input of {} not planned",
                                        vertex.name
                                    ))
                                })
                            })
                            .collect::<Result<_, _>>()?;
                        let job = StepJob {
                            def: def.clone(),
                            vertex: v,
                            step,
                            key: plan.key,
                            inputs,
                            reason: reasons
                                .get(&v)
                                .cloned()
                                .unwrap_or(MissReason::DefinitionChanged),
                            planned: planned.clone(),
                            worker: self.worker.clone(),
                            progress: self.progress.clone(),
                            keys: self.keys.clone(),
                            root: self.root.clone(),
                            store: self.store.clone(),
                            reports: reports.clone(),
                            created_times: created_times.clone(),
                            epoch: opts.source_date_epoch,
                        };
                        async move {
                            let resolved = futures::future::try_join_all(input_futs).await?;
                            let states: Vec<Arc<Resolved>> = resolved;
                            tokio::task::spawn_blocking(move || job.run(&states))
                                .await
                                .map_err(|e| Arc::new(SolveError::Internal(e.to_string())))?
                                .map_err(Arc::new)
                        }
                        .boxed()
                        .shared()
                    }
                }
            };
            futures.insert(v, fut);
        }
        let target_fut = futures.get(&target).cloned().ok_or(SolveError::NoTarget)?;
        let outcome = target_fut.await;
        // Every handle on the shared futures goes, so an error has one owner again.
        drop(futures);
        let steps = reports.lock().expect("reports").clone();
        let resolved = match outcome {
            Ok(r) => r,
            Err(e) => {
                return Err(
                    Arc::try_unwrap(e).unwrap_or_else(|e| SolveError::Internal(e.to_string()))
                )
            }
        };
        let layers = match &resolved.state {
            InputState::Layers(l) => l.clone(),
            InputState::Context { name, .. } => {
                return Err(SolveError::TargetIsContext(name.clone()))
            }
        };

        // The image config: the chain's metadata folded over the base, with creation times.
        let mut created: HashMap<VertexId, i64> = HashMap::new();
        for (v, r) in &records {
            created.insert(*v, r.created as i64);
        }
        for (v, t) in created_times.lock().expect("created times").iter() {
            created.entry(*v).or_insert(*t);
        }
        let mut config = fold_config(&def, &planned, target, &created, opts.source_date_epoch);
        let mut steps = steps;
        link_history(&def, target, &config, &mut steps);
        config["rootfs"] = serde_json::json!({
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>(),
        });
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
fn link_history(def: &Definition, target: VertexId, config: &Value, steps: &mut [StepReport]) {
    let entries = config["history"].as_array().map_or(0, Vec::len);
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

fn forced_parent_is(forced: &HashMap<VertexId, String>, vertex: &Vertex) -> bool {
    vertex.inputs.iter().any(|i| forced.contains_key(i))
}

fn stage_name(def: &Definition, vertex: &Vertex) -> String {
    vertex
        .stage
        .and_then(|s| def.stages().get(s))
        .map(|s| s.name.clone())
        .unwrap_or_default()
}

/// The same step in the previous build: same stage and instruction, else same stage and position.
fn find_previous<'a>(
    previous: &[&'a StepReport],
    stage: &str,
    inputs: &StepInputs,
    position: usize,
) -> Option<&'a StepReport> {
    previous
        .iter()
        .find(|s| s.stage == stage && s.inputs.instruction == inputs.instruction)
        .or_else(|| {
            previous
                .iter()
                .filter(|s| s.stage == stage)
                .nth(position.saturating_sub(1))
        })
        .copied()
}

fn report(
    def: &Definition,
    vertex: &Vertex,
    cached: bool,
    reason: Option<&MissReason>,
    duration_ms: u64,
    key: &CacheKey,
    inputs: StepInputs,
) -> StepReport {
    let (line, end_line) = vertex.line_range.unwrap_or((0, 0));
    StepReport {
        name: vertex.name.clone(),
        stage: stage_name(def, vertex),
        line,
        end_line,
        cached,
        reason: reason
            .and_then(|r| serde_json::to_value(r).ok())
            .unwrap_or(Value::Null),
        duration_ms,
        key: key.to_hex(),
        inputs,
        history: None,
    }
}

/// What phase 1 found: each vertex's key and source state, and what reading contexts cost.
struct Plan {
    planned: HashMap<VertexId, Planned>,
    walk: std::time::Duration,
    hash: std::time::Duration,
    context_loads: Vec<ContextLoad>,
}

/// Phase 1: keys and source states for every vertex the target needs.
fn plan(
    def: &Definition,
    target: VertexId,
    opts: &SolveOptions,
    images: &dyn ImageSource,
    worker: &dyn Worker,
    cache_root: PathBuf,
) -> Result<Plan, SolveError> {
    let mut contexts = ContextCache {
        cache_root,
        inputs: opts.contexts.clone(),
        opened: HashMap::new(),
        times: HashMap::new(),
    };
    let mut planned: HashMap<VertexId, Planned> = HashMap::new();
    for v in def.ancestors(target) {
        let vertex = def.vertex(v).ok_or(SolveError::NoTarget)?;
        let input_keys: Vec<CacheKey> = vertex.inputs.iter().map(|i| planned[i].key).collect();
        let p = match &vertex.op {
            Op::Config(_) => Planned {
                key: input_keys.first().copied().unwrap_or(CacheKey([0; 32])),
                step_inputs: None,
                source_state: None,
                base_config: None,
            },
            Op::Source(SourceOp::Image {
                reference,
                platform,
            }) => {
                let resolved =
                    images
                        .resolve(reference, platform)
                        .map_err(|message| SolveError::Image {
                            reference: reference.clone(),
                            message,
                        })?;
                let key = key::KeyBuilder::new("image")
                    .field(resolved.manifest_digest.as_bytes())
                    .field(platform.to_string().as_bytes())
                    .finish();
                Planned {
                    key,
                    step_inputs: Some(StepInputs {
                        base_digest: Some(resolved.manifest_digest.clone()),
                        ..Default::default()
                    }),
                    source_state: Some(InputState::Layers(resolved.layers)),
                    base_config: Some(resolved.config),
                }
            }
            Op::Source(SourceOp::Scratch) => Planned {
                key: key::KeyBuilder::new("scratch").finish(),
                step_inputs: None,
                source_state: Some(InputState::Layers(Vec::new())),
                base_config: Some(config::scratch_config(&vertex.platform)),
            },
            Op::Source(SourceOp::Context { name, .. }) => Planned {
                key: key::KeyBuilder::new("context")
                    .field(name.as_bytes())
                    .finish(),
                step_inputs: None,
                source_state: Some(InputState::Context {
                    name: name.clone(),
                    hidden: contexts.get(name)?.0.hidden(),
                }),
                base_config: None,
            },
            Op::Source(SourceOp::Http {
                url,
                checksum,
                filename,
            }) => {
                // The body is part of the key: fetching is how a URL's content is known.
                let (layer, body) = worker
                    .fetch_http(url, checksum.as_deref(), filename)
                    .map_err(|e| SolveError::Step {
                        name: vertex.name.clone(),
                        line_range: vertex.line_range,
                        source: e,
                    })?;
                Planned {
                    key: key::KeyBuilder::new("http")
                        .field(url.as_bytes())
                        .field(filename.as_bytes())
                        .field(body.as_bytes())
                        .finish(),
                    step_inputs: Some(StepInputs {
                        files: BTreeMap::from([(url.clone(), body)]),
                        ..Default::default()
                    }),
                    source_state: Some(InputState::Layers(vec![layer])),
                    base_config: None,
                }
            }
            Op::Source(SourceOp::Git { remote, .. }) => {
                return Err(SolveError::Unsupported(format!("git sources ({remote})")))
            }
            Op::Exec(_) | Op::File(_) | Op::Merge(_) => {
                plan_step(def, vertex, &input_keys, &planned, &mut contexts)?
            }
        };
        planned.insert(v, p);
    }
    contexts.save();
    Ok(Plan {
        planned,
        walk: contexts.times.values().map(|t| t.walk).sum(),
        hash: contexts.times.values().map(|t| t.hash).sum(),
        context_loads: contexts.loads(),
    })
}

/// The key of a step: its definition, its inputs' keys and what it reads from build contexts.
fn plan_step(
    def: &Definition,
    vertex: &Vertex,
    input_keys: &[CacheKey],
    planned: &HashMap<VertexId, Planned>,
    contexts: &mut ContextCache,
) -> Result<Planned, SolveError> {
    let definition = key::definition_digest(&vertex.op, &vertex.platform);
    let mut kb = key::KeyBuilder::new(vertex.op.kind());
    kb.field(definition.as_bytes());
    for k in input_keys {
        kb.input(k);
    }
    // What a RUN step mounts from each context input, by input index (a COPY/ADD from a
    // context is keyed by its plan, below).
    let mut reads: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    if let Op::Exec(exec) = &vertex.op {
        for m in &exec.mounts {
            if let (Some(i), crate::graph::MountKind::Bind { source, .. }) = (m.input, &m.kind) {
                reads.entry(i).or_default().push(source.clone());
            }
            if let (Some(i), crate::graph::MountKind::Cache { source, .. }) = (m.input, &m.kind) {
                reads.entry(i).or_default().push(source.clone());
            }
        }
    }
    let mut files = BTreeMap::new();
    if let Op::File(file) = &vertex.op {
        let mut writes = crate::fileops::plan::WriteSet::default();
        let mut any = false;
        for action in &file.actions {
            let crate::graph::FileAction::Copy(c) = action else {
                continue;
            };
            let Some(input) = vertex.inputs.get(c.source_input as usize) else {
                continue;
            };
            let Some(InputState::Context { name, .. }) =
                planned.get(input).and_then(|p| p.source_state.clone())
            else {
                continue;
            };
            let started = Instant::now();
            let (snapshot, stat) = contexts.get(&name)?;
            let walked = started.elapsed();
            copy_plan_writes(vertex, c, snapshot, stat, &mut writes, &mut files)?;
            kb.field(name.as_bytes());
            let hashed = started.elapsed().saturating_sub(walked);
            contexts.times.entry(name).or_default().hash += hashed;
            any = true;
        }
        if any {
            kb.field(&writes.digest());
        }
    }
    for (index, paths) in reads {
        let Some(input) = vertex.inputs.get(index as usize) else {
            continue;
        };
        let Some(InputState::Context { name, .. }) =
            planned.get(input).and_then(|p| p.source_state.clone())
        else {
            continue;
        };
        let started = Instant::now();
        let (snapshot, stat) = contexts.get(&name)?;
        let walked = started.elapsed();
        let selected = snapshot.select(&paths)?;
        let sum = stat.checksum(snapshot.root(), &selected)?;
        let hashed = started.elapsed().saturating_sub(walked);
        kb.field(name.as_bytes()).field(&sum.digest);
        files.extend(summarise_files(&sum.entries));
        contexts.times.entry(name).or_default().hash += hashed;
    }
    let key = kb.finish();

    // Build args the step can see, for "ARG X changed" explanations.
    let mut args = BTreeMap::new();
    if let Op::Exec(exec) = &vertex.op {
        let declared = declared_args(def, vertex);
        for (k, v) in &exec.env {
            if declared.contains(k) {
                args.insert(k.clone(), v.clone());
            }
        }
    }
    // The base image digest, for the first step of a chain: walk input 0 back through
    // metadata-only vertices to an image source.
    let mut base_digest = None;
    let mut cur = vertex.inputs.first().copied();
    while let Some(v) = cur.and_then(|id| def.vertex(id)) {
        match &v.op {
            Op::Config(_) => cur = v.inputs.first().copied(),
            Op::Source(SourceOp::Image { .. }) => {
                base_digest = planned
                    .get(&v.id)
                    .and_then(|p| p.step_inputs.as_ref())
                    .and_then(|s| s.base_digest.clone());
                break;
            }
            _ => break,
        }
    }
    Ok(Planned {
        key,
        step_inputs: Some(StepInputs {
            definition,
            instruction: instruction_of(&vertex.name),
            args,
            files,
            base_digest,
            parents: input_keys.iter().map(|k| k.to_hex()).collect(),
        }),
        source_state: None,
        base_config: None,
    })
}

/// Adds what one COPY/ADD from a build context writes to the step's `writes`: the copy's own
/// plan ([`crate::fileops::plan::resolve`], the same resolution the copy executes) over the
/// walked context, with file contents from the stat cache. Each written entry's facts go into
/// `files`, for miss explanations.
fn copy_plan_writes(
    vertex: &Vertex,
    spec: &crate::graph::CopySpec,
    snapshot: &ContextSnapshot,
    stat: &StatCache,
    writes: &mut crate::fileops::plan::WriteSet,
    files: &mut BTreeMap<String, String>,
) -> Result<(), SolveError> {
    use crate::fileops::{self, plan};
    let op = if spec.attempt_unpack { "ADD" } else { "COPY" };
    let action =
        fileops::CopyAction::from_spec(spec, fileops::CONTEXT.to_string(), true, Vec::new());
    let step_err = |e: fileops::FileOpError| SolveError::Step {
        name: vertex.name.clone(),
        line_range: vertex.line_range,
        source: WorkError::Failed(e.to_string()),
    };
    let chmod = action
        .chmod
        .as_deref()
        .map(fileops::chmod::Chmod::parse)
        .transpose()
        .map_err(|source| step_err(fileops::FileOpError::Chmod { op, source }))?;
    let resolved = plan::resolve(snapshot, &action, op).map_err(step_err)?;
    let read = resolved.files();
    let digests = stat.content_digests(snapshot.root(), &read)?;
    let content: HashMap<&str, [u8; 32]> =
        read.iter().map(|e| e.rel.as_str()).zip(digests).collect();
    let w = resolved.writes(
        &action,
        chmod.as_ref(),
        action.keeps_source_owner(),
        &content,
    );
    if w.entries.len() <= MAX_RECORDED_FILES {
        files.extend(
            w.entries
                .iter()
                .map(|(p, _, facts)| (p.to_string(), facts.describe())),
        );
    } else {
        let pairs: Vec<(&str, [u8; 32])> = w.entries.iter().map(|(p, d, _)| (*p, *d)).collect();
        files.extend(summarise_files(&pairs));
    }
    writes.add(w);
    Ok(())
}

/// Names declared with ARG along the chain leading to `vertex`.
fn declared_args(def: &Definition, vertex: &Vertex) -> HashSet<String> {
    let mut names = HashSet::new();
    for v in def.chain(vertex.id) {
        if let Some(Op::Config(crate::graph::ConfigChange::Arg(args))) =
            def.vertex(v).map(|v| &v.op)
        {
            names.extend(args.iter().map(|(k, _)| k.clone()));
        }
    }
    names
}

/// The image config at `at`: the chain's source config with every metadata change and history
/// entry applied in order. `created` gives layer creation times of steps that ran or hit.
fn fold_config(
    def: &Definition,
    planned: &HashMap<VertexId, Planned>,
    at: VertexId,
    created: &HashMap<VertexId, i64>,
    epoch: Option<i64>,
) -> Value {
    let chain = def.chain(at);
    let config = chain
        .first()
        .and_then(|v| planned.get(v))
        .and_then(|p| p.base_config.clone())
        .unwrap_or_else(|| config::scratch_config(&Platform::host()));
    let clamp = |t: i64| match epoch {
        Some(e) if t > e || t == 0 => e,
        _ => t,
    };
    let mut last_time = config["created"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.timestamp())
        .unwrap_or(0);
    let mut folder = config::Folder::new(config);
    for v in chain {
        let Some(vertex) = def.vertex(v) else {
            continue;
        };
        if let Op::Config(change) = &vertex.op {
            folder.apply(change);
        }
        if let Some(t) = created.get(&v) {
            last_time = last_time.max(*t);
        }
        if let Some(entry) = &vertex.history {
            config::push_history(
                folder.config_mut(),
                entry,
                &config::rfc3339(clamp(last_time)),
            );
        }
    }
    let mut config = folder.finish();
    config["created"] = Value::String(config::rfc3339(clamp(last_time)));
    config
}

/// The effective config at a vertex for running a step on it (no times needed).
fn config_at(def: &Definition, planned: &HashMap<VertexId, Planned>, at: VertexId) -> Value {
    fold_config(def, planned, at, &HashMap::new(), None)
}

/// Everything one missed step needs to run on a blocking thread.
struct StepJob {
    def: Arc<Definition>,
    vertex: VertexId,
    step: StepId,
    key: CacheKey,
    inputs: StepInputs,
    reason: MissReason,
    planned: Arc<HashMap<VertexId, Planned>>,
    worker: Arc<dyn Worker>,
    progress: Arc<dyn ProgressSink>,
    keys: KeyStore,
    root: cache::Root,
    store: cache::ContentStore,
    reports: Arc<Mutex<Vec<StepReport>>>,
    created_times: Arc<Mutex<HashMap<VertexId, i64>>>,
    epoch: Option<i64>,
}

impl StepJob {
    fn run(self, inputs: &[Arc<Resolved>]) -> Result<Arc<Resolved>, SolveError> {
        let vertex = self.def.vertex(self.vertex).ok_or(SolveError::NoTarget)?;
        let started = Instant::now();
        self.progress.emit(Event::Started {
            id: self.step,
            name: vertex.name.clone(),
            line: vertex.line_range.map(|r| r.0).unwrap_or(0),
            reason: Some(self.reason.clone()),
        });
        // One process computes a key at a time; a concurrent build that finished it first
        // leaves a record we reuse.
        let _lock = self
            .root
            .lock_entry("keys", &self.key.to_hex())
            .map_err(|e| SolveError::Lock(e.to_string()))?;
        let store = &self.store;
        let concurrent = self.keys.get(&self.key, |d| {
            d.parse::<cache::Digest>().is_ok_and(|d| store.has(&d))
        })?;
        let states: Vec<InputState> = inputs.iter().map(|r| r.state.clone()).collect();
        let mut created = self.epoch.unwrap_or_else(|| now_secs() as i64);
        let layers = if let (Some(record), false) =
            (concurrent, matches!(self.reason, MissReason::NoCache))
        {
            created = record.created as i64;
            record.layers
        } else {
            let result = self.work(vertex, &states);
            let layers = match result {
                Ok(l) => l,
                Err(source) => {
                    self.progress.emit(Event::Failed {
                        id: self.step,
                        error: source.to_string(),
                    });
                    let mut r = report(
                        &self.def,
                        vertex,
                        false,
                        Some(&self.reason),
                        started.elapsed().as_millis() as u64,
                        &self.key,
                        self.inputs.clone(),
                    );
                    r.reason["failed"] = Value::Bool(true);
                    self.reports.lock().expect("reports").push(r);
                    return Err(SolveError::Step {
                        name: vertex.name.clone(),
                        line_range: vertex.line_range,
                        source,
                    });
                }
            };
            let record = StepRecord {
                layers: layers.clone(),
                config: Value::Null,
                duration_ms: started.elapsed().as_millis() as u64,
                created: created as u64,
            };
            self.keys.put(&self.key, &record)?;
            layers
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        self.progress.emit(Event::Done {
            id: self.step,
            duration_ms,
        });
        self.reports.lock().expect("reports").push(report(
            &self.def,
            vertex,
            false,
            Some(&self.reason),
            duration_ms,
            &self.key,
            self.inputs.clone(),
        ));
        self.created_times
            .lock()
            .expect("created times")
            .insert(self.vertex, created);
        Ok(Arc::new(Resolved {
            state: InputState::Layers(layers),
        }))
    }

    /// Runs the step's work and returns the resulting layer stack.
    fn work(&self, vertex: &Vertex, states: &[InputState]) -> Result<Vec<LayerRef>, WorkError> {
        let base = |i: usize| -> Vec<LayerRef> {
            match states.get(i) {
                Some(InputState::Layers(l)) => l.clone(),
                _ => Vec::new(),
            }
        };
        match &vertex.op {
            Op::Exec(op) => {
                let config = vertex
                    .inputs
                    .first()
                    .map(|&i| config_at(&self.def, &self.planned, i))
                    .unwrap_or(Value::Null);
                let req = ExecRequest {
                    vertex,
                    op,
                    inputs: states,
                    config: &config,
                    step: self.step,
                };
                let layer = self.worker.exec(&req, self.progress.as_ref())?;
                let mut layers = base(0);
                layers.push(layer);
                Ok(layers)
            }
            Op::File(op) => {
                let config = op
                    .base
                    .and_then(|b| vertex.inputs.get(b as usize))
                    .map(|&i| config_at(&self.def, &self.planned, i))
                    .unwrap_or(Value::Null);
                let req = FileRequest {
                    vertex,
                    op,
                    inputs: states,
                    config: &config,
                    step: self.step,
                };
                let layer = self.worker.file(&req, self.progress.as_ref())?;
                let mut layers = op.base.map(|b| base(b as usize)).unwrap_or_default();
                layers.push(layer);
                Ok(layers)
            }
            Op::Merge(_) => {
                let mut layers = Vec::new();
                for i in 0..states.len() {
                    for l in base(i) {
                        if !layers.contains(&l) {
                            layers.push(l);
                        }
                    }
                }
                Ok(layers)
            }
            Op::Source(_) | Op::Config(_) => Ok(base(0)),
        }
    }
}

#[cfg(test)]
mod tests;
