//! The step's pid 1: the child the helper forks into the new pid namespace.
//!
//! For [`Action::Exec`] it makes a mount namespace of its own (so `pivot_root` moves only itself),
//! builds the root filesystem's mounts (`/proc`, a minimal `/dev`, read-only `/sys`, the spec's
//! extra mounts), reports the stubs it created to the helper, pivots into the root, drops to
//! Docker's default capabilities and the step's user, and execs the program. For
//! [`Action::InProcess`] it calls the registered handler. Errors go to the runner over the
//! control socket; nothing here returns.

use super::error::ExecError;
use super::kernel::{overlay_options, AttachPoint, FsOption, Kernel, TreeSource};
use super::mount_stubs::{StubMaker, StubReport, TargetKind};
use super::protocol::{send, HelperMessage, HelperRequest};
use super::spec::{Action, BindAccess, ExecSpec, MountKind, MountSpec, StepUser};
use super::sys::{mount_error, os_message};
use super::{lookup_in_process, InProcessContext};
use crate::fileops::root::{Root, Walk};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::mount::MountAttrFlags;
use rustix::thread::{CapabilitySet, UnshareFlags};
use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::mem::ManuallyDrop;
use std::os::fd::FromRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the helper hands its child besides the request.
pub(crate) struct ChildContext {
    /// The control socket to the runner (close-on-exec).
    pub ctl: i32,
    /// Where to write the [`StubReport`].
    pub stub_pipe: OwnedFd,
    /// Highest capability number the kernel knows.
    pub last_cap: u32,
    /// Whether the sandbox runs in a user namespace.
    pub rootless: bool,
}

/// Added to every mount a step can write to or bring files into (the root, binds, layers,
/// tmpfs, `/dev` itself): device nodes there cannot be opened. A step keeps `CAP_MKNOD` as in
/// Docker, but of the devices it makes or an image carries none opens; only the host's
/// harmless devices bound one by one into `/dev` (each its own mount, without `nodev`) do. This
/// is Docker's device allow-list, enforced by the mount table instead of a cgroup, so it holds
/// alike for root and rootless builds and on cgroup v1 and v2.
const NODEV: MountAttrFlags = MountAttrFlags::MOUNT_ATTR_NODEV;

/// [`NODEV`] and read-only.
const RO_NODEV: MountAttrFlags = MountAttrFlags::MOUNT_ATTR_RDONLY.union(NODEV);

/// Docker's default capability set for containers.
fn docker_default_caps() -> CapabilitySet {
    CapabilitySet::CHOWN
        | CapabilitySet::DAC_OVERRIDE
        | CapabilitySet::FSETID
        | CapabilitySet::FOWNER
        | CapabilitySet::MKNOD
        | CapabilitySet::NET_RAW
        | CapabilitySet::SETGID
        | CapabilitySet::SETUID
        | CapabilitySet::SETFCAP
        | CapabilitySet::SETPCAP
        | CapabilitySet::NET_BIND_SERVICE
        | CapabilitySet::SYS_CHROOT
        | CapabilitySet::KILL
        | CapabilitySet::AUDIT_WRITE
}

/// Runs the step; never returns.
pub(crate) fn child_main(k: &mut dyn Kernel, req: &HelperRequest, ctx: ChildContext) -> ! {
    let ctl = ctx.ctl;
    let code = match run(k, req, ctx) {
        Ok(()) => 0,
        Err(e) => {
            // SAFETY: `ctl` stays open for the life of the process; ManuallyDrop keeps it open.
            let file = ManuallyDrop::new(unsafe { File::from_raw_fd(ctl) });
            let _ = send(&*file, &HelperMessage::Failed(e));
            1
        }
    };
    k.exit(code)
}

