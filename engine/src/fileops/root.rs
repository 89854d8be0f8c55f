//! [`Root`]: the one rooted-path type every operation on a directory tree treated as `/` goes
//! through: COPY/ADD and the small file actions, layer unpacking into snapshots, the user
//! database, the sandbox's mount points and `-o type=local`.
//!
//! A `Root` holds an `O_PATH` descriptor of its directory and every primitive works relative to
//! it, so what its host path names later does not matter. A path is walked in one of two ways
//! ([`Walk`]):
//! - [`Walk::InRoot`], as a process whose `/` is the root sees it: absolute symlink targets are
//!   re-rooted, `..` never climbs above the root, symlink chains are bounded. The kernel enforces
//!   it atomically with `openat2(RESOLVE_IN_ROOT)`; on kernels or sandboxes without `openat2` a
//!   hand-written resolver (`fstatat` + `readlinkat`, relative to the root descriptor) stands in.
//! - [`Walk::Beneath`]: no symlink is followed at all, not even one pointing inside, and nothing
//!   above the root is reached (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`, or a walk of `O_NOFOLLOW`
//!   opens without `openat2`). For trees whose links must not steer an operation anywhere: a
//!   step's upper directory after the step, a flattened image written out.
//!
//! Writes go through [`Root::parent`] or [`Root::create_dir_all`]: the parent directory is held
//! as a descriptor and the final component is then operated on with `*at` calls that do not
//! follow it (`AT_SYMLINK_NOFOLLOW`, `O_NOFOLLOW`). The hand-written fallback trusts that the tree
//! is not changed concurrently (a step's rootfs while no process runs in it, a layer this process
//! unpacks): a component found to be a directory is trusted for the open that follows.

use rustix::fs::{
    fstat, mkdirat, openat, openat2, readlinkat, statat, AtFlags, FileType, Mode, OFlags,
    ResolveFlags, Stat,
};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed in one resolution before giving up (Linux's own limit is 40).
const MAX_SYMLINKS: usize = 40;

/// How often an `openat2` the kernel could not prove safe (`EAGAIN`) is tried again.
const OPENAT2_RETRIES: usize = 16;

/// A directory treated as `/` for every path resolved through it, held open as an `O_PATH`
/// descriptor.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
    /// The canonical host path the root was opened at: for messages, and for the callers that
    /// still hand a host path to a library (see [`Root::resolve`]).
    host: PathBuf,
}

/// How the directories along a path are walked (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Walk {
    /// Symlinks followed as if the root were `/` (re-rooted, `..` stops at the root).
    InRoot,
    /// No symlink followed at all; nothing above the root reached.
    Beneath,
}

/// The directory an entry lives in, held open, and the entry's name in it: what a write that
/// creates, replaces or inspects the entry without following it needs (`*at` calls on `dir`
/// with `name`).
#[derive(Debug)]
pub struct Parent {
    /// `O_PATH` descriptor of the directory.
    pub dir: OwnedFd,
    /// One normal path component.
    pub name: OsString,
}

