//! The sandbox helper: a fresh, single-threaded copy of the binary that makes the namespaces.
//!
//! Order: (rootless) new user namespace, ids mapped by the runner → new mount, UTS, IPC, pid
//! (and network) namespaces → private propagation, hostname, loopback (and, for the NAT network,
//! ask the runner for slirp4netns) → a private tmpfs on the state directory → overlays → (wait
//! for the network) → fork the step's pid 1 ([`super::container`]) → wait → unmount the
//! overlays, remove the mount stubs from the upper directory and the work directories → report.

use super::container::{child_main, ChildContext};
use super::error::ExecError;
use super::mounts::{overlay_options, AttachPoint, FsOption, KernelMounts, Mounts};
use super::protocol::{recv, send, HelperMessage, HelperRequest, RunnerReply};
use super::spec::{Network, OverlayMount};
use super::stubs::{remove_stubs, StubReport};
use super::sys::os_message;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};
use rustix::fd::{AsRawFd, FromRawFd, OwnedFd};
use rustix::mount::MountAttrFlags;
use rustix::thread::UnshareFlags;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};

/// Entry point of the helper process; `ctl_fd` is the control socket from the runner.
pub(crate) fn helper_main(ctl_fd: i32) -> ! {
    // SAFETY: the runner passes the fd number of a socket it opened for this process alone.
    let ctl = unsafe { OwnedFd::from_raw_fd(ctl_fd) };
    let _ = rustix::io::fcntl_setfd(&ctl, rustix::io::FdFlags::CLOEXEC);
    let ctl = File::from(ctl);
    let outcome = match ctl.try_clone() {
        Ok(reader) => run(&ctl, &mut BufReader::new(reader)),
        Err(e) => Err(ExecError::Protocol(e.to_string())),
    };
    let message = match outcome {
        Ok((code, signal)) => HelperMessage::Exited { code, signal },
        Err(e) => HelperMessage::Failed(e),
    };
    let _ = send(&ctl, &message);
    std::process::exit(0)
}

fn unshare(flags: UnshareFlags, what: &str) -> Result<(), ExecError> {
    // SAFETY: the helper is single-threaded, so changing its namespaces affects nothing else.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(|e| ExecError::Unshare {
        namespaces: what.to_string(),
        message: os_message(e),
    })
}

fn run(ctl: &File, reader: &mut BufReader<File>) -> Result<(i32, Option<i32>), ExecError> {
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    let request: HelperRequest =
        recv(reader)?.ok_or_else(|| ExecError::Protocol("no request".to_string()))?;
    let spec = &request.spec;
    let rootless = super::is_rootless();
    if rootless {
        let (uid, gid) = (rustix::process::getuid(), rustix::process::getgid());
        unshare(UnshareFlags::NEWUSER, "user")?;
        send(
            ctl,
            &HelperMessage::NeedIdMap {
                pid: rustix::process::getpid().as_raw_nonzero().get(),
            },
        )?;
        match recv::<RunnerReply>(reader)? {
            Some(RunnerReply::Mapped) => {}
            Some(RunnerReply::MapSelf) => map_self(uid.as_raw(), gid.as_raw())?,
            Some(RunnerReply::Abort | RunnerReply::NetworkReady) | None => {
                return Err(ExecError::IdMap("the runner could not map ids".to_string()))
            }
        }
    }
    let mut flags =
        UnshareFlags::NEWNS | UnshareFlags::NEWUTS | UnshareFlags::NEWIPC | UnshareFlags::NEWPID;
    if spec.network != Network::Host {
        flags |= UnshareFlags::NEWNET;
    }
    unshare(flags, "mount, uts, ipc, pid, net")?;
    nix::mount::mount(
        None::<&str>,
        "/",
        None::<&str>,
        nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(|e| super::sys::mount_error("private propagation", Path::new("/"), os_message(e)))?;
    if !spec.hostname.is_empty() {
        rustix::system::sethostname(spec.hostname.as_bytes()).map_err(|e| ExecError::Setup {
            step: "set hostname".to_string(),
            message: os_message(e),
        })?;
    }
    if spec.network != Network::Host {
        super::sys::loopback_up()?;
    }
    if spec.network == Network::Nat {
        send(
            ctl,
            &HelperMessage::NeedNetwork {
                pid: rustix::process::getpid().as_raw_nonzero().get(),
            },
        )?;
        // The answer is read just before the step starts: slirp4netns starts meanwhile.
    }
    let m = &mut KernelMounts;
    let state_dir = request.state_dir.as_path();
    let state = m.new_fs(
        "tmpfs",
        &[FsOption::Value("mode", "700".to_string())],
        MountAttrFlags::MOUNT_ATTR_NODEV,
        state_dir,
    )?;
    m.attach(state, AttachPoint::Path(state_dir), "tmpfs", state_dir)?;
    let empty = request.state_dir.join("empty");
    std::fs::create_dir(&empty).map_err(|e| ExecError::Prepare {
        path: empty.clone(),
        message: os_message(e),
    })?;

    let mut mounted = Vec::new();
    let result = mount_overlays(m, &spec.overlays, rootless, &empty, &mut mounted).and_then(|()| {
        if spec.network == Network::Nat {
            await_network(reader)?;
        }
        run_step(&request, ctl, rootless)
    });
    for target in mounted.iter().rev() {
        let _ = rustix::mount::unmount(*target, rustix::mount::UnmountFlags::DETACH);
    }
    let (status, report) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = cleanup(&request, &StubReport::default());
            return Err(e);
        }
    };
    cleanup(&request, &report)?;
    Ok(status)
}

