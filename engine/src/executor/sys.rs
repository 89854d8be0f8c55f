//! Thin wrappers over the kernel calls the sandbox makes: the new mount API (`fsopen`, `fsmount`,
//! `open_tree`, `move_mount`, `mount_setattr`) and the loopback interface (paths inside the
//! root filesystem go through [`crate::fileops::root::Root`]). Each returns an [`ExecError`] naming what it did.

use super::error::ExecError;
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::CWD;
use rustix::mount::{
    fsconfig_create, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen, move_mount,
    open_tree, FsMountFlags, FsOpenFlags, MountAttrFlags, MoveMountFlags, OpenTreeFlags,
};
use std::io::{self, Read};
use std::path::Path;

/// Renders an OS error as Go-based tools do ("no such file or directory"), without Rust's
/// "(os error N)" suffix, so messages read like Docker's.
pub(crate) fn os_message(e: impl Into<io::Error>) -> String {
    let e = e.into();
    if e.raw_os_error().is_none() {
        return e.to_string();
    }
    // The C library's `strerror` text, whose wording Go's errno table shares.
    let text = e.to_string();
    let desc = text
        .rsplit_once(" (os error ")
        .map_or(text.as_str(), |(desc, _)| desc);
    let mut chars = desc.chars();
    match chars.next() {
        Some(first) => first.to_lowercase().chain(chars).collect(),
        None => text.clone(),
    }
}

/// A filesystem configured through `fsopen`/`fsconfig`, not yet attached anywhere.
pub(crate) struct NewFs {
    fs_type: &'static str,
    fd: OwnedFd,
}

impl NewFs {
    /// Opens a filesystem context of `fs_type` ("overlay", "tmpfs", "proc", ...).
    pub(crate) fn open(fs_type: &'static str, target: &Path) -> Result<Self, ExecError> {
        let fd = fsopen(fs_type, FsOpenFlags::FSOPEN_CLOEXEC)
            .map_err(|e| mount_error(fs_type, target, os_message(e)))?;
        let fs = NewFs { fs_type, fd };
        // Shown as the source in /proc/mounts instead of "none".
        fs.set("source", fs_type, target)?;
        Ok(fs)
    }

    /// Sets `key=value`.
    pub(crate) fn set(&self, key: &str, value: &str, target: &Path) -> Result<(), ExecError> {
        fsconfig_set_string(&self.fd, key, value).map_err(|e| {
            mount_error(
                self.fs_type,
                target,
                format!("{key}={value}: {}{}", os_message(e), self.kernel_log()),
            )
        })
    }

    /// Sets `key=path`, for paths that need not be UTF-8.
    pub(crate) fn set_path(&self, key: &str, value: &Path, target: &Path) -> Result<(), ExecError> {
        fsconfig_set_string(&self.fd, key, value).map_err(|e| {
            mount_error(
                self.fs_type,
                target,
                format!(
                    "{key}={}: {}{}",
                    value.display(),
                    os_message(e),
                    self.kernel_log()
                ),
            )
        })
    }

    /// Sets a flag option such as `volatile`.
    pub(crate) fn flag(&self, key: &str, target: &Path) -> Result<(), ExecError> {
        fsconfig_set_flag(&self.fd, key).map_err(|e| {
            mount_error(
                self.fs_type,
                target,
                format!("{key}: {}{}", os_message(e), self.kernel_log()),
            )
        })
    }

    /// Creates the superblock and returns a detached mount of it.
    pub(crate) fn mount(self, attrs: MountAttrFlags, target: &Path) -> Result<OwnedFd, ExecError> {
        fsconfig_create(&self.fd).map_err(|e| {
            mount_error(
                self.fs_type,
                target,
                format!("{}{}", os_message(e), self.kernel_log()),
            )
        })?;
        fsmount(&self.fd, FsMountFlags::FSMOUNT_CLOEXEC, attrs)
            .map_err(|e| mount_error(self.fs_type, target, os_message(e)))
    }

