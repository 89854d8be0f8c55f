//! The step's pid 1: the child the helper forks into the new pid namespace.
//!
//! For [`Action::Exec`] it makes a mount namespace of its own (so `pivot_root` moves only itself),
//! builds the root filesystem's mounts (`/proc`, a minimal `/dev`, read-only `/sys`, the spec's
//! extra mounts), reports the stubs it created to the helper, pivots into the root, drops to
//! Docker's default capabilities and the step's user, and execs the program. For
//! [`Action::InProcess`] it calls the registered handler. Errors go to the runner over the
//! control socket; nothing here returns.

use super::error::ExecError;
use super::protocol::{send, HelperMessage, HelperRequest};
use super::spec::{Action, BindAccess, ExecSpec, MountKind, MountSpec};
use super::stubs::{StubMaker, StubReport, TargetKind};
use super::sys::{
    attach_at_fd, attach_at_path, clone_tree, make_tree_readonly, mount_error, open_in_root,
    os_message, NewFs,
};
use super::{lookup_in_process, InProcessContext};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::mount::MountAttrFlags;
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};
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
pub(crate) fn child_main(req: &HelperRequest, ctx: ChildContext) -> ! {
    let ctl = ctx.ctl;
    let code = match run(req, ctx) {
        Ok(()) => 0,
        Err(e) => {
            // SAFETY: `ctl` stays open for the life of the process; ManuallyDrop keeps it open.
            let file = ManuallyDrop::new(unsafe { File::from_raw_fd(ctl) });
            let _ = send(&*file, &HelperMessage::Failed(e));
            1
        }
    };
    // SAFETY: ending a forked child without running the parent's atexit handlers.
    unsafe { libc::_exit(code) }
}