/// Waits for the runner's answer to [`HelperMessage::NeedNetwork`].
fn await_network(reader: &mut BufReader<File>) -> Result<(), ExecError> {
    match recv::<RunnerReply>(reader)? {
        Some(RunnerReply::NetworkReady) => Ok(()),
        _ => Err(ExecError::Setup {
            step: "connect the step's network".to_string(),
            message: "the runner could not start slirp4netns".to_string(),
        }),
    }
}

/// Writes a one-id map (our uid and gid as 0) when there are no subordinate ids.
fn map_self(uid: u32, gid: u32) -> Result<(), ExecError> {
    let write = |file: &str, content: String| {
        std::fs::write(file, content).map_err(|e| ExecError::IdMap(format!("{file}: {e}")))
    };
    write("/proc/self/setgroups", "deny".to_string())?;
    write("/proc/self/uid_map", format!("0 {uid} 1\n"))?;
    write("/proc/self/gid_map", format!("0 {gid} 1\n"))
}

fn mount_overlays<'a>(
    m: &mut dyn Mounts,
    overlays: &'a [OverlayMount],
    rootless: bool,
    empty: &Path,
    mounted: &mut Vec<&'a Path>,
) -> Result<(), ExecError> {
    for overlay in overlays {
        let target = overlay.target.as_path();
        let upper = overlay
            .upper
            .as_ref()
            .map(|u| (u.upper.as_path(), u.work.as_path()));
        // `volatile`: no sync of the upper directory per step; a crash loses only this step.
        let options = overlay_options(&overlay.lower, upper, true, rootless, empty);
        // `nodev`: device nodes in the image or made by the step do not open (see
        // `container::NODEV`).
        let attrs = if upper.is_some() {
            MountAttrFlags::MOUNT_ATTR_NODEV
        } else {
            MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NODEV
        };
        let mount = m.new_fs("overlay", &options, attrs, target)?;
        m.attach(mount, AttachPoint::Path(target), "overlay", target)?;
        mounted.push(target);
    }
    Ok(())
}

/// Forks the step's pid 1 and waits for it.
fn run_step(
    request: &HelperRequest,
    ctl: &File,
    rootless: bool,
) -> Result<((i32, Option<i32>), StubReport), ExecError> {
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    let (stub_read, stub_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ExecError::Setup {
            step: "pipe".to_string(),
            message: os_message(e),
        })?;
    // SAFETY: the helper is single-threaded; the child only runs code that is fine after fork.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            drop(stub_read);
            child_main(
                request,
                ChildContext {
                    ctl: ctl.as_raw_fd(),
                    stub_pipe: stub_write,
                    last_cap,
                    rootless,
                },
            )
        }
        Ok(ForkResult::Parent { child }) => {
            forward_sigterm_to(child);
            drop(stub_write);
            let mut bytes = Vec::new();
            let _ = File::from(stub_read).read_to_end(&mut bytes);
            let report: StubReport = serde_json::from_slice(&bytes).unwrap_or_default();
            loop {
                match waitpid(child, None) {
                    Ok(WaitStatus::Exited(_, code)) => return Ok(((code, None), report)),
                    Ok(WaitStatus::Signaled(_, sig, _)) => {
                        return Ok(((128 + sig as i32, Some(sig as i32)), report))
                    }
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    Err(e) => {
                        return Err(ExecError::Setup {
                            step: "wait for the step".to_string(),
                            message: os_message(e),
                        })
                    }
                }
            }
        }
        Err(e) => Err(ExecError::Setup {
            step: "fork the step's pid 1".to_string(),
            message: os_message(e),
        }),
    }
}

/// The step's pid 1, for the SIGTERM handler.
static STEP_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn kill_step(_: libc::c_int) {
    let pid = STEP_PID.load(Ordering::SeqCst);
    if pid > 0 {
        // SAFETY: kill(2) is async-signal-safe.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
}

/// On SIGTERM (a cancelled run), kill the step and carry on to the clean-up.
fn forward_sigterm_to(child: nix::unistd::Pid) {
    STEP_PID.store(child.as_raw(), Ordering::SeqCst);
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(kill_step),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only reads an atomic and calls kill(2).
    let _ = unsafe { nix::sys::signal::sigaction(nix::sys::signal::Signal::SIGTERM, &action) };
}

/// Removes the mount stubs from the root's upper directory and deletes the work directories.
fn cleanup(request: &HelperRequest, report: &StubReport) -> Result<(), ExecError> {
    if let super::spec::Action::Exec(exec) = &request.spec.action {
        let rootfs = std::fs::canonicalize(&exec.rootfs).unwrap_or_else(|_| exec.rootfs.clone());
        let overlay = request
            .spec
            .overlays
            .iter()
            .find(|o| o.target == exec.rootfs || o.target == rootfs);
        let diff_root = match overlay {
            Some(o) => o.upper.as_ref().map(|u| u.upper.clone()),
            None => Some(rootfs),
        };
        if let Some(dir) = diff_root {
            remove_stubs(&dir, report).map_err(|(path, e)| ExecError::Cleanup {
                path,
                message: os_message(e),
            })?;
        }
    }
    for overlay in &request.spec.overlays {
        if let Some(upper) = &overlay.upper {
            match std::fs::remove_dir_all(&upper.work) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(ExecError::Cleanup {
                        path: upper.work.clone(),
                        message: os_message(e),
                    })
                }
            }
        }
    }
    Ok(())
}
