//! Tar extraction that never writes outside its root, shared by layer unpacking
//! ([`crate::snapshot`]) and `ADD` of local archives; plus compression detection by content.
//!
//! Hostile names are *sanitised* the way containerd's applier does, not rejected:
//! - an entry name is cleaned as if the extraction root were `/` (`../../x` and `/x` both land
//!   on `<root>/x`);
//! - parent directories are resolved inside the root, so a symlink planted by an earlier entry
//!   (`evil -> /etc` or `evil -> ../../..`) re-roots instead of escaping: `evil/passwd` is written
//!   to `<root>/etc/passwd`;
//! - the final component is never followed: an existing entry of another kind is removed and
//!   replaced, so writing a file over a planted symlink replaces the link, not its target;
//! - hardlink targets are resolved inside the root the same way and must name an existing
//!   non-directory there; otherwise the archive is rejected;
//! - overlayfs xattrs (`trusted.overlay.*`, `user.overlay.*`) in PAX records are dropped, so an
//!   archive cannot plant redirects or opaque markers except through OCI whiteout entries.
//!
//! Whiteout names are *rejected*, not sanitised, when they do not name one normal entry of their
//! directory (`.wh.`, `.wh..`, `.wh...`): deleting `.` or `..` of an entry's directory would
//! delete the directory being extracted into or its siblings ([`whiteout`] holds the rule, and
//! every reader of layers calls it). Outside layers (`ADD` archives, [`WhiteoutMode::Reject`]) a
//! `.wh.` name is an error, for the entry and for every directory it lands in (as resolved in the
//! root): an image layer cannot store such a file or directory, it would delete its namesake when
//! the image is unpacked.

use crate::compression::decompress;
use crate::fileops::root::{lexical_clean, Root, RootError};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Whether a 512-byte block is a tar header (ustar magic, or a valid v7 checksum).
pub fn looks_like_tar(block: &[u8]) -> bool {
    if block.len() < 512 {
        return false;
    }
    if &block[257..262] == b"ustar" {
        return true;
    }
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .map(|&b| b as char)
        .filter(|c| c.is_digit(8))
        .collect();
    let Ok(stored) = u32::from_str_radix(&digits, 8) else {
        return false;
    };
    let sum: u32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            if (148..156).contains(&i) {
                32
            } else {
                b as u32
            }
        })
        .sum();
    block[0] != 0 && sum == stored
}

/// Whether the file at `path` is a (possibly compressed) tar archive, as `ADD` decides.
pub fn is_archive(path: &Path) -> io::Result<bool> {
    let file = File::open(path)?;
    let (_, mut reader) = decompress(io::BufReader::new(file))?;
    let mut block = vec![0u8; 512];
    let mut filled = 0;
    while filled < 512 {
        match reader.read(&mut block[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            // A file that merely starts with a magic number but does not decompress is no archive.
            Err(_) => return Ok(false),
        }
    }
    Ok(looks_like_tar(&block[..filled]))
}

/// The prefix OCI layers reserve for whiteout entries.
pub const WHITEOUT_PREFIX: &[u8] = b".wh.";

/// The whiteout entry that marks its directory opaque.
pub const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// What a layer entry's file name means under OCI whiteout rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// An ordinary entry (no `.wh.` prefix).
    None,
    /// `.wh..wh..opq`: hide everything below the directory in lower layers.
    Opaque,
    /// `.wh.NAME`: delete `NAME` (one normal entry of the same directory) from lower layers.
    Hide(&'a [u8]),
    /// `.wh..wh.*` other than the opaque marker: AUFS bookkeeping (`.wh..wh.plnk`,
    /// `.wh..wh.aufs`) that old images carry; it names nothing and is skipped, as Docker does.
    Meta,
}

/// A `.wh.` name that names no single entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid whiteout name {name:?}: it must name one entry of its directory")]
pub struct BadWhiteout {
    /// The entry's file name as found.
    pub name: String,
}

/// Classifies the file name `name` (one path component) of a layer entry. `.wh.`, `.wh..` and
/// `.wh...` (and anything naming an empty, `.`, `..` or multi-component path) are errors: applied,
/// they would delete the directory itself or its parent.
pub fn whiteout(name: &[u8]) -> Result<Whiteout<'_>, BadWhiteout> {
    let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX) else {
        return Ok(Whiteout::None);
    };
    if name == OPAQUE_MARKER {
        return Ok(Whiteout::Opaque);
    }
    if hidden.starts_with(WHITEOUT_PREFIX) {
        return Ok(Whiteout::Meta);
    }
    if hidden.is_empty() || hidden == b"." || hidden == b".." || hidden.contains(&b'/') {
        return Err(BadWhiteout {
            name: String::from_utf8_lossy(name).into_owned(),
        });
    }
    Ok(Whiteout::Hide(hidden))
}

