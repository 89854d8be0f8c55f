//! Layer blobs unpacked once into read-only directories usable directly as overlay lowerdirs.
//!
//! Invariants:
//! - A directory under its final name is always complete: layers are unpacked into a temporary
//!   sibling (`.unpack-<name>-*`), verified, and renamed. A killed process leaves only the
//!   temporary directory behind, never a half-unpacked snapshot; the next unpack of the same
//!   layer removes it.
//! - Unpacking the same layer from two processes is safe: an exclusive `flock` on `<dest>.lock`
//!   serialises them, and the second finds the directory already there.
//! - The diffID (sha256 of the uncompressed tar, every byte up to EOF) is computed while
//!   unpacking and checked against the expected one before the rename.
//! - OCI whiteouts are stored in overlay form (`.wh.x` → char device 0:0 `x`, `.wh..wh..opq` →
//!   opaque xattr on the directory), so the directory is a valid lowerdir as is.
//! - Hostile archives cannot write outside the directory: names are sanitised as containerd
//!   does (see [`crate::fileops::archive`] for the exact rules).

use crate::fileops::archive::{self, ArchiveError, ExtractOptions, Ownership, WhiteoutMode};
use crate::fileops::root::{Root, Walk};
use crate::layer::{DiffId, Digest};
use rustix::fs::{FileType, OFlags};
use sha2::{Digest as _, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// Which xattr marks an opaque directory in unpacked snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverlayXattrs {
    /// `trusted.overlay.opaque` (overlay mounted by real root).
    #[default]
    Trusted,
    /// `user.overlay.opaque` (rootless overlay mounted with `userxattr`).
    User,
}

impl OverlayXattrs {
    /// The opaque-directory xattr name.
    pub fn opaque_name(self) -> &'static str {
        match self {
            OverlayXattrs::Trusted => "trusted.overlay.opaque",
            OverlayXattrs::User => "user.overlay.opaque",
        }
    }
}

/// Why a layer could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading the blob or writing the directory failed.
    #[error("unpacking layer {blob:?}: {what}: {source}")]
    Io {
        blob: PathBuf,
        what: &'static str,
        source: io::Error,
    },
    /// The archive was malformed or hostile in a way that cannot be sanitised.
    #[error("unpacking layer {blob:?}: {source}")]
    Archive { blob: PathBuf, source: ArchiveError },
    /// The uncompressed content does not match the expected diffID.
    #[error("unpacking layer {blob:?}: diffID mismatch: expected {expected}, got {actual}")]
    DiffIdMismatch {
        blob: PathBuf,
        expected: DiffId,
        actual: DiffId,
    },
}

/// Unpacks `blob` (gzip, zstd, bzip2, xz or plain tar, detected by magic) into `dest`, once.
///
/// If `dest` already exists (unpacked earlier or by a concurrent process) it is reused when
/// `expected` is given; otherwise the blob is unpacked to a temporary sibling, its diffID
/// checked against `expected`, and the directory renamed into place. Returns the diffID.
pub fn unpack_layer(
    blob: &Path,
    dest: &Path,
    expected: Option<&DiffId>,
    xattrs: OverlayXattrs,
) -> Result<DiffId, SnapshotError> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|source| SnapshotError::Io {
        blob: blob.to_path_buf(),
        what: "creating parent directory",
        source,
    })?;
    let limit = archive::expansion_limit(parent).map_err(|source| SnapshotError::Archive {
        blob: blob.to_path_buf(),
        source,
    })?;
    unpack_layer_limited(blob, dest, expected, xattrs, limit)
}

