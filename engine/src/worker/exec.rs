//! RUN: a sandboxed process on an overlay of the stage's layers.

use super::LocalWorker;
use crate::executor::{
    Action, BindAccess, ExecSpec, MountKind as SandboxMount, MountSpec as SandboxMountSpec,
    Network, OverlayMount, SandboxSpec, UpperDir,
};
use crate::graph::{CacheSharing, MountKind, NetworkMode, SecurityMode};
use crate::solver::config::{env_of, merge_env, resolve_workdir, DEFAULT_PATH};
use crate::solver::progress::ProgressSink;
use crate::solver::{ExecRequest, InputState, WorkError};
use cache::keys::LayerRef;
use std::path::{Path, PathBuf};

/// Mount points of the kernel filesystems every RUN step has.
const RUNTIME_DIRS: [&str; 3] = ["/proc", "/dev", "/sys"];

/// The host name inside RUN steps, as BuildKit names it.
const HOSTNAME: &str = "buildkitsandbox";

/// Cleans a path inside a mount source: no `..` above its root, no leading `/`.
fn clean_inside(path: &str) -> Result<String, WorkError> {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                if parts.pop().is_none() {
                    return Err(WorkError::MountOutsideRoot {
                        path: path.to_string(),
                    });
                }
            }
            p => parts.push(p),
        }
    }
    Ok(parts.join("/"))
}

/// Resolves `rel` under `root` on the host and checks the result stays inside `root` (symlinks
/// included).
fn resolve_inside(root: &Path, rel: &str) -> Result<PathBuf, WorkError> {
    let joined = root.join(rel);
    let canon_root = std::fs::canonicalize(root).map_err(|source| WorkError::Io {
        what: "resolving",
        path: root.to_path_buf(),
        source,
    })?;
    let canon = std::fs::canonicalize(&joined).map_err(|source| WorkError::MountSourceMissing {
        path: rel.to_string(),
        source,
    })?;
    if !canon.starts_with(&canon_root) {
        return Err(WorkError::MountOutsideRoot {
            path: rel.to_string(),
        });
    }
    Ok(canon)
}

/// The sandbox mount for a bind of `source` (a resolved path inside the context directory
/// `context`) that hides the `.dockerignore`d paths below it, as they are absent from the context a
/// build sees. With nothing to hide, a plain bind; otherwise the source stacked under a layer of
/// overlay whiteouts (made in `mask`), one per hidden path.
fn context_bind(
    context: &Path,
    source: PathBuf,
    hidden: &[String],
    mask: &Path,
    access: BindAccess,
) -> Result<SandboxMount, WorkError> {
    let canon_root = std::fs::canonicalize(context).map_err(|source| WorkError::Io {
        what: "resolving",
        path: context.to_path_buf(),
        source,
    })?;
    let sub = source.strip_prefix(&canon_root).unwrap_or(Path::new(""));
    // Component-wise prefixes: `a/b` is below `a`, `a-b` is not.
    if let Some(h) = hidden.iter().find(|h| sub.starts_with(h)) {
        return Err(WorkError::MountSourceIgnored {
            path: sub.display().to_string(),
            pattern: h.clone(),
        });
    }
    let masked: Vec<&Path> = hidden
        .iter()
        .filter_map(|h| Path::new(h).strip_prefix(sub).ok())
        .collect();
    if masked.is_empty() {
        return Ok(SandboxMount::Bind { source, access });
    }
    make_mask(&source, mask, &masked)?;
    Ok(SandboxMount::Layers {
        lower: vec![source, mask.to_path_buf()],
        subpath: PathBuf::from("/"),
        access,
    })
}

