//! The cache root directory and its locks.
//!
//! Many `builder` processes may share one root. Each holds a shared lock on `<root>/lock` while it
//! builds or reads; garbage collection takes it exclusively, so it never deletes what a build is
//! about to use. Within a build, [`EntryLock`] makes sure one process computes a given entry
//! (a cache key, an unpacked layer) while the others wait and then reuse the result.

use crate::layout::Bucket;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;

use crate::cas::{CasError, ContentStore};

/// Errors of root layout and locking; every I/O error names its path.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// A filesystem or lock operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The lock is held by another process and the caller asked not to wait.
    #[error("{0} is locked by another process")]
    WouldBlock(PathBuf),
    /// The content store under the root could not be opened.
    #[error(transparent)]
    Cas(#[from] CasError),
    /// No default root could be chosen.
    #[error("cannot choose a root directory: set BUILDER_ROOT or pass --root")]
    NoDefault,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> LockError + 'a {
    move |source| LockError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The environment variable that overrides the default root directory.
pub const ROOT_ENV: &str = "BUILDER_ROOT";

/// The mode of the root and its sub-directories: owner only.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Creates `dir` with [`PRIVATE_DIR_MODE`], or narrows an existing one to it (never widens).
fn make_private_dir(dir: &Path) -> Result<(), LockError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    match fs::DirBuilder::new().mode(PRIVATE_DIR_MODE).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("create directory", dir)(e)),
    }
    let meta = fs::metadata(dir).map_err(io_err("inspect directory", dir))?;
    if !meta.is_dir() {
        return Err(io_err("open root directory", dir)(io::Error::from(
            rustix::io::Errno::NOTDIR,
        )));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & !PRIVATE_DIR_MODE != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(mode & PRIVATE_DIR_MODE))
            .map_err(io_err("restrict permissions of", dir))?;
    }
    Ok(())
}

/// One builder root directory (`--root`, `$BUILDER_ROOT`), laid out with its versioned
/// sub-directories. Not to be confused with `engine::fileops::root::Root`, a directory treated
/// as `/` when resolving paths in a root filesystem.
#[derive(Clone, Debug)]
pub struct RootDir {
    path: PathBuf,
}

impl RootDir {
    /// The default root: `$BUILDER_ROOT`, else `/var/lib/builder` for root, else
    /// `$XDG_DATA_HOME/builder` (`~/.local/share/builder`).
    pub fn default_path() -> Result<PathBuf, LockError> {
        if let Some(p) = std::env::var_os(ROOT_ENV).filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(p));
        }
        if rustix::process::geteuid().is_root() {
            return Ok(PathBuf::from("/var/lib/builder"));
        }
        if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|p| !p.is_empty()) {
            return Ok(PathBuf::from(x).join("builder"));
        }
        match std::env::var_os("HOME").filter(|p| !p.is_empty()) {
            Some(home) => Ok(PathBuf::from(home).join(".local/share/builder")),
            None => Err(LockError::NoDefault),
        }
    }

    /// Opens the root at `path`, creating it and its sub-directories as needed.
    ///
    /// The root and every sub-directory are reachable by their owner only (0700), created so and
    /// fixed on open when an older version (or someone) left them wider: unpacked snapshots hold
    /// what images carry (setuid binaries, device nodes, world-writable directories) and cache
    /// mounts feed later builds, so another user of the machine must not traverse into them
    /// (containerd's CVE-2021-41103; containerd and BuildKit keep their roots 0700/0711).
    pub fn open(path: impl AsRef<Path>) -> Result<RootDir, LockError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
        }
        make_private_dir(&path)?;
        for bucket in Bucket::ALL {
            make_private_dir(&bucket.path(&path))?;
        }
        Ok(RootDir { path })
    }

    /// Opens the root at `path` if given, else at [`RootDir::default_path`].
    pub fn open_or_default(path: Option<&Path>) -> Result<RootDir, LockError> {
        match path {
            Some(p) => RootDir::open(p),
            None => RootDir::open(RootDir::default_path()?),
        }
    }

    /// The root directory itself.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The content store shared by images and cached layers.
    pub fn content_store(&self) -> Result<ContentStore, LockError> {
        Ok(ContentStore::open(&self.path)?)
    }

    /// Where the image name store keeps its state.
    pub fn images_dir(&self) -> PathBuf {
        Bucket::Images.path(&self.path)
    }

    /// Where cache keys and their records live.
    pub fn keys_dir(&self) -> PathBuf {
        Bucket::Keys.path(&self.path)
    }

    /// Where unpacked layers live.
    pub fn snapshots_dir(&self) -> PathBuf {
        Bucket::Snapshots.path(&self.path)
    }

    /// Where overlay mounts and their work directories are made.
    pub fn mounts_dir(&self) -> PathBuf {
        Bucket::Mounts.path(&self.path)
    }

    /// Where build records live.
    pub fn records_dir(&self) -> PathBuf {
        Bucket::Records.path(&self.path)
    }

    /// Scratch space on the same filesystem as everything else (for atomic renames).
    pub fn tmp_dir(&self) -> PathBuf {
        Bucket::Tmp.path(&self.path)
    }

    /// Takes the root lock shared (for builds and reads); waits while GC runs.
    pub fn lock_shared(&self) -> Result<RootLock, LockError> {
        RootLock::acquire(&self.path.join("lock"), false, true)
    }

    /// Takes the root lock exclusively (for GC); waits for running builds.
    pub fn lock_exclusive(&self) -> Result<RootLock, LockError> {
        RootLock::acquire(&self.path.join("lock"), true, true)
    }

    /// Takes the root lock exclusively if no one else holds it.
    pub fn try_lock_exclusive(&self) -> Result<RootLock, LockError> {
        RootLock::acquire(&self.path.join("lock"), true, false)
    }

    /// Locks one entry (`namespace` e.g. `"keys"`, `key` a digest or any file-name-safe string)
    /// exclusively, waiting for the current holder.
    pub fn lock_entry(&self, namespace: &str, key: &str) -> Result<EntryLock, LockError> {
        let dir = Bucket::Locks.path(&self.path).join(namespace);
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        EntryLock::acquire(dir.join(format!("{key}.lock")))
    }
}