/// Whether `name` (one path component) is reserved for whiteouts and so cannot be stored as a
/// file in an image layer: unpacking the layer would delete its namesake instead.
pub fn is_reserved_name(name: &[u8]) -> bool {
    name.starts_with(WHITEOUT_PREFIX)
}

/// What to do with OCI whiteout entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Refuse `.wh.*` entries (what `ADD` does): a file of that name cannot be stored in an image
    /// layer, where it would read as a whiteout and delete its namesake.
    Reject,
    /// Convert to overlayfs form: `.wh.x` → char device 0:0 `x`; `.wh..wh..opq` → the given
    /// xattr (`trusted.overlay.opaque`, or `user.overlay.opaque` for `userxattr` mounts) = `y`.
    Overlay {
        /// Name of the opaque-directory xattr.
        opaque_xattr: &'static str,
    },
}

/// How [`extract_tar`] treats ownership and whiteouts.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    /// Whiteout handling.
    pub whiteouts: WhiteoutMode,
    /// Owner forced on every entry; `None` keeps the ids from the tar headers.
    pub chown: Option<(u32, u32)>,
    /// Most bytes the archive may expand to ([`expansion_limit`]): file contents written (a
    /// sparse entry counts its full size) plus [`ENTRY_COST`] per entry, and, separately, the
    /// decompressed stream read. Beyond it extraction stops with [`ArchiveError::TooLarge`].
    pub limit: u64,
}

/// What one entry is charged against the limit besides its contents (an inode, a block).
pub const ENTRY_COST: u64 = 512;

/// The environment variable that sets the expansion limit (`--max-unpack-size` sets it too):
/// bytes, or a number with a `K`, `M`, `G` or `T` suffix (powers of 1024).
pub const MAX_UNPACK_ENV: &str = "BUILDER_MAX_UNPACK";

/// Free space kept back when the limit is derived from the filesystem: a tenth of what is free,
/// at most 1 GiB.
const RESERVE_CAP: u64 = 1 << 30;

/// Parses a size: `1048576`, `512K`, `100M`, `4G`, `1T` (powers of 1024; `B`/`iB` accepted).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let t = t
        .strip_suffix("iB")
        .or_else(|| t.strip_suffix('B'))
        .unwrap_or(t);
    let (digits, shift) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 10),
        'm' | 'M' => (&t[..t.len() - 1], 20),
        'g' | 'G' => (&t[..t.len() - 1], 30),
        't' | 'T' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()?
        .checked_mul(1u64 << shift)
}

/// How far an archive extracted under `dir` may expand: [`MAX_UNPACK_ENV`] when set, else the
/// space free on `dir`'s filesystem less a reserve (a tenth, at most 1 GiB), so a bomb stops
/// before the disk is full. Unknown free space means no limit from the filesystem.
pub fn expansion_limit(dir: &Path) -> Result<u64, ArchiveError> {
    if let Some(v) = std::env::var_os(MAX_UNPACK_ENV) {
        let v = v.to_string_lossy();
        return parse_size(&v).ok_or_else(|| ArchiveError::BadLimit(v.into_owned()));
    }
    Ok(match rustix::fs::statvfs(dir) {
        Ok(st) => {
            let free = st.f_bavail.saturating_mul(st.f_frsize);
            free - (free / 10).min(RESERVE_CAP)
        }
        Err(_) => u64::MAX,
    })
}

