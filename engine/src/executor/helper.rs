//! The sandbox helper: a fresh, single-threaded copy of the binary that makes the namespaces.
//!
//! Order: (rootless) new user namespace, ids mapped by the runner → new mount, UTS, IPC, pid
//! (and network) namespaces → private propagation, hostname, loopback (and, for the NAT network,
//! ask the runner for slirp4netns) → a private tmpfs on the state directory → overlays → (wait
//! for the network) → fork the step's pid 1 ([`super::container`]) → wait → unmount the
//! overlays, remove the mount stubs from the upper directory and the work directories → report.

use super::container::{child_main, ChildContext};
use super::error::ExecError;
use super::kernel::{overlay_options, AttachPoint, Forked, FsOption, Kernel, RealKernel};
use super::mount_stubs::{remove_stubs, StubReport};
use super::protocol::{recv, send, HelperMessage, HelperRequest, RunnerReply};
use super::spec::{Network, OverlayMount};
use super::sys::os_message;
use rustix::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use rustix::mount::MountAttrFlags;
use rustix::thread::UnshareFlags;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

/// Entry point of the helper process; `ctl_fd` is the control socket from the runner.
pub(crate) fn helper_main(ctl_fd: i32) -> ! {
    // SAFETY: the runner passes the fd number of a socket it opened for this process alone.
    let ctl = unsafe { OwnedFd::from_raw_fd(ctl_fd) };
    let k = &mut RealKernel;
    let _ = k.close_on_exec(ctl.as_fd());
    let ctl = File::from(ctl);
    let outcome = match ctl.try_clone() {
        Ok(reader) => run(k, &ctl, &mut BufReader::new(reader)),
        Err(e) => Err(ExecError::Protocol(e.to_string())),
    };
    let message = match outcome {
        Ok((code, signal)) => HelperMessage::Exited { code, signal },
        Err(e) => HelperMessage::Failed(e),
    };
    let _ = send(&ctl, &message);
    std::process::exit(0)
}

/// The helper's work, from the request to the step's exit status; every kernel call goes
/// through `k`.
pub(crate) fn run(
    k: &mut dyn Kernel,
    ctl: &File,
    reader: &mut BufReader<File>,
) -> Result<(i32, Option<i32>), ExecError> {
    let _ = k.die_with_parent();
    let request: HelperRequest =
        recv(reader)?.ok_or_else(|| ExecError::Protocol("no request".to_string()))?;
    let spec = &request.spec;
    let ids = k.ids();
    let rootless = ids.euid != 0;
    if rootless {
        k.unshare(UnshareFlags::NEWUSER, "user")?;
        send(ctl, &HelperMessage::NeedIdMap { pid: ids.pid })?;
        match recv::<RunnerReply>(reader)? {
            Some(RunnerReply::Mapped) => {}
            Some(RunnerReply::MapSelf) => map_self(k, ids.uid, ids.gid)?,
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
    k.unshare(flags, "mount, uts, ipc, pid, net")?;
    k.make_mounts_private()?;
    if !spec.hostname.is_empty() {
        k.set_hostname(&spec.hostname)?;
    }
    if spec.network != Network::Host {
        k.loopback_up()?;
    }
    if spec.network == Network::Nat {
        send(ctl, &HelperMessage::NeedNetwork { pid: ids.pid })?;
        // The answer is read just before the step starts: slirp4netns starts meanwhile.
    }
    let state_dir = request.state_dir.as_path();
    let state = k.new_fs(
        "tmpfs",
        &[FsOption::Value("mode", "700".to_string())],
        MountAttrFlags::MOUNT_ATTR_NODEV,
        state_dir,
    )?;
    k.attach(state, AttachPoint::Path(state_dir), "tmpfs", state_dir)?;
    let empty = request.state_dir.join("empty");
    std::fs::create_dir(&empty).map_err(|e| ExecError::Prepare {
        path: empty.clone(),
        message: os_message(e),
    })?;

    let mut mounted = Vec::new();
    let result = mount_overlays(k, &spec.overlays, rootless, &empty, &mut mounted).and_then(|()| {
        if spec.network == Network::Nat {
            await_network(reader)?;
        }
        run_step(k, &request, ctl, rootless)
    });
    for target in mounted.iter().rev() {
        let _ = k.unmount(target);
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
fn map_self(k: &mut dyn Kernel, uid: u32, gid: u32) -> Result<(), ExecError> {
    k.write_id_map("setgroups", "deny")?;
    k.write_id_map("uid_map", &format!("0 {uid} 1\n"))?;
    k.write_id_map("gid_map", &format!("0 {gid} 1\n"))
}

fn mount_overlays<'a>(
    k: &mut dyn Kernel,
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
        let mount = k.new_fs("overlay", &options, attrs, target)?;
        k.attach(mount, AttachPoint::Path(target), "overlay", target)?;
        mounted.push(target);
    }
    Ok(())
}

/// Forks the step's pid 1 and waits for it.
fn run_step(
    k: &mut dyn Kernel,
    request: &HelperRequest,
    ctl: &File,
    rootless: bool,
) -> Result<((i32, Option<i32>), StubReport), ExecError> {
    let last_cap = k.last_cap();
    let (stub_read, stub_write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| ExecError::Setup {
            step: "pipe".to_string(),
            message: os_message(e),
        })?;
    match k.fork()? {
        Forked::Child => {
            drop(stub_read);
            child_main(
                k,
                request,
                ChildContext {
                    ctl: ctl.as_raw_fd(),
                    stub_pipe: stub_write,
                    last_cap,
                    rootless,
                },
            )
        }
        Forked::Parent(child) => {
            k.forward_sigterm_to(child);
            drop(stub_write);
            let mut bytes = Vec::new();
            let _ = File::from(stub_read).read_to_end(&mut bytes);
            let report: StubReport = serde_json::from_slice(&bytes).unwrap_or_default();
            Ok((k.wait(child)?, report))
        }
    }
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