impl Parent {
    /// `lstat` of the entry (a symlink is not followed): `None` when there is none.
    pub fn lstat(&self) -> io::Result<Option<Stat>> {
        match statat(&self.dir, &self.name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes the entry without following it: a file, link or device is unlinked, a directory
    /// is emptied level by level (each opened `O_NOFOLLOW` relative to the one above) and
    /// removed. Nothing there is no error.
    pub fn remove_all(&self) -> io::Result<()> {
        remove_all_at(&self.dir, &self.name)
    }
}

/// [`Parent::remove_all`] for a directory descriptor the caller holds (a writer that keeps one
/// directory open across several entries).
pub fn remove_all_at(dir: impl AsFd, name: &OsStr) -> io::Result<()> {
    let dir = dir.as_fd();
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&sub)? {
        let entry = entry?;
        let n = entry.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    for n in &names {
        remove_all_at(&sub, n)?;
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
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

impl From<RootError> for io::Error {
    fn from(e: RootError) -> io::Error {
        match e {
            RootError::Root { source, .. } | RootError::Io { source, .. } => source,
            RootError::SymlinkLoop { .. } => Errno::LOOP.into(),
        }
    }
}

impl AsFd for Root {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl Root {
    /// Opens `path` as a root; it must be an existing directory (symlinks in `path` itself are
    /// the caller's and are followed).
    pub fn new(path: impl AsRef<Path>) -> Result<Root, RootError> {
        let path = path.as_ref();
        let fail = |source| RootError::Root {
            path: path.to_path_buf(),
            source,
        };
        let host = std::fs::canonicalize(path).map_err(fail)?;
        let fd = rustix::fs::open(
            &host,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(e.into()))?;
        Ok(Root { fd, host })
    }

    /// The host path the root was opened at (for messages and path-based callers).
    pub fn host_path(&self) -> &Path {
        &self.host
    }

    /// Opens `path` (relative to the root; a leading `/` names the root) walked as `walk` says.
    /// The final component is followed unless `flags` holds `O_NOFOLLOW` (with
    /// [`Walk::Beneath`] a final symlink is refused then, except for `O_PATH | O_NOFOLLOW`,
    /// which opens the link itself). `O_CLOEXEC` is always added. Never creates: creation goes
    /// through [`Root::parent`].
    pub fn open(&self, path: impl AsRef<Path>, walk: Walk, flags: OFlags) -> io::Result<OwnedFd> {
        let path = path.as_ref();
        let flags = flags | OFlags::CLOEXEC;
        let resolve = match walk {
            Walk::InRoot => ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
            Walk::Beneath => {
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS
            }
        };
        let rel = dot_if_empty(strip_root(path));
        let mut retries = 0;
        loop {
            match openat2(&self.fd, rel, flags, Mode::empty(), resolve) {
                // A rename elsewhere in the tree raced a `..`: the kernel asks for a retry.
                Err(Errno::AGAIN) if retries < OPENAT2_RETRIES => retries += 1,
                Err(e) if openat2_unavailable(e) => return self.open_by_hand(path, walk, flags),
                other => return Ok(other?),
            }
        }
    }

    /// The parent directory of `path` (walked as `walk` says) and its final name. The final
    /// component is not looked at: the caller acts on it with `*at` calls that do not follow it.
    /// `path` must end in a name (not the root, not `..`).
    pub fn parent(&self, path: impl AsRef<Path>, walk: Walk) -> io::Result<Parent> {
        let path = path.as_ref();
        let Some(name) = path.file_name() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} names no entry of a directory", path.display()),
            ));
        };
        let dir = path.parent().unwrap_or(Path::new(""));
        Ok(Parent {
            dir: self.open(dir, walk, OFlags::PATH | OFlags::DIRECTORY)?,
            name: name.to_os_string(),
        })
    }

    /// `lstat` of `path` (its parents walked as `walk` says, the final component not
    /// followed): `None` when it is missing, or a parent is missing or no directory. With
    /// [`Walk::Beneath`] a symlink among the parents also gives `None`: below it there is no
    /// entry of that path, only something else's.
    pub fn lstat(&self, path: impl AsRef<Path>, walk: Walk) -> io::Result<Option<Stat>> {
        let path = path.as_ref();
        if strip_root(path).as_os_str().is_empty() {
            return Ok(Some(fstat(&self.fd)?));
        }
        match self.parent(path, walk) {
            Ok(parent) => parent.lstat(),
            Err(e) => match Errno::from_io_error(&e) {
                Some(Errno::NOENT | Errno::NOTDIR) => Ok(None),
                Some(Errno::LOOP | Errno::XDEV) if walk == Walk::Beneath => Ok(None),
                _ => Err(e),
            },
        }
    }

    /// Opens the directory `path`, creating what is missing of it with `mode` first, and
    /// returns it as an `O_PATH` descriptor. With [`Walk::InRoot`] the path is resolved first
    /// (a dangling symlink names the directory to create, inside the root: `l -> /a/b` then
    /// `l/f` creates `/a/b`, as extracting a layer does); with [`Walk::Beneath`] a symlink on
    /// the way is an error. Each component is then opened `O_NOFOLLOW` relative to the one
    /// before.
    pub fn create_dir_all(
        &self,
        path: impl AsRef<Path>,
        walk: Walk,
        mode: u32,
    ) -> io::Result<OwnedFd> {
        let path = path.as_ref();
        let names: Vec<OsString> = match walk {
            Walk::InRoot => self
                .resolve_in_root(path, true)?
                .iter()
                .map(OsStr::to_os_string)
                .collect(),
            Walk::Beneath => plain_components(path)?
                .into_iter()
                .map(OsStr::to_os_string)
                .collect(),
        };
        let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let mut dir = openat(&self.fd, ".", dir_flags, Mode::empty())?;
        for name in &names {
            dir = match openat(&dir, name, dir_flags, Mode::empty()) {
                Ok(fd) => fd,
                // A link on the way (only met beneath: a path resolved in the root has none) is
                // told apart from a file, as `RESOLVE_NO_SYMLINKS` does.
                Err(Errno::NOTDIR)
                    if statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
                        FileType::from_raw_mode(st.st_mode) == FileType::Symlink
                    }) =>
                {
                    return Err(Errno::LOOP.into())
                }
                Err(Errno::NOENT) => {
                    match mkdirat(&dir, name, Mode::from_raw_mode(mode)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    openat(&dir, name, dir_flags, Mode::empty())?
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(dir)
    }

    /// The path below the root of a descriptor opened through it, as the kernel names it
    /// (`/proc/self/fd`): how the sandbox learns where a symlinked mount target really is.
    pub fn relative(&self, fd: BorrowedFd<'_>) -> io::Result<PathBuf> {
        let path = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))?;
        path.strip_prefix(&self.host)
            .map(Path::to_path_buf)
            .map_err(|_| {
                io::Error::other(format!(
                    "{} resolved outside the root filesystem",
                    path.display()
                ))
            })
    }

    /// Resolves `path` inside the root following every symlink, the final one included
    /// (what `stat` would see if the root were `/`), and returns it as a host path. Missing
    /// components are kept lexically.
    ///
    /// Path-based: the host path is walked again by whoever uses it, which is sound only while
    /// nothing changes the tree concurrently. Kept for the callers that hand paths to libraries
    /// (directory walks, `std::fs::copy`, times and xattrs by path); new code uses
    /// [`Root::open`] and [`Root::parent`].
    pub fn resolve(&self, path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        self.resolve_in_root(path.as_ref(), true)
            .map(|rel| self.host.join(rel))
    }

    /// Like [`Root::resolve`] but returns the path relative to the root (no leading `/`).
    pub fn resolve_rel(&self, path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        self.resolve_in_root(path.as_ref(), true)
    }

    /// Resolves the parents of `path` inside the root but not its final component, as a host
    /// path (what `lstat` would see). Path-based, see [`Root::resolve`]; [`Root::parent`] is
    /// the descriptor-based form.
    pub fn resolve_parent(&self, path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        self.resolve_in_root(path.as_ref(), false)
            .map(|rel| self.host.join(rel))
    }

    /// Like [`Root::resolve_parent`] but returns the path relative to the root (no leading `/`).
    pub fn resolve_parent_rel(&self, path: impl AsRef<Path>) -> Result<PathBuf, RootError> {
        self.resolve_in_root(path.as_ref(), false)
    }

    /// Opens a file for reading without ever leaving the root and without following a final
    /// symlink. `path` is cleaned lexically first.
    pub fn open_read(&self, path: impl AsRef<Path>) -> Result<File, RootError> {
        let path = path.as_ref();
        self.open(
            lexical_clean(path),
            Walk::InRoot,
            OFlags::RDONLY | OFlags::NOFOLLOW,
        )
        .map(File::from)
        .map_err(|source| self.io_err(path, source))
    }

    /// Reads a whole file as a process running in the root would (a final symlink followed,
    /// inside the root): `Ok(None)` when it does not exist. How `/etc/passwd` and `/etc/group`
    /// are read, for `USER` and `--chown`.
    pub fn read_in_root(&self, path: impl AsRef<Path>) -> Result<Option<Vec<u8>>, RootError> {
        use std::io::Read;
        let path = path.as_ref();
        let mut file = match self.open(lexical_clean(path), Walk::InRoot, OFlags::RDONLY) {
            Ok(fd) => File::from(fd),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None)
            }
            Err(e) => return Err(self.io_err(path, e)),
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

    /// [`Root::open`] without `openat2`: the path resolved by hand, then opened relative to
    /// the root descriptor without following anything more.
    fn open_by_hand(&self, path: &Path, walk: Walk, flags: OFlags) -> io::Result<OwnedFd> {
        match walk {
            Walk::InRoot => {
                let rel = self.resolve_in_root(path, !flags.contains(OFlags::NOFOLLOW))?;
                Ok(openat(
                    &self.fd,
                    dot_if_empty(&rel),
                    flags | OFlags::NOFOLLOW,
                    Mode::empty(),
                )?)
            }
            Walk::Beneath => {
                let names = plain_components(path)?;
                let Some((last, parents)) = names.split_last() else {
                    return Ok(openat(&self.fd, ".", flags, Mode::empty())?);
                };
                let dir_flags =
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
                let mut dir = openat(&self.fd, ".", dir_flags, Mode::empty())?;
                for name in parents {
                    dir = openat(&dir, *name, dir_flags, Mode::empty())?;
                }
                let fd = openat(&dir, *last, flags | OFlags::NOFOLLOW, Mode::empty())?;
                let is_link = FileType::from_raw_mode(fstat(&fd)?.st_mode) == FileType::Symlink;
                if is_link && !flags.contains(OFlags::NOFOLLOW) {
                    return Err(Errno::LOOP.into());
                }
                Ok(fd)
            }
        }
    }

    /// The hand-written resolver: `path` relative to the root with its symlinks resolved inside
    /// it (the final one only when `follow_final`), each component inspected relative to the
    /// root descriptor.
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
            let mut candidate: PathBuf = resolved.iter().collect();
            candidate.push(&comp);
            match statat(&self.fd, &candidate, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    links += 1;
                    if links > MAX_SYMLINKS {
                        return Err(RootError::SymlinkLoop {
                            root: self.host.clone(),
                            path: path.to_path_buf(),
                        });
                    }
                    let target = readlinkat(&self.fd, &candidate, Vec::new())
                        .map_err(|e| self.io_err(path, e.into()))?;
                    let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                    if target.is_absolute() {
                        resolved.clear();
                    }
                    pending.extend(components_rev(target));
                }
                Ok(_) | Err(Errno::NOENT | Errno::NOTDIR) => resolved.push(comp),
                Err(e) => return Err(self.io_err(path, e.into())),
            }
        }
        Ok(resolved.iter().collect())
    }
}