/// [`unpack_layer`] with an explicit expansion limit (see [`archive::expansion_limit`]): a layer
/// whose stream or contents grow beyond `limit` bytes fails with
/// [`archive::ArchiveError::TooLarge`], leaving no directory behind.
pub fn unpack_layer_limited(
    blob: &Path,
    dest: &Path,
    expected: Option<&DiffId>,
    xattrs: OverlayXattrs,
    limit: u64,
) -> Result<DiffId, SnapshotError> {
    let io_err = |what| {
        move |source| SnapshotError::Io {
            blob: blob.to_path_buf(),
            what,
            source,
        }
    };
    let parent = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io_err("creating parent directory"))?;
    let mut lock_path = dest.as_os_str().to_owned();
    lock_path.push(".lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err("opening lock file"))?;
    // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(io_err("locking")(io::Error::last_os_error()));
    }
    if let (Some(expected), true) = (expected, dest.is_dir()) {
        return Ok(expected.clone());
    }

    // Holding the lock, any earlier temporary directory for this destination belongs to a
    // process that died mid-unpack: remove it.
    let dest_name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp_prefix = format!(".unpack-{dest_name}-");
    if let Ok(entries) = std::fs::read_dir(parent) {
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(&tmp_prefix) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix(&tmp_prefix)
        .tempdir_in(parent)
        .map_err(io_err("creating temporary directory"))?;
    let root = Root::new(tmp.path()).map_err(|e| SnapshotError::Io {
        blob: blob.to_path_buf(),
        what: "opening temporary directory",
        source: io::Error::other(e.to_string()),
    })?;
    let file = File::open(blob).map_err(io_err("opening blob"))?;
    let (_, decompressed) =
        crate::compression::decompress(io::BufReader::with_capacity(1 << 20, file))
            .map_err(io_err("reading blob"))?;
    let mut hashing = HashingReader {
        inner: archive::LimitedReader::new(decompressed, limit),
        hasher: Sha256::new(),
    };
    let opts = ExtractOptions {
        whiteouts: WhiteoutMode::Overlay {
            opaque_xattr: xattrs.opaque_name(),
        },
        ownership: Ownership::Headers,
        parents: Walk::InRoot,
        limit,
    };
    let archive_err = |source| SnapshotError::Archive {
        blob: blob.to_path_buf(),
        source,
    };
    archive::extract_tar(&mut hashing, &root, &opts).map_err(archive_err)?;
    // The diffID covers the whole stream, including padding after the end-of-archive marker.
    io::copy(&mut hashing, &mut io::sink()).map_err(|e| match ArchiveError::from_stream(e) {
        Ok(too_large) => archive_err(too_large),
        Err(e) => io_err("reading blob")(e),
    })?;
    let actual = Digest::from_sha256(hashing.hasher.finalize().into());
    if let Some(expected) = expected {
        if *expected != actual {
            return Err(SnapshotError::DiffIdMismatch {
                blob: blob.to_path_buf(),
                expected: expected.clone(),
                actual,
            });
        }
    }
    // tempdir creates 0700; a rootfs `/` is 0755 unless the layer said otherwise.
    let root_mode = rustix::fs::fstat(&root)
        .map_err(|e| io_err("inspecting")(e.into()))?
        .st_mode;
    if root_mode & 0o7777 == 0o700 {
        let mode = rustix::fs::Mode::from_raw_mode(0o755);
        rustix::fs::chmodat(&root, ".", mode, rustix::fs::AtFlags::empty())
            .map_err(|e| io_err("setting mode")(e.into()))?;
    }
    let tmp_path = tmp.keep();
    match std::fs::rename(&tmp_path, dest) {
        Ok(()) => Ok(actual),
        Err(source) => {
            let _ = std::fs::remove_dir_all(&tmp_path);
            if dest.is_dir() {
                Ok(actual) // already present (unpacked without a known diffID by another caller)
            } else {
                Err(io_err("renaming into place")(source))
            }
        }
    }
}

/// A directory of unpacked layers keyed by diffID: `<root>/sha256/<hex>`.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    root: PathBuf,
    xattrs: OverlayXattrs,
}

