//! Mount points the sandbox has to create inside the root filesystem, and their removal.
//!
//! A bind mount needs an existing file or directory to mount over. When the image lacks one
//! (`/proc` in a `scratch` image, `/run/secrets/token`, `/etc/resolv.conf`), the sandbox creates a
//! stub through the overlay, so it lands in the upper directory: the layer diff. Creating it also
//! copies its existing parent directories up. This module records exactly what it created and
//! which parents it caused to be copied up, and after the step removes those from the upper
//! directory unless the step changed them: a stub directory that the step filled stays, a
//! copied-up directory that is no longer empty, is opaque or has new metadata stays.

use super::sys::{fd_path, mount_id, open_in_root};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{Mode, OFlags};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

/// What kind of mount point a target needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TargetKind {
    File,
    Dir,
}

/// A path the sandbox created, relative to the root filesystem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct CreatedStub {
    pub path: PathBuf,
    pub dir: bool,
}

/// A directory that existed only in a lower layer until a stub was created inside it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct CopiedUpDir {
    pub path: PathBuf,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// Everything to undo in the upper directory after the step.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct StubReport {
    pub created: Vec<CreatedStub>,
    pub copied_up: Vec<CopiedUpDir>,
}

/// Creates mount points under a root filesystem and records them.
pub(crate) struct StubMaker<'a> {
    root: BorrowedFd<'a>,
    /// Host path of the root (to turn resolved fd paths into root-relative ones).
    root_path: PathBuf,
    /// Mount id of the root: stubs created on other mounts (a tmpfs mounted earlier) are not in
    /// the upper directory and are not recorded.
    root_mount: u64,
    /// The upper directory behind the root, when it is an overlay with one.
    upper: Option<PathBuf>,
    pub report: StubReport,
}

impl<'a> StubMaker<'a> {
    pub(crate) fn new(
        root: BorrowedFd<'a>,
        root_path: PathBuf,
        upper: Option<PathBuf>,
    ) -> io::Result<Self> {
        Ok(StubMaker {
            root,
            root_mount: mount_id(root)?,
            root_path,
            upper,
            report: StubReport::default(),
        })
    }