/// Makes the layer that hides `paths` (relative to `source`) when stacked over `source`: a
/// whiteout for each, under directories that carry the mode, owner and times of the source's
/// directories (an overlay shows a merged directory with its topmost layer's attributes).
fn make_mask(source: &Path, mask: &Path, paths: &[&Path]) -> Result<(), WorkError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let io = |path: &Path, source: std::io::Error| WorkError::Io {
        what: "making the .dockerignore mask at",
        path: path.to_path_buf(),
        source,
    };
    // Every directory the whiteouts sit in, the mask's root included; sorted, parents first.
    let dirs: std::collections::BTreeSet<&Path> =
        paths.iter().flat_map(|p| p.ancestors().skip(1)).collect();
    let mut times = Vec::with_capacity(dirs.len());
    for rel in &dirs {
        let (from, to) = (source.join(rel), mask.join(rel));
        let meta = std::fs::symlink_metadata(&from).map_err(|e| io(&from, e))?;
        std::fs::create_dir(&to).map_err(|e| io(&to, e))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))
            .map_err(|e| io(&to, e))?;
        // Unprivileged builds cannot give a directory away; it then keeps the builder's owner,
        // which is the source's owner in that case anyway.
        let _ = std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()));
        times.push((
            to,
            filetime::FileTime::from_last_access_time(&meta),
            filetime::FileTime::from_last_modification_time(&meta),
        ));
    }
    for rel in paths {
        let target = mask.join(rel);
        crate::fileops::archive::mknod(&target, libc::S_IFCHR, 0)
            .map_err(|e| io(&target, std::io::Error::other(e.to_string())))?;
    }
    // Directory times last, deepest first: creating entries inside them moved their mtimes.
    for (to, atime, mtime) in times.iter().rev() {
        filetime::set_file_times(to, *atime, *mtime).map_err(|e| io(to, e))?;
    }
    Ok(())
}