/// The step's set-up, up to `execve` (or the in-process handler); every kernel call goes
/// through `k`. Returns only on failure, or after an in-process handler.
pub(crate) fn run(
    k: &mut dyn Kernel,
    req: &HelperRequest,
    ctx: ChildContext,
) -> Result<(), ExecError> {
    let _ = k.die_with_parent();
    match &req.spec.action {
        Action::InProcess { kind, payload } => {
            drop(ctx.stub_pipe);
            let handler = lookup_in_process(kind)
                .ok_or_else(|| ExecError::UnknownInProcess { kind: kind.clone() })?;
            let context = InProcessContext {
                mounts: req.spec.overlays.iter().map(|o| o.target.clone()).collect(),
                rootless: ctx.rootless,
            };
            match std::panic::catch_unwind(|| handler(&context, payload)) {
                Ok(Ok(())) => Ok(()),
                Ok(Err(error)) => Err(ExecError::InProcess {
                    kind: kind.clone(),
                    message: error.to_string(),
                }),
                Err(_) => Err(ExecError::InProcess {
                    kind: kind.clone(),
                    message: "handler panicked".to_string(),
                }),
            }
        }
        Action::Exec(exec) => {
            k.unshare(UnshareFlags::NEWNS, "mount (step)")?;
            let rootfs = std::fs::canonicalize(&exec.rootfs).map_err(|e| ExecError::Prepare {
                path: exec.rootfs.clone(),
                message: os_message(e),
            })?;
            let upper = req
                .spec
                .overlays
                .iter()
                .find(|o| o.target == exec.rootfs || o.target == rootfs)
                .and_then(|o| o.upper.as_ref())
                .map(|u| u.upper.clone());
            // A bind of the root onto itself makes it a mount point, as pivot_root needs.
            let tree = k.clone_tree(TreeSource::Path(&rootfs), NODEV, &rootfs)?;
            k.attach(tree, AttachPoint::Path(&rootfs), "bind", &rootfs)?;
            let root = Root::new(&rootfs).map_err(|e| ExecError::Prepare {
                path: rootfs.clone(),
                message: os_message(e),
            })?;
            let mut stubs = StubMaker::new(&root, upper).map_err(|e| ExecError::Prepare {
                path: rootfs.clone(),
                message: os_message(e),
            })?;
            let setup = setup_rootfs(
                k,
                &mut stubs,
                &req.spec.mounts,
                &req.state_dir,
                ctx.rootless,
                exec.shm_size_bytes,
            );
            report_stubs(ctx.stub_pipe, &stubs.report);
            setup?;
            k.pivot_root(root.as_fd(), &rootfs)?;
            let new_root = k.root_after_pivot(&rootfs);
            exec_program(k, exec, ctx.last_cap, req.console_fd, &new_root)
        }
    }
}

fn report_stubs(pipe: OwnedFd, report: &StubReport) {
    let mut file = File::from(pipe);
    if let Ok(bytes) = serde_json::to_vec(report) {
        let _ = file.write_all(&bytes);
    }
}

fn ensure(
    stubs: &mut StubMaker<'_>,
    target: &Path,
    kind: TargetKind,
) -> Result<OwnedFd, ExecError> {
    stubs
        .ensure(target, kind)
        .map_err(|e| mount_error("mount point", target, os_message(e)))
}

/// Mounts `/proc`, `/dev`, a read-only `/sys`, the spec's extra mounts, and masks kernel files,
/// creating missing mount points through `stubs`.
pub(crate) fn setup_rootfs(
    k: &mut dyn Kernel,
    stubs: &mut StubMaker<'_>,
    mounts: &[MountSpec],
    state_dir: &Path,
    rootless: bool,
    shm_size_bytes: Option<u64>,
) -> Result<(), ExecError> {
    let nosuid_nodev_noexec = MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;

    let proc_target = Path::new("/proc");
    let at = ensure(stubs, proc_target, TargetKind::Dir)?;
    let proc = k.new_fs("proc", &[], nosuid_nodev_noexec, proc_target)?;
    k.attach(proc, AttachPoint::Fd(at.as_fd()), "proc", proc_target)?;

    mount_dev(k, stubs, shm_size_bytes)?;

    let sys_target = Path::new("/sys");
    let at = ensure(stubs, sys_target, TargetKind::Dir)?;
    let sysfs = k.new_fs(
        "sysfs",
        &[],
        nosuid_nodev_noexec | MountAttrFlags::MOUNT_ATTR_RDONLY,
        sys_target,
    );
    let sysfs = match sysfs {
        Ok(mount) => mount,
        // A user namespace that does not own the network namespace (rootless with host
        // networking) may not mount sysfs: bind the host's, read-only.
        Err(_) => k.clone_tree(
            TreeSource::Path(Path::new("/sys")),
            nosuid_nodev_noexec | MountAttrFlags::MOUNT_ATTR_RDONLY,
            sys_target,
        )?,
    };
    k.attach(sysfs, AttachPoint::Fd(at.as_fd()), "sysfs", sys_target)?;

    for (index, mount) in mounts.iter().enumerate() {
        extra_mount(k, stubs, mount, index, state_dir, rootless)?;
    }
    mask_kernel_paths(k, stubs.root())?;
    Ok(())
}

