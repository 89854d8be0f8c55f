//! Solver tests with a worker double: keys, reuse, invalidation and reasons, without a sandbox.

use super::contexts::{parent_prefix, summarise_files};
use super::*;
use crate::graph::SourceOp;
use crate::graph::{
    CopySpec, ExecOp, FileAction, FileOp, HistoryEntry, NetworkMode, SecurityMode, StageBase,
    StageInfo, VertexMeta,
};
use crate::source::context::IncludeAll;
use progress::NoProgress;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Makes a fake layer blob per call; counts calls.
struct FakeWorker {
    store: cache::ContentStore,
    runs: AtomicUsize,
    fail_on: Option<String>,
}

impl FakeWorker {
    fn layer(&self, seed: &str) -> Result<LayerRef, WorkError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        if self.fail_on.as_deref() == Some(seed) {
            return Err(WorkError::ExitCode {
                command: seed.into(),
                code: 1,
                last_lines: vec![],
            });
        }
        let digest = self.store.put_bytes(seed.as_bytes())?;
        Ok(LayerRef {
            digest: digest.clone(),
            diff_id: digest,
            size: seed.len() as u64,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        })
    }
}

impl Worker for FakeWorker {
    fn exec(&self, req: &ExecRequest<'_>, _: &dyn ProgressSink) -> Result<LayerRef, WorkError> {
        self.layer(&req.op.args.join(" "))
    }
    fn file(&self, req: &FileRequest<'_>, _: &dyn ProgressSink) -> Result<LayerRef, WorkError> {
        self.layer(&format!("{:?}", req.op.actions))
    }
}

struct NoImages;
impl ImageSource for NoImages {
    fn resolve(&self, reference: &str, _: &Platform) -> Result<ResolvedImage, ResolveError> {
        Err(Arc::new(ImageSourceError::NotStored {
            source: cache::ImageStoreError::NotFound(reference.to_string()),
        }))
    }
}

fn meta(name: &str, line: usize, history: Option<&str>) -> VertexMeta {
    VertexMeta {
        name: name.into(),
        stage: Some(0),
        line_range: Some((line, line)),
        history: history.map(|h| HistoryEntry {
            created_by: h.into(),
            empty_layer: false,
        }),
    }
}

fn exec(cmd: &str, env: Vec<(String, String)>) -> Op {
    Op::Exec(ExecOp {
        args: vec!["/bin/sh".into(), "-c".into(), cmd.into()],
        env,
        proxy_env: vec![],
        cwd: "/".into(),
        user: String::new(),
        network: NetworkMode::Default,
        security: SecurityMode::Sandbox,
        mounts: vec![],
        extra_hosts: vec![],
        shm_size: 0,
        ulimits: vec![],
    })
}

/// scratch → ARG X → COPY src/ /src → RUN a (sees X) → RUN b
fn graph(x: &str, run_a: &str) -> Arc<Definition> {
    let p = Platform::host();
    let mut d = Definition::new();
    let scratch = d
        .add(
            Op::Source(SourceOp::Scratch),
            vec![],
            p.clone(),
            VertexMeta::default(),
        )
        .unwrap();
    let ctx = d
        .add(
            Op::Source(SourceOp::Context {
                name: "context".into(),
                includes: vec![],
                excludes: vec![],
            }),
            vec![],
            p.clone(),
            VertexMeta::default(),
        )
        .unwrap();
    let arg = d
        .add(
            Op::Config(crate::graph::ConfigChange::Arg(vec![(
                "X".into(),
                Some(x.into()),
            )])),
            vec![scratch],
            p.clone(),
            meta("ARG X", 2, None),
        )
        .unwrap();
    let copy = d
        .add(
            Op::File(FileOp {
                base: Some(0),
                actions: vec![FileAction::Copy(CopySpec::new(1, "/src/", "/src"))],
            }),
            vec![arg, ctx],
            p.clone(),
            meta("[1/3] COPY src/ /src", 3, Some("COPY src/ /src # buildkit")),
        )
        .unwrap();
    let a = d
        .add(
            exec(run_a, vec![("X".into(), x.into())]),
            vec![copy],
            p.clone(),
            meta(&format!("[2/3] RUN {run_a}"), 4, Some("RUN a")),
        )
        .unwrap();
    let b = d
        .add(
            exec("b", vec![]),
            vec![a],
            p.clone(),
            meta("[3/3] RUN b", 5, Some("RUN b")),
        )
        .unwrap();
    d.add_stage(StageInfo {
        name: "stage-0".into(),
        alias: None,
        index: 0,
        base: StageBase::Scratch,
        base_config_resolved: true,
        final_vertex: b,
        platform: p,
    });
    d.set_target(b, Some(0));
    Arc::new(d)
}