pub(super) fn run(
    worker: &LocalWorker,
    req: &ExecRequest<'_>,
    progress: &dyn ProgressSink,
) -> Result<LayerRef, WorkError> {
    let op = req.op;
    if op.security == SecurityMode::Insecure && !worker.opts.allow_insecure {
        return Err(WorkError::Entitlement {
            what: "RUN --security=insecure",
            entitlement: "security.insecure",
        });
    }
    if op.network == NetworkMode::Host && !worker.opts.allow_network_host {
        return Err(WorkError::Entitlement {
            what: "RUN --network=host",
            entitlement: "network.host",
        });
    }
    let base: &[LayerRef] = match req.inputs.first() {
        Some(InputState::Layers(l)) => l,
        _ => &[],
    };
    let lowers = worker.lowers(base)?;
    let dir = worker.step_dir()?;
    let rootfs = dir.path().join("rootfs");
    let upper = dir.path().join("upper");
    let overlays = vec![OverlayMount {
        lower: lowers.clone(),
        upper: Some(UpperDir {
            upper: upper.clone(),
            work: dir.path().join("work"),
        }),
        target: rootfs.clone(),
    }];

    // The environment: the image's, then the step's (ENV and visible ARGs), then proxies.
    let mut env = env_of(req.config);
    merge_env(&mut env, &op.env);
    merge_env(&mut env, &op.proxy_env);

    let mut mounts = Vec::new();
    let mut _locks = Vec::new();
    let mut _relays = Vec::new();
    for (n, m) in op.mounts.iter().enumerate() {
        let target = PathBuf::from(&m.target);
        let input = m.input.and_then(|i| req.inputs.get(i as usize));
        match &m.kind {
            MountKind::Bind { source, readonly } => {
                let access = if *readonly {
                    BindAccess::ReadOnly
                } else {
                    BindAccess::Discard
                };
                let rel = clean_inside(source)?;
                let kind = match input {
                    Some(InputState::Context { name, hidden }) => {
                        let ctx = worker.context(name)?;
                        let source = resolve_inside(&ctx.dir, &rel)?;
                        context_bind(
                            &ctx.dir,
                            source,
                            hidden,
                            &dir.path().join(format!("mask-{n}")),
                            access,
                        )?
                    }
                    // The sandbox resolves the source inside the stacked layers, so a symlink
                    // in them (`/link -> /etc`) names the layers' path, never the host's.
                    Some(InputState::Layers(layers)) => SandboxMount::Layers {
                        lower: worker.lowers(layers)?,
                        subpath: Path::new("/").join(rel),
                        access,
                    },
                    None => {
                        return Err(WorkError::MountWithoutSource {
                            target: m.target.clone(),
                        })
                    }
                };
                mounts.push(SandboxMountSpec { target, kind });
            }
            MountKind::Cache {
                id,
                sharing,
                readonly,
                source,
                mode,
                uid,
                gid,
            } => {
                // `from=` a stage or image: the cache starts as that filesystem's `source`.
                let seed = match input {
                    Some(InputState::Layers(layers)) => Some((layers.as_slice(), source.as_str())),
                    _ => None,
                };
                let name = cache_dir_name(id, *mode, *uid, *gid, seed);
                let mut host = worker.root.mounts_dir().join(&name);
                match sharing {
                    CacheSharing::Locked => {
                        _locks.push(worker.root.lock_entry("mounts", &name).map_err(|source| {
                            WorkError::CacheMountLock {
                                id: id.clone(),
                                source,
                            }
                        })?);
                    }
                    CacheSharing::Private => {
                        match cache::EntryLock::try_acquire(
                            worker.root.mounts_dir().join(format!("{name}.lock")),
                        ) {
                            Ok(Some(lock)) => _locks.push(lock),
                            // In use by another step: this one gets a fresh private directory.
                            _ => host = dir.path().join(format!("cache-{n}")),
                        }
                    }
                    CacheSharing::Shared => {}
                }
                if !host.exists() {
                    match seed {
                        Some((layers, source)) => seed_cache_dir(worker, &host, layers, source)?,
                        None => create_cache_dir(&host, *mode, *uid, *gid)?,
                    }
                }
                mounts.push(SandboxMountSpec {
                    target,
                    kind: SandboxMount::Bind {
                        source: host,
                        access: if *readonly {
                            BindAccess::ReadOnly
                        } else {
                            BindAccess::ReadWrite
                        },
                    },
                });
            }
            MountKind::Tmpfs { size } => mounts.push(SandboxMountSpec {
                target,
                kind: SandboxMount::Tmpfs {
                    size_bytes: (*size > 0).then_some(*size),
                },
            }),
            MountKind::Secret {
                id,
                env: env_name,
                required,
                mode,
                uid,
                gid,
            } => {
                let Some(secret) = worker.opts.secrets.get(id) else {
                    if *required {
                        return Err(WorkError::SecretMissing { id: id.clone() });
                    }
                    continue;
                };
                if let Some(name) = env_name {
                    env.push((
                        name.clone(),
                        String::from_utf8_lossy(&secret.bytes).into_owned(),
                    ));
                }
                if !m.target.is_empty() {
                    mounts.push(SandboxMountSpec {
                        target,
                        kind: SandboxMount::File {
                            contents: secret.bytes.clone(),
                            mode: *mode,
                            uid: *uid,
                            gid: *gid,
                        },
                    });
                }
            }
            MountKind::Ssh {
                id,
                required,
                mode,
                uid,
                gid,
            } => {
                // As BuildKit: the first ssh mount's socket is SSH_AUTH_SOCK unless set.
                if !env.iter().any(|(k, _)| k == "SSH_AUTH_SOCK") {
                    env.push(("SSH_AUTH_SOCK".into(), m.target.clone()));
                }
                let Some(socket) = worker.opts.ssh.get(id) else {
                    if *required {
                        return Err(WorkError::SshAgentMissing { id: id.clone() });
                    }
                    continue;
                };
                // A relay socket with the mount's owner and mode, bound in read-only:
                // connecting does not write to its filesystem, and the step cannot chmod it.
                let relay =
                    super::ssh::SshRelay::start(socket, *uid, *gid, *mode).map_err(|source| {
                        WorkError::SshRelay {
                            id: id.clone(),
                            source,
                        }
                    })?;
                mounts.push(SandboxMountSpec {
                    target,
                    kind: SandboxMount::Bind {
                        source: relay.path().to_path_buf(),
                        access: BindAccess::ReadOnly,
                    },
                });
                _relays.push(relay);
            }
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        let (k, v) = DEFAULT_PATH.split_once('=').unwrap_or(("PATH", ""));
        env.insert(0, (k.to_string(), v.to_string()));
    }

    let network = match op.network {
        NetworkMode::None => Network::None,
        NetworkMode::Default => Network::Nat,
        NetworkMode::Host => Network::Host,
    };
    // /etc/hosts and /etc/resolv.conf, only where the image has an /etc to put them in (the
    // sandbox removes the stubs before the diff either way).
    if lowers.iter().any(|l| l.join("etc").is_dir()) {
        let mut files = crate::executor::network_files(network, HOSTNAME);
        add_hosts(&mut files, &op.extra_hosts);
        mounts.extend(files);
    }

    // The kernel filesystems' mount points the image lacks: runc creates them for BuildKit and
    // they stay in the step's layer (its stub cleaner only knows the step's own mounts).
    let stack = crate::snapshot::LayerStack::open(&lowers, worker.snapshots.xattrs());
    let missing_runtime_dirs: Vec<&str> = RUNTIME_DIRS
        .iter()
        .copied()
        .filter(|d| matches!(stack.as_ref().map(|s| s.find(d)), Ok(Ok(None))))
        .collect();

    let image = req.config.config.as_ref();
    let workdir = image
        .and_then(|c| c.working_dir.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("/");
    let cwd = if op.cwd.is_empty() {
        workdir.to_string()
    } else {
        resolve_workdir(workdir, &op.cwd)
    };
    let user_spec = if op.user.is_empty() {
        image.and_then(|c| c.user.clone()).unwrap_or_default()
    } else {
        op.user.clone()
    };
    if !env.iter().any(|(k, v)| k == "HOME" && !v.is_empty()) {
        let home = home_for(worker, &lowers, &user_spec);
        env.retain(|(k, _)| k != "HOME");
        env.push(("HOME".into(), home));
    }
    // Names resolve inside the sandbox, against the step's own /etc/passwd and /etc/group.
    let user = crate::executor::StepUser::Named(user_spec);

    let spec = SandboxSpec {
        overlays,
        mounts,
        network,
        hostname: HOSTNAME.to_string(),
        action: Action::Exec(ExecSpec {
            rootfs,
            args: op.args.clone(),
            env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            cwd: PathBuf::from(cwd),
            user,
            insecure: op.security == SecurityMode::Insecure,
            shm_size_bytes: (op.shm_size > 0).then_some(op.shm_size),
            rlimits: op
                .ulimits
                .iter()
                .map(|u| crate::executor::Rlimit {
                    name: u.name.clone(),
                    soft: u64::try_from(u.soft).ok(),
                    hard: u64::try_from(u.hard).ok(),
                })
                .collect(),
        }),
    };
    let mut sink = super::log_sink(progress, req.step);
    let outcome = worker
        .runner()?
        .run(&spec, &mut sink)
        .map_err(|source| WorkError::Sandbox {
            what: "running the step",
            source,
        })?;
    if !outcome.success() {
        return Err(WorkError::ExitCode {
            command: op.args.join(" "),
            code: outcome.exit_code,
            last_lines: outcome.tail.iter().map(|l| l.text.clone()).collect(),
        });
    }
    for dir in missing_runtime_dirs {
        keep_runtime_dir(&upper, dir)?;
    }
    let layer = worker.commit_upper(&upper, &lowers)?;
    drop(dir);
    Ok(layer)
}

/// Appends `--add-host` entries to the step's `/etc/hosts` (a file mount of the sandbox, so
/// they never reach the layer), one `IP\tNAME` line each, as BuildKit writes them.
fn add_hosts(files: &mut [SandboxMountSpec], extra: &[crate::graph::ExtraHost]) {
    if extra.is_empty() {
        return;
    }
    for f in files.iter_mut() {
        if let (true, SandboxMount::File { contents, .. }) =
            (f.target == Path::new("/etc/hosts"), &mut f.kind)
        {
            for h in extra {
                contents.extend_from_slice(format!("{}\t{}\n", h.ip, h.name).as_bytes());
            }
        }
    }
}

/// Puts back in `upper` the mount point `dir` (a runtime directory the image lacked) that the
/// sandbox removed, as a directory 0755, unless the step left something there itself.
fn keep_runtime_dir(upper: &Path, dir: &str) -> Result<(), WorkError> {
    use std::os::unix::fs::DirBuilderExt;
    let path = upper.join(dir.trim_start_matches('/'));
    if std::fs::symlink_metadata(&path).is_ok() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .mode(0o755)
        .create(&path)
        .map_err(|source| WorkError::Io {
            what: "creating",
            path: path.clone(),
            source,
        })?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).map_err(
        |source| WorkError::Io {
            what: "setting the mode of",
            path: path.clone(),
            source,
        },
    )
}

/// `HOME` for a step without one, as runc gives it: the home of the step user's uid in the
/// image's `/etc/passwd` (`/root` for root), `/` when that uid has no entry. A user that does
/// not resolve gets `/`; the sandbox reports the unknown user.
pub(crate) fn home_for(worker: &LocalWorker, lowers: &[PathBuf], user_spec: &str) -> String {
    let stack = crate::snapshot::LayerStack::open(lowers, worker.snapshots.xattrs()).ok();
    let text = |path: &str| {
        stack
            .as_ref()
            .and_then(|s| s.read(path).ok().flatten())
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    };
    let db = crate::userdb::UserDb {
        users: crate::userdb::parse_passwd(&text("/etc/passwd")),
        groups: crate::userdb::parse_group(&text("/etc/group")),
    };
    match db.resolve_exec_user(user_spec) {
        Ok(user) => db.home_of_uid(user.uid),
        Err(_) => "/".into(),
    }
}

/// The directory name of a cache mount. As in BuildKit, a cache is its id together with what
/// seeds it: a cache created with another owner or mode (`uid=`, `gid=`, `mode=`), or from a
/// stage or image (`from=`, by its layers and `source=`), is another cache, even under the same
/// id; the default (empty, root, 0755) keeps the plain id's directory.
fn cache_dir_name(
    id: &str,
    mode: u32,
    uid: u32,
    gid: u32,
    seed: Option<(&[LayerRef], &str)>,
) -> String {
    let mut key = id.to_string();
    if let Some((layers, source)) = seed {
        key.push_str("\0from");
        for l in layers {
            key.push(' ');
            key.push_str(&l.diff_id.to_string());
        }
        key.push_str(&format!("\0{source}"));
    } else if (mode, uid, gid) != (0o755, 0, 0) && (mode, uid, gid) != (0, 0, 0) {
        key.push_str(&format!("\0{mode:o}:{uid}:{gid}"));
    }
    blake3::hash(key.as_bytes()).to_hex()[..32].to_string()
}

/// Creates the cache directory `path` from `source` of `layers` (see [`cache_dir_name`]),
/// whole or not at all: filled beside it, then renamed into place.
fn seed_cache_dir(
    worker: &LocalWorker,
    path: &Path,
    layers: &[LayerRef],
    source: &str,
) -> Result<(), WorkError> {
    // Unique per seeding: two steps of one build may seed the same cache at once.
    static SEEDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SEEDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|source| WorkError::Io {
        what: "creating the cache mount",
        path: tmp.clone(),
        source,
    })?;
    if let Err(e) = super::file::seed_cache_dir(worker, layers, source, &tmp) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if std::fs::rename(&tmp, path).is_err() {
        // Another build created it first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(())
}

fn create_cache_dir(path: &Path, mode: u32, uid: u32, gid: u32) -> Result<(), WorkError> {
    use std::os::unix::fs::PermissionsExt;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|source| WorkError::Io {
        what: "creating the cache mount",
        path: tmp.clone(),
        source,
    })?;
    let mode = if mode == 0 { 0o755 } else { mode };
    let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode));
    let _ = std::os::unix::fs::chown(&tmp, Some(uid), Some(gid));
    if std::fs::rename(&tmp, path).is_err() {
        // Another build created it first.
        let _ = std::fs::remove_dir(&tmp);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::cache_dir_name;

    #[test]
    fn a_cache_seeded_otherwise_is_another_cache() {
        let plain = cache_dir_name("go", 0o755, 0, 0, None);
        assert_eq!(plain, blake3::hash(b"go").to_hex()[..32]);
        assert_eq!(plain, cache_dir_name("go", 0, 0, 0, None));
        assert_ne!(plain, cache_dir_name("go", 0o700, 0, 0, None));
        assert_ne!(plain, cache_dir_name("go", 0o755, 1000, 0, None));
        assert_ne!(
            cache_dir_name("go", 0o755, 1000, 0, None),
            cache_dir_name("go", 0o755, 0, 1000, None)
        );
        assert_ne!(plain, cache_dir_name("other", 0o755, 0, 0, None));
        // Seeded from a stage: another cache per stage filesystem and source.
        let from_root = cache_dir_name("go", 0o755, 0, 0, Some((&[], "/")));
        assert_ne!(plain, from_root);
        assert_ne!(
            from_root,
            cache_dir_name("go", 0o755, 0, 0, Some((&[], "/data")))
        );
    }
}