/// A tmpfs `/dev` with the host's harmless devices bound in, devpts, shm (`shm_size_bytes`, or
/// Docker's 64 MiB) and the fd links.
fn mount_dev(
    k: &mut dyn Kernel,
    stubs: &mut StubMaker<'_>,
    shm_size_bytes: Option<u64>,
) -> Result<(), ExecError> {
    let target = Path::new("/dev");
    let at = ensure(stubs, target, TargetKind::Dir)?;
    let dev = k.new_fs(
        "tmpfs",
        &[
            FsOption::Value("mode", "755".to_string()),
            FsOption::Value("size", "65536k".to_string()),
        ],
        MountAttrFlags::MOUNT_ATTR_NOSUID | NODEV | MountAttrFlags::MOUNT_ATTR_STRICTATIME,
        target,
    )?;
    k.attach(dev, AttachPoint::Fd(at.as_fd()), "tmpfs", target)?;
    let dev = stubs
        .root()
        .open("dev", Walk::InRoot, OFlags::PATH)
        .map_err(|e| mount_error("tmpfs", target, os_message(e)))?;
    let in_dev = |name: &str| PathBuf::from("/dev").join(name);
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let shown = in_dev(name);
        let file = rustix::fs::openat(
            &dev,
            name,
            OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o666),
        )
        .map_err(|e| mount_error("device stub", &shown, os_message(e)))?;
        drop(file);
        let stub = rustix::fs::openat(&dev, name, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| mount_error("device stub", &shown, os_message(e)))?;
        let host = Path::new("/dev").join(name);
        // The allowed devices: their binds are the only mounts under /dev without `nodev`.
        let tree = k.clone_tree(
            TreeSource::Path(&host),
            MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
            &shown,
        )?;
        k.attach(
            tree,
            AttachPoint::Fd(stub.as_fd()),
            &host.display().to_string(),
            &shown,
        )?;
    }
    let mkdir = |name: &str, mode: u32| {
        rustix::fs::mkdirat(&dev, name, Mode::from_raw_mode(mode))
            .map_err(|e| mount_error("directory", &in_dev(name), os_message(e)))?;
        rustix::fs::openat(&dev, name, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| mount_error("directory", &in_dev(name), os_message(e)))
    };
    let pts_target = in_dev("pts");
    let pts_at = mkdir("pts", 0o755)?;
    let mut pts_options = vec![
        FsOption::Flag("newinstance"),
        FsOption::Value("ptmxmode", "0666".to_string()),
        FsOption::Value("mode", "0620".to_string()),
        FsOption::Value("gid", "5".to_string()),
    ];
    let pts_attrs = MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    let pts = match k.new_fs("devpts", &pts_options, pts_attrs, &pts_target) {
        Ok(pts) => pts,
        // gid 5 (tty) may be unmapped in a user namespace.
        Err(_) => {
            pts_options.pop();
            k.new_fs("devpts", &pts_options, pts_attrs, &pts_target)?
        }
    };
    k.attach(pts, AttachPoint::Fd(pts_at.as_fd()), "devpts", &pts_target)?;

    let shm_target = in_dev("shm");
    let shm_at = mkdir("shm", 0o1777)?;
    let shm = k.new_fs(
        "tmpfs",
        &[
            FsOption::Value("mode", "1777".to_string()),
            FsOption::Value(
                "size",
                shm_size_bytes.map_or("65536k".to_string(), |b| b.to_string()),
            ),
        ],
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
        &shm_target,
    )?;
    k.attach(shm, AttachPoint::Fd(shm_at.as_fd()), "tmpfs", &shm_target)?;

    for (link, to) in [
        ("ptmx", "pts/ptmx"),
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("core", "/proc/kcore"),
    ] {
        rustix::fs::symlinkat(to, &dev, link)
            .map_err(|e| mount_error("symlink", &in_dev(link), os_message(e)))?;
    }
    Ok(())
}