struct Fixture {
    _root_dir: tempfile::TempDir,
    context: tempfile::TempDir,
    root: cache::RootDir,
    worker: Arc<FakeWorker>,
    previous: Option<BuildRecord>,
}

impl Fixture {
    fn new() -> Self {
        let root_dir = tempfile::tempdir().unwrap();
        let root = cache::RootDir::open(root_dir.path()).unwrap();
        let context = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(context.path().join("src")).unwrap();
        std::fs::write(context.path().join("src/a.txt"), "a").unwrap();
        std::fs::write(context.path().join("unread.txt"), "u").unwrap();
        let worker = Arc::new(FakeWorker {
            store: root.content_store().unwrap(),
            runs: AtomicUsize::new(0),
            fail_on: None,
        });
        Fixture {
            _root_dir: root_dir,
            context,
            root,
            worker,
            previous: None,
        }
    }

    fn solve(&mut self, def: Arc<Definition>, no_cache: bool) -> Result<SolveResult, SolveError> {
        let solver = Solver::new(
            self.root.clone(),
            Arc::new(NoImages),
            self.worker.clone(),
            Arc::new(NoProgress),
        )
        .unwrap();
        let mut contexts = HashMap::new();
        contexts.insert(
            "context".to_string(),
            ContextInput {
                dir: self.context.path().to_path_buf(),
                filter: Arc::new(IncludeAll),
            },
        );
        let opts = SolveOptions {
            no_cache,
            contexts,
            previous: self.previous.clone(),
            ..Default::default()
        };
        let rt = tokio::runtime::Runtime::new().unwrap();
        let result = rt.block_on(solver.solve(def, opts));
        if let Ok(r) = &result {
            self.previous = Some(BuildRecord {
                target_id: "t".into(),
                dockerfile: "Dockerfile".into(),
                target: String::new(),
                started_ms: 0,
                duration_ms: 0,
                success: true,
                steps: r.steps.clone(),
                image: None,
            });
        }
        result
    }

    fn runs(&self) -> usize {
        self.worker.runs.swap(0, Ordering::SeqCst)
    }
}

fn kinds(result: &SolveResult) -> Vec<(String, String)> {
    let mut steps: Vec<_> = result
        .steps
        .iter()
        .map(|s| {
            let kind = if s.cached {
                "CACHED".to_string()
            } else {
                s.reason["kind"].as_str().unwrap_or("?").to_string()
            };
            (s.name.clone(), kind)
        })
        .collect();
    steps.sort();
    steps
}

#[test]
fn unchanged_rebuild_hits_everything_with_the_same_config() {
    let mut f = Fixture::new();
    let first = f.solve(graph("1", "a"), false).unwrap();
    assert_eq!(f.runs(), 3);
    assert!(first
        .steps
        .iter()
        .all(|s| s.reason["kind"] == "no_previous_record"));
    let second = f.solve(graph("1", "a"), false).unwrap();
    assert_eq!(f.runs(), 0);
    assert!(second.steps.iter().all(|s| s.cached));
    assert_eq!(first.layers, second.layers);
    assert_eq!(
        first.config, second.config,
        "same image config, so same digest"
    );
    assert_eq!(second.config.history.len(), 3);
}