/// A held lock on the root directory; released on drop.
#[derive(Debug)]
pub struct RootLock {
    file: File,
    exclusive: bool,
}

impl RootLock {
    fn acquire(path: &Path, exclusive: bool, wait: bool) -> Result<RootLock, LockError> {
        let file = open_lock_file(path)?;
        let result = match (exclusive, wait) {
            (true, true) => FileExt::lock_exclusive(&file),
            (false, true) => FileExt::lock_shared(&file),
            (true, false) => FileExt::try_lock_exclusive(&file),
            (false, false) => FileExt::try_lock_shared(&file),
        };
        match result {
            Ok(()) => Ok(RootLock { file, exclusive }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(LockError::WouldBlock(path.to_path_buf()))
            }
            Err(e) => Err(io_err("lock", path)(e)),
        }
    }

    /// Whether this is the exclusive (GC) lock.
    pub fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

impl Drop for RootLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

/// An exclusive lock on one lock file, for "one process computes X". Released on drop.
#[derive(Debug)]
pub struct EntryLock {
    file: File,
    path: PathBuf,
}

impl EntryLock {
    /// Locks `path` (created if missing), waiting for the current holder.
    pub fn acquire(path: impl Into<PathBuf>) -> Result<EntryLock, LockError> {
        let path = path.into();
        let file = open_lock_file(&path)?;
        FileExt::lock_exclusive(&file).map_err(io_err("lock", &path))?;
        Ok(EntryLock { file, path })
    }

    /// Locks `path` if free; `Ok(None)` if another process holds it.
    pub fn try_acquire(path: impl Into<PathBuf>) -> Result<Option<EntryLock>, LockError> {
        let path = path.into();
        let file = open_lock_file(&path)?;
        match FileExt::try_lock_exclusive(&file) {
            Ok(()) => Ok(Some(EntryLock { file, path })),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(io_err("lock", &path)(e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for EntryLock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.file);
    }
}

fn open_lock_file(path: &Path) -> Result<File, LockError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io_err("open lock file", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_subdirectories_are_owner_only_and_fixed_on_open() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        let root = RootDir::open(&path).unwrap();
        assert_eq!(mode(root.path()), 0o700);
        for bucket in Bucket::ALL {
            let sub = bucket.path(&path);
            assert_eq!(mode(&sub), 0o700, "{}", sub.display());
        }
        // A root made world-readable (an older version, a careless chmod) is narrowed on open.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(
            path.join("snapshots-v1"),
            fs::Permissions::from_mode(0o1777),
        )
        .unwrap();
        fs::set_permissions(path.join("mounts-v1"), fs::Permissions::from_mode(0o500)).unwrap();
        RootDir::open(&path).unwrap();
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join("snapshots-v1")), 0o700);
        assert_eq!(mode(&path.join("mounts-v1")), 0o500, "never widened");
    }

    #[test]
    fn root_layout_and_locks() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path().join("r")).unwrap();
        for bucket in Bucket::ALL {
            assert!(bucket.path(root.path()).is_dir(), "{bucket:?}");
        }
        let a = root.lock_shared().unwrap();
        let b = root.lock_shared().unwrap();
        assert!(matches!(
            root.try_lock_exclusive(),
            Err(LockError::WouldBlock(_))
        ));
        drop(a);
        drop(b);
        let x = root.try_lock_exclusive().unwrap();
        assert!(x.is_exclusive());
    }

    #[test]
    fn default_path_honours_env_and_euid() {
        std::env::set_var(ROOT_ENV, "/tmp/builder-root-from-env");
        assert_eq!(
            RootDir::default_path().unwrap(),
            PathBuf::from("/tmp/builder-root-from-env")
        );
        std::env::remove_var(ROOT_ENV);
        let p = RootDir::default_path().unwrap();
        if rustix::process::geteuid().is_root() {
            assert_eq!(p, PathBuf::from("/var/lib/builder"));
        } else {
            assert!(p.ends_with("builder"), "{}", p.display());
        }
    }

    #[test]
    fn entry_lock_excludes() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        let held = root.lock_entry("keys", "abc").unwrap();
        assert!(EntryLock::try_acquire(held.path()).unwrap().is_none());
        let path = held.path().to_path_buf();
        drop(held);
        assert!(EntryLock::try_acquire(path).unwrap().is_some());
    }
}