fn extra_mount(
    k: &mut dyn Kernel,
    stubs: &mut StubMaker<'_>,
    mount: &MountSpec,
    index: usize,
    state_dir: &Path,
    rootless: bool,
) -> Result<(), ExecError> {
    let target = mount.target.as_path();
    let prepare = |path: &Path, e: std::io::Error| ExecError::Prepare {
        path: path.to_path_buf(),
        message: os_message(e),
    };
    let scratch_dirs = |name: String| -> Result<(PathBuf, PathBuf), ExecError> {
        let scratch = state_dir.join(name);
        let (upper, work) = (scratch.join("upper"), scratch.join("work"));
        for dir in [&upper, &work] {
            std::fs::create_dir_all(dir).map_err(|e| prepare(dir, e))?;
        }
        Ok((upper, work))
    };
    let empty = state_dir.join("empty");
    match &mount.kind {
        MountKind::Bind { source, access } => {
            let meta = std::fs::metadata(source).map_err(|e| prepare(source, e))?;
            let kind = if meta.is_dir() {
                TargetKind::Dir
            } else {
                TargetKind::File
            };
            let at = ensure(stubs, target, kind)?;
            let what = source.display().to_string();
            let tree = match access {
                BindAccess::ReadOnly => k.clone_tree(TreeSource::Path(source), RO_NODEV, target)?,
                BindAccess::ReadWrite => k.clone_tree(TreeSource::Path(source), NODEV, target)?,
                BindAccess::Discard if meta.is_dir() => {
                    let (upper, work) = scratch_dirs(format!("discard-{index}"))?;
                    let options = overlay_options(
                        std::slice::from_ref(source),
                        Some((&upper, &work)),
                        false,
                        rootless,
                        &empty,
                    );
                    k.new_fs("overlay", &options, NODEV, target)?
                }
                BindAccess::Discard => {
                    let copy = state_dir.join(format!("discard-{index}"));
                    std::fs::copy(source, &copy).map_err(|e| prepare(&copy, e))?;
                    k.clone_tree(TreeSource::Path(&copy), NODEV, target)?
                }
            };
            k.attach(tree, AttachPoint::Fd(at.as_fd()), &what, target)
        }
        MountKind::Layers {
            lower,
            subpath,
            access,
        } => {
            let writable = match access {
                BindAccess::ReadOnly => false,
                BindAccess::Discard => true,
                BindAccess::ReadWrite => {
                    return Err(ExecError::InvalidSpec(format!(
                        "layers mounted at {} cannot be read-write",
                        target.display()
                    )))
                }
            };
            let merged = state_dir.join(format!("layers-{index}/merged"));
            std::fs::create_dir_all(&merged).map_err(|e| prepare(&merged, e))?;
            let upper_work = if writable {
                Some(scratch_dirs(format!("layers-{index}"))?)
            } else {
                None
            };
            let options = overlay_options(
                lower,
                upper_work.as_ref().map(|(u, w)| (u.as_path(), w.as_path())),
                false,
                rootless,
                &empty,
            );
            let attrs = if writable { NODEV } else { RO_NODEV };
            let stack = k.new_fs("overlay", &options, attrs, target)?;
            k.attach(stack, AttachPoint::Path(&merged), "overlay", target)?;
            let merged_root = Root::new(&merged).map_err(|e| prepare(&merged, e.into()))?;
            let rel = subpath.strip_prefix("/").unwrap_or(subpath.as_path());
            let source = merged_root
                .open(rel, Walk::InRoot, OFlags::PATH)
                .map_err(|e| {
                    mount_error(
                        &format!("layers path {}", subpath.display()),
                        target,
                        os_message(e),
                    )
                })?;
            let is_dir = rustix::fs::fstat(&source)
                .map(|st| {
                    rustix::fs::FileType::from_raw_mode(st.st_mode)
                        == rustix::fs::FileType::Directory
                })
                .unwrap_or(true);
            let kind = if is_dir {
                TargetKind::Dir
            } else {
                TargetKind::File
            };
            let at = ensure(stubs, target, kind)?;
            let tree = k.clone_tree(TreeSource::Fd(source.as_fd()), attrs, target)?;
            k.attach(tree, AttachPoint::Fd(at.as_fd()), "layers", target)
        }
        MountKind::Tmpfs { size_bytes } => {
            let at = ensure(stubs, target, TargetKind::Dir)?;
            let mut options = vec![FsOption::Value("mode", "1777".to_string())];
            if let Some(size) = size_bytes {
                options.push(FsOption::Value("size", size.to_string()));
            }
            let tmpfs = k.new_fs(
                "tmpfs",
                &options,
                MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
                target,
            )?;
            k.attach(tmpfs, AttachPoint::Fd(at.as_fd()), "tmpfs", target)
        }
        MountKind::File {
            contents,
            mode,
            uid,
            gid,
        } => {
            let file = state_dir.join(format!("file-{index}"));
            write_private_file(&file, contents, *mode, *uid, *gid)
                .map_err(|e| prepare(&file, e))?;
            let at = ensure(stubs, target, TargetKind::File)?;
            let tree = k.clone_tree(TreeSource::Path(&file), RO_NODEV, target)?;
            k.attach(tree, AttachPoint::Fd(at.as_fd()), "file", target)
        }
    }
}

