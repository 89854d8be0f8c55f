//! Mount points the sandbox has to create inside the root filesystem, and their removal.
//!
//! A bind mount needs an existing file or directory to mount over. When the image lacks one
//! (`/proc` in a `scratch` image, `/run/secrets/token`, `/etc/resolv.conf`), the sandbox creates a
//! stub through the overlay, so it lands in the upper directory: the layer diff. Creating it also
//! copies its existing parent directories up. This module records exactly what it created and
//! which parents it caused to be copied up, and after the step removes those from the upper
//! directory unless the step changed them: a stub directory that the step filled stays, a
//! copied-up directory that is no longer empty, is opaque or has new metadata stays.
//!
//! Every path goes through [`Root`]: targets are resolved in the root filesystem
//! ([`Walk::InRoot`], as the container will see them), the upper directory is walked
//! [`Walk::Beneath`] (no symlink followed: after the step, every link in it is the step's).

use super::sys::mount_id;
use crate::fileops::root::{Parent, Root, Walk};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io;
use std::os::unix::ffi::OsStrExt;
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
    root: &'a Root,
    /// Mount id of the root: stubs created on other mounts (a tmpfs mounted earlier) are not in
    /// the upper directory and are not recorded.
    root_mount: u64,
    /// The upper directory behind the root, when it is an overlay with one.
    upper: Option<Root>,
    pub report: StubReport,
}

impl<'a> StubMaker<'a> {
    pub(crate) fn new(root: &'a Root, upper: Option<PathBuf>) -> io::Result<Self> {
        let upper = match upper {
            Some(path) => Some(Root::new(path)?),
            None => None,
        };
        Ok(StubMaker {
            root,
            root_mount: mount_id(root.as_fd())?,
            upper,
            report: StubReport::default(),
        })
    }