/// Counts what a reader yields and fails past a limit (a decompression bomb, an endless layer).
pub struct LimitedReader<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R> LimitedReader<R> {
    /// Wraps `inner`, allowing `limit` bytes.
    pub fn new(inner: R, limit: u64) -> Self {
        LimitedReader {
            inner,
            read: 0,
            limit,
        }
    }
}

impl<R: Read> Read for LimitedReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                TooLarge { limit: self.limit },
            ));
        }
        Ok(n)
    }
}

/// The error a [`LimitedReader`] raises; [`ArchiveError::from_stream`] recognises it.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "the archive expands beyond the limit of {limit} bytes (set {MAX_UNPACK_ENV} or \
     --max-unpack-size to change it)"
)]
pub struct TooLarge {
    /// The limit in bytes.
    pub limit: u64,
}

/// Why an archive could not be extracted.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Reading the archive or writing an entry failed.
    #[error("{what} {path:?}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// An entry's path could not be resolved in the root.
    #[error(transparent)]
    Root(#[from] RootError),
    /// A hardlink points at nothing usable inside the root.
    #[error("hardlink {path:?} -> {target:?}: {reason}")]
    BadHardlink {
        path: PathBuf,
        target: PathBuf,
        reason: &'static str,
    },
    /// A tar entry type this extractor does not handle.
    #[error("unsupported tar entry type {kind:?} for {path:?}")]
    Unsupported { path: PathBuf, kind: char },
    /// A whiteout entry that names no single entry (`.wh..`, `.wh...`, `.wh.`).
    #[error("{path:?}: {source}")]
    BadWhiteout {
        path: PathBuf,
        #[source]
        source: BadWhiteout,
    },
    /// The archive expands beyond the limit.
    #[error(transparent)]
    TooLarge(#[from] TooLarge),
    /// The limit setting is not a size.
    #[error("{MAX_UNPACK_ENV}={0:?} is not a size (bytes, or a number with K, M, G or T)")]
    BadLimit(String),
    /// An entry whose name is reserved for whiteouts, outside a layer.
    #[error(
        "{path:?}: names starting with \".wh.\" are reserved for whiteouts: an image layer \
         cannot store such a file (it would delete {hidden:?} when the image is unpacked)"
    )]
    ReservedName { path: PathBuf, hidden: String },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ArchiveError + 'a {
    move |source| {
        ArchiveError::from_stream(source).unwrap_or_else(|source| ArchiveError::Io {
            what,
            path: path.to_path_buf(),
            source,
        })
    }
}

impl ArchiveError {
    /// The limit error a [`LimitedReader`] raised inside `err`, else `err` back.
    pub fn from_stream(err: io::Error) -> Result<ArchiveError, io::Error> {
        match err.get_ref().and_then(|e| e.downcast_ref::<TooLarge>()) {
            Some(t) => Ok(ArchiveError::TooLarge(*t)),
            None => Err(err),
        }
    }
}