impl SnapshotStore {
    /// Uses (and creates) `root` for snapshots whose opaque dirs carry `xattrs`.
    pub fn open(root: impl Into<PathBuf>, xattrs: OverlayXattrs) -> io::Result<SnapshotStore> {
        let root = root.into();
        std::fs::create_dir_all(root.join("sha256"))?;
        Ok(SnapshotStore { root, xattrs })
    }

    /// Where the snapshot of `diff_id` lives (whether or not it exists yet).
    pub fn path(&self, diff_id: &DiffId) -> PathBuf {
        self.root.join("sha256").join(diff_id.hex())
    }

    /// The xattr flavour opaque directories carry in this store.
    pub fn xattrs(&self) -> OverlayXattrs {
        self.xattrs
    }

    /// Whether the snapshot of `diff_id` is already unpacked.
    pub fn contains(&self, diff_id: &DiffId) -> bool {
        self.path(diff_id).is_dir()
    }

    /// Returns the lowerdir for `diff_id`, unpacking `blob` first if needed (once, verified).
    pub fn ensure(&self, blob: &Path, diff_id: &DiffId) -> Result<PathBuf, SnapshotError> {
        let dest = self.path(diff_id);
        if !dest.is_dir() {
            unpack_layer(blob, &dest, Some(diff_id), self.xattrs)?;
        }
        Ok(dest)
    }
}

struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// A stack of snapshot directories (bottom first) read as the overlay mount of them would show
/// it, without mounting: an entry is taken from the topmost layer that has it; a whiteout (char
/// device 0:0) hides it; an opaque directory hides what the layers below hold under it; a
/// non-directory hides the directories below it. Symlinks met on the way resolve inside the
/// stack, as in a container root.
///
/// The worker needs this before a step's overlay exists (the user database for `HOME`) and
/// after it is gone (comparing a finished upper directory with what it was copied up from).
///
/// Each layer is a [`Root`]; the view is a union of them, so the links it follows are read and
/// resolved here, across layers, and every lookup inside one layer is walked
/// [`Walk::Beneath`]: the kernel follows no link. Opaque markers are read by host path
/// (`lgetxattr`, which has no descriptor-relative form before Linux 6.13) of a directory whose
/// every component was just checked; snapshots are not changed once unpacked.
#[derive(Debug)]
pub struct LayerStack {
    /// Snapshot directories, bottom first (the order of overlay `lowerdir`s reversed), each
    /// with the path it was given as.
    layers: Vec<(PathBuf, Root)>,
    /// The xattr that marks opaque directories in them.
    xattrs: OverlayXattrs,
}

/// How many symlinks one lookup follows before giving up (Linux's `MAXSYMLINKS`).
const MAX_SYMLINKS: usize = 40;

/// A directory or entry of one layer: the layer's index and the path below its root (no
/// symlink in it).
type InLayer = (usize, PathBuf);

impl LayerStack {
    /// Opens the snapshot directories `layers` (bottom first) whose opaque directories carry
    /// `xattrs`.
    pub fn open(layers: &[PathBuf], xattrs: OverlayXattrs) -> io::Result<LayerStack> {
        let layers = layers
            .iter()
            .map(|p| Ok((p.clone(), Root::new(p)?)))
            .collect::<io::Result<Vec<_>>>()?;
        Ok(LayerStack { layers, xattrs })
    }

    /// The host path of the entry the merged view shows at container path `path` (the last
    /// component is not followed when it is a symlink), `None` when the view has nothing there.
    pub fn find(&self, path: &str) -> io::Result<Option<PathBuf>> {
        Ok(self.locate(path)?.map(|(i, rel)| {
            let layer = &self.layers[i].0;
            if rel.as_os_str().is_empty() {
                layer.clone()
            } else {
                layer.join(rel)
            }
        }))
    }

