//! Phase 1 of a solve: every vertex the target needs gets its cache key (definition, inputs'
//! keys, what it reads from build contexts, a base image's manifest digest) and, for sources,
//! its state. Nothing is looked up or run here.

use super::contexts::{summarise_files, ContextCache, ContextLoad, MAX_RECORDED_FILES};
use super::{
    config, key, ImageSource, InputState, SolveError, SolveOptions, Solver, WorkError, Worker,
};
use crate::graph::{Definition, Op, SourceOp, Vertex, VertexId};
use crate::image::ImageConfig;
use crate::source::context::{ContextSnapshot, StatCache};
use cache::keys::CacheKey;
use cache::records::StepInputs;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

/// What phase 1 learned about a vertex.
#[derive(Debug, Clone)]
pub(super) struct Planned {
    pub(super) key: CacheKey,
    /// Set for vertices that are steps (exec/file/merge): their inputs for explanations.
    pub(super) step_inputs: Option<StepInputs>,
    /// The state of a source vertex.
    pub(super) source_state: Option<InputState>,
    /// The base config of an image/scratch source.
    pub(super) base_config: Option<ImageConfig>,
}

/// The instruction text of a step: its progress name without the `[stage n/m] ` prefix.
pub(super) fn instruction_of(name: &str) -> String {
    match name.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        Some((_, rest)) => rest.to_string(),
        None => name.to_string(),
    }
}

/// What phase 1 found: each vertex's key and source state, and what reading contexts cost.
pub(super) struct Plan {
    pub(super) planned: HashMap<VertexId, Planned>,
    pub(super) walk: std::time::Duration,
    pub(super) hash: std::time::Duration,
    pub(super) context_loads: Vec<ContextLoad>,
}