/// Extracts a tar stream into `root` with the protections described in the module doc. The
/// stream is read up to the end-of-archive marker only; callers hashing it drain the rest.
pub fn extract_tar<R: Read>(
    input: R,
    root: &Root,
    opts: &ExtractOptions,
) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(input);
    // Directories by their path inside the root, with the time their entry gave.
    let mut dir_times: Vec<(PathBuf, filetime::FileTime)> = Vec::new();
    let entries = archive
        .entries()
        .map_err(io_err("reading archive", root.host_path()))?;
    let mut budget = opts.limit;
    let mut charge = |bytes: u64| -> Result<(), ArchiveError> {
        budget = budget
            .checked_sub(bytes)
            .ok_or(TooLarge { limit: opts.limit })?;
        Ok(())
    };
    for entry in entries {
        let mut entry = entry.map_err(io_err("reading archive", root.host_path()))?;
        charge(ENTRY_COST)?;
        let raw = entry.path_bytes().into_owned();
        let rel = lexical_clean(Path::new(OsStr::from_bytes(&raw)));
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            continue;
        }
        let Some(name) = rel.file_name().map(|n| n.to_os_string()) else {
            continue; // the root itself ("./" or "/"): its metadata belongs to the parent layer
        };
        let name_bytes = name.as_bytes();
        // Checked before the entry's directory is resolved or created: nothing is touched for it.
        let meaning = whiteout(name_bytes).map_err(|source| ArchiveError::BadWhiteout {
            path: rel.clone(),
            source,
        })?;
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let parent = root.resolve(&parent_rel)?;
        if opts.whiteouts == WhiteoutMode::Reject {
            // The directories the entry lands in count too (`d/.wh.x/f`, or `l/f` with
            // `l -> .wh.x`): created, `.wh.x` would delete `x` from the image just the same.
            let below_root = parent.strip_prefix(root.host_path()).unwrap_or(&parent);
            if let Some(dir) = below_root
                .components()
                .map(|c| c.as_os_str().as_bytes())
                .find(|c| is_reserved_name(c))
            {
                return Err(ArchiveError::ReservedName {
                    hidden: String::from_utf8_lossy(&dir[WHITEOUT_PREFIX.len()..]).into_owned(),
                    path: rel,
                });
            }
        }
        ensure_dir(&parent)?;

        match (opts.whiteouts, meaning) {
            (_, Whiteout::None) => {}
            (WhiteoutMode::Reject, _) => {
                return Err(ArchiveError::ReservedName {
                    hidden: String::from_utf8_lossy(&name_bytes[WHITEOUT_PREFIX.len()..])
                        .into_owned(),
                    path: rel,
                })
            }
            (_, Whiteout::Meta) => continue,
            (WhiteoutMode::Overlay { opaque_xattr }, Whiteout::Opaque) => {
                xattr::set(&parent, opaque_xattr, b"y")
                    .map_err(io_err("setting opaque xattr on", &parent))?;
                continue;
            }
            (WhiteoutMode::Overlay { .. }, Whiteout::Hide(hidden)) => {
                let target = parent.join(OsStr::from_bytes(hidden));
                remove_existing(&target)?;
                mknod(&target, libc::S_IFCHR, 0)?;
                // Keep the entry's time so re-exporting the snapshot gives the same layer.
                let mtime = filetime::FileTime::from_unix_time(
                    entry.header().mtime().unwrap_or(0) as i64,
                    0,
                );
                filetime::set_symlink_file_times(&target, mtime, mtime)
                    .map_err(io_err("setting times of", &target))?;
                continue;
            }
        }

        let target = parent.join(&name);
        let existing = std::fs::symlink_metadata(&target).ok();
        let is_dir_entry = kind.is_dir();
        if let Some(meta) = &existing {
            if !(meta.is_dir() && is_dir_entry) {
                remove_existing(&target)?;
            }
        }
        let header = entry.header().clone();
        let mode = header.mode().map_err(io_err("reading mode of", &rel))? & 0o7777;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&target)
                    .map_err(io_err("creating", &target))?;
                // Charged before writing: a sparse entry's holes fill the disk like data.
                charge(entry.size())?;
                io::copy(&mut entry, &mut file).map_err(io_err("writing", &target))?;
            }
            tar::EntryType::Directory => {
                if existing.as_ref().map(|m| m.is_dir()) != Some(true) {
                    std::fs::create_dir(&target).map_err(io_err("creating directory", &target))?;
                }
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                std::os::unix::fs::symlink(OsStr::from_bytes(&link), &target)
                    .map_err(io_err("creating symlink", &target))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let link_rel = lexical_clean(Path::new(OsStr::from_bytes(&link)));
                let source = root.resolve_parent(&link_rel)?;
                let bad = |reason| ArchiveError::BadHardlink {
                    path: rel.clone(),
                    target: link_rel.clone(),
                    reason,
                };
                match std::fs::symlink_metadata(&source) {
                    Ok(m) if m.is_dir() => return Err(bad("target is a directory")),
                    Ok(_) => {}
                    Err(_) => return Err(bad("target does not exist inside the root")),
                }
                std::fs::hard_link(&source, &target)
                    .map_err(io_err("creating hardlink", &target))?;
                // A hardlink shares the target's metadata; the header carries nothing more.
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let fmt = match kind {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                mknod(&target, fmt, libc::makedev(major, minor))?;
            }
            other => {
                return Err(ArchiveError::Unsupported {
                    path: rel,
                    kind: other.as_byte() as char,
                })
            }
        }

        let (uid, gid) = match opts.chown {
            Some(ids) => ids,
            None => (
                header.uid().unwrap_or(0) as u32,
                header.gid().unwrap_or(0) as u32,
            ),
        };
        lchown(&target, uid, gid)?;
        if let Ok(Some(pax)) = entry.pax_extensions() {
            for ext in pax.flatten() {
                if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    // Overlay's own xattrs (opaque, redirect, origin, metacopy) in an archive
                    // would steer the overlay mount; only whiteout entries may produce them.
                    if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
                        continue;
                    }
                    let name = OsStr::from_bytes(name);
                    xattr::set(&target, name, ext.value_bytes())
                        .map_err(io_err("setting xattr on", &target))?;
                }
            }
        }
        if kind != tar::EntryType::Symlink {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode))
                .map_err(io_err("setting mode of", &target))?;
        }
        let mtime = filetime::FileTime::from_unix_time(header.mtime().unwrap_or(0) as i64, 0);
        if is_dir_entry {
            // By name inside the root, not by host path: a later entry may replace a parent
            // of this directory with a symlink, and the host path would then lead through it.
            dir_times.push((parent_rel.join(&name), mtime));
        } else {
            filetime::set_symlink_file_times(&target, mtime, mtime)
                .map_err(io_err("setting times of", &target))?;
        }
    }
    // Directory times last, deepest first, so creating children does not disturb them. Each
    // path is resolved in the root again (the tree has changed since) and skipped when it no
    // longer names a directory: a later entry replaced it.
    for (rel, mtime) in dir_times.iter().rev() {
        let dir = root.resolve_parent(rel)?;
        if std::fs::symlink_metadata(&dir).is_ok_and(|m| m.is_dir()) {
            filetime::set_symlink_file_times(&dir, *mtime, *mtime)
                .map_err(io_err("setting times of", &dir))?;
        }
    }
    Ok(())
}

