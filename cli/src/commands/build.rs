//! `builder build`: Dockerfile → graph → solve → image in the store and the requested outputs.

use super::registry_build::{self, RegistryPuller};
use crate::progress::{self, ProgressMode};
use anyhow::{bail, Context, Result};
use clap::Args;
use engine::export::{self, ExportSpec, NamedImage};
use engine::graph::Platform;
use engine::image::{write_image, ImageConfig, LayerInfo};
use engine::solver::progress::{Event, ProgressSink};
use engine::solver::{ContextInput, SolveError, SolveOptions, Solver, WorkError};
use engine::source::context::PathFilter;
use engine::source::image::StoreImages;
use engine::worker::{LocalWorker, Secret, WorkerOptions};
use frontend_dockerfile::dockerignore::DockerIgnore;
use frontend_dockerfile::lower::{self, BaseImageConfig, BaseImageResolver, LowerOptions};
use frontend_dockerfile::parser;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Arguments of `builder build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from stdin).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Name (and optionally tag) of the image, `name:tag`; may be given several times.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// A build argument, `NAME=VALUE` (or `NAME` to take it from the environment).
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// Do not use the cache: run every step.
    #[arg(long)]
    pub no_cache: bool,
    /// Do not use the cache for the steps of these stages.
    #[arg(long = "no-cache-filter", value_name = "STAGE")]
    pub no_cache_filter: Vec<String>,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// Print only the image id.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Outputs: `type=oci|docker|tar|local,dest=PATH` (dest `-` is stdout), a directory, or
    /// `type=registry,name=NAME` (push).
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// A secret for `RUN --mount=type=secret`: `id=NAME,src=FILE` or `id=NAME,env=VAR`.
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// Grants an entitlement: `security.insecure` lets `RUN --security=insecure` steps run
    /// without the seccomp filter and with every capability. (`network.host` is accepted as
    /// BuildKit spells it; `RUN --network=host` needs no grant here.)
    #[arg(
        long = "allow",
        value_name = "ENTITLEMENT",
        value_delimiter = ',',
        value_parser = ["security.insecure", "network.host"]
    )]
    pub allow: Vec<String>,
    /// The platform to build for (`linux/amd64`; default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Write the image id to this file.
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// Write build metadata (digests, names, the steps with cache results) as JSON to this file.
    #[arg(long)]
    pub metadata_file: Option<PathBuf>,
    /// Layer compression: gzip (default), zstd or uncompressed.
    #[arg(long, default_value = "gzip")]
    pub compression: String,
    /// Compression level (gzip 0-9, zstd 1-22). gzip defaults to 1: local builds compress every
    /// new layer, and level 1 is about 2.4x faster than 6 for about 9% more bytes; use 6 or 9
    /// for images meant for distribution.
    #[arg(long, value_name = "LEVEL")]
    pub compression_level: Option<i32>,
    /// Always check the registry for a newer version of each base image.
    #[arg(long)]
    pub pull: bool,
    /// Push the image to the registry each `-t` name points at.
    #[arg(long)]
    pub push: bool,
    /// Import build cache: `type=local,src=DIR[,mounts=true]` or `type=registry,ref=NAME`.
    #[arg(long = "cache-from", value_name = "SPEC")]
    pub cache_from: Vec<String>,
    /// Export build cache: `type=local,dest=DIR[,mode=min|max][,mounts=true]` or
    /// `type=registry,ref=NAME[,mode=min|max]`.
    #[arg(long = "cache-to", value_name = "SPEC")]
    pub cache_to: Vec<String>,
    /// After the build, collect cache down to this size if the root is bigger (`0`: never).
    #[arg(
        long,
        env = "BUILDER_CACHE_MAX_SIZE",
        default_value = "10GB",
        value_name = "SIZE"
    )]
    pub cache_max_size: String,
    /// The build context directory.
    pub context: PathBuf,
}

/// Lets the context walk ask the `.dockerignore` rules.
struct IgnoreFilter(DockerIgnore);

impl PathFilter for IgnoreFilter {
    fn is_excluded(&self, rel: &str) -> bool {
        self.0
            .matcher()
            .matches_or_parent_matches(rel)
            .unwrap_or(false)
    }
    fn must_descend(&self, rel_dir: &str) -> bool {
        self.0.could_match_inside(rel_dir)
    }
}

/// Tells lowering about base images from the store (env, workdir, user, shell, ONBUILD).
struct StoreResolver<'a>(&'a StoreImages);

impl BaseImageResolver for StoreResolver<'_> {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<BaseImageConfig>, String> {
        use engine::solver::ImageSource;
        let Ok(image) = self.0.resolve(reference, platform) else {
            return Ok(None);
        };
        let c = &image.config["config"];
        let strings = |v: &serde_json::Value| -> Vec<String> {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        Ok(Some(BaseImageConfig {
            env: engine::solver::config::env_of(&image.config),
            working_dir: c["WorkingDir"].as_str().unwrap_or("").to_string(),
            user: c["User"].as_str().unwrap_or("").to_string(),
            shell: strings(&c["Shell"]),
            onbuild: strings(&c["OnBuild"]),
        }))
    }
}

fn parse_secret(spec: &str) -> Result<(String, Secret)> {
    let mut id = None;
    let mut src = None;
    let mut env = None;
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("id", v)) => id = Some(v.to_string()),
            Some(("src" | "source", v)) => src = Some(v.to_string()),
            Some(("env", v)) => env = Some(v.to_string()),
            Some(("type", _)) => {}
            _ => bail!("--secret {spec:?}: expected id=NAME,src=FILE or id=NAME,env=VAR"),
        }
    }
    let id = id.with_context(|| format!("--secret {spec:?}: missing id="))?;
    let bytes = match (src, env) {
        (Some(path), _) => {
            std::fs::read(&path).with_context(|| format!("--secret {id}: reading {path}"))?
        }
        (None, Some(var)) => std::env::var(&var)
            .with_context(|| format!("--secret {id}: environment variable {var} is not set"))?
            .into_bytes(),
        // Docker's default: an environment variable named like the id.
        (None, None) => std::env::var(&id)
            .with_context(|| format!("--secret {id}: give src=FILE or env=VAR"))?
            .into_bytes(),
    };
    Ok((id, Secret { bytes }))
}

/// Progress that forwards to the chosen renderer and remembers failures' output.
struct Tee {
    inner: Box<dyn ProgressSink>,
}

impl ProgressSink for Tee {
    fn emit(&self, event: Event) {
        self.inner.emit(event);
    }
}

/// Runs the build.
pub fn run(args: &BuildArgs, root: Option<&Path>) -> Result<()> {
    let started = Instant::now();
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let context = args.context.clone();
    if !context.is_dir() {
        bail!("build context {} is not a directory", context.display());
    }
    let (file, src) = match &args.file {
        Some(f) if f.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the Dockerfile from stdin")?;
            (PathBuf::from("Dockerfile"), s)
        }
        other => {
            let f = other.clone().unwrap_or_else(|| context.join("Dockerfile"));
            let bytes = std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?;
            (f, String::from_utf8_lossy(&bytes).into_owned())
        }
    };
    let shown = file.display().to_string();
    let dockerfile = match parser::parse(&src) {
        Ok(d) => d,
        Err(e) => bail!("{shown}:{e}"),
    };

    let push_targets = registry_build::push_targets(args.push, &args.tags, &args.outputs)?;
    let root = cache::Root::open_or_default(root).context("opening the builder root directory")?;
    let _shared = root.lock_shared().context("locking the builder root")?;
    let cache_to = super::cache::parse_specs(&args.cache_to, true)?;
    let cache_max_size = super::cache::parse_max_size(&args.cache_max_size)?;
    super::cache::import_caches(
        &root,
        &super::cache::parse_specs(&args.cache_from, false)?,
        args.quiet,
    )?;
    let cas = root.content_store().context("opening the content store")?;
    let images = cache::ImageStore::open(root.images_dir()).context("opening the image store")?;
    let mode = if args.quiet {
        ProgressMode::Quiet
    } else {
        args.progress
    };
    let sink: Arc<dyn ProgressSink> = Arc::new(Tee {
        inner: progress::sink(mode),
    });
    let puller = RegistryPuller::new(cas.clone(), images.clone(), sink.clone());
    let image_source =
        StoreImages::new(images.clone(), cas.clone()).with_puller(Arc::new(puller), args.pull);

    let mut build_args = BTreeMap::new();
    for text in &args.build_args {
        match lower::parse_build_arg(text) {
            Ok(Some((k, v))) => {
                build_args.insert(k, v);
            }
            Ok(None) => {}
            Err(d) => bail!("{d}"),
        }
    }
    let platform: Option<Platform> = match &args.platform {
        Some(p) => Some(p.parse().with_context(|| format!("--platform {p}"))?),
        None => None,
    };
    let ignore = DockerIgnore::load_for_dockerfile(&context, &file)
        .with_context(|| format!("reading the ignore file of {}", context.display()))?;
    let resolver = StoreResolver(&image_source);
    let lowered = lower::lower(
        &dockerfile,
        &LowerOptions {
            file_name: shown.clone(),
            source: Some(&src),
            build_args,
            target: args.target.clone(),
            platform: platform.clone(),
            resolver: Some(&resolver),
            ..Default::default()
        },
    )
    .map_err(|d| anyhow::anyhow!("{d}"))?;

    // BuildKit's build checks: the lint rules that need no context, printed as warnings (and
    // failing the build under `# check=error=true`).
    let checks = frontend_dockerfile::lint::build_checks(&dockerfile);
    if !checks.is_empty() {
        let mut text = format!(
            "{} warning{} found:",
            checks.len(),
            if checks.len() == 1 { "" } else { "s" }
        );
        for c in &checks {
            text.push_str(&format!(
                "\n - {}: {} ({shown}:{}:{})",
                c.rule, c.message, c.line, c.column
            ));
        }
        sink.emit(Event::Message { text });
        if frontend_dockerfile::lint::build_checks_are_errors(&dockerfile) {
            bail!("build checks failed (the Dockerfile sets check=error=true)");
        }
    }
    for w in &lowered.warnings {
        let at = w.line.map(|l| format!("{shown}:{l}: ")).unwrap_or_default();
        sink.emit(Event::Message {
            text: format!("WARNING: {at}{}", w.message),
        });
    }

    let mut secrets = HashMap::new();
    for spec in &args.secrets {
        let (id, secret) = parse_secret(spec)?;
        secrets.insert(id, secret);
    }
    // `-o ...,compression=zstd[,compression-level=N]` picks how this build's layers are written
    // (they are compressed once, when made), as `--compression` does.
    let mut compression_name = args.compression.clone();
    let mut compression_level = args.compression_level;
    for spec in &args.outputs {
        if let Ok(spec) = ExportSpec::parse(spec) {
            if let Some(c) = spec.attrs.get("compression") {
                compression_name = c.clone();
            }
            if let Some(l) = spec.attrs.get("compression-level") {
                compression_level = Some(
                    l.parse()
                        .with_context(|| format!("compression-level={l:?} is not a number"))?,
                );
            }
        }
    }
    let compression = match compression_name.as_str() {
        "gzip" => engine::layer::LayerCompression::Gzip,
        "zstd" => engine::layer::LayerCompression::Zstd,
        "uncompressed" | "none" => engine::layer::LayerCompression::None,
        other => bail!("--compression {other:?}: expected gzip, zstd or uncompressed"),
    };
    let source_date_epoch = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse::<i64>().ok());
    let worker = LocalWorker::new(
        root.clone(),
        WorkerOptions {
            layer: engine::layer::LayerOptions {
                compression,
                level: compression_level.or(match compression {
                    engine::layer::LayerCompression::Gzip => Some(1),
                    _ => None,
                }),
                source_date_epoch,
                ..Default::default()
            },
            secrets,
            helper: None,
            allow_insecure: args.allow.iter().any(|a| a == "security.insecure"),
        },
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let solver = Solver::new(
        root.clone(),
        Arc::new(image_source),
        Arc::new(worker),
        sink.clone(),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;

    let target_name = args.target.clone().unwrap_or_default();
    let records =
        cache::records::RecordStore::open(root.path()).context("opening build records")?;
    let target_id = cache::records::target_id(&file, &target_name);
    let mut contexts = HashMap::new();
    contexts.insert(
        "context".to_string(),
        ContextInput {
            dir: context.clone(),
            filter: Arc::new(IgnoreFilter(ignore)),
        },
    );
    let opts = SolveOptions {
        no_cache: args.no_cache,
        no_cache_stages: args.no_cache_filter.iter().cloned().collect::<HashSet<_>>(),
        contexts,
        source_date_epoch,
        previous: records.latest(&target_id),
    };
    let definition = Arc::new(lowered.definition);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(solver.solve(definition, opts));
    let record = |steps, success| cache::records::BuildRecord {
        target_id: target_id.clone(),
        dockerfile: shown.clone(),
        target: target_name.clone(),
        started_ms,
        duration_ms: started.elapsed().as_millis() as u64,
        success,
        steps,
    };
    let result = match outcome {
        Ok(r) => r,
        Err(e) => {
            let _ = records.write(&record(Vec::new(), false));
            return Err(render_solve_error(e, &shown, &src));
        }
    };
    let _ = records.write(&record(result.steps.clone(), true));
    super::cache::export_caches(&root, &cache_to, &result, args.quiet)?;

    // The image: config and manifest into the content store, names into the image store.
    let export_started = Instant::now();
    let config: ImageConfig =
        serde_json::from_value(result.config.clone()).context("building the image config")?;
    let layers: Vec<LayerInfo> = result
        .layers
        .iter()
        .map(|l| -> Result<LayerInfo> {
            Ok(LayerInfo {
                descriptor: cache::Descriptor::new(l.media_type.clone(), l.digest.parse()?, l.size),
                diff_id: l.diff_id.parse()?,
            })
        })
        .collect::<Result<_>>()?;
    let image = write_image(&cas, &config, &layers).context("writing the image")?;
    let mut names = Vec::new();
    for tag in &args.tags {
        names.push(cache::Reference::parse(tag).with_context(|| format!("invalid tag {tag:?}"))?);
    }
    let record_entry =
        cache::ImageRecord::new(image.manifest_descriptor.clone(), image.id().clone());
    if names.is_empty() {
        images.put(record_entry).context("storing the image")?;
    } else {
        images
            .put_and_tag(record_entry, &names)
            .context("storing the image")?;
    }
    for spec in &args.outputs {
        if registry_build::registry_output(spec)?.is_some() {
            continue;
        }
        let spec = ExportSpec::parse(spec).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut out_names = names.clone();
        for n in &spec.names {
            out_names
                .push(cache::Reference::parse(n).with_context(|| format!("invalid name {n:?}"))?);
        }
        export::export(
            &cas,
            &[NamedImage {
                image: image.clone(),
                names: out_names,
            }],
            &spec,
        )
        .map_err(|e| anyhow::anyhow!("exporting: {e}"))?;
    }
    registry_build::push_image(
        &runtime,
        &cas,
        &images,
        &image.manifest_descriptor.digest,
        &push_targets,
        &sink,
    )?;
    let id = image.id().to_string();
    if let Some(path) = &args.iidfile {
        std::fs::write(path, &id).with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.metadata_file {
        let steps: Vec<serde_json::Value> = result
            .steps
            .iter()
            .map(|s| {
                serde_json::json!({
                    "name": s.name,
                    "stage": s.stage,
                    "line": s.line,
                    "end_line": s.end_line,
                    "cached": s.cached,
                    "reason": s.reason,
                    "duration_ms": s.duration_ms,
                    "key": s.key,
                })
            })
            .collect();
        let metadata = serde_json::json!({
            "containerimage.digest": image.manifest_descriptor.digest.to_string(),
            "containerimage.config.digest": id,
            "containerimage.descriptor": {
                "mediaType": image.manifest_descriptor.media_type,
                "digest": image.manifest_descriptor.digest.to_string(),
                "size": image.manifest_descriptor.size,
            },
            "image.name": names.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
            "builder.steps": steps,
            "builder.timings": {
                "walk_ms": result.timings.walk_ms,
                "hash_ms": result.timings.hash_ms,
                "keys_ms": result.timings.keys_ms,
                "execute_ms": result.timings.execute_ms,
                "export_ms": export_started.elapsed().as_millis() as u64,
            },
            "builder.duration_ms": started.elapsed().as_millis() as u64,
        });
        std::fs::write(path, serde_json::to_vec_pretty(&metadata)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if args.quiet {
        println!("{id}");
    } else {
        let named = if names.is_empty() {
            String::new()
        } else {
            format!(
                " as {}",
                names
                    .iter()
                    .map(|n| n.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        eprintln!(
            "built {}{named} in {:.1}s",
            &id,
            started.elapsed().as_secs_f64()
        );
    }
    drop(_shared);
    // Only a build that wrote something can have pushed the root over its limit; a fully cached
    // rebuild skips the size walk (one stat per file of every snapshot).
    if result.steps.iter().any(|s| !s.cached) {
        super::cache::auto_collect(&root, cache_max_size, args.quiet)?;
    }
    Ok(())
}

/// Renders a failed build: the step, its last output lines, the exit code, and the Dockerfile
/// lines with a caret.
fn render_solve_error(e: SolveError, file: &str, src: &str) -> anyhow::Error {
    let SolveError::Step {
        name,
        line_range,
        source,
    } = &e
    else {
        return anyhow::anyhow!("{e}");
    };
    let mut out = String::new();
    if let WorkError::ExitCode { last_lines, .. } = source {
        if !last_lines.is_empty() {
            out.push_str("------\n");
            let skip = last_lines.len().saturating_sub(10);
            for l in &last_lines[skip..] {
                out.push_str(l);
                out.push('\n');
            }
            out.push_str("------\n");
        }
    }
    if let Some((start, end)) = line_range {
        out.push_str(&format!("{file}:{start}\n"));
        let lines: Vec<&str> = src.lines().collect();
        for n in *start..=*end {
            if let Some(text) = lines.get(n.saturating_sub(1)) {
                out.push_str(&format!(" {n:>4} | {text}\n"));
            }
        }
        if let Some(text) = lines.get(start.saturating_sub(1)) {
            let indent = text.len() - text.trim_start().len();
            out.push_str(&format!("      | {}^\n", " ".repeat(indent)));
        }
    }
    out.push_str(&format!("ERROR: failed to build: {name}: {source}"));
    anyhow::anyhow!(out)
}