#[test]
fn arg_change_misses_only_where_visible_and_names_the_arg() {
    let mut f = Fixture::new();
    f.solve(graph("1", "a"), false).unwrap();
    f.runs();
    let r = f.solve(graph("2", "a"), false).unwrap();
    assert_eq!(f.runs(), 2);
    let k = kinds(&r);
    assert_eq!(k[0], ("[1/3] COPY src/ /src".into(), "CACHED".into()));
    assert_eq!(k[1], ("[2/3] RUN a".into(), "arg_changed".into()));
    assert_eq!(k[2], ("[3/3] RUN b".into(), "parent_missed".into()));
    let a = r.steps.iter().find(|s| s.name == "[2/3] RUN a").unwrap();
    assert_eq!(a.reason["old"], "1");
    assert_eq!(a.reason["new"], "2");
}

#[test]
fn file_edits_miss_only_when_read() {
    let mut f = Fixture::new();
    f.solve(graph("1", "a"), false).unwrap();
    f.runs();
    std::fs::write(f.context.path().join("unread.txt"), "changed").unwrap();
    let r = f.solve(graph("1", "a"), false).unwrap();
    assert_eq!(f.runs(), 0, "a file the build never reads does not matter");
    assert!(r.steps.iter().all(|s| s.cached));
    std::fs::write(f.context.path().join("src/a.txt"), "changed").unwrap();
    let r = f.solve(graph("1", "a"), false).unwrap();
    assert_eq!(f.runs(), 3);
    let copy = r.steps.iter().find(|s| s.name.contains("COPY")).unwrap();
    assert_eq!(copy.reason["kind"], "file_changed");
    assert_eq!(copy.reason["path"], "src/a.txt");
}

#[test]
fn instruction_change_and_no_cache() {
    let mut f = Fixture::new();
    f.solve(graph("1", "a"), false).unwrap();
    f.runs();
    let r = f.solve(graph("1", "a2"), false).unwrap();
    assert_eq!(f.runs(), 2);
    let a = r.steps.iter().find(|s| s.name.contains("RUN a2")).unwrap();
    assert_eq!(a.reason["kind"], "instruction_changed");
    assert_eq!(a.reason["old"], "RUN a");
    let r = f.solve(graph("1", "a2"), true).unwrap();
    assert_eq!(f.runs(), 3);
    assert!(r.steps.iter().all(|s| s.reason["kind"] == "no_cache"));
}

#[test]
fn failed_step_keeps_earlier_steps_cached() {
    let mut f = Fixture::new();
    Arc::get_mut(&mut f.worker).unwrap().fail_on = Some("/bin/sh -c b".into());
    let err = f.solve(graph("1", "a"), false).unwrap_err();
    assert!(matches!(err, SolveError::Step { ref name, .. } if name == "[3/3] RUN b"));
    assert_eq!(f.runs(), 3);
    Arc::get_mut(&mut f.worker).unwrap().fail_on = None;
    let r = f.solve(graph("1", "a"), false).unwrap();
    assert_eq!(f.runs(), 1, "only the failed step runs again");
    assert_eq!(r.steps.iter().filter(|s| s.cached).count(), 2);
}

#[test]
fn large_selections_are_summarised_per_directory() {
    let entries: Vec<(String, [u8; 32])> = (0..20_000)
        .map(|i| (format!("d{:03}/f{i}", i % 200), [i as u8; 32]))
        .collect();
    let entries: Vec<(&str, [u8; 32])> = entries.iter().map(|(p, d)| (p.as_str(), *d)).collect();
    let summary = summarise_files(&entries);
    assert_eq!(summary.len(), 200);
    assert!(summary.contains_key("d007/**"));
    let mut changed = entries.clone();
    changed[1207].1 = [9; 32];
    let after = summarise_files(&changed);
    let differing: Vec<_> = summary
        .iter()
        .filter(|(k, v)| after.get(*k) != Some(v))
        .collect();
    assert_eq!(differing.len(), 1, "one directory's digest changes");
    assert_eq!(differing[0].0, "d007/**");
}

#[test]
fn parent_prefix_cuts_at_the_depth() {
    assert_eq!(parent_prefix("a/b/c/d", 2), "a/b");
    assert_eq!(parent_prefix("a/b/c", 2), "a/b");
    assert_eq!(parent_prefix("a/b", 2), "a");
    assert_eq!(parent_prefix("a", 2), "");
    assert_eq!(parent_prefix("a/b/c", 1), "a");
    assert_eq!(parent_prefix("a/b/c", 0), "");
}