fn write_private_file(
    path: &Path,
    contents: &[u8],
    mode: u32,
    uid: u32,
    gid: u32,
) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    std::os::unix::fs::fchown(&file, Some(uid), Some(gid))?;
    file.set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))?;
    Ok(())
}

/// Hides or freezes the kernel interfaces Docker hides from containers.
fn mask_kernel_paths(k: &mut dyn Kernel, root: &Root) -> Result<(), ExecError> {
    const MASKED: &[&str] = &[
        "proc/asound",
        "proc/acpi",
        "proc/kcore",
        "proc/keys",
        "proc/latency_stats",
        "proc/timer_list",
        "proc/timer_stats",
        "proc/sched_debug",
        "proc/scsi",
        "sys/firmware",
        "sys/devices/virtual/powercap",
    ];
    const READ_ONLY: &[&str] = &[
        "proc/bus",
        "proc/fs",
        "proc/irq",
        "proc/sys",
        "proc/sysrq-trigger",
    ];
    for rel in MASKED {
        let Ok(at) = root.open(rel, Walk::InRoot, OFlags::PATH) else {
            continue;
        };
        let shown = Path::new("/").join(rel);
        let is_dir = rustix::fs::fstat(&at)
            .map(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
            })
            .unwrap_or(false);
        let mask = if is_dir {
            k.new_fs("tmpfs", &[], MountAttrFlags::MOUNT_ATTR_RDONLY, &shown)?
        } else {
            k.clone_tree(
                TreeSource::Path(Path::new("/dev/null")),
                MountAttrFlags::empty(),
                &shown,
            )?
        };
        k.attach(mask, AttachPoint::Fd(at.as_fd()), "mask", &shown)?;
    }
    for rel in READ_ONLY {
        let Ok(at) = root.open(rel, Walk::InRoot, OFlags::PATH) else {
            continue;
        };
        let shown = Path::new("/").join(rel);
        let tree = k.clone_tree(
            TreeSource::Fd(at.as_fd()),
            MountAttrFlags::MOUNT_ATTR_RDONLY,
            &shown,
        )?;
        k.attach(tree, AttachPoint::Fd(at.as_fd()), "read-only bind", &shown)?;
    }
    Ok(())
}

fn setup_error(step: impl Into<String>, message: String) -> ExecError {
    ExecError::Setup {
        step: step.into(),
        message,
    }
}

