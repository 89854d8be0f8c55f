//! The one seam between the sandbox's decisions and the kernel.
//!
//! Every kernel call with which the helper and the step's pid 1 set up a sandbox goes through
//! [`Kernel`]: namespaces (`unshare`), the id maps and `setgroups` of a rootless sandbox, mount
//! propagation, `sethostname`, the loopback interface, every mount (`fsopen`/`fsconfig`/
//! `fsmount`, `open_tree`, `mount_setattr`, `move_mount`, `umount2`), `pivot_root`, `fork` and
//! `waitpid`, the parent-death signal, `setsid`, the pty of `builder run -t`, signal
//! dispositions, the capability bounding set and sets, `setgroups`/`setresgid`/`setresuid`,
//! `no_new_privs`, the working directory, the seccomp filter and `execve`. [`RealKernel`]
//! makes the calls; the tests record them ([`recording::RecordingKernel`]), so the order and
//! arguments of the whole namespace and root set-up are checked without root, as youki's
//! `Syscall` trait allows.
//!
//! Outside the seam, on purpose: file work that needs no privilege (creating mount points in
//! the root, the state directory's files, reading `/etc/passwd` and `PATH` inside the root),
//! which runs for real in the tests on temporary directories; the pipes and the control socket;
//! and the build-process side of the runner (spawning the helper, `newuidmap`, slirp4netns).