/// `path` without its leading `/`.
fn strip_root(path: &Path) -> &Path {
    path.strip_prefix("/").unwrap_or(path)
}

/// `.` for an empty path (the directory itself, for `*at` calls).
fn dot_if_empty(path: &Path) -> &Path {
    if path.as_os_str().is_empty() {
        Path::new(".")
    } else {
        path
    }
}

/// The names of a path walked [`Walk::Beneath`] by hand: `.` and a leading `/` vanish, `..` is
/// refused (`EXDEV`, as `RESOLVE_BENEATH` answers an escape).
fn plain_components(path: &Path) -> io::Result<Vec<&OsStr>> {
    let mut names = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => names.push(n),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => return Err(Errno::XDEV.into()),
        }
    }
    Ok(names)
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
/// symlink on the way and without `..` ([`Walk::Beneath`]): whatever `dir` holds, the file
/// opened is inside it. `O_NONBLOCK` keeps a FIFO swapped in from blocking the open; anything
/// but a regular file is refused.
pub fn open_file_beneath(dir: &Path, rel: &Path) -> io::Result<File> {
    let plain = rel
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    if !plain {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?} is not a plain relative path"),
        ));
    }
    if rel.file_name().is_none() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "empty path"));
    }
    let root = Root::new(dir)?;
    let file = File::from(root.open(
        rel,
        Walk::Beneath,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK,
    )?);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{rel:?} is not a regular file"),
        ));
    }
    Ok(file)
}