/// Phase 1: keys and source states for every vertex the target needs.
pub(super) fn plan(
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
                        .map_err(|source| SolveError::Image {
                            reference: reference.clone(),
                            source,
                            line_range: vertex.line_range,
                        })?;
                let key = key::KeyBuilder::new("image")
                    .field(resolved.manifest_digest.to_string().as_bytes())
                    .field(platform.to_string().as_bytes())
                    .finish();
                Planned {
                    key,
                    step_inputs: Some(StepInputs {
                        base_digest: Some(resolved.manifest_digest.to_string()),
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
                        source: Box::new(e),
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
    let mut files = BTreeMap::new();
    if let Op::File(file) = &vertex.op {
        key_copies(def, vertex, file, planned, contexts, &mut kb, &mut files)?;
    }
    key_mounted_context(vertex, planned, contexts, &mut kb, &mut files)?;
    let key = kb.finish();
    Ok(Planned {
        key,
        step_inputs: Some(StepInputs {
            definition,
            instruction: instruction_of(&vertex.name),
            args: visible_args(def, vertex),
            files,
            base_digest: base_digest(def, vertex, planned),
            parents: input_keys.iter().map(|k| k.to_hex()).collect(),
        }),
        source_state: None,
        base_config: None,
    })
}

/// Keys what a file op's COPY/ADD actions from a build context write (their plans, combined
/// with "last write wins"), and notes the files they read for "why it missed".
fn key_copies(
    def: &Definition,
    vertex: &Vertex,
    file: &crate::graph::FileOp,
    planned: &HashMap<VertexId, Planned>,
    contexts: &mut ContextCache,
    kb: &mut key::KeyBuilder,
    files: &mut BTreeMap<String, String>,
) -> Result<(), SolveError> {
    let mut writes = crate::fileops::plan::WriteSet::default();
    let mut any = false;
    for action in &file.actions {
        let crate::graph::FileAction::Copy(c) = action else {
            continue;
        };
        let Some(name) = context_input(vertex, c.source_input, planned) else {
            continue;
        };
        let started = Instant::now();
        let (snapshot, stat) = contexts.get(&name)?;
        let walked = started.elapsed();
        let base_empty = base_is_empty(def, vertex, file.base);
        copy_plan_writes(vertex, c, snapshot, stat, base_empty, &mut writes, files)?;
        kb.field(name.as_bytes());
        let hashed = started.elapsed().saturating_sub(walked);
        contexts.times.entry(name).or_default().hash += hashed;
        any = true;
    }
    if any {
        kb.field(&writes.digest());
    }
    Ok(())
}

/// Keys what a RUN step mounts from each build context input (bind and cache mounts'
/// sources), by input index.
fn key_mounted_context(
    vertex: &Vertex,
    planned: &HashMap<VertexId, Planned>,
    contexts: &mut ContextCache,
    kb: &mut key::KeyBuilder,
    files: &mut BTreeMap<String, String>,
) -> Result<(), SolveError> {
    let Op::Exec(exec) = &vertex.op else {
        return Ok(());
    };
    let mut reads: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for m in &exec.mounts {
        if let (Some(i), crate::graph::MountKind::Bind { source, .. }) = (m.input, &m.kind) {
            reads.entry(i).or_default().push(source.clone());
        }
        if let (Some(i), crate::graph::MountKind::Cache { source, .. }) = (m.input, &m.kind) {
            reads.entry(i).or_default().push(source.clone());
        }
    }
    for (index, paths) in reads {
        let Some(name) = context_input(vertex, index, planned) else {
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
    Ok(())
}

/// The name of the build context input `index` of `vertex` is, when it is one.
fn context_input(
    vertex: &Vertex,
    index: u32,
    planned: &HashMap<VertexId, Planned>,
) -> Option<String> {
    let input = vertex.inputs.get(index as usize)?;
    match planned.get(input).and_then(|p| p.source_state.as_ref()) {
        Some(InputState::Context { name, .. }) => Some(name.clone()),
        _ => None,
    }
}

/// Build args the step can see, for "ARG X changed" explanations.
fn visible_args(def: &Definition, vertex: &Vertex) -> BTreeMap<String, String> {
    let mut args = BTreeMap::new();
    if let Op::Exec(exec) = &vertex.op {
        let declared = declared_args(def, vertex);
        for (k, v) in &exec.env {
            if declared.contains(k) {
                args.insert(k.clone(), v.clone());
            }
        }
    }
    args
}

/// The base image digest, for the first step of a chain: input 0 walked back through
/// metadata-only vertices to an image source.
fn base_digest(
    def: &Definition,
    vertex: &Vertex,
    planned: &HashMap<VertexId, Planned>,
) -> Option<String> {
    let mut cur = vertex.inputs.first().copied();
    while let Some(v) = cur.and_then(|id| def.vertex(id)) {
        match &v.op {
            Op::Config(_) => cur = v.inputs.first().copied(),
            Op::Source(SourceOp::Image { .. }) => {
                return planned
                    .get(&v.id)
                    .and_then(|p| p.step_inputs.as_ref())
                    .and_then(|s| s.base_digest.clone());
            }
            _ => return None,
        }
    }
    None
}

/// Whether a file op's base is known to be empty (a `--link` copy, or a step right on `FROM
/// scratch`): then nothing can make a copy's destination a directory.
fn base_is_empty(
    def: &Definition,
    vertex: &Vertex,
    base: Option<crate::graph::InputIndex>,
) -> bool {
    let Some(base) = base else {
        return true;
    };
    let mut at = vertex.inputs.get(base as usize).copied();
    while let Some(v) = at.and_then(|id| def.vertex(id)) {
        match &v.op {
            Op::Config(_) => at = v.inputs.first().copied(),
            Op::Source(SourceOp::Scratch) => return true,
            _ => return false,
        }
    }
    false
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
    base_empty: bool,
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
        source: Box::new(WorkError::from(e)),
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
        base_empty,
    );
    if w.entries.len() <= MAX_RECORDED_FILES {
        // A path two sources of the step read (an archive named through a link, and the link
        // inside a copied directory) keeps both descriptions, so a change of either is named.
        for (source, _, facts) in &w.entries {
            let described = facts.describe();
            files
                .entry(source.name())
                .and_modify(|v| {
                    if *v != described {
                        v.push_str("; ");
                        v.push_str(&described);
                    }
                })
                .or_insert(described);
        }
    } else {
        let pairs: Vec<(&str, [u8; 32])> = w.entries.iter().map(|(s, d, _)| (s.rel, *d)).collect();
        files.extend(summarise_files(&pairs));
    }
    writes.add(w);
    Ok(())
}

/// Names declared with ARG along the chain leading to `vertex`.
pub(super) fn declared_args(def: &Definition, vertex: &Vertex) -> HashSet<String> {
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

impl Solver {
    /// Runs [`plan`] on a blocking thread (context walks, hashing and image resolution block).
    pub(super) async fn plan(
        &self,
        def: &std::sync::Arc<Definition>,
        target: VertexId,
        opts: &std::sync::Arc<SolveOptions>,
    ) -> Result<Plan, SolveError> {
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
        .map_err(|e| SolveError::Internal(e.to_string()))?
    }
}