use super::error::ExecError;
use super::sys::{
    attach_at_fd, attach_at_path, clone_tree, clone_tree_at_fd, mount_error, os_message,
    set_tree_attrs, NewFs,
};
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::mount::MountAttrFlags;
use rustix::thread::{CapabilitySet, CapabilitySets, UnshareFlags};
use seccompiler::BpfProgram;
use std::ffi::{CStr, CString};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// One `fsconfig` option of a new filesystem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FsOption {
    /// `key=value`.
    Value(&'static str, String),
    /// `key=path` of a directory (paths need not be UTF-8); passed to the kernel through an fd.
    Path(&'static str, PathBuf),
    /// A flag such as `volatile`.
    Flag(&'static str),
}

/// Where a copy of a mount tree is taken from.
pub(crate) enum TreeSource<'a> {
    /// A host path.
    Path(&'a Path),
    /// The object an fd refers to.
    Fd(BorrowedFd<'a>),
}

/// Where a detached mount is attached.
pub(crate) enum AttachPoint<'a> {
    /// The object an fd refers to (a mount point resolved inside the root).
    Fd(BorrowedFd<'a>),
    /// A host path.
    Path(&'a Path),
}

/// The ids of the calling process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcessIds {
    /// Effective uid: not 0 means the sandbox runs rootless.
    pub euid: u32,
    pub uid: u32,
    pub gid: u32,
    pub pid: i32,
}

/// What [`Kernel::fork`] returns in each process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Forked {
    /// In the new process.
    Child,
    /// In the calling process, with the child's pid.
    Parent(i32),
}

/// The kernel calls of the sandbox set-up. `shown` is the path named in errors (a container
/// path for mounts inside the root). Queries (`ids`, `last_cap`, `setgroups_denied`,
/// `permitted_capabilities`) change nothing; every other method changes the process or the
/// mount table.
pub(crate) trait Kernel {
    /// A new instance of `fs_type` configured with `options`, detached.
    fn new_fs(
        &mut self,
        fs_type: &'static str,
        options: &[FsOption],
        attrs: MountAttrFlags,
        shown: &Path,
    ) -> Result<OwnedFd, ExecError>;

    /// A detached, recursive copy of the mount tree at `source` (a bind mount), with `attrs`
    /// (read-only, nodev, ...) added to every mount in it.
    fn clone_tree(
        &mut self,
        source: TreeSource<'_>,
        attrs: MountAttrFlags,
        shown: &Path,
    ) -> Result<OwnedFd, ExecError>;

    /// Attaches a detached mount; `what` names it in errors.
    fn attach(
        &mut self,
        mount: OwnedFd,
        at: AttachPoint<'_>,
        what: &str,
        shown: &Path,
    ) -> Result<(), ExecError>;

    /// Makes every mount of the (new) mount namespace private, recursively, so nothing mounted
    /// in the sandbox propagates to the host.
    fn make_mounts_private(&mut self) -> Result<(), ExecError>;

    /// Detaches the mount at `target` (`umount2` with `MNT_DETACH`).
    fn unmount(&mut self, target: &Path) -> Result<(), ExecError>;

    /// Makes the directory `root` refers to the root: `fchdir`, `pivot_root(".", ".")`, a
    /// detached unmount of the old root stacked on it, `chdir("/")`.
    fn pivot_root(&mut self, root: BorrowedFd<'_>, rootfs: &Path) -> Result<(), ExecError>;

    /// Where the root that was at `rootfs` is seen after [`Kernel::pivot_root`] (`/`): the step's
    /// `/etc/passwd` and `PATH` are read there.
    fn root_after_pivot(&self, rootfs: &Path) -> PathBuf;

    /// The calling process's ids.
    fn ids(&mut self) -> ProcessIds;

    /// Moves the calling process into new namespaces; `what` names them in errors.
    fn unshare(&mut self, flags: UnshareFlags, what: &str) -> Result<(), ExecError>;

    /// Writes `content` to `/proc/self/<file>` (`setgroups`, `uid_map`, `gid_map`).
    fn write_id_map(&mut self, file: &'static str, content: &str) -> Result<(), ExecError>;

    /// Sets the UTS namespace's host name.
    fn set_hostname(&mut self, name: &str) -> Result<(), ExecError>;

    /// Brings the loopback interface of the network namespace up.
    fn loopback_up(&mut self) -> Result<(), ExecError>;

    /// Has the calling process killed (SIGKILL) when its parent dies (`PR_SET_PDEATHSIG`).
    fn die_with_parent(&mut self) -> Result<(), ExecError>;

    /// Marks `fd` close-on-exec.
    fn close_on_exec(&mut self, fd: BorrowedFd<'_>) -> Result<(), ExecError>;

    /// The highest capability number the kernel knows.
    fn last_cap(&mut self) -> u32;

    /// Forks the (single-threaded) calling process.
    fn fork(&mut self) -> Result<Forked, ExecError>;

    /// On SIGTERM (a cancelled run), SIGKILL `child`.
    fn forward_sigterm_to(&mut self, child: i32);

    /// Waits for `child` to end: its exit code (128 + signal when killed) and signal.
    fn wait(&mut self, child: i32) -> Result<(i32, Option<i32>), ExecError>;

    /// Ends the calling (forked) process without running the parent's exit handlers.
    fn exit(&mut self, code: i32) -> !;

    /// Restores default signal handling and an empty signal mask (ignored signals survive
    /// `execve`, and the Rust runtime ignores SIGPIPE).
    fn reset_signals(&mut self);

    /// Starts a new session (no controlling terminal).
    fn new_session(&mut self) -> Result<(), ExecError>;

    /// Makes a pty in the step's `/dev/pts`, sends its master to the runner over `console_fd`
    /// and makes the slave the controlling terminal and fds 0, 1 and 2 (`builder run -t`).
    fn attach_terminal(&mut self, console_fd: i32) -> Result<(), ExecError>;

    /// Gives the terminal on fd 0 to `uid`, as runc does; a failure leaves it root's.
    fn give_terminal_to(&mut self, uid: u32);

    /// Marks every fd from 3 up close-on-exec.
    fn close_fds_on_exec(&mut self) -> Result<(), ExecError>;

    /// Creates `dir` and its parents (the step's working directory, inside the new root).
    fn create_dir_all(&mut self, dir: &Path) -> Result<(), ExecError>;

    /// Changes the working directory.
    fn chdir(&mut self, dir: &Path) -> Result<(), ExecError>;

    /// The calling process's permitted capabilities.
    fn permitted_capabilities(&mut self) -> Result<CapabilitySet, ExecError>;

    /// Removes capability number `cap` from the bounding set.
    fn drop_bounding_capability(&mut self, cap: u32) -> Result<(), ExecError>;

    /// Whether `setgroups` is denied in this user namespace (`/proc/self/setgroups`).
    fn setgroups_denied(&mut self) -> bool;

    /// Sets the supplementary groups.
    fn set_groups(&mut self, gids: &[u32]) -> Result<(), ExecError>;

    /// Sets the real, effective and saved group id.
    fn set_gid(&mut self, gid: u32) -> Result<(), ExecError>;

    /// Sets the real, effective and saved user id.
    fn set_uid(&mut self, uid: u32) -> Result<(), ExecError>;

    /// Sets the effective and permitted capabilities to `caps`, the inheritable to none.
    fn set_capabilities(&mut self, caps: CapabilitySet) -> Result<(), ExecError>;

    /// Sets `no_new_privs`: setuid files and file capabilities grant nothing.
    fn set_no_new_privs(&mut self) -> Result<(), ExecError>;

    /// Sets one resource limit (`--ulimit`) on this process; inherited across `execve`.
    fn set_rlimit(&mut self, limit: &super::spec::Rlimit) -> Result<(), ExecError>;

    /// Installs the seccomp filters (last before `execve`).
    fn install_seccomp(&mut self, filters: &[BpfProgram]) -> Result<(), ExecError>;

    /// Replaces the process image; returns only the error.
    fn execve(&mut self, path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error;
}

/// The real kernel.
pub(crate) struct RealKernel;

fn setup_error(step: impl Into<String>, e: impl Into<io::Error>) -> ExecError {
    ExecError::Setup {
        step: step.into(),
        message: os_message(e),
    }
}

/// An error of `set*id`: EINVAL means the id has no mapping in the user namespace.
fn id_error(what: &str, id: u32, e: io::Error) -> ExecError {
    let einval = e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error());
    let mut message = os_message(e);
    if einval {
        message.push_str(&format!(
            " ({what} {id} is not mapped: rootless builds need subordinate ids for the user \
             in /etc/subuid and /etc/subgid)"
        ));
    }
    ExecError::Setup {
        step: format!("set {what} {id}"),
        message,
    }
}

/// The step's pid 1, for the SIGTERM handler.
static STEP_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn kill_step(_: libc::c_int) {
    let pid = STEP_PID.load(Ordering::SeqCst);
    // Only a positive pid names one process (and `Pid::from_raw` asserts it).
    if pid > 0 {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            // kill(2) is async-signal-safe.
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

impl Kernel for RealKernel {
    fn new_fs(
        &mut self,
        fs_type: &'static str,
        options: &[FsOption],
        attrs: MountAttrFlags,
        shown: &Path,
    ) -> Result<OwnedFd, ExecError> {
        let fs = NewFs::open(fs_type, shown)?;
        for option in options {
            match option {
                FsOption::Value(key, value) => fs.set(key, value, shown)?,
                FsOption::Path(key, path) => {
                    // Given as `/proc/self/fd/N`, which the kernel resolves at once and shows in
                    // the mount's options instead of the host path: a step reading
                    // /proc/self/mountinfo does not learn where the layers live.
                    let dir = rustix::fs::open(
                        path,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| {
                        mount_error(
                            fs_type,
                            shown,
                            format!("{key}={}: {}", path.display(), os_message(e)),
                        )
                    })?;
                    let by_fd = format!("/proc/self/fd/{}", dir.as_raw_fd());
                    fs.set_path(key, Path::new(&by_fd), shown)?;
                }
                FsOption::Flag(key) => fs.flag(key, shown)?,
            }
        }
        fs.mount(attrs, shown)
    }

    fn clone_tree(
        &mut self,
        source: TreeSource<'_>,
        attrs: MountAttrFlags,
        shown: &Path,
    ) -> Result<OwnedFd, ExecError> {
        let tree = match source {
            TreeSource::Path(path) => clone_tree(path, shown)?,
            TreeSource::Fd(fd) => clone_tree_at_fd(fd, shown)?,
        };
        if !attrs.is_empty() {
            set_tree_attrs(&tree, attrs, shown)?;
        }
        Ok(tree)
    }

    fn attach(
        &mut self,
        mount: OwnedFd,
        at: AttachPoint<'_>,
        what: &str,
        shown: &Path,
    ) -> Result<(), ExecError> {
        match at {
            AttachPoint::Fd(fd) => attach_at_fd(&mount, fd, what, shown),
            AttachPoint::Path(path) => attach_at_path(&mount, path, what),
        }
    }

    fn make_mounts_private(&mut self) -> Result<(), ExecError> {
        use rustix::mount::MountPropagationFlags;
        rustix::mount::mount_change(
            "/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )
        .map_err(|e| {
            let mut message = os_message(e);
            if e == rustix::io::Errno::INVAL {
                // The one case users meet: a chroot whose root directory is no mount point.
                message.push_str(
                    " (is / a mount point? in a chroot, bind-mount its directory onto itself \
                     first: mount --bind DIR DIR)",
                );
            }
            mount_error("private propagation", Path::new("/"), message)
        })
    }

    fn unmount(&mut self, target: &Path) -> Result<(), ExecError> {
        rustix::mount::unmount(target, rustix::mount::UnmountFlags::DETACH)
            .map_err(|e| mount_error("unmount", target, os_message(e)))
    }

    fn pivot_root(&mut self, root: BorrowedFd<'_>, rootfs: &Path) -> Result<(), ExecError> {
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

    fn root_after_pivot(&self, _rootfs: &Path) -> PathBuf {
        PathBuf::from("/")
    }

    fn ids(&mut self) -> ProcessIds {
        ProcessIds {
            euid: rustix::process::geteuid().as_raw(),
            uid: rustix::process::getuid().as_raw(),
            gid: rustix::process::getgid().as_raw(),
            pid: rustix::process::getpid().as_raw_nonzero().get(),
        }
    }

    fn unshare(&mut self, flags: UnshareFlags, what: &str) -> Result<(), ExecError> {
        // SAFETY: the helper and the step's pid 1 are single-threaded, so changing their
        // namespaces affects nothing else.
        unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| ExecError::Unshare {
            namespaces: what.to_string(),
            message: os_message(e),
        })
    }

    fn write_id_map(&mut self, file: &'static str, content: &str) -> Result<(), ExecError> {
        let path = format!("/proc/self/{file}");
        std::fs::write(&path, content).map_err(|e| ExecError::IdMap(format!("{path}: {e}")))
    }

    fn set_hostname(&mut self, name: &str) -> Result<(), ExecError> {
        rustix::system::sethostname(name.as_bytes()).map_err(|e| setup_error("set hostname", e))
    }

    fn loopback_up(&mut self) -> Result<(), ExecError> {
        super::sys::loopback_up()
    }

    fn die_with_parent(&mut self) -> Result<(), ExecError> {
        rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
            .map_err(|e| setup_error("set the parent-death signal", e))
    }

    fn close_on_exec(&mut self, fd: BorrowedFd<'_>) -> Result<(), ExecError> {
        rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::CLOEXEC)
            .map_err(|e| setup_error("mark the control socket close-on-exec", e))
    }

    fn last_cap(&mut self) -> u32 {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    }

    fn fork(&mut self) -> Result<Forked, ExecError> {
        // SAFETY: the helper is single-threaded; the child only runs code that is fine after
        // fork.
        // libc: rustix offers no fork outside its own runtime (the C library's must run).
        match unsafe { libc::fork() } {
            0 => Ok(Forked::Child),
            child if child > 0 => Ok(Forked::Parent(child)),
            _ => Err(setup_error(
                "fork the step's pid 1",
                io::Error::last_os_error(),
            )),
        }
    }

    fn forward_sigterm_to(&mut self, child: i32) {
        STEP_PID.store(child, Ordering::SeqCst);
        // libc: rustix leaves signal handlers to the C library (sigaction is not in its API).
        // SAFETY: a zeroed sigaction with an empty mask is valid; the handler only reads an
        // atomic and calls kill(2).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = kill_step as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGTERM, &action, std::ptr::null_mut());
        }
    }

    fn wait(&mut self, child: i32) -> Result<(i32, Option<i32>), ExecError> {
        use rustix::process::{waitpid, Pid, WaitOptions};
        // Only a positive pid names one child (and `Pid::from_raw` asserts it).
        let Some(child) = (child > 0).then(|| Pid::from_raw(child)).flatten() else {
            return Err(setup_error("wait for the step", rustix::io::Errno::CHILD));
        };
        loop {
            match waitpid(Some(child), WaitOptions::empty()) {
                Ok(Some((_, status))) => {
                    if let Some(code) = status.exit_status() {
                        return Ok((code, None));
                    }
                    if let Some(sig) = status.terminating_signal() {
                        return Ok((128 + sig, Some(sig)));
                    }
                }
                Ok(None) | Err(rustix::io::Errno::INTR) => continue,
                Err(e) => return Err(setup_error("wait for the step", e)),
            }
        }
    }

    fn exit(&mut self, code: i32) -> ! {
        // libc: rustix has no `_exit` outside its own runtime.
        // SAFETY: ending a forked child without running the parent's atexit handlers.
        unsafe { libc::_exit(code) }
    }

    fn reset_signals(&mut self) {
        // libc: signal dispositions and masks belong to the C library; rustix leaves them out.
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

    fn new_session(&mut self) -> Result<(), ExecError> {
        rustix::process::setsid()
            .map(drop)
            .map_err(|e| setup_error("start a new session", e))
    }

    fn attach_terminal(&mut self, console_fd: i32) -> Result<(), ExecError> {
        super::console::attach_terminal(console_fd)
    }

    fn give_terminal_to(&mut self, uid: u32) {
        let _ = rustix::fs::fchown(
            rustix::stdio::stdin(),
            Some(rustix::process::Uid::from_raw(uid)),
            None,
        );
    }

    fn close_fds_on_exec(&mut self) -> Result<(), ExecError> {
        // libc: rustix does not wrap close_range(2).
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
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn create_dir_all(&mut self, dir: &Path) -> Result<(), ExecError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| setup_error(format!("create working directory {}", dir.display()), e))
    }

    fn chdir(&mut self, dir: &Path) -> Result<(), ExecError> {
        std::env::set_current_dir(dir)
            .map_err(|e| setup_error(format!("change to working directory {}", dir.display()), e))
    }

    fn permitted_capabilities(&mut self) -> Result<CapabilitySet, ExecError> {
        rustix::thread::capabilities(None)
            .map(|sets| sets.permitted)
            .map_err(|e| setup_error("read capabilities", e))
    }

    fn drop_bounding_capability(&mut self, cap: u32) -> Result<(), ExecError> {
        let set = CapabilitySet::from_bits_retain(1u64 << cap);
        rustix::thread::remove_capability_from_bounding_set(set)
            .map_err(|e| setup_error(format!("drop capability {cap}"), e))
    }

    fn setgroups_denied(&mut self) -> bool {
        std::fs::read_to_string("/proc/self/setgroups")
            .map(|s| s.trim() == "deny")
            .unwrap_or(false)
    }

    fn set_groups(&mut self, gids: &[u32]) -> Result<(), ExecError> {
        // libc: rustix's setgroups acts on the calling thread only; the C library's on the
        // process.
        // SAFETY: `gids` is a valid array of `gids.len()` group ids.
        if unsafe { libc::setgroups(gids.len(), gids.as_ptr()) } != 0 {
            return Err(setup_error(
                "set supplementary groups",
                io::Error::last_os_error(),
            ));
        }
        Ok(())
    }

    fn set_gid(&mut self, gid: u32) -> Result<(), ExecError> {
        // libc: rustix's set_thread_res_gid acts on the calling thread only.
        // SAFETY: plain setresgid(2).
        if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
            return Err(id_error("group", gid, io::Error::last_os_error()));
        }
        Ok(())
    }

    fn set_uid(&mut self, uid: u32) -> Result<(), ExecError> {
        // libc: rustix's set_thread_res_uid acts on the calling thread only.
        // SAFETY: plain setresuid(2).
        if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
            return Err(id_error("user", uid, io::Error::last_os_error()));
        }
        Ok(())
    }

    fn set_capabilities(&mut self, caps: CapabilitySet) -> Result<(), ExecError> {
        rustix::thread::set_capabilities(
            None,
            CapabilitySets {
                effective: caps,
                permitted: caps,
                inheritable: CapabilitySet::empty(),
            },
        )
        .map_err(|e| setup_error("set capabilities", e))
    }

    fn set_no_new_privs(&mut self) -> Result<(), ExecError> {
        rustix::thread::set_no_new_privs(true).map_err(|e| setup_error("set no_new_privs", e))
    }

    fn set_rlimit(&mut self, limit: &super::spec::Rlimit) -> Result<(), ExecError> {
        use rustix::process::Resource;
        let resource = match limit.name.as_str() {
            "core" => Resource::Core,
            "cpu" => Resource::Cpu,
            "data" => Resource::Data,
            "fsize" => Resource::Fsize,
            "locks" => Resource::Locks,
            "memlock" => Resource::Memlock,
            "msgqueue" => Resource::Msgqueue,
            "nice" => Resource::Nice,
            "nofile" => Resource::Nofile,
            "nproc" => Resource::Nproc,
            "rss" => Resource::Rss,
            "rtprio" => Resource::Rtprio,
            "rttime" => Resource::Rttime,
            "sigpending" => Resource::Sigpending,
            "stack" => Resource::Stack,
            other => {
                return Err(ExecError::InvalidSpec(format!(
                    "unknown resource limit {other:?}"
                )))
            }
        };
        rustix::process::setrlimit(
            resource,
            rustix::process::Rlimit {
                current: limit.soft,
                maximum: limit.hard,
            },
        )
        .map_err(|e| setup_error(format!("set the {} limit", limit.name), e))
    }

    fn install_seccomp(&mut self, filters: &[BpfProgram]) -> Result<(), ExecError> {
        super::seccomp::install(filters).map_err(|e| ExecError::Setup {
            step: "install the seccomp filter".to_string(),
            message: e.to_string(),
        })
    }

    fn execve(&mut self, path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
        fn pointers(strings: &[CString]) -> Vec<*const libc::c_char> {
            let mut out: Vec<_> = strings.iter().map(|s| s.as_ptr()).collect();
            out.push(std::ptr::null());
            out
        }
        let (argv, envp) = (pointers(argv), pointers(envp));
        // libc: rustix offers execve only inside its own runtime, not for a C-runtime process.
        // SAFETY: `path` and every string are NUL-terminated and outlive the call; both arrays
        // end with a null pointer.
        unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        io::Error::last_os_error()
    }
}

/// The options of an overlay with `lower` (bottom to top), an optional upper and work
/// directory, for a root or rootless sandbox. `empty` pads the lower layers to the minimum the
/// kernel takes (one with an upper, two without).
pub(crate) fn overlay_options(
    lower: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    volatile: bool,
    rootless: bool,
    empty: &Path,
) -> Vec<FsOption> {
    let mut layers: Vec<&Path> = lower.iter().map(PathBuf::as_path).collect();
    let needed = if upper.is_some() { 1 } else { 2 };
    while layers.len() < needed {
        layers.insert(0, empty);
    }
    // `lowerdir+` appends below the layers given so far: the top layer goes first.
    let mut options: Vec<FsOption> = layers
        .iter()
        .rev()
        .map(|l| FsOption::Path("lowerdir+", l.to_path_buf()))
        .collect();
    if let Some((upper, work)) = upper {
        options.push(FsOption::Path("upperdir", upper.to_path_buf()));
        options.push(FsOption::Path("workdir", work.to_path_buf()));
        if volatile {
            options.push(FsOption::Flag("volatile"));
        }
    }
    // With redirects and metacopy off, the upper directory is a complete diff by itself.
    // ("off" still follows existing redirects, which the kernel refuses with `userxattr`.)
    let redirect = if rootless { "nofollow" } else { "off" };
    options.push(FsOption::Value("redirect_dir", redirect.to_string()));
    options.push(FsOption::Value("metacopy", "off".to_string()));
    options.push(FsOption::Value("index", "off".to_string()));
    if rootless {
        // Rootless overlays keep their metadata in `user.overlay.*` xattrs.
        options.push(FsOption::Flag("userxattr"));
    }
    options
}

#[cfg(test)]
pub(crate) mod recording {
    //! A [`Kernel`] that records calls instead of making them.

    use super::*;

    /// Records every call that changes something as one line, e.g.
    /// `new tmpfs /dev [mode=755 size=65536k] MountAttrFlags(...)`, and answers the queries
    /// from its fields. `fork` answers as the parent of `child_pid`; `wait` reports exit 0;
    /// `execve` fails (so the step's set-up returns to the test). The first call whose line
    /// starts with `fail_at` fails with EPERM: its line is recorded with ` -> EPERM`.
    pub(crate) struct RecordingKernel {
        pub log: Vec<String>,
        pub ids: ProcessIds,
        pub last_cap: u32,
        pub setgroups_denied: bool,
        pub permitted: CapabilitySet,
        pub child_pid: i32,
        pub fail_at: Option<String>,
    }

    impl Default for RecordingKernel {
        /// Root, outside any user namespace, on a kernel with 41 capabilities.
        fn default() -> Self {
            RecordingKernel {
                log: Vec::new(),
                ids: ProcessIds {
                    euid: 0,
                    uid: 0,
                    gid: 0,
                    pid: 100,
                },
                last_cap: 40,
                setgroups_denied: false,
                permitted: CapabilitySet::from_bits_retain((1u64 << 41) - 1),
                child_pid: 101,
                fail_at: None,
            }
        }
    }

    impl RecordingKernel {
        /// A kernel on which the first call recorded as starting with `prefix` fails.
        pub(crate) fn failing_at(prefix: &str) -> Self {
            RecordingKernel {
                fail_at: Some(prefix.to_string()),
                ..RecordingKernel::default()
            }
        }

        /// The log as `&str`s, for comparing with a literal list.
        pub(crate) fn lines(&self) -> Vec<&str> {
            self.log.iter().map(String::as_str).collect()
        }

        /// Records `line`; fails it if it is the call to fail.
        fn call(&mut self, line: String) -> Result<(), ExecError> {
            if self
                .fail_at
                .as_ref()
                .is_some_and(|p| line.starts_with(p.as_str()))
            {
                self.fail_at = None;
                self.log.push(format!("{line} -> EPERM"));
                return Err(ExecError::Setup {
                    step: line,
                    message: os_message(rustix::io::Errno::PERM),
                });
            }
            self.log.push(line);
            Ok(())
        }
    }

    fn placeholder_fd() -> OwnedFd {
        std::fs::File::open("/dev/null")
            .expect("/dev/null opens")
            .into()
    }

    fn describe(option: &FsOption) -> String {
        match option {
            FsOption::Value(k, v) => format!("{k}={v}"),
            FsOption::Path(k, p) => format!("{k}={}", p.display()),
            FsOption::Flag(k) => (*k).to_string(),
        }
    }

    impl Kernel for RecordingKernel {
        fn new_fs(
            &mut self,
            fs_type: &'static str,
            options: &[FsOption],
            attrs: MountAttrFlags,
            shown: &Path,
        ) -> Result<OwnedFd, ExecError> {
            let options: Vec<String> = options.iter().map(describe).collect();
            self.call(format!(
                "new {fs_type} {} [{}] {:?}",
                shown.display(),
                options.join(" "),
                attrs
            ))?;
            Ok(placeholder_fd())
        }

        fn clone_tree(
            &mut self,
            source: TreeSource<'_>,
            attrs: MountAttrFlags,
            shown: &Path,
        ) -> Result<OwnedFd, ExecError> {
            let source = match source {
                TreeSource::Path(p) => p.display().to_string(),
                TreeSource::Fd(_) => "<fd>".to_string(),
            };
            self.call(format!("clone {source} for {} {attrs:?}", shown.display()))?;
            Ok(placeholder_fd())
        }

        fn attach(
            &mut self,
            _mount: OwnedFd,
            _at: AttachPoint<'_>,
            what: &str,
            shown: &Path,
        ) -> Result<(), ExecError> {
            self.call(format!("attach {what} at {}", shown.display()))
        }

        fn make_mounts_private(&mut self) -> Result<(), ExecError> {
            self.call("mount / MS_REC|MS_PRIVATE".to_string())
        }

        fn unmount(&mut self, target: &Path) -> Result<(), ExecError> {
            self.call(format!("umount2 {} MNT_DETACH", target.display()))
        }

        fn pivot_root(&mut self, _root: BorrowedFd<'_>, rootfs: &Path) -> Result<(), ExecError> {
            self.call(format!("pivot_root {}", rootfs.display()))
        }

        fn root_after_pivot(&self, rootfs: &Path) -> PathBuf {
            // Nothing pivoted: the root is still where it was.
            rootfs.to_path_buf()
        }

        fn ids(&mut self) -> ProcessIds {
            self.ids
        }

        fn unshare(&mut self, flags: UnshareFlags, _what: &str) -> Result<(), ExecError> {
            self.call(format!("unshare {flags:?}"))
        }

        fn write_id_map(&mut self, file: &'static str, content: &str) -> Result<(), ExecError> {
            self.call(format!("write /proc/self/{file} {content:?}"))
        }

        fn set_hostname(&mut self, name: &str) -> Result<(), ExecError> {
            self.call(format!("sethostname {name}"))
        }

        fn loopback_up(&mut self) -> Result<(), ExecError> {
            self.call("lo up".to_string())
        }

        fn die_with_parent(&mut self) -> Result<(), ExecError> {
            self.call("prctl PR_SET_PDEATHSIG SIGKILL".to_string())
        }

        fn close_on_exec(&mut self, _fd: BorrowedFd<'_>) -> Result<(), ExecError> {
            self.call("fcntl FD_CLOEXEC".to_string())
        }

        fn last_cap(&mut self) -> u32 {
            self.last_cap
        }

        fn fork(&mut self) -> Result<Forked, ExecError> {
            self.call("fork".to_string())?;
            Ok(Forked::Parent(self.child_pid))
        }

        fn forward_sigterm_to(&mut self, child: i32) {
            self.log.push(format!("sigaction SIGTERM -> kill {child}"));
        }

        fn wait(&mut self, child: i32) -> Result<(i32, Option<i32>), ExecError> {
            self.call(format!("waitpid {child}"))?;
            Ok((0, None))
        }

        fn exit(&mut self, code: i32) -> ! {
            panic!("the recording kernel never forks a child, so nothing exits ({code})")
        }

        fn reset_signals(&mut self) {
            self.log.push("reset signals".to_string());
        }

        fn new_session(&mut self) -> Result<(), ExecError> {
            self.call("setsid".to_string())
        }

        fn attach_terminal(&mut self, console_fd: i32) -> Result<(), ExecError> {
            self.call(format!("attach a new pty via fd {console_fd}"))
        }

        fn give_terminal_to(&mut self, uid: u32) {
            self.log.push(format!("fchown 0 {uid}"));
        }

        fn close_fds_on_exec(&mut self) -> Result<(), ExecError> {
            self.call("close_range 3.. CLOEXEC".to_string())
        }

        fn create_dir_all(&mut self, dir: &Path) -> Result<(), ExecError> {
            self.call(format!("mkdir -p {}", dir.display()))
        }

        fn chdir(&mut self, dir: &Path) -> Result<(), ExecError> {
            self.call(format!("chdir {}", dir.display()))
        }

        fn permitted_capabilities(&mut self) -> Result<CapabilitySet, ExecError> {
            Ok(self.permitted)
        }

        fn drop_bounding_capability(&mut self, cap: u32) -> Result<(), ExecError> {
            self.call(format!("capbset drop {cap}"))
        }

        fn setgroups_denied(&mut self) -> bool {
            self.setgroups_denied
        }

        fn set_groups(&mut self, gids: &[u32]) -> Result<(), ExecError> {
            self.call(format!("setgroups {gids:?}"))
        }

        fn set_gid(&mut self, gid: u32) -> Result<(), ExecError> {
            self.call(format!("setresgid {gid}"))
        }

        fn set_uid(&mut self, uid: u32) -> Result<(), ExecError> {
            self.call(format!("setresuid {uid}"))
        }

        fn set_capabilities(&mut self, caps: CapabilitySet) -> Result<(), ExecError> {
            self.call(format!("capset {:#x}", caps.bits()))
        }

        fn set_no_new_privs(&mut self) -> Result<(), ExecError> {
            self.call("prctl PR_SET_NO_NEW_PRIVS".to_string())
        }

        fn set_rlimit(&mut self, limit: &crate::executor::spec::Rlimit) -> Result<(), ExecError> {
            self.call(format!(
                "setrlimit {} {:?} {:?}",
                limit.name, limit.soft, limit.hard
            ))
        }

        fn install_seccomp(&mut self, filters: &[BpfProgram]) -> Result<(), ExecError> {
            self.call(format!("seccomp {} filters", filters.len()))
        }

        fn execve(&mut self, path: &CStr, argv: &[CString], envp: &[CString]) -> io::Error {
            match self.call(format!("execve {path:?} {argv:?} {envp:?}")) {
                Ok(()) => io::Error::other("recorded, not executed"),
                Err(_) => rustix::io::Errno::PERM.into(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_go_tools_print_them() {
        assert_eq!(
            os_message(rustix::io::Errno::NOENT),
            "no such file or directory"
        );
        assert_eq!(
            os_message(rustix::io::Errno::LOOP),
            "too many levels of symbolic links"
        );
        assert_eq!(
            id_error("user", 5, rustix::io::Errno::INVAL.into()).to_string(),
            "set user 5: invalid argument (user 5 is not mapped: rootless builds need \
             subordinate ids for the user in /etc/subuid and /etc/subgid)"
        );
        assert_eq!(
            id_error("group", 5, rustix::io::Errno::PERM.into()).to_string(),
            "set group 5: operation not permitted"
        );
    }

    fn show(options: &[FsOption]) -> Vec<String> {
        options
            .iter()
            .map(|o| match o {
                FsOption::Value(k, v) => format!("{k}={v}"),
                FsOption::Path(k, p) => format!("{k}={}", p.display()),
                FsOption::Flag(k) => (*k).to_string(),
            })
            .collect()
    }

    #[test]
    fn overlay_gives_top_layer_first_and_a_complete_diff() {
        let lower = vec![PathBuf::from("/l/base"), PathBuf::from("/l/top")];
        let opts = overlay_options(
            &lower,
            Some((Path::new("/u"), Path::new("/w"))),
            true,
            false,
            Path::new("/e"),
        );
        assert_eq!(
            show(&opts),
            [
                "lowerdir+=/l/top",
                "lowerdir+=/l/base",
                "upperdir=/u",
                "workdir=/w",
                "volatile",
                "redirect_dir=off",
                "metacopy=off",
                "index=off"
            ]
        );
    }

    #[test]
    fn rootless_and_padded_overlays() {
        let opts = overlay_options(
            &[],
            Some((Path::new("/u"), Path::new("/w"))),
            true,
            true,
            Path::new("/e"),
        );
        assert_eq!(
            show(&opts),
            [
                "lowerdir+=/e",
                "upperdir=/u",
                "workdir=/w",
                "volatile",
                "redirect_dir=nofollow",
                "metacopy=off",
                "index=off",
                "userxattr"
            ]
        );
        let read_only = overlay_options(&[PathBuf::from("/l")], None, true, false, Path::new("/e"));
        assert_eq!(show(&read_only)[..2], ["lowerdir+=/l", "lowerdir+=/e"]);
    }
}