    /// The root filesystem directory.
    pub(crate) fn root_fd(&self) -> BorrowedFd<'a> {
        self.root
    }

    /// Returns an `O_PATH` fd of `target` (a container path) inside the root, creating it (and
    /// missing parents) as `kind` when missing.
    pub(crate) fn ensure(&mut self, target: &Path, kind: TargetKind) -> io::Result<OwnedFd> {
        // Components still to walk; `resolved` is the real (symlink-free) root-relative path of
        // the directory reached so far.
        let mut pending: VecDeque<PathBuf> = container_components(target)?.into();
        let mut resolved = PathBuf::new();
        let mut links_followed = 0;
        while let Some(name) = pending.pop_front() {
            let last = pending.is_empty();
            let candidate = resolved.join(&name);
            match open_in_root(self.root, &candidate) {
                Ok(fd) => {
                    if last {
                        return Ok(fd);
                    }
                    resolved = self.relative(fd.as_fd())?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let parent = open_in_root(self.root, &resolved)?;
            // A dangling symlink: create what it points to, inside the root (as runc does).
            if let Ok(link) = rustix::fs::readlinkat(&parent, name.as_path(), Vec::new()) {
                links_followed += 1;
                if links_followed > 40 {
                    return Err(io::Error::other(format!(
                        "{}: too many levels of symbolic links",
                        target.display()
                    )));
                }
                let link = PathBuf::from(std::ffi::OsStr::from_bytes(link.as_bytes()));
                if link.is_absolute() {
                    resolved = PathBuf::new();
                }
                let mut front = Vec::new();
                for c in link.components() {
                    match c {
                        Component::Normal(n) => front.push(PathBuf::from(n)),
                        // `resolved` has no symlinks, so `..` is its parent (never above root).
                        Component::ParentDir if front.is_empty() => {
                            resolved.pop();
                        }
                        Component::ParentDir => {
                            front.pop();
                        }
                        _ => {}
                    }
                }
                for c in front.into_iter().rev() {
                    pending.push_front(c);
                }
                continue;
            }
            let on_root = mount_id(parent.as_fd())? == self.root_mount;
            if on_root {
                self.note_copy_up(&resolved)?;
            }
            let dir = !last || kind == TargetKind::Dir;
            if dir {
                rustix::fs::mkdirat(&parent, name.as_path(), Mode::from_raw_mode(0o755))?;
            } else {
                rustix::fs::openat(
                    &parent,
                    name.as_path(),
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o644),
                )?;
            }
            if on_root {
                self.report.created.push(CreatedStub {
                    path: resolved.join(&name),
                    dir,
                });
            }
            let fd = open_in_root(self.root, &candidate)?;
            if last {
                return Ok(fd);
            }
            resolved = candidate;
        }
        // Only "/" itself has no components.
        open_in_root(self.root, Path::new(""))
    }

    /// The root-relative path an fd resolved to.
    fn relative(&self, fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
        let path = fd_path(fd)?;
        path.strip_prefix(&self.root_path)
            .map(Path::to_path_buf)
            .map_err(|_| {
                io::Error::other(format!(
                    "{} resolved outside the root filesystem",
                    path.display()
                ))
            })
    }

    /// Records `dir` and its ancestors when they are not in the upper directory yet: creating an
    /// entry inside makes the overlay copy them up.
    fn note_copy_up(&mut self, dir: &Path) -> io::Result<()> {
        let Some(upper) = &self.upper else {
            return Ok(());
        };
        let mut prefix = PathBuf::new();
        for c in dir.components() {
            prefix.push(c);
            if upper.join(&prefix).symlink_metadata().is_ok()
                || self.report.copied_up.iter().any(|d| d.path == prefix)
                || self.report.created.iter().any(|d| d.path == prefix)
            {
                continue;
            }
            let merged = self.root_path.join(&prefix).symlink_metadata()?;
            self.report.copied_up.push(CopiedUpDir {
                path: prefix.clone(),
                mode: merged.mode(),
                uid: merged.uid(),
                gid: merged.gid(),
            });
        }
        Ok(())
    }
}

/// The normal components of an absolute container path; `..` is refused.
pub(crate) fn container_components(target: &Path) -> io::Result<Vec<PathBuf>> {
    if !target.is_absolute() {
        return Err(io::Error::other(format!(
            "mount target {} is not absolute",
            target.display()
        )));
    }
    let mut out = Vec::new();
    for c in target.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(PathBuf::from(n)),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::other(format!(
                    "mount target {} contains ..",
                    target.display()
                )))
            }
        }
    }
    Ok(out)
}

/// Removes from `upper` what `report` says the sandbox created, leaving what the step changed.
pub(crate) fn remove_stubs(upper: &Path, report: &StubReport) -> Result<(), (PathBuf, io::Error)> {
    let mut created = report.created.clone();
    created.sort_by_key(|s| std::cmp::Reverse(s.path.components().count()));
    for stub in &created {
        let path = upper.join(&stub.path);
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        let result = if stub.dir && meta.is_dir() {
            std::fs::remove_dir(&path)
        } else if !stub.dir && meta.is_file() && meta.len() == 0 {
            std::fs::remove_file(&path)
        } else {
            Ok(())
        };
        match result {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
            Err(e) => return Err((path, e)),
        }
    }
    let mut copied = report.copied_up.clone();
    copied.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
    for dir in &copied {
        let path = upper.join(&dir.path);
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        let unchanged = meta.is_dir()
            && meta.mode() == dir.mode
            && meta.uid() == dir.uid
            && meta.gid() == dir.gid
            && !is_opaque(&path);
        if !unchanged {
            continue;
        }
        match std::fs::remove_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::DirectoryNotEmpty => {}
            Err(e) => return Err((path, e)),
        }
    }
    Ok(())
}

