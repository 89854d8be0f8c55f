//! COPY/ADD/WORKDIR file operations, applied through the sandbox helper on an overlay.
//!
//! The graph's file actions are translated into [`crate::fileops`] actions and sent, with the host
//! paths of their source roots, to the helper as an in-process action: it mounts the destination
//! overlay (and a read-only overlay per stage or image the step copies from), then applies the
//! actions with the rooted-path rules of `fileops`. The overlay's upper directory is the diff.

use super::LocalWorker;
use crate::executor::{
    self, Action, InProcessContext, InProcessError, Network, OverlayMount, SandboxSpec, UpperDir,
};
use crate::fileops::{self, CopyAction, MkdirAction, MkfileAction, RmAction, SourceRoots};
use crate::graph;
use crate::solver::progress::ProgressSink;
use crate::solver::{FileRequest, InputState, WorkError};
use cache::keys::LayerRef;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The in-process action name of file operations.
const FILEOP_KIND: &str = "builder.fileop";

/// What the helper receives.
#[derive(Serialize, Deserialize)]
struct FileJob {
    /// Source roots by name → host path (visible in the helper's mount namespace).
    sources: BTreeMap<String, PathBuf>,
    actions: Vec<fileops::FileAction>,
    /// The builder's expansion limit setting (`BUILDER_MAX_UNPACK`), if any: the helper's
    /// environment is cleared, and `ADD` of an archive reads it there.
    #[serde(default)]
    max_unpack: Option<String>,
}

/// Registers the file-operation and (rootless) layer-unpack handlers with the sandbox helper. Call it in `main` before
/// [`executor::maybe_run_helper`].
pub fn register_handlers() {
    executor::register_in_process(FILEOP_KIND, apply_job);
    executor::register_in_process(super::unpack::UNPACK_KIND, super::unpack::apply_job);
}