fn ensure_dir(path: &Path) -> Result<(), ArchiveError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(ArchiveError::Io {
            what: "parent is not a directory:",
            path: path.to_path_buf(),
            source: io::Error::from_raw_os_error(libc::ENOTDIR),
        }),
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(path)
            .map_err(io_err("creating directory", path)),
    }
}

use std::os::unix::fs::DirBuilderExt;

/// Removes whatever is at `path` (file, link, device, or directory tree) without following it.
pub(crate) fn remove_existing(path: &Path) -> Result<(), ArchiveError> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).map_err(io_err("removing", path)),
        Ok(_) => std::fs::remove_file(path).map_err(io_err("removing", path)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ArchiveError::Io {
            what: "inspecting",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// `mknod(2)` for devices, fifos and overlay whiteouts.
pub(crate) fn mknod(path: &Path, fmt: libc::mode_t, dev: libc::dev_t) -> Result<(), ArchiveError> {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| ArchiveError::Io {
        what: "creating node",
        path: path.to_path_buf(),
        source: io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"),
    })?;
    // SAFETY: mknod with a NUL-terminated path; no memory is shared with the kernel beyond it.
    let rc = unsafe { libc::mknod(c.as_ptr(), fmt | 0o600, dev) };
    if rc != 0 {
        return Err(ArchiveError::Io {
            what: "creating node",
            path: path.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// `lchown(2)`: never follows a final symlink.
pub(crate) fn lchown(path: &Path, uid: u32, gid: u32) -> Result<(), ArchiveError> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(io_err("changing owner of", path))
}
