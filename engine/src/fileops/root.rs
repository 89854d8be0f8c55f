//! [`Root`]: the one rooted-path type every file operation on a rootfs goes through.
//!
//! A path inside a root is resolved as if the root were `/`: absolute symlink targets are
//! re-rooted, `..` never climbs above the root, and symlink chains are bounded. Reads use
//! `openat2(RESOLVE_IN_ROOT)` when the kernel offers it, which the kernel enforces atomically.
//! Writes go through [`Root::resolve_parent`]: the parent directories are resolved component by
//! component (`lstat` + `readlink`), and the final component is then operated on without
//! following it (`O_NOFOLLOW`, `lchown`, `symlink_metadata`). This is hand-written rather than
//! built on `openat2` for writes because the helper that runs it may have no `/proc` to turn a
//! directory fd back into a path, and because the trees it writes (a step's rootfs while no
//! process runs in it, a layer being unpacked by this process) are not changed concurrently.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one resolution before giving up (Linux's own limit is 40).
const MAX_SYMLINKS: usize = 40;

/// A directory treated as `/` for every path resolved through it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Root {
    host: PathBuf,
}

/// Why a path could not be resolved inside a root.
#[derive(Debug, thiserror::Error)]
pub enum RootError {
    /// The root directory itself is unusable.
    #[error("root directory {path:?}: {source}")]
    Root { path: PathBuf, source: io::Error },
    /// A component could not be inspected.
    #[error("resolving {path:?} in root {root:?}: {source}")]
    Io {
        root: PathBuf,
        path: PathBuf,
        source: io::Error,
    },
    /// Symlinks form a loop or a chain too long to follow.
    #[error("resolving {path:?} in root {root:?}: too many levels of symbolic links")]
    SymlinkLoop { root: PathBuf, path: PathBuf },
}

impl Root {
    /// Opens `path` as a root; it must be an existing directory.
    pub fn new(path: impl AsRef<Path>) -> Result<Root, RootError> {
        let path = path.as_ref();
        let host = std::fs::canonicalize(path).map_err(|source| RootError::Root {
            path: path.to_path_buf(),
            source,
        })?;
        if !host.is_dir() {
            return Err(RootError::Root {
                path: path.to_path_buf(),
                source: io::Error::new(io::ErrorKind::NotADirectory, "not a directory"),
            });
        }
        Ok(Root { host })
    }

    /// The host path of the root directory.
    pub fn host_path(&self) -> &Path {
        &self.host
    }

    /// Resolves `path` inside the root following every symlink, the final one included
    /// (what `stat` would see if the root were `/`). Missing components are kept lexically.
    pub fn resolve(&self, path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        self.resolve_in_root(path.as_ref(), true)
            .map(|rel| self.host.join(rel))
    }

    /// Like [`Root::resolve`] but returns the path relative to the root (no leading `/`).
    pub fn resolve_rel(&self, path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        self.resolve_in_root(path.as_ref(), true)
    }

    /// Resolves the parents of `path` inside the root but not its final component, which is
    /// what a write that replaces or creates that entry needs (what `lstat` would see).
    pub fn resolve_parent(&self, path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        self.resolve_in_root(path.as_ref(), false)
            .map(|rel| self.host.join(rel))
    }

    /// Like [`Root::resolve_parent`] but returns the path relative to the root (no leading `/`).
    pub fn resolve_parent_rel(&self, path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        self.resolve_in_root(path.as_ref(), false)
    }

    /// Opens a file for reading without ever leaving the root and without following a final
    /// symlink. Uses `openat2(RESOLVE_IN_ROOT)`; falls back to the manual resolver on kernels
    /// or sandboxes without it.
    pub fn open_read(&self, path: impl AsRef<Path>) -> Result<File, RootError> {
        let path = path.as_ref();
        match self.openat2_read(path, false) {
            Ok(file) => Ok(file),
            Err(err) if openat2_unavailable(&err) => {
                let host = self.resolve_parent(path)?;
                open_nofollow(&host).map_err(|source| self.io_err(path, source))
            }
            Err(source) => Err(self.io_err(path, source)),
        }
    }

