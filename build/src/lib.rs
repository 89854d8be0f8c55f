//! A build as one library call: [`Build::new`]`(root, request).`[`run`](Build::run)`(progress)`.
//!
//! This crate is where a build happens. It sits above the frontend and the engine (the engine never
//! learns what a Dockerfile is, so the orchestration cannot live in it): it parses and lowers the
//! Dockerfile, resolves each base image once for both lowering and solving, solves, writes the
//! image and its names, runs the exporters, pushes, imports and exports the build cache, keeps
//! the build record and collects garbage when the root grew past its limit. The `builder` binary
//! only turns flags into a [`BuildRequest`] and renders the [`BuildOutcome`]; tests call the
//! same function without spawning a process.

mod cache_io;
mod docker_load;
mod error;
mod images;
mod registry_io;
mod request;

pub use cache_io::{
    parse_specs as parse_cache_specs, CacheExportReport, CacheImportReport, CollectReport,
};
pub use docker_load::{DockerHost, DockerLoadError, DEFAULT_DOCKER_HOST};
pub use error::BuildError;
pub use request::{BuildContext, BuildRequest, DockerfileInput, Output};

use cache::records::{BuildRecord, RecordStore};
use engine::export::{self, NamedImage};
use engine::image::{write_image, Image, ImageConfig, LayerInfo};
use engine::solver::progress::{Event, ProgressSink};
use engine::solver::{ContextInput, SolveOptions, SolveResult, Solver};
use engine::worker::{LocalWorker, WorkerOptions};
use frontend_dockerfile::lower::{self, LowerOptions};
use frontend_dockerfile::parser;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// One build of one Dockerfile target against one root directory.
pub struct Build {
    root: cache::RootDir,
    request: BuildRequest,
}

/// What a successful build produced.
#[derive(Debug)]
pub struct BuildOutcome {
    /// The image written to the content store (manifest, config, layers).
    pub image: Image,
    /// The names the image was stored under (`-t`).
    pub names: Vec<cache::Reference>,
    /// The solve: one report per step (cached or why it missed), layers and phase timings.
    pub solve: SolveResult,
    /// Writing the image, the outputs and the pushes, in milliseconds.
    pub export_ms: u64,
    /// The whole build, in milliseconds.
    pub duration_ms: u64,
    /// One report per `--cache-from` source that could be read.
    pub cache_imports: Vec<CacheImportReport>,
    /// One report per `--cache-to` destination.
    pub cache_exports: Vec<CacheExportReport>,
    /// Warnings that did not stop the build (unreadable cache sources, a failed collection).
    pub warnings: Vec<String>,
    /// The garbage collection that followed the build, when the root was over its limit.
    pub collected: Option<CollectReport>,
    /// With `--load`: what the Docker engine reported (`Loaded image: NAME`).
    pub loaded: Vec<String>,
}

impl BuildOutcome {
    /// The `--metadata-file` document: BuildKit's keys (`containerimage.digest`, ...), plus the
    /// steps with their cache results and the phase timings under `builder.*`.
    pub fn metadata(&self) -> serde_json::Value {
        let descriptor = &self.image.manifest_descriptor;
        let timings = &self.solve.timings;
        serde_json::json!({
            "containerimage.digest": descriptor.digest.to_string(),
            "containerimage.config.digest": self.image.id().to_string(),
            "containerimage.descriptor": {
                "mediaType": descriptor.media_type,
                "digest": descriptor.digest.to_string(),
                "size": descriptor.size,
            },
            "image.name": self.names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
            "builder.steps": self.solve.steps.iter().map(|s| serde_json::json!({
                "name": s.name,
                "stage": s.stage,
                "line": s.line,
                "end_line": s.end_line,
                "cached": s.cached,
                "reason": s.reason,
                "duration_ms": s.duration_ms,
                "key": s.key,
            })).collect::<Vec<_>>(),
            "builder.timings": {
                "walk_ms": timings.walk_ms,
                "hash_ms": timings.hash_ms,
                "keys_ms": timings.keys_ms,
                "execute_ms": timings.execute_ms,
                "export_ms": self.export_ms,
            },
            "builder.duration_ms": self.duration_ms,
        })
    }
}

impl Build {
    /// A build of `request` in `root` (see [`cache::RootDir::open_or_default`]).
    pub fn new(root: cache::RootDir, request: BuildRequest) -> Build {
        Build { root, request }
    }