fn run(req: &HelperRequest, ctx: ChildContext) -> Result<(), ExecError> {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
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
                Ok(Err(message)) => Err(ExecError::InProcess {
                    kind: kind.clone(),
                    message,
                }),
                Err(_) => Err(ExecError::InProcess {
                    kind: kind.clone(),
                    message: "handler panicked".to_string(),
                }),
            }
        }
        Action::Exec(exec) => {
            // SAFETY: pid 1 of the step is single-threaded.
            unsafe { rustix::thread::unshare_unsafe(UnshareFlags::NEWNS) }.map_err(|e| {
                ExecError::Unshare {
                    namespaces: "mount (step)".to_string(),
                    message: os_message(e),
                }
            })?;
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
            let tree = clone_tree(&rootfs, &rootfs)?;
            attach_at_path(&tree, &rootfs, "bind")?;
            let root = rustix::fs::open(
                &rootfs,
                OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| ExecError::Prepare {
                path: rootfs.clone(),
                message: os_message(e),
            })?;
            let mut stubs = StubMaker::new(root.as_fd(), rootfs.clone(), upper).map_err(|e| {
                ExecError::Prepare {
                    path: rootfs.clone(),
                    message: os_message(e),
                }
            })?;
            let setup = setup_rootfs(&mut stubs, req, &ctx);
            report_stubs(ctx.stub_pipe, &stubs.report);
            setup?;
            pivot(root.as_fd(), &rootfs)?;
            exec_program(exec, ctx.last_cap)
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

fn setup_rootfs(
    stubs: &mut StubMaker<'_>,
    req: &HelperRequest,
    ctx: &ChildContext,
) -> Result<(), ExecError> {
    let nosuid_nodev_noexec = MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;

    let proc_target = Path::new("/proc");
    let at = ensure(stubs, proc_target, TargetKind::Dir)?;
    let proc = NewFs::open("proc", proc_target)?.mount(nosuid_nodev_noexec, proc_target)?;
    attach_at_fd(&proc, at.as_fd(), "proc", proc_target)?;

    mount_dev(stubs)?;

    let sys_target = Path::new("/sys");
    let at = ensure(stubs, sys_target, TargetKind::Dir)?;
    let sysfs = NewFs::open("sysfs", sys_target).and_then(|fs| {
        fs.mount(
            nosuid_nodev_noexec | MountAttrFlags::MOUNT_ATTR_RDONLY,
            sys_target,
        )
    });
    let sysfs = match sysfs {
        Ok(m) => m,
        // A user namespace that does not own the network namespace (rootless with host
        // networking) may not mount sysfs: bind the host's, read-only.
        Err(_) => {
            let tree = clone_tree(Path::new("/sys"), sys_target)?;
            make_tree_readonly(&tree, sys_target)?;
            tree
        }
    };
    attach_at_fd(&sysfs, at.as_fd(), "sysfs", sys_target)?;

    for (index, mount) in req.spec.mounts.iter().enumerate() {
        extra_mount(stubs, mount, index, &req.state_dir, ctx.rootless)?;
    }
    mask_kernel_paths(stubs.root_fd())?;
    Ok(())
}

/// A tmpfs `/dev` with the host's harmless devices bound in, devpts, shm and the fd links.
fn mount_dev(stubs: &mut StubMaker<'_>) -> Result<(), ExecError> {
    let target = Path::new("/dev");
    let at = ensure(stubs, target, TargetKind::Dir)?;
    let fs = NewFs::open("tmpfs", target)?;
    fs.set("mode", "755", target)?;
    fs.set("size", "65536k", target)?;
    let dev = fs.mount(
        MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_STRICTATIME,
        target,
    )?;
    attach_at_fd(&dev, at.as_fd(), "tmpfs", target)?;
    let dev = open_in_root(stubs.root_fd(), Path::new("dev"))
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
        let tree = clone_tree(&host, &shown)?;
        attach_at_fd(&tree, stub.as_fd(), &host.display().to_string(), &shown)?;
    }
    let mkdir = |name: &str, mode: u32| {
        rustix::fs::mkdirat(&dev, name, Mode::from_raw_mode(mode))
            .map_err(|e| mount_error("directory", &in_dev(name), os_message(e)))?;
        rustix::fs::openat(&dev, name, OFlags::PATH | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| mount_error("directory", &in_dev(name), os_message(e)))
    };
    let pts_target = in_dev("pts");
    let pts_at = mkdir("pts", 0o755)?;
    let devpts = |with_gid: bool| -> Result<OwnedFd, ExecError> {
        let fs = NewFs::open("devpts", &pts_target)?;
        fs.flag("newinstance", &pts_target)?;
        fs.set("ptmxmode", "0666", &pts_target)?;
        fs.set("mode", "0620", &pts_target)?;
        if with_gid {
            fs.set("gid", "5", &pts_target)?;
        }
        fs.mount(
            MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NOEXEC,
            &pts_target,
        )
    };
    // gid 5 (tty) may be unmapped in a user namespace.
    let pts = devpts(true).or_else(|_| devpts(false))?;
    attach_at_fd(&pts, pts_at.as_fd(), "devpts", &pts_target)?;

    let shm_target = in_dev("shm");
    let shm_at = mkdir("shm", 0o1777)?;
    let fs = NewFs::open("tmpfs", &shm_target)?;
    fs.set("mode", "1777", &shm_target)?;
    fs.set("size", "65536k", &shm_target)?;
    let shm = fs.mount(
        MountAttrFlags::MOUNT_ATTR_NOSUID
            | MountAttrFlags::MOUNT_ATTR_NODEV
            | MountAttrFlags::MOUNT_ATTR_NOEXEC,
        &shm_target,
    )?;
    attach_at_fd(&shm, shm_at.as_fd(), "tmpfs", &shm_target)?;

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
                BindAccess::ReadOnly => {
                    let tree = clone_tree(source, target)?;
                    make_tree_readonly(&tree, target)?;
                    tree
                }
                BindAccess::ReadWrite => clone_tree(source, target)?,
                BindAccess::Discard if meta.is_dir() => {
                    let scratch = state_dir.join(format!("discard-{index}"));
                    let (upper, work) = (scratch.join("upper"), scratch.join("work"));
                    for dir in [&upper, &work] {
                        std::fs::create_dir_all(dir).map_err(|e| prepare(dir, e))?;
                    }
                    let fs = NewFs::open("overlay", target)?;
                    fs.set_path("lowerdir+", source, target)?;
                    fs.set_path("upperdir", &upper, target)?;
                    fs.set_path("workdir", &work, target)?;
                    fs.set(
                        "redirect_dir",
                        if rootless { "nofollow" } else { "off" },
                        target,
                    )?;
                    if rootless {
                        fs.flag("userxattr", target)?;
                    }
                    fs.mount(MountAttrFlags::empty(), target)?
                }
                BindAccess::Discard => {
                    let copy = state_dir.join(format!("discard-{index}"));
                    std::fs::copy(source, &copy).map_err(|e| prepare(&copy, e))?;
                    clone_tree(&copy, target)?
                }
            };
            attach_at_fd(&tree, at.as_fd(), &what, target)
        }
        MountKind::Tmpfs { size_bytes } => {
            let at = ensure(stubs, target, TargetKind::Dir)?;
            let fs = NewFs::open("tmpfs", target)?;
            fs.set("mode", "1777", target)?;
            if let Some(size) = size_bytes {
                fs.set("size", &size.to_string(), target)?;
            }
            let mnt = fs.mount(
                MountAttrFlags::MOUNT_ATTR_NOSUID | MountAttrFlags::MOUNT_ATTR_NODEV,
                target,
            )?;
            attach_at_fd(&mnt, at.as_fd(), "tmpfs", target)
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
            let tree = clone_tree(&file, target)?;
            make_tree_readonly(&tree, target)?;
            attach_at_fd(&tree, at.as_fd(), "file", target)
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
fn mask_kernel_paths(root: BorrowedFd<'_>) -> Result<(), ExecError> {
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
        let Ok(at) = open_in_root(root, Path::new(rel)) else {
            continue;
        };
        let shown = Path::new("/").join(rel);
        let is_dir = rustix::fs::fstat(&at)
            .map(|st| {
                rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Directory
            })
            .unwrap_or(false);
        let mask = if is_dir {
            NewFs::open("tmpfs", &shown)?.mount(MountAttrFlags::MOUNT_ATTR_RDONLY, &shown)?
        } else {
            clone_tree(Path::new("/dev/null"), &shown)?
        };
        attach_at_fd(&mask, at.as_fd(), "mask", &shown)?;
    }
    for rel in READ_ONLY {
        let Ok(at) = open_in_root(root, Path::new(rel)) else {
            continue;
        };
        let shown = Path::new("/").join(rel);
        let host = super::sys::fd_path(at.as_fd())
            .map_err(|e| mount_error("read-only bind", &shown, os_message(e)))?;
        let tree = clone_tree(&host, &shown)?;
        make_tree_readonly(&tree, &shown)?;
        attach_at_fd(&tree, at.as_fd(), "read-only bind", &shown)?;
    }
    Ok(())
}

