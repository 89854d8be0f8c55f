//! `builder run`: an image's `ENTRYPOINT`/`CMD` run without Docker, in the sandbox `RUN` steps
//! use ([`crate::executor`]), on a throw-away writable layer over the image's read-only layer
//! snapshots.
//!
//! Promises:
//! - the image never changes: writes land in an upper directory of the run's own (under the
//!   root's `tmp`), deleted when the run ends, so two runs of one image never see each other's
//!   writes;
//! - while a run is live its image is leased ([`cache::containers`]), so `rmi` refuses to remove
//!   it unless forced, and it holds the root's shared lock, so garbage collection waits for it
//!   instead of deleting the snapshots under it;
//! - the container's exit status is the run's ([`ContainerExit`]); signals this process gets
//!   (`SIGINT`, `SIGTERM`, `SIGHUP`, `SIGQUIT`, `SIGUSR1`, `SIGUSR2`, and `SIGWINCH` for a
//!   terminal) are passed on to the container's pid 1.

use crate::executor::{
    self, Action, BindAccess, ExecError, ExecSpec, MountKind, MountSpec, Network, OverlayMount,
    SandboxSpec, StepIo, StepSignals, StepUser, UpperDir,
};
use crate::image::{read_image, Image};
use crate::solver::config::{env_of, merge_env, resolve_workdir, DEFAULT_PATH};
use crate::solver::WorkError;
use crate::worker::{LocalWorker, WorkerOptions};
use cache::keys::LayerRef;
use std::path::PathBuf;

/// A host path bound into the container (`-v HOST:CONTAINER[:ro]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    /// Host file or directory (must exist).
    pub source: PathBuf,
    /// Absolute path inside the container.
    pub target: String,
    /// Writes fail (`:ro`) instead of reaching the host.
    pub read_only: bool,
}

/// How to run the image: `docker run`'s flags that `builder run` has.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Arguments replacing the image's `CMD` (none: the image's).
    pub command: Vec<String>,
    /// Replaces the image's `ENTRYPOINT` (`Some("")` clears it); as in Docker, the image's
    /// `CMD` is then not used.
    pub entrypoint: Option<String>,
    /// Environment set over the image's (`-e KEY=VALUE`).
    pub env: Vec<(String, String)>,
    /// Host paths bound in.
    pub volumes: Vec<Volume>,
    /// Working directory (`-w`; default the image's `WORKDIR`, else `/`).
    pub workdir: Option<String>,
    /// User (`-u name|uid[:group|gid]`; default the image's `USER`, else root).
    pub user: Option<String>,
    /// Network: [`Network::Nat`] (a network of its own behind user-mode NAT, the default),
    /// [`Network::Host`] or [`Network::None`].
    pub network: Network,
    /// Standard streams: inherited (with or without stdin) or a terminal of its own.
    pub io: StepIo,
    /// Host name (default: the first 12 digits of the container id).
    pub hostname: Option<String>,
}

/// How the container ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerExit {
    /// Its exit code; 128 + the signal number when a signal killed it.
    pub code: i32,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
}