/// Whether `openat2` is missing (an old kernel) or refused (a seccomp filter): then the
/// hand-written walk stands in.
fn openat2_unavailable(err: Errno) -> bool {
    matches!(err, Errno::NOSYS | Errno::PERM | Errno::INVAL)
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

    /// A root, a host directory beside it holding `secret`, and the same name planted in the
    /// root: every escape below would find the host file.
    struct Fixture {
        _tmp: tempfile::TempDir,
        root: Root,
        outside: PathBuf,
    }

    fn fixture() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("secret"), b"host").unwrap();
        let dir = tmp.path().join("root");
        std::fs::create_dir_all(dir.join("inside")).unwrap();
        std::fs::write(dir.join("inside/secret"), b"image").unwrap();
        // The host directory's absolute path, as a link target.
        symlink(&outside, dir.join("abs")).unwrap();
        symlink("../outside", dir.join("up")).unwrap();
        symlink("/inside", dir.join("in")).unwrap();
        symlink("loop2", dir.join("loop1")).unwrap();
        symlink("loop1", dir.join("loop2")).unwrap();
        let root = Root::new(&dir).unwrap();
        Fixture {
            _tmp: tmp,
            root,
            outside,
        }
    }

    fn read_fd(fd: OwnedFd) -> String {
        let mut s = String::new();
        use std::io::Read;
        File::from(fd).read_to_string(&mut s).unwrap();
        s
    }

    fn errno(e: io::Error) -> Errno {
        Errno::from_io_error(&e).unwrap_or_else(|| panic!("not an OS error: {e}"))
    }

    /// Both the kernel walk and the hand-written one, so each is checked on this machine.
    fn open_both(f: &Fixture, path: &str, walk: Walk, flags: OFlags) -> [io::Result<OwnedFd>; 2] {
        [
            f.root.open(path, walk, flags),
            f.root
                .open_by_hand(Path::new(path), walk, flags | OFlags::CLOEXEC),
        ]
    }

    #[test]
    fn open_in_root_re_roots_absolute_and_dotdot_links() {
        let f = fixture();
        for r in open_both(&f, "in/secret", Walk::InRoot, OFlags::RDONLY) {
            assert_eq!(read_fd(r.unwrap()), "image");
        }
        // `abs` names the host directory; inside the root that path does not exist.
        for r in open_both(&f, "abs/secret", Walk::InRoot, OFlags::RDONLY) {
            assert_eq!(errno(r.unwrap_err()), Errno::NOENT);
        }
        // `../outside` from the root is `/outside`, missing inside the root.
        for r in open_both(&f, "up/secret", Walk::InRoot, OFlags::RDONLY) {
            assert_eq!(errno(r.unwrap_err()), Errno::NOENT);
        }
        for r in open_both(&f, "../../outside/secret", Walk::InRoot, OFlags::RDONLY) {
            assert_eq!(errno(r.unwrap_err()), Errno::NOENT);
        }
        assert!(f.outside.join("secret").is_file());
    }

    #[test]
    fn open_in_root_refuses_loops_and_a_final_link_with_nofollow() {
        let f = fixture();
        for r in open_both(&f, "loop1/x", Walk::InRoot, OFlags::RDONLY) {
            assert_eq!(errno(r.unwrap_err()), Errno::LOOP);
        }
        let nofollow = OFlags::RDONLY | OFlags::NOFOLLOW;
        for r in open_both(&f, "in", Walk::InRoot, nofollow | OFlags::DIRECTORY) {
            assert!(r.is_err(), "a final symlink is not followed");
        }
        // O_PATH | O_NOFOLLOW opens the link itself.
        for r in open_both(&f, "in", Walk::InRoot, OFlags::PATH | OFlags::NOFOLLOW) {
            let st = fstat(r.unwrap()).unwrap();
            assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Symlink);
        }
    }

    #[test]
    fn open_beneath_follows_no_symlink_at_all() {
        let f = fixture();
        for r in open_both(&f, "inside/secret", Walk::Beneath, OFlags::RDONLY) {
            assert_eq!(read_fd(r.unwrap()), "image");
        }
        // Even a link that stays inside the root is refused, on the way and at the end.
        for path in ["in/secret", "abs/secret", "up/secret", "loop1/x"] {
            for r in open_both(&f, path, Walk::Beneath, OFlags::RDONLY) {
                assert!(r.is_err(), "{path} was opened through a symlink");
            }
        }
        for r in open_both(&f, "in", Walk::Beneath, OFlags::PATH | OFlags::DIRECTORY) {
            assert!(r.is_err(), "a final symlink was followed");
        }
        for r in open_both(&f, "../outside/secret", Walk::Beneath, OFlags::RDONLY) {
            assert_eq!(errno(r.unwrap_err()), Errno::XDEV);
        }
        for r in open_both(&f, "in", Walk::Beneath, OFlags::PATH | OFlags::NOFOLLOW) {
            let st = fstat(r.unwrap()).unwrap();
            assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Symlink);
        }
    }

    /// A symlinked parent planted for a write: in the root the write lands inside it, beneath
    /// it is refused; the host directory the link names is never written.
    #[test]
    fn a_write_through_a_planted_parent_link_stays_inside() {
        let f = fixture();
        let create = |p: &Parent| {
            openat(
                &p.dir,
                &p.name,
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW,
                Mode::from_raw_mode(0o644),
            )
        };
        let host = f.root.host_path();
        std::fs::create_dir_all(host.join(f.outside.strip_prefix("/").unwrap())).unwrap();
        let p = f.root.parent("abs/new", Walk::InRoot).unwrap();
        assert_eq!(p.name, "new");
        create(&p).unwrap();
        assert!(!f.outside.join("new").exists(), "wrote through the link");
        assert!(host
            .join(f.outside.strip_prefix("/").unwrap())
            .join("new")
            .is_file());
        std::fs::create_dir_all(host.join("outside")).unwrap();
        let p = f.root.parent("up/new2", Walk::InRoot).unwrap();
        create(&p).unwrap();
        assert!(!f.outside.join("new2").exists(), "wrote through the link");
        assert!(host.join("outside/new2").is_file());
        for path in ["abs/new3", "up/new3", "in/new3"] {
            assert!(f.root.parent(path, Walk::Beneath).is_err(), "{path}");
        }
        assert!(!f.outside.join("new3").exists());
        assert!(!host.join("inside/new3").exists());
        // The final component is the caller's: a planted final link is replaced, not written.
        let p = f.root.parent("in", Walk::Beneath).unwrap();
        assert_eq!(errno(create(&p).unwrap_err().into()), Errno::EXIST);
        assert!(f.root.parent("a/..", Walk::InRoot).is_err());
    }

    #[test]
    fn lstat_never_follows_and_beneath_sees_nothing_below_a_link() {
        let f = fixture();
        for walk in [Walk::InRoot, Walk::Beneath] {
            let st = f.root.lstat("in", walk).unwrap().unwrap();
            assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Symlink);
            let st = f.root.lstat("/", walk).unwrap().unwrap();
            assert_eq!(FileType::from_raw_mode(st.st_mode), FileType::Directory);
            assert!(f.root.lstat("abs/secret", walk).unwrap().is_none());
            assert!(f.root.lstat("inside/secret/x", walk).unwrap().is_none());
        }
        // Inside the root, `in/secret` is `inside/secret`; beneath, there is no such entry.
        assert!(f.root.lstat("in/secret", Walk::InRoot).unwrap().is_some());
        assert!(f.root.lstat("in/secret", Walk::Beneath).unwrap().is_none());
        assert!(f.root.lstat("loop1/x", Walk::Beneath).unwrap().is_none());
        assert_eq!(
            errno(f.root.lstat("loop1/x", Walk::InRoot).unwrap_err()),
            Errno::LOOP
        );
    }

    #[test]
    fn create_dir_all_creates_inside_or_refuses_a_link() {
        let f = fixture();
        let host = f.root.host_path().to_path_buf();
        // A dangling absolute link names the directory to create, inside the root.
        symlink(f.outside.join("made"), host.join("dangling")).unwrap();
        f.root
            .create_dir_all("dangling/sub", Walk::InRoot, 0o755)
            .unwrap();
        assert!(!f.outside.join("made").exists(), "created through the link");
        assert!(host
            .join(f.outside.strip_prefix("/").unwrap())
            .join("made/sub")
            .is_dir());
        f.root.create_dir_all("up/x", Walk::InRoot, 0o755).unwrap();
        assert!(host.join("outside/x").is_dir());
        assert!(!f.outside.join("x").exists());
        for path in ["abs/y", "up/y", "in/y", "../y"] {
            assert!(
                f.root.create_dir_all(path, Walk::Beneath, 0o755).is_err(),
                "{path}"
            );
        }
        assert!(!f.outside.join("y").exists());
        assert!(!host.join("inside/y").exists());
        let fd = f.root.create_dir_all("a/b", Walk::Beneath, 0o700).unwrap();
        assert_eq!(f.root.relative(fd.as_fd()).unwrap(), Path::new("a/b"));
        assert!(f
            .root
            .create_dir_all("inside/secret/z", Walk::InRoot, 0o755)
            .is_err());
    }

    #[test]
    fn relative_names_the_real_place_of_a_descriptor() {
        let f = fixture();
        let fd = f.root.open("in", Walk::InRoot, OFlags::PATH).unwrap();
        assert_eq!(f.root.relative(fd.as_fd()).unwrap(), Path::new("inside"));
        let other = tempfile::tempdir().unwrap();
        let fd = rustix::fs::open(other.path(), OFlags::PATH, Mode::empty()).unwrap();
        assert!(f.root.relative(fd.as_fd()).is_err());
    }

    #[test]
    fn open_file_beneath_refuses_links_and_non_files() {
        let f = fixture();
        let host = f.root.host_path();
        assert!(open_file_beneath(host, Path::new("inside/secret")).is_ok());
        for rel in ["in/secret", "abs/secret", "../outside/secret", "inside"] {
            assert!(open_file_beneath(host, Path::new(rel)).is_err(), "{rel}");
        }
    }

    #[test]
    fn remove_all_removes_a_tree_but_never_what_its_links_name() {
        let f = fixture();
        let host = f.root.host_path().to_path_buf();
        std::fs::create_dir_all(host.join("tree/deep/er")).unwrap();
        std::fs::write(host.join("tree/deep/er/f"), b"x").unwrap();
        symlink(&f.outside, host.join("tree/deep/abs")).unwrap();
        symlink("/inside", host.join("tree/in")).unwrap();
        f.root
            .parent("tree", Walk::Beneath)
            .unwrap()
            .remove_all()
            .unwrap();
        assert!(!host.join("tree").exists());
        assert!(f.outside.join("secret").is_file(), "removed through a link");
        assert!(
            host.join("inside/secret").is_file(),
            "removed through a link"
        );
        // A link itself is removed, not what it names.
        f.root
            .parent("abs", Walk::Beneath)
            .unwrap()
            .remove_all()
            .unwrap();
        assert!(f.outside.join("secret").is_file());
        assert!(host.join("abs").symlink_metadata().is_err());
        f.root
            .parent("gone", Walk::Beneath)
            .unwrap()
            .remove_all()
            .unwrap();
    }
}