    /// Reads a whole file as a process running in the root would (a final symlink followed,
    /// inside the root): `Ok(None)` when it does not exist. How `/etc/passwd` and `/etc/group`
    /// are read, for `USER` and `--chown`.
    pub fn read_in_root(&self, path: impl AsRef<Path>) -> Result<Option<Vec<u8>>, RootError> {
        use std::io::Read;
        let path = path.as_ref();
        let opened = match self.openat2_read(path, true) {
            Err(err) if openat2_unavailable(&err) => self
                .resolve(path)
                .and_then(|host| File::open(host).map_err(|source| self.io_err(path, source))),
            other => other.map_err(|source| self.io_err(path, source)),
        };
        let mut file = match opened {
            Ok(file) => file,
            Err(RootError::Io { source, .. })
                if matches!(
                    source.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|source| self.io_err(path, source))?;
        Ok(Some(bytes))
    }

    fn io_err(&self, path: &Path, source: io::Error) -> RootError {
        RootError::Io {
            root: self.host.clone(),
            path: path.to_path_buf(),
            source,
        }
    }

    /// `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` of `path` for reading.
    fn openat2_read(&self, path: &Path, follow_final: bool) -> io::Result<File> {
        use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
        let root = rustix::fs::open(
            &self.host,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let rel = lexical_clean(path);
        let rel: &Path = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &rel
        };
        let mut flags = OFlags::RDONLY | OFlags::CLOEXEC;
        if !follow_final {
            flags |= OFlags::NOFOLLOW;
        }
        let fd = openat2(
            &root,
            rel,
            flags,
            Mode::empty(),
            ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
        )?;
        Ok(File::from(fd))
    }

    fn resolve_in_root(&self, path: &Path, follow_final: bool) -> Result<PathBuf, RootError> {
        let mut resolved: Vec<OsString> = Vec::new();
        let mut pending: Vec<OsString> = components_rev(path);
        let mut links = 0usize;
        while let Some(comp) = pending.pop() {
            if comp == ".." {
                resolved.pop();
                continue;
            }
            let is_last = pending.is_empty();
            if is_last && !follow_final {
                resolved.push(comp);
                break;
            }
            let mut candidate = self.host.clone();
            candidate.extend(resolved.iter());
            candidate.push(&comp);
            match std::fs::symlink_metadata(&candidate) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(RootError::SymlinkLoop {
                            root: self.host.clone(),
                            path: path.to_path_buf(),
                        });
                    }
                    let target =
                        std::fs::read_link(&candidate).map_err(|e| self.io_err(path, e))?;
                    if target.is_absolute() {
                        resolved.clear();
                    }
                    pending.extend(components_rev(&target));
                }
                Ok(_) => resolved.push(comp),
                Err(err) if err.kind() == io::ErrorKind::NotFound => resolved.push(comp),
                Err(err) if err.raw_os_error() == Some(libc::ENOTDIR) => resolved.push(comp),
                Err(err) => return Err(self.io_err(path, err)),
            }
        }
        Ok(resolved.iter().collect())
    }
}

/// Components of `path` in reverse order (so `pop` yields them front to back), without `/` and `.`.
fn components_rev(path: &Path) -> Vec<OsString> {
    let mut out: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    out.reverse();
    out
}

/// Cleans `path` lexically as if it were rooted at `/`, returning a relative path: `..` at the
/// top is dropped, `.` and empty components vanish. No filesystem access.
pub fn lexical_clean(path: &Path) -> PathBuf {
    let mut out: Vec<&OsStr> = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out.iter().collect()
}