/// Whether an upper directory hides the lower layers' content (an opaque directory).
fn is_opaque(path: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| rustix::fs::lgetxattr_query(path, *name).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_refuse_parent_and_relative() {
        assert_eq!(
            container_components(Path::new("/run/./secrets/x")).unwrap(),
            vec![
                PathBuf::from("run"),
                PathBuf::from("secrets"),
                PathBuf::from("x")
            ]
        );
        assert!(container_components(Path::new("/a/../b")).is_err());
        assert!(container_components(Path::new("a/b")).is_err());
    }

    fn open_dir(path: &Path) -> OwnedFd {
        rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .unwrap()
    }

    #[test]
    fn ensure_creates_and_records_missing_targets_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::write(root.join("etc/hosts"), "x").unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        let fd = open_dir(&root);
        let mut maker = StubMaker::new(fd.as_fd(), root.clone(), Some(upper)).unwrap();
        maker
            .ensure(Path::new("/etc/hosts"), TargetKind::File)
            .unwrap();
        maker
            .ensure(Path::new("/etc/resolv.conf"), TargetKind::File)
            .unwrap();
        maker
            .ensure(Path::new("/run/secrets/token"), TargetKind::File)
            .unwrap();
        maker.ensure(Path::new("/proc"), TargetKind::Dir).unwrap();
        let created: Vec<(String, bool)> = maker
            .report
            .created
            .iter()
            .map(|c| (c.path.display().to_string(), c.dir))
            .collect();
        assert_eq!(
            created,
            [
                ("etc/resolv.conf".to_string(), false),
                ("run".to_string(), true),
                ("run/secrets".to_string(), true),
                ("run/secrets/token".to_string(), false),
                ("proc".to_string(), true),
            ]
        );
        let copied: Vec<String> = maker
            .report
            .copied_up
            .iter()
            .map(|c| c.path.display().to_string())
            .collect();
        assert_eq!(copied, ["etc"], "only existing parents are copied up");
        assert!(root.join("run/secrets/token").is_file());
    }

    #[test]
    fn ensure_stays_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // An absolute symlink and a `..` escape both resolve inside the root.
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../outside", root.join("rel")).unwrap();
        std::os::unix::fs::symlink("/nowhere/file", root.join("dangling")).unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        let fd = open_dir(&root);
        let mut maker = StubMaker::new(fd.as_fd(), root.clone(), None).unwrap();
        maker.ensure(Path::new("/abs/x"), TargetKind::File).unwrap();
        maker.ensure(Path::new("/rel/y"), TargetKind::Dir).unwrap();
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(root
            .join(outside.strip_prefix("/").unwrap())
            .join("x")
            .is_file());
        // A dangling symlink's target is created inside the root.
        maker
            .ensure(Path::new("/dangling"), TargetKind::File)
            .unwrap();
        assert!(root.join("nowhere/file").is_file());
        assert!(root.join("outside/y").is_dir());
        assert!(maker
            .ensure(Path::new("/a/../b"), TargetKind::File)
            .is_err());
    }

    #[test]
    fn removes_only_recorded_and_unchanged() {
        let upper = tempfile::tempdir().unwrap();
        let u = upper.path();
        std::fs::create_dir_all(u.join("etc")).unwrap();
        std::fs::write(u.join("etc/resolv.conf"), b"").unwrap();
        std::fs::write(u.join("etc/real"), b"x").unwrap();
        std::fs::create_dir_all(u.join("run/secrets")).unwrap();
        std::fs::write(u.join("run/secrets/token"), b"").unwrap();
        let etc = u.join("etc").symlink_metadata().unwrap();
        let report = StubReport {
            created: vec![
                CreatedStub {
                    path: "etc/resolv.conf".into(),
                    dir: false,
                },
                CreatedStub {
                    path: "run".into(),
                    dir: true,
                },
                CreatedStub {
                    path: "run/secrets".into(),
                    dir: true,
                },
                CreatedStub {
                    path: "run/secrets/token".into(),
                    dir: false,
                },
            ],
            copied_up: vec![CopiedUpDir {
                path: "etc".into(),
                mode: etc.mode(),
                uid: etc.uid(),
                gid: etc.gid(),
            }],
        };
        remove_stubs(u, &report).unwrap();
        assert!(!u.join("run").exists());
        assert!(!u.join("etc/resolv.conf").exists());
        assert!(u.join("etc/real").exists(), "a real change must stay");
    }
}
