//! Phase 3 of a solve: each vertex becomes a shared future over its inputs' futures, so
//! independent stages run in parallel, every vertex runs at most once, and only what the target
//! needs is awaited. A missed step runs on a blocking thread through the [`Worker`] seam, under
//! a per-key lock, and records its result.

use super::config::config_at;
use super::contexts::ContextLoad;
use super::lookup::{stage_name, Lookups};
use super::plan::Planned;
use super::progress::{Event, ProgressSink, StepId};
use super::reason::MissReason;
use super::{
    is_step, ExecRequest, FileRequest, InputState, Resolved, SharedResult, SolveError,
    SolveOptions, Solver, WorkError, Worker,
};
use crate::graph::{Definition, Op, SourceOp, Vertex, VertexId};
use cache::keys::{now_secs, CacheKey, KeyStore, LayerRef, StepRecord};
use cache::records::{StepInputs, StepReport};
use futures::future::FutureExt;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// What every step of one execution shares.
struct Execution<'a> {
    def: &'a Arc<Definition>,
    planned: &'a Arc<HashMap<VertexId, Planned>>,
    records: &'a HashMap<VertexId, StepRecord>,
    reasons: &'a HashMap<VertexId, MissReason>,
    step_ids: &'a HashMap<VertexId, StepId>,
    reports: Arc<Mutex<Vec<StepReport>>>,
    created_times: Arc<Mutex<HashMap<VertexId, i64>>>,
    epoch: Option<i64>,
}

/// What the execution produced: the target's layers, a report per step, and the creation time
/// of every step's layer (hits and runs).
pub(super) struct Executed {
    pub(super) layers: Vec<LayerRef>,
    pub(super) steps: Vec<StepReport>,
    pub(super) created: HashMap<VertexId, i64>,
}