fn pivot(root: BorrowedFd<'_>, rootfs: &Path) -> Result<(), ExecError> {
    let fail = |e: rustix::io::Errno| ExecError::PivotRoot {
        rootfs: rootfs.to_path_buf(),
        message: os_message(e),
    };
    rustix::process::fchdir(root).map_err(fail)?;
    rustix::process::pivot_root(".", ".").map_err(fail)?;
    rustix::mount::unmount(".", rustix::mount::UnmountFlags::DETACH).map_err(fail)?;
    rustix::process::chdir("/").map_err(fail)?;
    Ok(())
}

fn setup_error(step: impl Into<String>, message: String) -> ExecError {
    ExecError::Setup {
        step: step.into(),
        message,
    }
}

/// Inside the new root: credentials, capabilities, clean signals and fds, then `execve`.
fn exec_program(exec: &ExecSpec, last_cap: u32) -> Result<(), ExecError> {
    let program = exec
        .args
        .first()
        .ok_or_else(|| ExecError::InvalidSpec("empty argument list".to_string()))?;
    reset_signals();
    // Everything but stdin/stdout/stderr closes on exec (the control socket included, which
    // still reports a failed exec).
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags on fds.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC as libc::c_uint,
        )
    };
    if rc != 0 {
        return Err(setup_error(
            "mark fds close-on-exec",
            os_message(std::io::Error::last_os_error()),
        ));
    }
    if !exec.cwd.as_os_str().is_empty() {
        std::fs::create_dir_all(&exec.cwd).map_err(|e| {
            setup_error(
                format!("create working directory {}", exec.cwd.display()),
                os_message(e),
            )
        })?;
    }
    let defaults = docker_default_caps();
    for cap in 0..=last_cap.min(63) {
        let set = CapabilitySet::from_bits_retain(1u64 << cap);
        if !defaults.contains(set) {
            rustix::thread::remove_capability_from_bounding_set(set)
                .map_err(|e| setup_error(format!("drop capability {cap}"), os_message(e)))?;
        }
    }
    let user = &exec.user;
    let groups: Vec<nix::unistd::Gid> = user
        .additional_gids
        .iter()
        .map(|g| nix::unistd::Gid::from_raw(*g))
        .collect();
    let setgroups_denied = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() == "deny")
        .unwrap_or(false);
    if !(setgroups_denied && groups.is_empty()) {
        nix::unistd::setgroups(&groups)
            .map_err(|e| setup_error("set supplementary groups", os_message(e)))?;
    }
    let gid = nix::unistd::Gid::from_raw(user.gid);
    nix::unistd::setresgid(gid, gid, gid)
        .map_err(|e| setup_error(format!("set group {}", user.gid), os_message(e)))?;
    let uid = nix::unistd::Uid::from_raw(user.uid);
    nix::unistd::setresuid(uid, uid, uid)
        .map_err(|e| setup_error(format!("set user {}", user.uid), os_message(e)))?;
    if user.uid == 0 {
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: defaults,
                permitted: defaults,
                inheritable: CapabilitySet::empty(),
            },
        )
        .map_err(|e| setup_error("set capabilities", os_message(e)))?;
    }
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| setup_error("set no_new_privs", os_message(e)))?;
    if !exec.cwd.as_os_str().is_empty() {
        std::env::set_current_dir(&exec.cwd).map_err(|e| {
            setup_error(
                format!("change to working directory {}", exec.cwd.display()),
                os_message(e),
            )
        })?;
    }
    let path = find_program(program, &exec.env)?;
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
    let err = match nix::unistd::execve(&path_c, &argv, &envp) {
        Err(e) => e,
        Ok(never) => match never {},
    };
    Err(ExecError::Exec {
        program: program.clone(),
        message: os_message(err),
    })
}

/// Restores default signal handling and an empty mask (the Rust runtime ignores SIGPIPE, and
/// ignored signals survive `execve`).
fn reset_signals() {
    for sig in 1..libc::SIGRTMIN() {
        if sig == libc::SIGKILL || sig == libc::SIGSTOP {
            continue;
        }
        // SAFETY: resetting a disposition to SIG_DFL is always valid.
        unsafe {
            libc::signal(sig, libc::SIG_DFL);
        }
    }
    // SAFETY: an empty, initialised signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Finds `program` the way Docker does: as given when it has a `/`, else in the step's `PATH`.
fn find_program(program: &str, env: &[String]) -> Result<PathBuf, ExecError> {
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
        let is_file = std::fs::metadata(&candidate)
            .map(|m| m.is_file())
            .unwrap_or(false);
        if is_file && nix::unistd::access(&candidate, nix::unistd::AccessFlags::X_OK).is_ok() {
            return Ok(candidate);
        }
    }
    Err(ExecError::ExecutableNotFound {
        program: program.to_string(),
    })
}