    /// The root filesystem.
    pub(crate) fn root(&self) -> &'a Root {
        self.root
    }

    /// An `O_PATH` descriptor of `rel`, resolved in the root filesystem.
    fn open(&self, rel: &Path) -> io::Result<OwnedFd> {
        self.root.open(rel, Walk::InRoot, OFlags::PATH)
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
            match self.open(&candidate) {
                Ok(fd) => {
                    if last {
                        return Ok(fd);
                    }
                    resolved = self.root.relative(fd.as_fd())?;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let parent = self.open(&resolved)?;
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
            let fd = self.open(&candidate)?;
            if last {
                return Ok(fd);
            }
            resolved = candidate;
        }
        // Only "/" itself has no components.
        self.open(Path::new(""))
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
            if upper.lstat(&prefix, Walk::Beneath)?.is_some()
                || self.report.copied_up.iter().any(|d| d.path == prefix)
                || self.report.created.iter().any(|d| d.path == prefix)
            {
                continue;
            }
            // `prefix` was resolved inside the root without symlinks: it names the directory.
            let merged = rustix::fs::fstat(self.open(&prefix)?)?;
            self.report.copied_up.push(CopiedUpDir {
                path: prefix.clone(),
                mode: merged.st_mode,
                uid: merged.st_uid,
                gid: merged.st_gid,
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

/// The parent directory of `rel` in the upper directory (walked [`Walk::Beneath`]) and its
/// last name, or `None` when the parent is gone or is no longer a plain directory (a symlink
/// planted by the step): what is there then is the step's, not a stub.
fn parent_beneath(upper: &Root, rel: &Path) -> io::Result<Option<Parent>> {
    if rel.file_name().is_none() {
        return Ok(None);
    }
    match upper.parent(rel, Walk::Beneath) {
        Ok(parent) => Ok(Some(parent)),
        Err(e)
            if matches!(
                rustix::io::Errno::from_io_error(&e),
                Some(
                    rustix::io::Errno::NOENT
                        | rustix::io::Errno::NOTDIR
                        | rustix::io::Errno::LOOP
                        | rustix::io::Errno::XDEV
                )
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn file_type(st: &rustix::fs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Removes from `upper` what `report` says the sandbox created, leaving what the step changed.
///
/// Every operation is relative to a directory of `upper` walked [`Walk::Beneath`] (no symlink
/// followed): a step that replaced a stub's parent with a link to a host directory makes the
/// stub's removal a no-op, never a removal on the host.
pub(crate) fn remove_stubs(upper: &Path, report: &StubReport) -> Result<(), (PathBuf, io::Error)> {
    let top = Root::new(upper).map_err(|e| (upper.to_path_buf(), e.into()))?;
    let shown = |rel: &Path| upper.join(rel);
    let remove = |rel: &Path, dir: bool| -> Result<(), (PathBuf, io::Error)> {
        let Some(parent) = parent_beneath(&top, rel).map_err(|e| (shown(rel), e))? else {
            return Ok(());
        };
        let flags = if dir {
            AtFlags::REMOVEDIR
        } else {
            AtFlags::empty()
        };
        match rustix::fs::unlinkat(&parent.dir, &parent.name, flags) {
            Ok(()) | Err(rustix::io::Errno::NOTEMPTY | rustix::io::Errno::NOENT) => Ok(()),
            Err(e) => Err((shown(rel), e.into())),
        }
    };
    let mut created = report.created.clone();
    created.sort_by_key(|s| std::cmp::Reverse(s.path.components().count()));
    for stub in &created {
        let Some(st) = top
            .lstat(&stub.path, Walk::Beneath)
            .map_err(|e| (shown(&stub.path), e))?
        else {
            continue;
        };
        let kind = file_type(&st);
        if stub.dir && kind == FileType::Directory {
            remove(&stub.path, true)?;
        } else if !stub.dir && kind == FileType::RegularFile && st.st_size == 0 {
            remove(&stub.path, false)?;
        }
    }
    let mut copied = report.copied_up.clone();
    copied.sort_by_key(|d| std::cmp::Reverse(d.path.components().count()));
    for dir in &copied {
        let Some(st) = top
            .lstat(&dir.path, Walk::Beneath)
            .map_err(|e| (shown(&dir.path), e))?
        else {
            continue;
        };
        let unchanged = file_type(&st) == FileType::Directory
            && st.st_mode == dir.mode
            && st.st_uid == dir.uid
            && st.st_gid == dir.gid
            && !is_opaque(&top, &dir.path);
        if unchanged {
            remove(&dir.path, true)?;
        }
    }
    Ok(())
}

/// Whether an upper directory hides the lower layers' content (an opaque directory).
fn is_opaque(top: &Root, rel: &Path) -> bool {
    let Ok(Some(parent)) = parent_beneath(top, rel) else {
        return false;
    };
    let Ok(dir) = rustix::fs::openat(
        &parent.dir,
        &parent.name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return false;
    };
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| rustix::fs::fgetxattr(&dir, *name, &mut [0u8; 8]).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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

    #[test]
    fn ensure_creates_and_records_missing_targets_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let upper = dir.path().join("upper");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(&upper).unwrap();
        std::fs::write(root.join("etc/hosts"), "x").unwrap();
        let root = std::fs::canonicalize(root).unwrap();
        let rooted = Root::new(&root).unwrap();
        let mut maker = StubMaker::new(&rooted, Some(upper)).unwrap();
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
        let rooted = Root::new(&root).unwrap();
        let mut maker = StubMaker::new(&rooted, None).unwrap();
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

    /// The rule: stub removal never follows a symlink the step planted. A step replaced the
    /// parents of its stubs with links to a host directory that holds files and directories
    /// named like the stubs; all of them stay.
    #[test]
    fn stub_removal_never_follows_symlinks_planted_by_the_step() {
        let tmp = tempfile::tempdir().unwrap();
        let u = tmp.path().join("upper");
        let host = tmp.path().join("host");
        std::fs::create_dir_all(host.join("secrets/sub")).unwrap();
        std::fs::write(host.join("secrets/token"), b"").unwrap();
        std::fs::write(host.join("canary"), b"keep").unwrap();
        std::fs::create_dir_all(u.join("etc")).unwrap();
        std::os::unix::fs::symlink(&host, u.join("run")).unwrap();
        std::os::unix::fs::symlink(&host, u.join("etc/ssl")).unwrap();
        let host_meta = host.symlink_metadata().unwrap();
        let report = StubReport {
            created: vec![
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
                CreatedStub {
                    path: "run/secrets/sub".into(),
                    dir: true,
                },
            ],
            copied_up: vec![CopiedUpDir {
                path: "etc/ssl".into(),
                mode: host_meta.mode(),
                uid: host_meta.uid(),
                gid: host_meta.gid(),
            }],
        };
        remove_stubs(&u, &report).unwrap();
        assert!(
            host.join("secrets/token").is_file(),
            "a host file was removed"
        );
        assert!(
            host.join("secrets/sub").is_dir(),
            "a host directory was removed"
        );
        assert_eq!(std::fs::read(host.join("canary")).unwrap(), b"keep");
        // The links themselves are the step's changes and stay in its diff.
        assert!(u.join("run").symlink_metadata().unwrap().is_symlink());
        assert!(u.join("etc/ssl").symlink_metadata().unwrap().is_symlink());
    }
}