impl Solver {
    /// Runs what missed, reusing what hit, and awaits the target.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn execute(
        &self,
        def: &Arc<Definition>,
        target: VertexId,
        order: &[VertexId],
        planned: &Arc<HashMap<VertexId, Planned>>,
        lookups: Lookups,
        context_loads: &[ContextLoad],
        opts: &SolveOptions,
    ) -> Result<Executed, SolveError> {
        let Lookups { records, reasons } = lookups;
        let step_ids = step_ids(def, order, context_loads.len())?;
        self.progress.emit(Event::Planned {
            total: context_loads.len() + step_ids.len(),
        });
        self.announce_contexts(context_loads);
        let run = Execution {
            def,
            planned,
            records: &records,
            reasons: &reasons,
            step_ids: &step_ids,
            reports: Arc::default(),
            created_times: Arc::default(),
            epoch: opts.source_date_epoch,
        };
        let mut futures: HashMap<VertexId, SharedResult> = HashMap::new();
        for &v in order {
            let vertex = def.vertex(v).ok_or(SolveError::NoTarget)?;
            let fut = match &vertex.op {
                Op::Source(source) => self.source_future(&run, vertex, source)?,
                // A metadata-only step has its input's filesystem.
                Op::Config(_) => vertex
                    .inputs
                    .first()
                    .and_then(|i| futures.get(i))
                    .cloned()
                    .ok_or_else(|| SolveError::Internal(format!("{} has no input", vertex.name)))?,
                _ => self.step_future(&run, vertex, &futures)?,
            };
            futures.insert(v, fut);
        }
        let Execution {
            reports,
            created_times,
            ..
        } = run;
        let layers = await_target(futures, target).await;
        let steps = reports.lock().expect("reports").clone();
        let layers = layers?;
        let mut created: HashMap<VertexId, i64> = HashMap::new();
        for (v, r) in &records {
            created.insert(*v, r.created as i64);
        }
        for (v, t) in created_times.lock().expect("created times").iter() {
            created.entry(*v).or_insert(*t);
        }
        Ok(Executed {
            layers,
            steps,
            created,
        })
    }

    /// A source is resolved while keys are computed: its future is ready.
    fn source_future(
        &self,
        run: &Execution<'_>,
        vertex: &Vertex,
        source: &SourceOp,
    ) -> Result<SharedResult, SolveError> {
        let state = run.planned[&vertex.id]
            .source_state
            .clone()
            .ok_or_else(|| SolveError::Internal(format!("source {} has no state", vertex.name)))?;
        if let (SourceOp::Image { .. }, Some(&id)) = (source, run.step_ids.get(&vertex.id)) {
            // Resolved (and pulled when missing) while keys were computed: here it is already
            // in the store.
            self.progress.emit(Event::Started {
                id,
                name: vertex.name.clone(),
                line: vertex.line_range.map(|r| r.0).unwrap_or(0),
                reason: None,
            });
        }
        Ok(futures::future::ready(Ok(Arc::new(Resolved { state })))
            .boxed()
            .shared())
    }

    /// A step: its record's layers when it hit, else a job that runs once its inputs resolve.
    fn step_future(
        &self,
        run: &Execution<'_>,
        vertex: &Vertex,
        futures: &HashMap<VertexId, SharedResult>,
    ) -> Result<SharedResult, SolveError> {
        let v = vertex.id;
        let plan = &run.planned[&v];
        let step = run.step_ids[&v];
        let inputs = plan.step_inputs.clone().unwrap_or_default();
        if let Some(record) = run.records.get(&v) {
            self.progress.emit(Event::Started {
                id: step,
                name: vertex.name.clone(),
                line: vertex.line_range.map(|r| r.0).unwrap_or(0),
                reason: None,
            });
            run.reports
                .lock()
                .expect("reports")
                .push(report(run.def, vertex, true, None, 0, &plan.key, inputs));
            let resolved = Resolved {
                state: InputState::Layers(record.layers.clone()),
            };
            return Ok(futures::future::ready(Ok(Arc::new(resolved)))
                .boxed()
                .shared());
        }
        let input_futs: Vec<SharedResult> = vertex
            .inputs
            .iter()
            .map(|i| {
                futures.get(i).cloned().ok_or_else(|| {
                    SolveError::Internal(format!("input of {} not planned", vertex.name))
                })
            })
            .collect::<Result<_, _>>()?;
        let job = StepJob {
            def: run.def.clone(),
            vertex: v,
            step,
            key: plan.key,
            inputs,
            reason: run
                .reasons
                .get(&v)
                .cloned()
                .unwrap_or(MissReason::DefinitionChanged),
            planned: run.planned.clone(),
            worker: self.worker.clone(),
            progress: self.progress.clone(),
            keys: self.keys.clone(),
            root: self.root.clone(),
            store: self.store.clone(),
            reports: run.reports.clone(),
            created_times: run.created_times.clone(),
            epoch: run.epoch,
        };
        Ok(async move {
            let states: Vec<Arc<Resolved>> = futures::future::try_join_all(input_futs).await?;
            tokio::task::spawn_blocking(move || job.run(&states))
                .await
                .map_err(|e| Arc::new(SolveError::Internal(e.to_string())))?
                .map_err(Arc::new)
        }
        .boxed()
        .shared())
    }

    /// Loading the build contexts comes first in the progress, as `[internal]` steps.
    fn announce_contexts(&self, context_loads: &[ContextLoad]) {
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
    }
}

/// Progress ids of the steps of `order` (base images included, as BuildKit shows them), after
/// the `first` ids the contexts took.
fn step_ids(
    def: &Definition,
    order: &[VertexId],
    first: usize,
) -> Result<HashMap<VertexId, StepId>, SolveError> {
    let mut ids: HashMap<VertexId, StepId> = HashMap::new();
    for &v in order {
        let op = &def.vertex(v).ok_or(SolveError::NoTarget)?.op;
        if is_step(op) || matches!(op, Op::Source(SourceOp::Image { .. })) {
            ids.insert(v, first + ids.len());
        }
    }
    Ok(ids)
}

/// Awaits the target's future and takes its layers. Every other handle on the shared futures
/// goes first, so an error has one owner again.
async fn await_target(
    mut futures: HashMap<VertexId, SharedResult>,
    target: VertexId,
) -> Result<Vec<LayerRef>, SolveError> {
    let target_fut = futures.remove(&target).ok_or(SolveError::NoTarget)?;
    drop(futures);
    let resolved = target_fut
        .await
        .map_err(|e| Arc::try_unwrap(e).unwrap_or_else(|e| SolveError::Internal(e.to_string())))?;
    match &resolved.state {
        InputState::Layers(l) => Ok(l.clone()),
        InputState::Context { name, .. } => Err(SolveError::TargetIsContext(name.clone())),
    }
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
    root: cache::RootDir,
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
        let concurrent = self.keys.get(&self.key, |d| store.has(d))?;
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
                        source: Box::new(source),
                    });
                }
            };
            let record = StepRecord {
                layers: layers.clone(),
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
                    .unwrap_or_default();
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
                    .unwrap_or_default();
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