    /// Runs the build, reporting on `progress`. Blocking: it drives its own async runtime.
    pub fn run(self, progress: Arc<dyn ProgressSink>) -> Result<BuildOutcome, BuildError> {
        let started = Instant::now();
        let started_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let Build { root, request: req } = self;
        let source = DockerfileSource::read(&req)?;

        let shared = root.lock_shared().map_err(BuildError::Root)?;
        let mut warnings = Vec::new();
        let cache_imports = cache_io::import(&root, &req.cache_from, &mut warnings)?;
        let cas = root.content_store().map_err(BuildError::Root)?;
        let store = cache::ImageStore::open(root.images_dir()).map_err(BuildError::ImageStore)?;
        let images = images::BaseImages::new(&store, &cas, &progress, req.pull);
        let lowered = lower_request(&req, &source, &images, &cas, &store)?;
        report_checks(
            &source.parsed,
            &source.shown,
            &lowered.warnings,
            progress.as_ref(),
        )?;
        // As BuildKit, which refuses the definition before solving: a cached step would
        // otherwise pass unchecked.
        if !req.allow_network_host && uses_host_network(&lowered.definition) {
            return Err(BuildError::Request(
                "RUN --network=host needs the network.host entitlement: build with \
                 --allow network.host"
                    .to_string(),
            ));
        }

        let solver = make_solver(&root, &req, &images, &progress)?;
        let target_name = req.target.clone().unwrap_or_default();
        let records = RecordStore::open(root.path()).map_err(BuildError::Records)?;
        let target_id = cache::records::target_id(&source.file, &target_name);
        let opts = SolveOptions {
            no_cache: req.no_cache,
            no_cache_stages: req.no_cache_filter.clone(),
            contexts: context_inputs(&req, source.ignore)?,
            source_date_epoch: req.layer.source_date_epoch,
            previous: records.latest(&target_id),
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(BuildError::Runtime)?;
        // With --load, an engine must answer before the build spends its time.
        let docker = if req.load {
            let host = DockerHost::from_env()?;
            runtime.block_on(docker_load::ping(&host))?;
            Some(host)
        } else {
            None
        };
        let outcome = runtime.block_on(solver.solve(Arc::new(lowered.definition), opts));
        let record = |steps, success| BuildRecord {
            target_id: target_id.clone(),
            dockerfile: source.shown.clone(),
            target: target_name.clone(),
            started_ms,
            duration_ms: started.elapsed().as_millis() as u64,
            success,
            steps,
            image: None,
        };
        // A record that cannot be written costs a "why" explanation next time, never the build.
        let solve = match outcome {
            Ok(r) => r,
            Err(error) => {
                let _ = records.write(&record(Vec::new(), false));
                return Err(BuildError::Solve {
                    file: source.shown,
                    dockerfile: source.text,
                    source: Box::new(error),
                });
            }
        };
        let _ = records.write(&record(solve.steps.clone(), true));
        let cache_exports = cache_io::export(&root, &req.cache_to, &solve)?;

        let export_started = Instant::now();
        let image = store_image(&cas, &store, &solve, &req.labels, &req.tags)?;
        // Again with the image it made, so that `history` can tell how each of its steps went.
        let mut stored = record(solve.steps.clone(), true);
        stored.image = Some(image.id().to_string());
        let _ = records.write(&stored);
        export_outputs(&cas, &image, &req)?;
        registry_io::push(
            &runtime,
            &cas,
            &store,
            &image.manifest_descriptor.digest,
            &req.push_targets(),
            &progress,
        )?;
        let loaded = match &docker {
            Some(host) => load_into_docker(&runtime, &cas, &image, &req.tags, host)?,
            None => Vec::new(),
        };
        let export_ms = export_started.elapsed().as_millis() as u64;
        drop(shared);

        // Only a build that wrote something can have pushed the root over its limit; a fully
        // cached rebuild skips the size walk (one stat per file of every snapshot).
        let collected = if solve.steps.iter().any(|s| !s.cached) {
            cache_io::collect(&root, req.cache_max_size, &mut warnings)
        } else {
            None
        };
        Ok(BuildOutcome {
            image,
            names: req.tags,
            solve,
            export_ms,
            duration_ms: started.elapsed().as_millis() as u64,
            cache_imports,
            cache_exports,
            warnings,
            collected,
            loaded,
        })
    }
}

/// The Dockerfile of a build, read and parsed, with the context's ignore file.
struct DockerfileSource {
    /// Where it was read from.
    file: std::path::PathBuf,
    /// Its name as the user gave it, for messages.
    shown: String,
    /// Its text, for diagnostics that quote lines.
    text: String,
    parsed: parser::Dockerfile,
    /// The context's `.dockerignore` (or `<Dockerfile>.dockerignore`).
    ignore: frontend_dockerfile::dockerignore::DockerIgnore,
}

impl DockerfileSource {
    fn read(req: &BuildRequest) -> Result<DockerfileSource, BuildError> {
        if !req.context.is_dir() {
            return Err(BuildError::ContextNotADirectory(req.context.clone()));
        }
        let (file, text) = req.dockerfile.read(&req.context)?;
        let shown = file.display().to_string();
        let parsed = parser::parse(&text).map_err(|source| BuildError::Parse {
            file: shown.clone(),
            source,
        })?;
        let ignore = frontend_dockerfile::dockerignore::DockerIgnore::load_for_dockerfile(
            &req.context,
            &file,
        )
        .map_err(|e| BuildError::IgnoreFile {
            context: req.context.clone(),
            message: e.to_string(),
        })?;
        Ok(DockerfileSource {
            file,
            shown,
            text,
            parsed,
            ignore,
        })
    }
}

/// Lowers the Dockerfile with the request's build args, target, platform, RUN defaults and named
/// contexts; base images are resolved through `images`, the same resolver the solver uses.
fn lower_request(
    req: &BuildRequest,
    source: &DockerfileSource,
    images: &images::BaseImages,
    cas: &cache::ContentStore,
    store: &cache::ImageStore,
) -> Result<lower::Lowered, BuildError> {
    let mut named_contexts = std::collections::BTreeMap::new();
    for (name, c) in &req.named_contexts {
        let named = match c {
            BuildContext::Dir(_) => lower::NamedContext::Local,
            BuildContext::Image(reference) => lower::NamedContext::Image(
                engine::graph::normalize_image_reference(reference)
                    .unwrap_or_else(|_| reference.clone()),
            ),
            BuildContext::OciLayout { dir, digest } => lower::NamedContext::Image(
                images::oci_layout_image(cas, store, name, dir, digest.as_ref())?,
            ),
        };
        named_contexts.insert(name.clone(), named);
    }
    lower::lower(
        &source.parsed,
        &LowerOptions {
            file_name: source.shown.clone(),
            source: Some(&source.text),
            build_args: req.build_args.clone(),
            target: req.target.clone(),
            platform: req.platform.clone(),
            resolver: Some(images),
            run: lower::RunDefaults {
                network: req.network,
                extra_hosts: req.extra_hosts.clone(),
                shm_size: req.shm_size,
                ulimits: req.ulimits.clone(),
            },
            named_contexts,
            ..Default::default()
        },
    )
    .map_err(|d| BuildError::Lower(Box::new(d)))
}

/// The solver of a build: the local worker with the request's sandbox options.
fn make_solver(
    root: &cache::RootDir,
    req: &BuildRequest,
    images: &images::BaseImages,
    progress: &Arc<dyn ProgressSink>,
) -> Result<Solver, BuildError> {
    let worker = LocalWorker::new(
        root.clone(),
        WorkerOptions {
            layer: req.layer.clone(),
            secrets: req.secrets.clone(),
            helper: req.helper.clone(),
            allow_insecure: req.allow_insecure,
            allow_network_host: req.allow_network_host,
            ssh: req.ssh.clone(),
        },
    )
    .map_err(BuildError::Worker)?;
    Solver::new(
        root.clone(),
        Arc::new(images.clone()),
        Arc::new(worker),
        progress.clone(),
    )
    .map_err(|e| BuildError::Solver(Box::new(e)))
}

/// The local directories a build reads: the main context (`context`) and each named context
/// given as a directory, each filtered by its own ignore file.
fn context_inputs(
    req: &BuildRequest,
    ignore: frontend_dockerfile::dockerignore::DockerIgnore,
) -> Result<HashMap<String, ContextInput>, BuildError> {
    let mut contexts = HashMap::new();
    contexts.insert(
        "context".to_string(),
        ContextInput {
            dir: req.context.clone(),
            filter: Arc::new(request::IgnoreFilter(ignore)),
        },
    );
    for (name, c) in &req.named_contexts {
        if let BuildContext::Dir(dir) = c {
            let ignore =
                frontend_dockerfile::dockerignore::DockerIgnore::load(dir).map_err(|e| {
                    BuildError::IgnoreFile {
                        context: dir.clone(),
                        message: e.to_string(),
                    }
                })?;
            contexts.insert(
                name.clone(),
                ContextInput {
                    dir: dir.clone(),
                    filter: Arc::new(request::IgnoreFilter(ignore)),
                },
            );
        }
    }
    Ok(contexts)
}

/// Runs the `-o` exporters on the built image, each also under the names its spec adds.
fn export_outputs(
    cas: &cache::ContentStore,
    image: &Image,
    req: &BuildRequest,
) -> Result<(), BuildError> {
    for output in &req.outputs {
        if let Output::Export(spec) = output {
            let mut names = req.tags.clone();
            for n in &spec.names {
                names.push(
                    cache::Reference::parse(n).map_err(|source| BuildError::BadName {
                        name: n.clone(),
                        source,
                    })?,
                );
            }
            let named = NamedImage {
                image: image.clone(),
                names,
            };
            export::export(cas, &[named], spec).map_err(BuildError::Export)?;
        }
    }
    Ok(())
}

/// `--load`: streams the image as a docker-archive to the Docker engine at `host`; returns what
/// the engine reported.
fn load_into_docker(
    runtime: &tokio::runtime::Runtime,
    cas: &cache::ContentStore,
    image: &Image,
    names: &[cache::Reference],
    host: &DockerHost,
) -> Result<Vec<String>, BuildError> {
    let cas = cas.clone();
    let named = NamedImage {
        image: image.clone(),
        names: names.to_vec(),
    };
    let write = move |out: &mut dyn std::io::Write| {
        export::write_docker_archive(&cas, &[named], out)
            .map(drop)
            .map_err(|e| e.to_string())
    };
    Ok(runtime.block_on(docker_load::load(host, write))?)
}

/// BuildKit's build checks (the lint rules that need no context) and lowering's warnings, shown
/// as warnings; the checks fail the build under `# check=error=true`.
fn report_checks(
    dockerfile: &parser::Dockerfile,
    shown: &str,
    lowering: &[lower::Warning],
    progress: &dyn ProgressSink,
) -> Result<(), BuildError> {
    let checks = frontend_dockerfile::lint::build_checks(dockerfile);
    if !checks.is_empty() {
        let plural = if checks.len() == 1 { "" } else { "s" };
        let mut text = format!("{} warning{plural} found:", checks.len());
        for c in &checks {
            text.push_str(&format!(
                "\n - {}: {} ({shown}:{}:{})",
                c.rule, c.message, c.line, c.column
            ));
        }
        progress.emit(Event::Message { text });
        if frontend_dockerfile::lint::build_checks_are_errors(dockerfile) {
            return Err(BuildError::ChecksFailed);
        }
    }
    for w in lowering {
        let at = w.line.map(|l| format!("{shown}:{l}: ")).unwrap_or_default();
        progress.emit(Event::Message {
            text: format!("WARNING: {at}{}", w.message),
        });
    }
    Ok(())
}

/// Whether a step of `definition` runs in the host's network namespace.
fn uses_host_network(definition: &engine::graph::Definition) -> bool {
    definition.vertices().any(|v| {
        matches!(&v.op, engine::graph::Op::Exec(e) if e.network == engine::graph::NetworkMode::Host)
    })
}

/// Sets `--label`s in an image config document (`config.Labels`), replacing same-named ones:
/// BuildKit applies them to the target stage's config after every `LABEL`, and adds no history.
fn add_labels(config: &mut ImageConfig, labels: &std::collections::BTreeMap<String, String>) {
    let existing = config
        .config
        .get_or_insert_default()
        .labels
        .get_or_insert_default();
    for (k, v) in labels {
        existing.insert(k.clone(), v.clone());
    }
}

/// Writes the solved image's config and manifest into the content store and its names into the
/// image store.
fn store_image(
    cas: &cache::ContentStore,
    store: &cache::ImageStore,
    solve: &SolveResult,
    labels: &std::collections::BTreeMap<String, String>,
    names: &[cache::Reference],
) -> Result<Image, BuildError> {
    let mut config = solve.config.clone();
    if !labels.is_empty() {
        add_labels(&mut config, labels);
    }
    let layers = solve
        .layers
        .iter()
        .map(|l| LayerInfo {
            descriptor: cache::Descriptor::new(l.media_type.clone(), l.digest.clone(), l.size),
            diff_id: l.diff_id.clone(),
        })
        .collect::<Vec<_>>();
    let image = write_image(cas, &config, &layers).map_err(BuildError::Image)?;
    let entry = cache::ImageRecord::new(image.manifest_descriptor.clone(), image.id().clone());
    if names.is_empty() {
        store.put(entry).map_err(BuildError::ImageStore)?;
    } else {
        store
            .put_and_tag(entry, names)
            .map_err(BuildError::ImageStore)?;
    }
    Ok(image)
}