/// Opens the regular file `rel` below the directory `dir` for reading without following any
/// symlink on the way (each component is opened `O_NOFOLLOW` relative to the one before) and
/// without `..`: whatever `dir` holds, the file opened is inside it. `O_NONBLOCK` keeps a FIFO
/// swapped in from blocking the open; anything but a regular file is refused.
pub fn open_file_beneath(dir: &Path, rel: &Path) -> io::Result<File> {
    use rustix::fs::{openat, Mode, OFlags, CWD};
    let mut names: Vec<&OsStr> = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::CurDir => {}
            _ => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{rel:?} is not a plain relative path"),
                ))
            }
        }
    }
    let Some((last, parents)) = names.split_last() else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
    };
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut fd: OwnedFd = openat(CWD, dir, dir_flags, Mode::empty())?;
    for name in parents {
        fd = openat(&fd, *name, dir_flags | OFlags::NOFOLLOW, Mode::empty())?;
    }
    let file: OwnedFd = openat(
        &fd,
        *last,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let file = File::from(file);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?} is not a regular file"),
        ));
    }
    Ok(file)
}

/// Whether `openat2` is missing (an old kernel) or refused (a seccomp filter): then the manual
/// resolver stands in.
fn openat2_unavailable(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENOSYS) | Some(libc::EPERM) | Some(libc::EINVAL)
    )
}

/// Opens an existing file read-only without following a final symlink.
pub(crate) fn open_nofollow(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn reading_in_the_root_follows_links_inside_it_and_never_out() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("passwd"), "host:x:0:0::/:/bin/sh\n").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let etc = dir.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(etc.join("passwd.real"), "image:x:0:0::/:/bin/sh\n").unwrap();
        // An absolute link is re-rooted: it names the image's file, not the host's.
        symlink("/etc/passwd.real", etc.join("passwd")).unwrap();
        symlink(outside.path().join("passwd"), etc.join("group")).unwrap();
        let root = Root::new(dir.path()).unwrap();
        let read = |p: &str| {
            root.read_in_root(p)
                .unwrap()
                .map(|b| String::from_utf8(b).unwrap())
        };
        assert_eq!(read("/etc/passwd").unwrap(), "image:x:0:0::/:/bin/sh\n");
        // The host path, re-rooted, does not exist inside the root.
        assert_eq!(read("/etc/group"), None);
        assert_eq!(read("/etc/shadow"), None);
        assert_eq!(read("/etc/passwd.real/x"), None);
    }

    #[test]
    fn absolute_and_dotdot_symlinks_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("real/etc")).unwrap();
        symlink("/real", dir.path().join("abs")).unwrap();
        symlink("../../../../real", dir.path().join("up")).unwrap();
        symlink("/etc/passwd", dir.path().join("pw")).unwrap();
        let host = root.host_path().to_path_buf();
        assert_eq!(root.resolve("abs/etc").unwrap(), host.join("real/etc"));
        assert_eq!(root.resolve("/up/etc/x").unwrap(), host.join("real/etc/x"));
        assert_eq!(root.resolve("../../pw").unwrap(), host.join("etc/passwd"));
        assert_eq!(root.resolve_parent("pw").unwrap(), host.join("pw"));
        assert_eq!(root.resolve_parent("abs/pw").unwrap(), host.join("real/pw"));
    }

    #[test]
    fn symlink_loops_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        symlink("b", dir.path().join("a")).unwrap();
        symlink("a", dir.path().join("b")).unwrap();
        assert!(matches!(
            root.resolve("a/x"),
            Err(RootError::SymlinkLoop { .. })
        ));
    }

    #[test]
    fn open_read_never_leaves_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), b"inside").unwrap();
        symlink("/etc", dir.path().join("e")).unwrap();
        let mut s = String::new();
        use std::io::Read;
        root.open_read("e/../../e/passwd")
            .unwrap()
            .read_to_string(&mut s)
            .unwrap();
        assert_eq!(s, "inside");
        symlink("/etc/passwd", dir.path().join("pw")).unwrap();
        assert!(
            root.open_read("pw").is_err(),
            "final symlink is not followed"
        );
    }
}