    /// Reads the file at container path `path` (symlinks followed inside the stack), `None`
    /// when there is none.
    pub fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        let mut path = path.to_string();
        for _ in 0..=MAX_SYMLINKS {
            let Some((i, rel)) = self.locate(&path)? else {
                return Ok(None);
            };
            let root = &self.layers[i].1;
            let st = root
                .lstat(&rel, Walk::Beneath)?
                .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
            match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => {
                    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK;
                    let mut bytes = Vec::new();
                    File::from(root.open(&rel, Walk::Beneath, flags)?).read_to_end(&mut bytes)?;
                    return Ok(Some(bytes));
                }
                FileType::Symlink => {}
                _ => return Ok(None),
            }
            let target = self.read_link(&(i, rel))?;
            path = if target.starts_with('/') {
                target
            } else {
                let parent = Path::new(&path).parent().unwrap_or(Path::new("/"));
                format!("{}/{target}", parent.display())
            };
        }
        Err(io::Error::from_raw_os_error(libc::ELOOP))
    }

    /// Which layer provides the entry at container path `path`, and where in it.
    fn locate(&self, path: &str) -> io::Result<Option<InLayer>> {
        let mut pending: Vec<String> = components(path).into_iter().rev().collect();
        // The container path of the directory reached so far, and the layer directories that
        // merge into it (topmost first).
        let mut at: Vec<String> = Vec::new();
        let mut dirs: Vec<InLayer> = self.roots();
        let mut followed = 0;
        while let Some(name) = pending.pop() {
            if name == ".." {
                // Resolved lexically against the directory reached, as symlink targets are.
                at.pop();
                dirs = self.merged_dirs(&at)?;
                continue;
            }
            let last = pending.is_empty();
            let mut next = Vec::new();
            let mut other = None;
            for (i, dir) in &dirs {
                let p = dir.join(&name);
                let Some(st) = self.layers[*i].1.lstat(&p, Walk::Beneath)? else {
                    continue;
                };
                let ft = FileType::from_raw_mode(st.st_mode);
                if ft == FileType::Directory {
                    let opaque = self.is_opaque(*i, &p);
                    next.push((*i, p));
                    if opaque {
                        break;
                    }
                    continue;
                }
                if next.is_empty() && !is_whiteout(&st) {
                    other = Some(((*i, p), ft == FileType::Symlink));
                }
                break;
            }
            match other {
                Some((found, _)) if last => return Ok(Some(found)),
                Some((link, true)) => {
                    followed += 1;
                    if followed > MAX_SYMLINKS {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = self.read_link(&link)?;
                    if target.starts_with('/') {
                        at.clear();
                        dirs = self.roots();
                    }
                    pending.extend(components(&target).into_iter().rev());
                }
                Some((_, false)) => return Ok(None),
                None if next.is_empty() => return Ok(None),
                None if last => return Ok(next.into_iter().next()),
                None => {
                    at.push(name);
                    dirs = next;
                }
            }
        }
        // The root itself.
        Ok(dirs.into_iter().next())
    }

    /// The root of every layer, topmost first.
    fn roots(&self) -> Vec<InLayer> {
        (0..self.layers.len())
            .rev()
            .map(|i| (i, PathBuf::new()))
            .collect()
    }

    /// The target of the symlink `link`.
    fn read_link(&self, (i, rel): &InLayer) -> io::Result<String> {
        let at = self.layers[*i].1.parent(rel, Walk::Beneath)?;
        let target = rustix::fs::readlinkat(&at.dir, &at.name, Vec::new())?;
        Ok(String::from_utf8_lossy(target.as_bytes()).into_owned())
    }

    /// Whether the directory `rel` of layer `i` is opaque.
    fn is_opaque(&self, i: usize, rel: &Path) -> bool {
        xattr::get(
            self.layers[i].1.host_path().join(rel),
            self.xattrs.opaque_name(),
        )
        .ok()
        .flatten()
        .is_some_and(|v| v == b"y")
    }

    /// The layer directories merging into the directory at `at` (resolved, no symlinks).
    fn merged_dirs(&self, at: &[String]) -> io::Result<Vec<InLayer>> {
        let mut dirs = self.roots();
        for name in at {
            let mut next = Vec::new();
            for (i, dir) in &dirs {
                let p = dir.join(name);
                match self.layers[*i].1.lstat(&p, Walk::Beneath)? {
                    Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        let opaque = self.is_opaque(*i, &p);
                        next.push((*i, p));
                        if opaque {
                            break;
                        }
                    }
                    Some(_) => break,
                    None => {}
                }
            }
            dirs = next;
        }
        Ok(dirs)
    }
}