/// Why the helper could not start a file job (the actions' own failures are
/// [`fileops::FileOpError`]s).
#[derive(Debug, thiserror::Error)]
enum FileJobError {
    /// The payload is not a [`FileJob`].
    #[error("file job: {0}")]
    Decode(#[source] serde_json::Error),
    /// The spec mounted no overlay to apply the actions to.
    #[error("file job: no destination mount")]
    NoDestination,
}

/// The helper side: applies the job's actions on the destination overlay.
fn apply_job(ctx: &InProcessContext, payload: &[u8]) -> Result<(), InProcessError> {
    let job: FileJob = serde_json::from_slice(payload).map_err(FileJobError::Decode)?;
    let dest = ctx.mounts.first().ok_or(FileJobError::NoDestination)?;
    if let Some(limit) = &job.max_unpack {
        // The helper runs this one job on one thread; nothing reads the environment concurrently.
        std::env::set_var(fileops::archive::MAX_UNPACK_ENV, limit);
    }
    let mut roots = SourceRoots::new();
    for (name, path) in &job.sources {
        roots.insert(name.clone(), path.clone());
    }
    for action in &job.actions {
        fileops::apply(dest, &roots, action)?;
    }
    Ok(())
}

pub(super) fn run(
    worker: &LocalWorker,
    req: &FileRequest<'_>,
    _progress: &dyn ProgressSink,
) -> Result<LayerRef, WorkError> {
    let op = req.op;
    let base: Vec<LayerRef> = match op.base.and_then(|b| req.inputs.get(b as usize)) {
        Some(InputState::Layers(l)) => l.clone(),
        _ => Vec::new(),
    };
    let dir = worker.step_dir()?;
    let rootfs = dir.path().join("rootfs");
    let upper = dir.path().join("upper");
    let lowers = worker.lowers(&base)?;
    let mut overlays = vec![OverlayMount {
        lower: lowers.clone(),
        upper: Some(UpperDir {
            upper: upper.clone(),
            work: dir.path().join("work"),
        }),
        target: rootfs,
    }];
    let mut sources: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut actions = Vec::new();
    for action in &op.actions {
        match action {
            graph::FileAction::Copy(spec) => {
                // The build context is named as fileops names it, so errors say "build context".
                let root_name = match req.inputs.get(spec.source_input as usize) {
                    Some(InputState::Context { .. }) => fileops::CONTEXT.to_string(),
                    _ => format!("input-{}", spec.source_input),
                };
                let hidden = match req.inputs.get(spec.source_input as usize) {
                    Some(InputState::Context { hidden, .. }) => hidden.as_ref().clone(),
                    _ => Vec::new(),
                };
                let mut from_context = false;
                if !sources.contains_key(&root_name) {
                    match req.inputs.get(spec.source_input as usize) {
                        Some(InputState::Context { name, .. }) => {
                            from_context = true;
                            sources.insert(root_name.clone(), worker.context(name)?.dir);
                        }
                        Some(InputState::Layers(layers)) if layers.is_empty() => {
                            // A stage with no filesystem step: an empty directory (an overlay
                            // of nothing would stack one empty lower on itself, which the
                            // kernel refuses as a loop).
                            let empty = dir.path().join(&root_name);
                            std::fs::create_dir_all(&empty).map_err(|source| WorkError::Io {
                                what: "creating",
                                path: empty.clone(),
                                source,
                            })?;
                            sources.insert(root_name.clone(), empty);
                        }
                        Some(InputState::Layers(layers)) => {
                            let mnt = dir.path().join(&root_name);
                            overlays.push(OverlayMount {
                                lower: worker.lowers(layers)?,
                                upper: None,
                                target: mnt.clone(),
                            });
                            sources.insert(root_name.clone(), mnt);
                        }
                        None => {
                            return Err(WorkError::MissingInput(format!(
                                "copy source input {} is missing",
                                spec.source_input
                            )))
                        }
                    }
                } else {
                    from_context = matches!(
                        req.inputs.get(spec.source_input as usize),
                        Some(InputState::Context { .. })
                    );
                }
                let copy = CopyAction::from_spec(spec, root_name, from_context, hidden);
                actions.push(if spec.attempt_unpack {
                    fileops::FileAction::Add(copy)
                } else {
                    fileops::FileAction::Copy(copy)
                });
            }
            graph::FileAction::Mkfile {
                path,
                mode,
                data,
                owner,
            } => actions.push(fileops::FileAction::Mkfile(MkfileAction {
                path: path.clone(),
                workdir: "/".to_string(),
                data: data.clone(),
                mode: Some(*mode),
                chown: owner.clone(),
                mtime: None,
            })),
            graph::FileAction::Mkdir {
                path,
                mode,
                make_parents,
                owner,
            } => actions.push(fileops::FileAction::Mkdir(MkdirAction {
                path: path.clone(),
                workdir: "/".to_string(),
                mode: Some(*mode),
                parents: *make_parents,
                chown: owner.clone(),
            })),
            graph::FileAction::Rm {
                path,
                allow_not_found,
                ..
            } => actions.push(fileops::FileAction::Rm(RmAction {
                path: path.clone(),
                workdir: "/".to_string(),
                allow_not_found: *allow_not_found,
            })),
        }
    }
    let max_unpack = std::env::var(fileops::archive::MAX_UNPACK_ENV).ok();
    let job = FileJob {
        sources,
        actions,
        max_unpack,
    };
    let outcome = run_file_job(worker, overlays, &job, "running a file operation")?;
    if !outcome.success() {
        let message = outcome
            .tail
            .iter()
            .map(|l| l.text.clone())
            .collect::<Vec<_>>()
            .join("\n");
        return Err(WorkError::InSandbox(if message.is_empty() {
            format!("file operation failed with exit code {}", outcome.exit_code)
        } else {
            message
        }));
    }
    let layer = worker.commit_upper(&upper, &lowers)?;
    drop(dir);
    Ok(layer)
}

/// `ADD <url>` as a source: the body downloaded (and checked against `checksum`) into a fresh
/// directory as `filename` with mode 0600, as Docker does, and committed as a one-file layer.
/// Runs in-process: it only writes a new file into a directory of its own.
pub(super) fn fetch_http(
    worker: &LocalWorker,
    url: &str,
    checksum: Option<&str>,
    filename: &str,
) -> Result<(LayerRef, String), WorkError> {
    let dir = worker.step_dir()?;
    let upper = dir.path().join("upper");
    std::fs::create_dir_all(&upper).map_err(|source| WorkError::Io {
        what: "creating",
        path: upper.clone(),
        source,
    })?;
    let dest = if filename.is_empty() {
        "/".to_string()
    } else {
        format!("/{filename}")
    };
    let action = fileops::FileAction::Add(CopyAction {
        source_root: String::new(),
        sources: vec![url.to_string()],
        dest,
        workdir: "/".to_string(),
        chown: None,
        source_owner: None,
        chmod: None,
        exclude: Vec::new(),
        parents: false,
        checksum: checksum.map(str::to_string),
        hidden: Vec::new(),
        follow_symlinks: false,
        drop_xattrs: false,
    });
    fileops::apply(&upper, &SourceRoots::new(), &action)?;
    let mut body_digest = String::new();
    for entry in std::fs::read_dir(&upper)
        .map_err(|source| WorkError::Io {
            what: "reading",
            path: upper.clone(),
            source,
        })?
        .flatten()
    {
        let bytes = std::fs::read(entry.path()).map_err(|source| WorkError::Io {
            what: "reading the download",
            path: entry.path(),
            source,
        })?;
        body_digest = cache::Digest::of_bytes(&bytes).to_string();
    }
    let layer = worker.commit_upper(&upper, &[])?;
    drop(dir);
    Ok((layer, body_digest))
}

/// Fills `into`, a new cache directory, with `source` of a stage or image's layers, as BuildKit
/// starts a `RUN --mount=type=cache,from=...` cache from that filesystem: what is below
/// `source` is copied with its owners, modes and links. Runs through the sandbox helper, as a
/// COPY does, with `into` as the upper directory of an overlay of nothing.
pub(super) fn seed_cache_dir(
    worker: &LocalWorker,
    layers: &[LayerRef],
    source: &str,
    into: &std::path::Path,
) -> Result<(), WorkError> {
    let dir = worker.step_dir()?;
    let mnt = dir.path().join("seed-root");
    let src = dir.path().join("seed-source");
    let work = PathBuf::from(format!("{}.work", into.display()));
    std::fs::create_dir_all(&work).map_err(|source| WorkError::Io {
        what: "creating the overlay work directory of",
        path: work.clone(),
        source,
    })?;
    let overlays = vec![
        OverlayMount {
            lower: Vec::new(),
            upper: Some(UpperDir {
                upper: into.to_path_buf(),
                work: work.clone(),
            }),
            target: mnt,
        },
        OverlayMount {
            lower: worker.lowers(layers)?,
            upper: None,
            target: src.clone(),
        },
    ];
    let copy = CopyAction {
        source_root: "cache-source".to_string(),
        sources: vec![source.to_string()],
        dest: "/".to_string(),
        workdir: "/".to_string(),
        chown: None,
        source_owner: None,
        chmod: None,
        exclude: Vec::new(),
        parents: false,
        checksum: None,
        hidden: Vec::new(),
        follow_symlinks: true,
        drop_xattrs: false,
    };
    let job = FileJob {
        sources: BTreeMap::from([("cache-source".to_string(), src)]),
        actions: vec![fileops::FileAction::Copy(copy)],
        max_unpack: None,
    };
    let outcome = run_file_job(worker, overlays, &job, "seeding a cache mount");
    let _ = std::fs::remove_dir_all(&work);
    let outcome = outcome?;
    if !outcome.success() {
        let message: Vec<String> = outcome.tail.iter().map(|l| l.text.clone()).collect();
        return Err(WorkError::InSandbox(format!(
            "seeding the cache from {source}: {}",
            message.join("\n")
        )));
    }
    Ok(())
}

/// Runs `job` in the sandbox helper over `overlays` (file operations run as root of the
/// sandbox, rootless builds included). `what` names the work in errors.
fn run_file_job(
    worker: &LocalWorker,
    overlays: Vec<OverlayMount>,
    job: &FileJob,
    what: &'static str,
) -> Result<executor::ExecOutcome, WorkError> {
    let payload = serde_json::to_vec(job).map_err(|source| WorkError::Encode { what, source })?;
    let spec = SandboxSpec {
        overlays,
        mounts: Vec::new(),
        network: Network::Host,
        hostname: "buildkitsandbox".to_string(),
        action: Action::InProcess {
            kind: FILEOP_KIND.to_string(),
            payload,
        },
    };
    let mut sink = |_: &executor::OutputLine| {};
    worker
        .runner()?
        .run(&spec, &mut sink)
        .map_err(|source| WorkError::Sandbox { what, source })
}