    /// The messages the kernel queued on the context (why an option or the mount was refused).
    fn kernel_log(&self) -> String {
        let mut out = String::new();
        let mut buf = [0u8; 512];
        let mut file = std::fs::File::from(match self.fd.try_clone() {
            Ok(fd) => fd,
            Err(_) => return out,
        });
        while let Ok(n) = file.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.push_str(" [");
            out.push_str(String::from_utf8_lossy(&buf[..n]).trim_end());
            out.push(']');
        }
        out
    }
}

/// Builds an [`ExecError::Mount`].
pub(crate) fn mount_error(what: &str, target: &Path, message: String) -> ExecError {
    ExecError::Mount {
        what: what.to_string(),
        target: target.to_path_buf(),
        message,
    }
}

/// Attaches a detached mount onto the object `target_fd` refers to.
pub(crate) fn attach_at_fd(
    mnt: &OwnedFd,
    target_fd: BorrowedFd<'_>,
    what: &str,
    shown_target: &Path,
) -> Result<(), ExecError> {
    move_mount(
        mnt,
        "",
        target_fd,
        "",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )
    .map_err(|e| mount_error(what, shown_target, os_message(e)))
}

/// Attaches a detached mount at a host path.
pub(crate) fn attach_at_path(mnt: &OwnedFd, target: &Path, what: &str) -> Result<(), ExecError> {
    move_mount(
        mnt,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )
    .map_err(|e| mount_error(what, target, os_message(e)))
}

/// Clones the mount tree at `source` (a bind mount), detached.
pub(crate) fn clone_tree(source: &Path, shown_target: &Path) -> Result<OwnedFd, ExecError> {
    open_tree(
        CWD,
        source,
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE,
    )
    .map_err(|e| mount_error(&source.display().to_string(), shown_target, os_message(e)))
}

/// Clones the mount tree at the object `fd` refers to, detached.
pub(crate) fn clone_tree_at_fd(
    fd: BorrowedFd<'_>,
    shown_target: &Path,
) -> Result<OwnedFd, ExecError> {
    open_tree(
        fd,
        "",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE
            | OpenTreeFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| mount_error("layers", shown_target, os_message(e)))
}

/// `struct mount_attr` of `mount_setattr(2)`, which rustix does not wrap.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Sets `attrs` (read-only, nodev, ...) on every mount of a (detached) mount tree.
pub(crate) fn set_tree_attrs(
    tree: &OwnedFd,
    attrs: MountAttrFlags,
    shown_target: &Path,
) -> Result<(), ExecError> {
    let attr = MountAttr {
        attr_set: u64::from(attrs.bits()),
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: `attr` is a valid `struct mount_attr` of the size passed, and the path is an empty
    // NUL-terminated string used with AT_EMPTY_PATH on a valid fd.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            (libc::AT_EMPTY_PATH | libc::AT_RECURSIVE) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc != 0 {
        return Err(mount_error(
            &format!("attributes {attrs:?}"),
            shown_target,
            os_message(io::Error::last_os_error()),
        ));
    }
    Ok(())
}

/// The mount id of the mount `fd` lives on.
pub(crate) fn mount_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let st = rustix::fs::statx(
        fd,
        "",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::MNT_ID,
    )?;
    Ok(st.stx_mnt_id)
}

/// Brings the loopback interface of the current network namespace up.
pub(crate) fn loopback_up() -> Result<(), ExecError> {
    let fail = |e: io::Error| ExecError::Setup {
        step: "bring up lo".to_string(),
        message: os_message(e),
    };
    // SAFETY: plain socket/ioctl calls on a zeroed `ifreq` whose name is set below; the socket is
    // closed on every path.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(fail(io::Error::last_os_error()));
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let result = if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(io::Error::last_os_error())
        } else {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(sock, libc::SIOCSIFFLAGS, &req) < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };
        libc::close(sock);
        result.map_err(fail)
    }
}
