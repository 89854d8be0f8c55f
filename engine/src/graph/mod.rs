//! The build graph: a DAG of content-addressed operations, knowing nothing of Dockerfiles.
//!
//! A frontend builds a [`Definition`] with [`Definition::add`]; the solver walks it in
//! [`Definition::topological_order`] and executes each [`Vertex`]'s [`Op`] on the outputs of its
//! inputs.
//!
//! Invariants:
//! - A vertex's [`Vertex::digest`] is sha256 over the canonical JSON of its op (minus
//!   `ExecOp::proxy_env`), its platform and its inputs' digests, in order. Identical op + identical
//!   inputs are one vertex: [`Definition::add`] returns the existing id.
//! - Metadata (name, stage, line range, history) is not hashed; when a vertex is deduplicated the
//!   first caller's metadata is kept.
//! - Edges go from input to consumer; `Vertex::inputs` lists them in input order.
//! - A stage's image config is the base image's config folded with the [`ConfigChange`]s and
//!   [`HistoryEntry`]s along the stage's chain ([`Definition::chain`]).

mod op;
mod render;

pub use cache::{Platform, PlatformError};
pub use op::*;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fmt;

/// A sha256 digest identifying a vertex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VertexDigest(pub [u8; 32]);

impl VertexDigest {
    /// sha256 of `bytes`.
    pub fn of(bytes: &[u8]) -> VertexDigest {
        VertexDigest(Sha256::digest(bytes).into())
    }

    /// The lowercase hex form, without the `sha256:` prefix.
    pub fn hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for VertexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex())
    }
}

impl fmt::Debug for VertexDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", &self.hex()[..12])
    }
}

impl Serialize for VertexDigest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for VertexDigest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let hex_part = s
            .strip_prefix("sha256:")
            .ok_or_else(|| serde::de::Error::custom("digest must start with sha256:"))?;
        let mut out = [0u8; 32];
        hex::decode_to_slice(hex_part, &mut out).map_err(serde::de::Error::custom)?;
        Ok(VertexDigest(out))
    }
}

/// Identifies a vertex within one [`Definition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VertexId(pub u32);

impl VertexId {
    fn node(self) -> NodeIndex {
        NodeIndex::new(self.0 as usize)
    }
}

/// Identifies a stage within one [`Definition`] (the index into [`Definition::stages`]).
pub type StageId = usize;

/// Descriptive data about a vertex: not part of its digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VertexMeta {
    /// The name progress output shows, like BuildKit: `[build 2/5] RUN make`.
    pub name: String,
    /// The stage this vertex was created for, if any.
    pub stage: Option<StageId>,
    /// 1-based first and last source line of the instruction that produced it.
    pub line_range: Option<(usize, usize)>,
    /// The image history entry this step contributes, if any.
    pub history: Option<HistoryEntry>,
}

/// One node of the build graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vertex {
    pub id: VertexId,
    pub op: Op,
    /// Input vertices, in input order ([`InputIndex`] indexes this list).
    pub inputs: Vec<VertexId>,
    /// The platform this vertex runs or resolves for.
    pub platform: Platform,
    /// Identity of the operation and everything it depends on.
    pub digest: VertexDigest,
    pub name: String,
    pub stage: Option<StageId>,
    pub line_range: Option<(usize, usize)>,
    pub history: Option<HistoryEntry>,
}

/// One metadata step of a chain (see [`Definition::config_steps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigStep<'a> {
    pub vertex: VertexId,
    /// The config change, for [`Op::Config`] vertices.
    pub change: Option<&'a ConfigChange>,
    /// The history entry the step adds, if any.
    pub history: Option<&'a HistoryEntry>,
}

/// What the graph knows about one build stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageInfo {
    /// The stage's display name: its `AS` name, or `stage-N`.
    pub name: String,
    /// Its `AS` name, if it has one.
    pub alias: Option<String>,
    /// Position among the Dockerfile's stages (0-based).
    pub index: usize,
    /// What the stage starts from.
    pub base: StageBase,
    /// Whether the base image's config (env, workdir, user, shell, ONBUILD triggers) was known
    /// while lowering; when false, exec ops hold overrides relative to it (see [`ExecOp`]) and the
    /// base image's ONBUILD triggers have not been applied (lower again with a resolver to get
    /// them).
    pub base_config_resolved: bool,
    /// The vertex holding the stage's final state.
    pub final_vertex: VertexId,
    pub platform: Platform,
}

