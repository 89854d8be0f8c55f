//! The seam between deciding what to mount and asking the kernel to mount it.
//!
//! Everything the sandbox mounts goes through [`Mounts`]: [`KernelMounts`] makes the calls
//! (`fsopen`/`fsconfig`/`fsmount`, `open_tree`, `mount_setattr`, `move_mount`), while the tests
//! record them, so the order, options and flags of a sandbox's mounts are checked without
//! privileges. The filesystem work around the mounts (creating mount points) stays real: it
//! needs no privilege.

use super::error::ExecError;
use super::sys::{
    attach_at_fd, attach_at_path, clone_tree, clone_tree_at_fd, mount_error, os_message,
    set_tree_attrs, NewFs,
};
use rustix::fd::{AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use rustix::mount::MountAttrFlags;
use std::path::{Path, PathBuf};

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

/// The mount calls of the sandbox. `shown` is the path named in errors (a container path for
/// mounts inside the root).
pub(crate) trait Mounts {
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
}

/// The real kernel.
pub(crate) struct KernelMounts;

impl Mounts for KernelMounts {
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
    //! A [`Mounts`] that records calls instead of making them.

    use super::*;

    /// Records every call as one line, e.g. `new tmpfs /dev [mode=755 size=65536k] NOSUID`.
    #[derive(Default)]
    pub(crate) struct RecordingMounts {
        pub log: Vec<String>,
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

    impl Mounts for RecordingMounts {
        fn new_fs(
            &mut self,
            fs_type: &'static str,
            options: &[FsOption],
            attrs: MountAttrFlags,
            shown: &Path,
        ) -> Result<OwnedFd, ExecError> {
            let options: Vec<String> = options.iter().map(describe).collect();
            self.log.push(format!(
                "new {fs_type} {} [{}] {:?}",
                shown.display(),
                options.join(" "),
                attrs
            ));
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
            self.log
                .push(format!("clone {source} for {} {attrs:?}", shown.display()));
            Ok(placeholder_fd())
        }

        fn attach(
            &mut self,
            _mount: OwnedFd,
            _at: AttachPoint<'_>,
            what: &str,
            shown: &Path,
        ) -> Result<(), ExecError> {
            self.log
                .push(format!("attach {what} at {}", shown.display()));
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
