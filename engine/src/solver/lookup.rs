//! Phase 2 of a solve: each step's key is looked up in the key store. A hit is reused as it is;
//! a miss gets its [`MissReason`], explained against the previous build of the same target.

use super::plan::Planned;
use super::reason::{self, MissReason};
use super::{is_step, SolveError, SolveOptions, Solver};
use crate::graph::{Definition, Op, Vertex, VertexId};
use cache::keys::StepRecord;
use cache::records::{StepInputs, StepReport};
use std::collections::HashMap;

/// What the lookups decided: the record of every hit and the reason of every miss.
pub(super) struct Lookups {
    pub(super) records: HashMap<VertexId, StepRecord>,
    pub(super) reasons: HashMap<VertexId, MissReason>,
}

impl Solver {
    /// Looks up every step of `order` (the target's ancestors, inputs first).
    pub(super) fn look_up(
        &self,
        def: &Definition,
        order: &[VertexId],
        planned: &HashMap<VertexId, Planned>,
        opts: &SolveOptions,
    ) -> Result<Lookups, SolveError> {
        let previous_steps: Vec<&StepReport> = opts
            .previous
            .as_ref()
            .map(|r| r.steps.iter().collect())
            .unwrap_or_default();
        let mut records: HashMap<VertexId, StepRecord> = HashMap::new();
        let mut reasons: HashMap<VertexId, MissReason> = HashMap::new();
        let mut missed_name: HashMap<VertexId, String> = HashMap::new();
        // Steps that must run whatever the cache holds, by the name of the step that forced it.
        let mut forced: HashMap<VertexId, String> = HashMap::new();
        let mut stage_positions: HashMap<Option<usize>, usize> = HashMap::new();
        for &v in order {
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
            let stage_name = stage_name(def, vertex);
            // `--no-cache-filter` re-runs a stage's steps and, since their results are new,
            // every step that uses them.
            let forced_parent = vertex.inputs.iter().find_map(|i| forced.get(i).cloned());
            let no_cache = opts.no_cache || opts.no_cache_stages.contains(&stage_name);
            let store = &self.store;
            let hit = if no_cache || forced_parent.is_some() {
                None
            } else {
                self.keys.get(&plan.key, |d| store.has(d))?
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
        Ok(Lookups { records, reasons })
    }
}

fn forced_parent_is(forced: &HashMap<VertexId, String>, vertex: &Vertex) -> bool {
    vertex.inputs.iter().any(|i| forced.contains_key(i))
}

pub(super) fn stage_name(def: &Definition, vertex: &Vertex) -> String {
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