/// The starting point of a stage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StageBase {
    /// An image, by normalised reference.
    Image { reference: String },
    /// `FROM scratch`.
    Scratch,
    /// Another stage of the same build.
    Stage { stage: StageId },
}

/// Errors from building or reading a [`Definition`].
#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error("vertex {0:?} does not exist")]
    UnknownVertex(VertexId),
    #[error("mount or copy refers to input {index} but the vertex has {count} inputs")]
    BadInputIndex { index: InputIndex, count: usize },
    #[error("cannot serialize the graph: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// A build graph: vertices, stages and the target output.
#[derive(Debug, Clone, Default)]
pub struct Definition {
    graph: DiGraph<Vertex, InputIndex>,
    by_digest: HashMap<VertexDigest, VertexId>,
    stages: Vec<StageInfo>,
    target: Option<VertexId>,
    target_stage: Option<StageId>,
}

/// The digest preimage of a vertex: everything that identifies it.
#[derive(Serialize)]
struct Preimage<'a> {
    op: &'a Op,
    platform: &'a Platform,
    inputs: Vec<VertexDigest>,
}

impl Definition {
    /// An empty graph.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a vertex, or returns the existing one with the same op, platform and inputs.
    ///
    /// Fails when an input id is unknown or the op names an input index out of range.
    pub fn add(
        &mut self,
        op: Op,
        inputs: Vec<VertexId>,
        platform: Platform,
        meta: VertexMeta,
    ) -> Result<VertexId, GraphError> {
        for &i in &inputs {
            if self.graph.node_weight(i.node()).is_none() {
                return Err(GraphError::UnknownVertex(i));
            }
        }
        check_input_indexes(&op, inputs.len())?;
        let digest = self.digest(&op, &platform, &inputs)?;
        if let Some(&existing) = self.by_digest.get(&digest) {
            return Ok(existing);
        }
        let id = VertexId(self.graph.node_count() as u32);
        let vertex = Vertex {
            id,
            op,
            inputs: inputs.clone(),
            platform,
            digest,
            name: meta.name,
            stage: meta.stage,
            line_range: meta.line_range,
            history: meta.history,
        };
        let node = self.graph.add_node(vertex);
        debug_assert_eq!(node.index(), id.0 as usize);
        for (pos, input) in inputs.iter().enumerate() {
            self.graph.add_edge(input.node(), node, pos as InputIndex);
        }
        self.by_digest.insert(digest, id);
        Ok(id)
    }

    fn digest(
        &self,
        op: &Op,
        platform: &Platform,
        inputs: &[VertexId],
    ) -> Result<VertexDigest, GraphError> {
        let hashed_op = &*op.identity();
        let input_digests: Vec<VertexDigest> = inputs
            .iter()
            .map(|&i| self.graph[i.node()].digest)
            .collect();
        let full = Preimage {
            op: hashed_op,
            platform,
            inputs: input_digests,
        };
        Ok(VertexDigest::of(&serde_json::to_vec(&full)?))
    }

    /// The vertex with id `id`.
    pub fn vertex(&self, id: VertexId) -> Option<&Vertex> {
        self.graph.node_weight(id.node())
    }

    /// The vertex with the given digest.
    pub fn by_digest(&self, digest: &VertexDigest) -> Option<&Vertex> {
        self.by_digest.get(digest).and_then(|&id| self.vertex(id))
    }

    /// Every vertex, in insertion order (which is also a topological order).
    pub fn vertices(&self) -> impl Iterator<Item = &Vertex> {
        self.graph.node_weights()
    }