/// Inside the new root (seen at `root`): credentials, capabilities, clean signals and fds, then
/// `execve`.
fn exec_program(
    k: &mut dyn Kernel,
    exec: &ExecSpec,
    last_cap: u32,
    console_fd: Option<i32>,
    root: &Path,
) -> Result<(), ExecError> {
    let program = exec
        .args
        .first()
        .ok_or_else(|| ExecError::InvalidSpec("empty argument list".to_string()))?;
    k.reset_signals();
    // A session of its own: the step has no controlling terminal, so `/dev/tty` does not open
    // and it cannot write to or type into (TIOCSTI) the terminal the build runs in.
    k.new_session()?;
    // Unless it is given one of its own (`builder run -t`): a pty in its own /dev/pts.
    if let Some(fd) = console_fd {
        k.attach_terminal(fd)?;
    }
    // Everything but stdin/stdout/stderr closes on exec (the control socket included, which
    // still reports a failed exec).
    k.close_fds_on_exec()?;
    if !exec.cwd.as_os_str().is_empty() {
        k.create_dir_all(&exec.cwd)?;
    }
    let defaults = if exec.insecure {
        // Every capability this process has (the builder's own bounding set may lack some).
        k.permitted_capabilities()?
    } else {
        docker_default_caps()
    };
    // Made before the credentials change so that a table error is reported, installed last.
    let filters = if exec.insecure {
        Vec::new()
    } else {
        super::seccomp::default_filters().map_err(|e| setup_error("seccomp", e.to_string()))?
    };
    // `--ulimit`: set while the process still has CAP_SYS_RESOURCE (raising a hard limit
    // needs it), inherited across execve.
    for limit in &exec.rlimits {
        k.set_rlimit(limit)?;
    }
    for cap in 0..=last_cap.min(63) {
        if !defaults.contains(CapabilitySet::from_bits_retain(1u64 << cap)) {
            k.drop_bounding_capability(cap)?;
        }
    }
    let user = &match &exec.user {
        StepUser::Ids(ids) => ids.clone(),
        StepUser::Named(value) => super::user::resolve(&super::user::rootfs_reader(root), value)
            .map_err(|e| ExecError::User(e.to_string()))?,
    };
    // Without setgroups (a user namespace mapped without newgidmap) the primary group alone
    // is what the process has anyway.
    if !(k.setgroups_denied() && user.additional_gids.iter().all(|g| *g == user.gid)) {
        k.set_groups(&user.additional_gids)?;
    }
    if console_fd.is_some() {
        // The terminal belongs to the user it is for, as runc gives it.
        k.give_terminal_to(user.uid);
    }
    k.set_gid(user.gid)?;
    k.set_uid(user.uid)?;
    if user.uid == 0 {
        k.set_capabilities(defaults)?;
    }
    k.set_no_new_privs()?;
    // The credential switch cleared the parent-death signal: set it again so the step dies with
    // its helper (and so with a killed build) instead of running on unseen.
    let _ = k.die_with_parent();
    if !exec.cwd.as_os_str().is_empty() {
        k.chdir(&exec.cwd)?;
    }
    let path = find_program(root, program, &exec.env)?;
    let to_c = |s: &[u8]| {
        CString::new(s).map_err(|_| ExecError::InvalidSpec("NUL byte in argument".to_string()))
    };
    let argv = exec
        .args
        .iter()
        .map(|a| to_c(a.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = exec
        .env
        .iter()
        .map(|e| to_c(e.as_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let path_c = to_c(path.as_os_str().as_bytes())?;
    // Last before execve: from here on the step's system calls are filtered.
    k.install_seccomp(&filters)?;
    let err = k.execve(&path_c, &argv, &envp);
    Err(ExecError::Exec {
        program: program.clone(),
        message: os_message(err),
    })
}

/// Finds `program` the way Docker does: as given when it has a `/`, else in the step's `PATH`,
/// looking at the root seen at `root` (`/` after `pivot_root`).
fn find_program(root: &Path, program: &str, env: &[String]) -> Result<PathBuf, ExecError> {
    if program.contains('/') {
        return Ok(PathBuf::from(program));
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(program);
        // Relative entries are relative to the working directory, which is already inside the
        // root.
        let seen = match candidate.strip_prefix("/") {
            Ok(inside) => root.join(inside),
            Err(_) => candidate.clone(),
        };
        let is_file = std::fs::metadata(&seen)
            .map(|m| m.is_file())
            .unwrap_or(false);
        if is_file && rustix::fs::access(&seen, rustix::fs::Access::EXEC_OK).is_ok() {
            return Ok(candidate);
        }
    }
    Err(ExecError::ExecutableNotFound {
        program: program.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::kernel::recording::RecordingKernel;

    /// The mounts of a step, in order, without privileges: only the recorded calls are checked.
    #[test]
    fn rootfs_mounts_in_order_with_their_options() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let state = dir.path().join("state");
        let cache = dir.path().join("cache");
        for d in [&root, &state, &cache] {
            std::fs::create_dir_all(d).unwrap();
        }
        let root = std::fs::canonicalize(root).unwrap();
        let rooted = Root::new(&root).unwrap();
        let mut stubs = StubMaker::new(&rooted, None).unwrap();
        let (uid, gid) = (
            rustix::process::getuid().as_raw(),
            rustix::process::getgid().as_raw(),
        );
        let mounts = vec![
            MountSpec {
                target: "/run/secrets/token".into(),
                kind: MountKind::File {
                    contents: b"s".to_vec(),
                    mode: 0o400,
                    uid,
                    gid,
                },
            },
            MountSpec {
                target: "/root/.cache".into(),
                kind: MountKind::Bind {
                    source: cache.clone(),
                    access: BindAccess::ReadWrite,
                },
            },
            MountSpec {
                target: "/tmp".into(),
                kind: MountKind::Tmpfs {
                    size_bytes: Some(4096),
                },
            },
        ];
        let mut m = RecordingKernel::default();
        setup_rootfs(&mut m, &mut stubs, &mounts, &state, false, None).unwrap();
        let log = m.lines();
        let cache = cache.display();
        let state = state.display();
        let expected = [
            "new proc /proc [] MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)".to_string(),
            "attach proc at /proc".to_string(),
            "new tmpfs /dev [mode=755 size=65536k] MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_STRICTATIME)".to_string(),
            "attach tmpfs at /dev".to_string(),
            "clone /dev/null for /dev/null MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)".to_string(),
            "attach /dev/null at /dev/null".to_string(),
            "clone /dev/zero for /dev/zero MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)".to_string(),
            "attach /dev/zero at /dev/zero".to_string(),
            "clone /dev/full for /dev/full MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)".to_string(),
            "attach /dev/full at /dev/full".to_string(),
            "clone /dev/random for /dev/random MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)".to_string(),
            "attach /dev/random at /dev/random".to_string(),
            "clone /dev/urandom for /dev/urandom MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)".to_string(),
            "attach /dev/urandom at /dev/urandom".to_string(),
            "clone /dev/tty for /dev/tty MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)".to_string(),
            "attach /dev/tty at /dev/tty".to_string(),
            "new devpts /dev/pts [newinstance ptmxmode=0666 mode=0620 gid=5] MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)".to_string(),
            "attach devpts at /dev/pts".to_string(),
            "new tmpfs /dev/shm [mode=1777 size=65536k] MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)".to_string(),
            "attach tmpfs at /dev/shm".to_string(),
            "new sysfs /sys [] MountAttrFlags(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)".to_string(),
            "attach sysfs at /sys".to_string(),
            format!("clone {state}/file-0 for /run/secrets/token MountAttrFlags(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV)"),
            "attach file at /run/secrets/token".to_string(),
            format!("clone {cache} for /root/.cache MountAttrFlags(MOUNT_ATTR_NODEV)"),
            format!("attach {cache} at /root/.cache"),
            "new tmpfs /tmp [mode=1777 size=4096] MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)".to_string(),
            "attach tmpfs at /tmp".to_string(),
        ];
        assert_eq!(log, expected.iter().map(String::as_str).collect::<Vec<_>>());
        // Mount points were made in the root and recorded for removal.
        let created: Vec<String> = stubs
            .report
            .created
            .iter()
            .map(|c| c.path.display().to_string())
            .collect();
        assert_eq!(
            created,
            [
                "proc",
                "dev",
                "sys",
                "run",
                "run/secrets",
                "run/secrets/token",
                "root",
                "root/.cache",
                "tmp"
            ]
        );
        // The secret's bytes stay in the private state directory.
        assert_eq!(std::fs::read(format!("{state}/file-0")).unwrap(), b"s");
        assert_eq!(
            std::fs::metadata(root.join("run/secrets/token"))
                .unwrap()
                .len(),
            0
        );
    }
}