/// Why a container could not run (a container that runs and exits non-zero is a
/// [`ContainerExit`]).
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// Opening or locking the root.
    #[error("opening the builder root: {0}")]
    Root(#[from] cache::lock::LockError),
    /// The image store could not be read, or has no such image.
    #[error("{0}")]
    Store(#[from] cache::ImageStoreError),
    /// The image's manifest or config could not be read.
    #[error("reading image {reference}: {source}")]
    Image {
        /// The image as asked for.
        reference: String,
        /// What failed.
        source: crate::image::ImageError,
    },
    /// Neither the image nor the command line names a program.
    #[error("no command specified: the image has no ENTRYPOINT or CMD, and none was given")]
    NoCommand,
    /// A flag value that cannot work.
    #[error("{0}")]
    Invalid(String),
    /// A `-v` source that cannot be bound.
    #[error("volume {}: {message}", .host.display())]
    Volume {
        /// The host path.
        host: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Taking the image's lease.
    #[error("marking the image in use: {0}")]
    Lease(#[from] cache::containers::ContainerLeaseError),
    /// Preparing the layers or the writable layer.
    #[error("{0}")]
    Prepare(#[from] WorkError),
    /// The sandbox could not start the container.
    #[error("{0}")]
    Sandbox(#[from] ExecError),
}

impl ContainerError {
    /// The exit code `docker run` gives for this failure: 127 when the program is not found,
    /// 126 when it cannot be executed, 125 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            ContainerError::Sandbox(ExecError::ExecutableNotFound { .. }) => 127,
            ContainerError::Sandbox(ExecError::Exec { .. }) => 126,
            _ => 125,
        }
    }
}

/// The signals passed on to the container.
const FORWARDED: [libc::c_int; 7] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGWINCH,
];

/// Runs `image` (a name, id or short id in `root`'s store) with `options` until it exits.
/// Call it from inside a tokio runtime; the sandbox itself runs on the blocking pool.
pub async fn run(
    root: cache::RootDir,
    image: &str,
    options: RunOptions,
) -> Result<ContainerExit, ContainerError> {
    let _shared = root.lock_shared()?;
    let store = cache::ImageStore::open(root.images_dir())?;
    let cas = root.content_store()?;
    let entry = store.resolve(image)?;
    let manifest = entry.record.target.digest.clone();
    let image_data = read_image(&cas, &manifest, &cache::Platform::host()).map_err(|source| {
        ContainerError::Image {
            reference: image.to_string(),
            source,
        }
    })?;
    let lease = cache::containers::register(&root, &manifest)?;
    let id = lease.container().id.clone();
    let worker = LocalWorker::new(root, WorkerOptions::default())?;

    let signals = StepSignals::new();
    let mut forwarders = Vec::new();
    for signal in FORWARDED {
        let Ok(mut stream) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(signal))
        else {
            continue;
        };
        let queue = signals.clone();
        forwarders.push(tokio::spawn(async move {
            while stream.recv().await.is_some() {
                queue.send(signal);
            }
        }));
    }
    let result = tokio::task::spawn_blocking(move || {
        let exit = run_blocking(&worker, &image_data, &options, &id, signals);
        drop(lease);
        exit
    })
    .await
    .unwrap_or_else(|e| Err(ContainerError::Invalid(format!("container task: {e}"))));
    for forwarder in forwarders {
        forwarder.abort();
    }
    result
}

fn run_blocking(
    worker: &LocalWorker,
    image: &Image,
    options: &RunOptions,
    id: &str,
    signals: StepSignals,
) -> Result<ContainerExit, ContainerError> {
    let c = image.config.config.clone().unwrap_or_default();
    let args = command_line(
        c.entrypoint.clone().unwrap_or_default(),
        c.cmd.clone().unwrap_or_default(),
        options.entrypoint.as_deref(),
        &options.command,
    )?;

    let layers: Vec<LayerRef> = image
        .layers()
        .into_iter()
        .map(|l| LayerRef {
            digest: l.descriptor.digest.clone(),
            diff_id: l.diff_id,
            size: l.descriptor.size,
            media_type: l.descriptor.media_type.clone(),
        })
        .collect();
    let lowers = worker.lowers(&layers)?;
    let dir = worker.step_dir()?;
    let rootfs = dir.path().join("rootfs");
    let overlays = vec![OverlayMount {
        lower: lowers.clone(),
        upper: Some(UpperDir {
            upper: dir.path().join("upper"),
            work: dir.path().join("work"),
        }),
        target: rootfs.clone(),
    }];

    let hostname = options
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12].to_string());
    let mut mounts = Vec::new();
    for volume in &options.volumes {
        mounts.push(volume_mount(volume)?);
    }
    if lowers.iter().any(|l| l.join("etc").is_dir()) {
        // Before the volumes, so that `-v FILE:/etc/hosts` wins as in Docker.
        let mut files = executor::network_files(options.network, &hostname);
        files.push(MountSpec {
            target: PathBuf::from("/etc/hostname"),
            kind: MountKind::File {
                contents: format!("{hostname}\n").into_bytes(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        });
        files.retain(|f| {
            !options
                .volumes
                .iter()
                .any(|v| f.target == std::path::Path::new(&v.target))
        });
        mounts.splice(0..0, files);
    }

    let mut env = env_of(&image.config);
    let mut set = vec![("HOSTNAME".to_string(), hostname.clone())];
    if matches!(options.io, StepIo::Terminal { .. }) {
        set.push(("TERM".to_string(), "xterm".to_string()));
    }
    merge_env(&mut env, &set);
    merge_env(&mut env, &options.env);
    if !env.iter().any(|(k, _)| k == "PATH") {
        let (k, v) = DEFAULT_PATH.split_once('=').unwrap_or(("PATH", ""));
        env.insert(0, (k.to_string(), v.to_string()));
    }
    let image_workdir = c
        .working_dir
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("/");
    let cwd = match &options.workdir {
        Some(w) if !w.starts_with('/') => {
            return Err(ContainerError::Invalid(format!(
                "the working directory '{w}' is invalid, it needs to be an absolute path"
            )))
        }
        Some(w) => resolve_workdir("/", w),
        None => image_workdir.to_string(),
    };
    let user = options
        .user
        .clone()
        .unwrap_or_else(|| c.user.clone().unwrap_or_default());
    if !env.iter().any(|(k, v)| k == "HOME" && !v.is_empty()) {
        let home = crate::worker::exec::home_for(worker, &lowers, &user);
        env.retain(|(k, _)| k != "HOME");
        env.push(("HOME".into(), home));
    }

    let spec = SandboxSpec {
        overlays,
        mounts,
        network: options.network,
        hostname,
        action: Action::Exec(ExecSpec {
            rootfs,
            args,
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: PathBuf::from(cwd),
            user: StepUser::Named(user),
            insecure: false,
            // Docker's defaults: a 64 MiB /dev/shm, the limits builder itself runs with.
            shm_size_bytes: None,
            rlimits: Vec::new(),
        }),
    };
    let runner = worker.runner()?.io(options.io).signals(signals);
    let outcome = runner.run(&spec, &mut |_| {})?;
    // The writable layer goes with `dir`.
    drop(dir);
    Ok(ContainerExit {
        code: outcome.exit_code,
        signal: outcome.signal,
    })
}

/// The container's argv, as Docker makes it: the entrypoint (the image's, or `--entrypoint`'s
/// single word, or none when that is empty) followed by the command line's arguments, else by
/// the image's `CMD` unless `--entrypoint` was given.
fn command_line(
    image_entrypoint: Vec<String>,
    image_cmd: Vec<String>,
    entrypoint: Option<&str>,
    command: &[String],
) -> Result<Vec<String>, ContainerError> {
    let (entry, cmd) = match entrypoint {
        Some(e) => (
            if e.is_empty() {
                Vec::new()
            } else {
                vec![e.to_string()]
            },
            Vec::new(),
        ),
        None => (image_entrypoint, image_cmd),
    };
    let mut args = entry;
    if command.is_empty() {
        args.extend(cmd);
    } else {
        args.extend(command.iter().cloned());
    }
    if args.is_empty() {
        return Err(ContainerError::NoCommand);
    }
    Ok(args)
}

fn volume_mount(volume: &Volume) -> Result<MountSpec, ContainerError> {
    let bad = |message: String| ContainerError::Volume {
        host: volume.source.clone(),
        message,
    };
    if !volume.target.starts_with('/') {
        return Err(bad(format!(
            "the container path {:?} is not absolute",
            volume.target
        )));
    }
    if !volume.source.is_absolute() {
        return Err(bad("the host path is not absolute".to_string()));
    }
    let source = std::fs::canonicalize(&volume.source).map_err(|e| bad(e.to_string()))?;
    Ok(MountSpec {
        target: PathBuf::from(&volume.target),
        kind: MountKind::Bind {
            source,
            access: if volume.read_only {
                BindAccess::ReadOnly
            } else {
                BindAccess::ReadWrite
            },
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    #[test]
    fn argv_follows_docker() {
        let ep = v(&["/entry"]);
        let cmd = v(&["default"]);
        assert_eq!(
            command_line(ep.clone(), cmd.clone(), None, &[]).unwrap(),
            v(&["/entry", "default"])
        );
        assert_eq!(
            command_line(ep.clone(), cmd.clone(), None, &v(&["x"])).unwrap(),
            v(&["/entry", "x"])
        );
        // --entrypoint drops the image's CMD.
        assert_eq!(
            command_line(ep.clone(), cmd.clone(), Some("/bin/echo"), &[]).unwrap(),
            v(&["/bin/echo"])
        );
        assert_eq!(
            command_line(ep, cmd.clone(), Some(""), &v(&["ls"])).unwrap(),
            v(&["ls"])
        );
        assert!(matches!(
            command_line(Vec::new(), Vec::new(), None, &[]),
            Err(ContainerError::NoCommand)
        ));
        assert_eq!(
            command_line(Vec::new(), cmd, None, &[]).unwrap(),
            v(&["default"])
        );
    }
}