    /// Number of vertices.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    /// True when the graph has no vertex.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// The vertices that consume `id`'s output.
    pub fn dependents(&self, id: VertexId) -> Vec<VertexId> {
        let mut out: Vec<VertexId> = self
            .graph
            .neighbors_directed(id.node(), petgraph::Direction::Outgoing)
            .map(|n| VertexId(n.index() as u32))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// All vertices, inputs before consumers.
    pub fn topological_order(&self) -> Vec<VertexId> {
        // Vertices are only ever added after their inputs, so insertion order is topological;
        // petgraph's toposort confirms it in debug builds.
        debug_assert!(petgraph::algo::toposort(&self.graph, None).is_ok());
        (0..self.graph.node_count() as u32).map(VertexId).collect()
    }

    /// The vertices `target` needs (itself included), inputs before consumers.
    pub fn ancestors(&self, target: VertexId) -> Vec<VertexId> {
        let mut seen = vec![false; self.graph.node_count()];
        let mut stack = vec![target];
        while let Some(v) = stack.pop() {
            let Some(slot) = seen.get_mut(v.0 as usize) else {
                continue;
            };
            if *slot {
                continue;
            }
            *slot = true;
            stack.extend(self.graph[v.node()].inputs.iter().copied());
        }
        (0..seen.len() as u32)
            .filter(|&i| seen[i as usize])
            .map(VertexId)
            .collect()
    }

    /// The main chain ending at `id`: following input 0 back to a source, returned
    /// source-first. Folding the [`ConfigChange`]s and history entries of this chain over the
    /// base image's config gives the image config at `id`.
    pub fn chain(&self, id: VertexId) -> Vec<VertexId> {
        let mut out = Vec::new();
        let mut cur = Some(id);
        while let Some(v) = cur {
            let Some(vertex) = self.vertex(v) else { break };
            out.push(v);
            cur = match &vertex.op {
                Op::Source(_) => None,
                Op::File(FileOp { base: None, .. }) => None,
                Op::File(FileOp {
                    base: Some(base), ..
                }) => vertex.inputs.get(*base as usize).copied(),
                _ => vertex.inputs.first().copied(),
            };
        }
        out.reverse();
        out
    }

    /// The metadata steps along [`Definition::chain`] of `id`, base first: fold them over the
    /// base image's config (set env, labels, cmd ...; append history) to get the image config
    /// of the state at `id`.
    pub fn config_steps(&self, id: VertexId) -> Vec<ConfigStep<'_>> {
        self.chain(id)
            .into_iter()
            .filter_map(|v| {
                let vertex = self.vertex(v)?;
                let change = match &vertex.op {
                    Op::Config(c) => Some(c),
                    _ => None,
                };
                (change.is_some() || vertex.history.is_some()).then_some(ConfigStep {
                    vertex: v,
                    change,
                    history: vertex.history.as_ref(),
                })
            })
            .collect()
    }

    /// Registers a stage; returns its id.
    pub fn add_stage(&mut self, stage: StageInfo) -> StageId {
        self.stages.push(stage);
        self.stages.len() - 1
    }

    /// The stages, in Dockerfile order (only those lowered).
    pub fn stages(&self) -> &[StageInfo] {
        &self.stages
    }

    /// Sets the vertex whose output is the build result, and the stage it belongs to.
    pub fn set_target(&mut self, vertex: VertexId, stage: Option<StageId>) {
        self.target = Some(vertex);
        self.target_stage = stage;
    }

    /// The build result's vertex.
    pub fn target(&self) -> Option<VertexId> {
        self.target
    }

    /// The stage whose image is the build result.
    pub fn target_stage(&self) -> Option<&StageInfo> {
        self.target_stage.and_then(|s| self.stages.get(s))
    }

    /// Graphviz DOT text: one cluster per stage, vertices labelled with their names.
    pub fn to_dot(&self) -> String {
        render::dot(self)
    }

    /// The whole graph as pretty JSON (vertices, stages, target).
    pub fn to_json(&self) -> Result<String, GraphError> {
        render::json(self)
    }
}

fn check_input_indexes(op: &Op, count: usize) -> Result<(), GraphError> {
    let check = |index: InputIndex| {
        if (index as usize) < count {
            Ok(())
        } else {
            Err(GraphError::BadInputIndex { index, count })
        }
    };
    match op {
        Op::Exec(e) => {
            if count == 0 {
                return Err(GraphError::BadInputIndex { index: 0, count });
            }
            for m in &e.mounts {
                if let Some(i) = m.input {
                    check(i)?;
                }
            }
        }
        Op::File(f) => {
            if let Some(b) = f.base {
                check(b)?;
            }
            for a in &f.actions {
                if let FileAction::Copy(c) = a {
                    check(c.source_input)?;
                }
            }
        }
        Op::Config(_) => check(0)?,
        Op::Source(_) | Op::Merge(_) => {}
    }
    Ok(())
}

/// Normalises an image reference as Docker does (`alpine` → `docker.io/library/alpine:latest`),
/// rejecting malformed ones; the one normal form keeps identical bases one vertex.
pub fn normalize_image_reference(reference: &str) -> Result<String, cache::ReferenceError> {
    cache::Reference::parse(reference).map(|r| r.to_string())
}

#[cfg(test)]
mod tests;