fn components(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(str::to_string)
        .collect()
}

/// An overlay whiteout: a character device 0:0.
fn is_whiteout(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

#[cfg(test)]
mod stack_tests {
    use super::*;

    fn write(p: &Path, data: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }

    #[test]
    fn layer_stack_reads_as_the_overlay_shows() {
        let t = tempfile::tempdir().unwrap();
        let (a, b, c) = (t.path().join("a"), t.path().join("b"), t.path().join("c"));
        write(&a.join("etc/passwd"), "bottom");
        write(&a.join("etc/group"), "group");
        write(&a.join("old/x"), "x");
        write(&a.join("opaque/hidden"), "h");
        write(&b.join("etc/passwd"), "middle");
        std::fs::create_dir_all(b.join("opaque")).unwrap();
        write(&b.join("opaque/shown"), "s");
        std::os::unix::fs::symlink("/etc", b.join("etc-link")).unwrap();
        std::fs::create_dir_all(&c).unwrap();
        let opaque = xattr::set(b.join("opaque"), "user.overlay.opaque", b"y").is_ok();
        let whiteout = archive::mknod(&c.join("old"), libc::S_IFCHR, 0).is_ok();
        let layers = vec![a, b, c];
        let stack = LayerStack::open(&layers, OverlayXattrs::User).unwrap();
        let read = |p: &str| {
            stack
                .read(p)
                .unwrap()
                .map(|b| String::from_utf8(b).unwrap())
        };
        assert_eq!(read("/etc/passwd").as_deref(), Some("middle"));
        assert_eq!(read("/etc/group").as_deref(), Some("group"));
        assert_eq!(read("/etc-link/group").as_deref(), Some("group"));
        assert_eq!(read("/etc-link/../etc/passwd").as_deref(), Some("middle"));
        assert_eq!(read("/etc/nothing"), None);
        assert_eq!(read("/etc/passwd/x"), None);
        if whiteout {
            assert_eq!(read("/old/x"), None, "a whiteout hides the directory below");
        }
        if opaque {
            assert_eq!(
                read("/opaque/hidden"),
                None,
                "an opaque directory hides below"
            );
        }
        assert_eq!(read("/opaque/shown").as_deref(), Some("s"));
        assert!(stack
            .find("/etc-link")
            .unwrap()
            .unwrap()
            .ends_with("b/etc-link"));
    }

    /// Links in a layer that point out of it (absolute host paths, `..` chains) resolve inside
    /// the stack; the host files they name are never read.
    #[test]
    fn layer_stack_never_reads_outside_its_layers() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        write(&outside.join("passwd"), "host");
        let (a, b) = (t.path().join("a"), t.path().join("b"));
        write(&a.join("etc/passwd"), "image");
        std::fs::create_dir_all(&b).unwrap();
        std::os::unix::fs::symlink(&outside, b.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", b.join("up")).unwrap();
        std::os::unix::fs::symlink(outside.join("passwd"), b.join("pw")).unwrap();
        std::os::unix::fs::symlink("/etc", b.join("in")).unwrap();
        let layers = vec![a, b];
        let stack = LayerStack::open(&layers, OverlayXattrs::User).unwrap();
        for p in ["/abs/passwd", "/up/passwd", "/pw", "/../outside/passwd"] {
            assert_eq!(stack.read(p).unwrap(), None, "{p} read the host file");
        }
        assert_eq!(stack.read("/in/passwd").unwrap().unwrap(), b"image");
        assert_eq!(stack.find("/abs/passwd").unwrap(), None);
    }
}
