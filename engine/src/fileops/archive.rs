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
use crate::fileops::root::{lexical_clean, remove_all_at, Root, RootError, Walk};
use rustix::fs::{
    chmodat, chownat, fchmod, fsetxattr, linkat, mkdirat, mknodat, openat, statat, symlinkat,
    utimensat, AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags,
};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
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

/// Who owns what [`extract_tar`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ownership {
    /// The uid and gid of each tar header, and its extended attributes (a layer, an archive
    /// `ADD`ed without `--chown`).
    Headers,
    /// One uid and gid for every entry (`ADD --chown`), and the headers' extended attributes.
    Fixed(u32, u32),
    /// Whoever extracts owns everything and no extended attribute is set: an extraction by a
    /// user who is not root (`-o type=local`), as `tar` does for one.
    Extractor,
}

/// How [`extract_tar`] treats ownership, whiteouts and symlinks on the way to an entry.
#[derive(Debug, Clone, Copy)]
pub struct ExtractOptions {
    /// Whiteout handling.
    pub whiteouts: WhiteoutMode,
    /// Owner of every entry.
    pub ownership: Ownership,
    /// How an entry's parent directories (and a hardlink's target) are walked: in the root for
    /// layers and `ADD` (a link an earlier entry made is followed, re-rooted, as containerd's
    /// applier does), beneath it for a flattened rootfs written out, which must never be
    /// written through a link, even one of its own.
    pub parents: Walk,
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
///
/// Every entry is written relative to a descriptor of its parent directory
/// ([`Root::create_dir_all`]) with `*at` calls that do not follow the entry itself. Extended
/// attributes of symlinks and devices are set by host path (`lsetxattr`): Linux has no
/// descriptor-relative form of it before 6.13 and a device cannot be opened safely for
/// `fsetxattr`; their parent directories were checked just before, and nothing else writes the
/// tree meanwhile.
pub fn extract_tar<R: Read>(
    input: R,
    root: &Root,
    opts: &ExtractOptions,
) -> Result<(), ArchiveError> {
    let mut archive = tar::Archive::new(input);
    // Directories by their path inside the root, with the time (and, for an unprivileged
    // extraction, the mode) their entry gave.
    let mut dir_meta: Vec<(PathBuf, Timestamps, Option<u32>)> = Vec::new();
    // The directory the previous entry went into, held open: the entries of one directory
    // follow each other in a tar, and walking to it again costs a descriptor per component.
    // An entry only removes what is in its own directory, which then becomes the one held, so
    // the directory held is never one that was removed.
    let mut last_dir: Option<(PathBuf, OwnedFd)> = None;
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
    let unprivileged = opts.ownership == Ownership::Extractor;
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
        // Where the parent is, without symlinks: resolved in the root, or taken as it is when
        // no link may be followed (a link on the way then fails to open below).
        let resolved = match opts.parents {
            Walk::InRoot => root.resolve_rel(&parent_rel)?,
            Walk::Beneath => parent_rel.clone(),
        };
        let parent_host = root.host_path().join(&resolved);
        if opts.whiteouts == WhiteoutMode::Reject {
            // The directories the entry lands in count too (`d/.wh.x/f`, or `l/f` with
            // `l -> .wh.x`): created, `.wh.x` would delete `x` from the image just the same.
            if let Some(dir) = resolved
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
        if !matches!(&last_dir, Some((held, _)) if *held == resolved) {
            let fd = root
                .create_dir_all(&resolved, Walk::Beneath, 0o755)
                .map_err(|source| match Errno::from_io_error(&source) {
                    Some(Errno::NOTDIR) => ArchiveError::Io {
                        what: "parent is not a directory:",
                        path: parent_host.clone(),
                        source,
                    },
                    Some(Errno::LOOP) => ArchiveError::Io {
                        what: "refusing to write through a symbolic link on the way to",
                        path: parent_host.clone(),
                        source,
                    },
                    _ => io_err("creating directory", &parent_host)(source),
                })?;
            last_dir = Some((resolved, fd));
        }
        let Some((_, dir)) = &last_dir else {
            unreachable!("set just above")
        };

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
                let fail = io_err("setting opaque xattr on", &parent_host);
                let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
                openat(dir, ".", flags, Mode::empty())
                    .and_then(|d| fsetxattr(d, opaque_xattr, b"y", XattrFlags::empty()))
                    .map_err(|e| fail(e.into()))?;
                continue;
            }
            (WhiteoutMode::Overlay { .. }, Whiteout::Hide(hidden)) => {
                let hidden = OsStr::from_bytes(hidden);
                let target = parent_host.join(hidden);
                remove_all_at(dir, hidden).map_err(io_err("removing", &target))?;
                mknodat(
                    dir,
                    hidden,
                    FileType::CharacterDevice,
                    Mode::from_raw_mode(0o600),
                    0,
                )
                .map_err(|e| node_err(&target, e))?;
                // Keep the entry's time so re-exporting the snapshot gives the same layer.
                let times = timestamps(entry.header().mtime().unwrap_or(0));
                utimensat(dir, hidden, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| io_err("setting times of", &target)(e.into()))?;
                continue;
            }
        }

        let target = parent_host.join(&name);
        let existing = match statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Some(st),
            Err(Errno::NOENT) => None,
            Err(e) => return Err(io_err("inspecting", &target)(e.into())),
        };
        let is_dir_entry = kind.is_dir();
        let existing_dir =
            existing.is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if existing.is_some() && !(existing_dir && is_dir_entry) {
            remove_all_at(dir, &name).map_err(io_err("removing", &target))?;
        }
        let header = entry.header().clone();
        let mode = header.mode().map_err(io_err("reading mode of", &rel))? & 0o7777;
        // An open descriptor of what was written, where one is safe to hold (not a device).
        let mut written: Option<OwnedFd> = None;
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let fd = openat(
                    dir,
                    &name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::WRONLY
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(|e| io_err("creating", &target)(e.into()))?;
                let mut file = File::from(fd);
                // Charged before writing: a sparse entry's holes fill the disk like data.
                charge(entry.size())?;
                io::copy(&mut entry, &mut file).map_err(io_err("writing", &target))?;
                written = Some(file.into());
            }
            tar::EntryType::Directory => {
                if !existing_dir {
                    mkdirat(dir, &name, Mode::from_raw_mode(0o755))
                        .map_err(|e| io_err("creating directory", &target)(e.into()))?;
                }
                let fd = openat(
                    dir,
                    &name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err("opening directory", &target)(e.into()))?;
                written = Some(fd);
            }
            tar::EntryType::Symlink => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                symlinkat(OsStr::from_bytes(&link), dir, &name)
                    .map_err(|e| io_err("creating symlink", &target)(e.into()))?;
            }
            tar::EntryType::Link => {
                let link = entry
                    .link_name_bytes()
                    .map(|l| l.into_owned())
                    .unwrap_or_default();
                let link_rel = lexical_clean(Path::new(OsStr::from_bytes(&link)));
                let bad = |reason| ArchiveError::BadHardlink {
                    path: rel.clone(),
                    target: link_rel.clone(),
                    reason,
                };
                if link_rel.file_name().is_none() {
                    return Err(bad("target is a directory"));
                }
                let source = match root.parent(&link_rel, opts.parents) {
                    Ok(source) => source,
                    Err(_) => return Err(bad("target does not exist inside the root")),
                };
                match source.lstat() {
                    Ok(Some(st)) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {
                        return Err(bad("target is a directory"))
                    }
                    Ok(Some(_)) => {}
                    _ => return Err(bad("target does not exist inside the root")),
                }
                linkat(&source.dir, &source.name, dir, &name, AtFlags::empty())
                    .map_err(|e| io_err("creating hardlink", &target)(e.into()))?;
                // A hardlink shares the target's metadata; the header carries nothing more.
                continue;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let file_type = match kind {
                    tar::EntryType::Char => FileType::CharacterDevice,
                    tar::EntryType::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                mknodat(
                    dir,
                    &name,
                    file_type,
                    Mode::from_raw_mode(0o600),
                    rustix::fs::makedev(major, minor),
                )
                .map_err(|e| node_err(&target, e))?;
            }
            other => {
                return Err(ArchiveError::Unsupported {
                    path: rel,
                    kind: other.as_byte() as char,
                })
            }
        }

        let ids = match opts.ownership {
            Ownership::Headers => Some((
                header.uid().unwrap_or(0) as u32,
                header.gid().unwrap_or(0) as u32,
            )),
            Ownership::Fixed(uid, gid) => Some((uid, gid)),
            Ownership::Extractor => None,
        };
        if let Some((uid, gid)) = ids {
            chownat(
                dir,
                &name,
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .map_err(|e| io_err("changing owner of", &target)(e.into()))?;
        }
        if !unprivileged {
            if let Ok(Some(pax)) = entry.pax_extensions() {
                for ext in pax.flatten() {
                    let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") else {
                        continue;
                    };
                    // Overlay's own xattrs (opaque, redirect, origin, metacopy) in an archive
                    // would steer the overlay mount; only whiteout entries may produce them.
                    if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
                        continue;
                    }
                    let name = OsStr::from_bytes(name);
                    let set = match &written {
                        Some(fd) => fsetxattr(fd, name, ext.value_bytes(), XattrFlags::empty())
                            .map_err(io::Error::from),
                        None => xattr::set(&target, name, ext.value_bytes()),
                    };
                    set.map_err(io_err("setting xattr on", &target))?;
                }
            }
        }
        if kind != tar::EntryType::Symlink {
            // An unprivileged extraction keeps a directory writable until its children are in;
            // its own mode is set at the end.
            let now = if is_dir_entry && unprivileged {
                mode | 0o700
            } else {
                mode
            };
            let set = match &written {
                Some(fd) => fchmod(fd, Mode::from_raw_mode(now)),
                None => chmodat(dir, &name, Mode::from_raw_mode(now), AtFlags::empty()),
            };
            set.map_err(|e| io_err("setting mode of", &target)(e.into()))?;
        }
        let times = timestamps(header.mtime().unwrap_or(0));
        if is_dir_entry {
            // By name inside the root, not by descriptor: a later entry may replace this
            // directory or a parent of it, and then it is no longer this entry's.
            dir_meta.push((parent_rel.join(&name), times, unprivileged.then_some(mode)));
        } else {
            utimensat(dir, &name, &times, AtFlags::SYMLINK_NOFOLLOW)
                .map_err(|e| io_err("setting times of", &target)(e.into()))?;
        }
    }
    // Directory times last, deepest first, so creating children does not disturb them. Each
    // path is looked up in the root again (the tree has changed since) and skipped when it no
    // longer names a directory: a later entry replaced it.
    for (rel, times, mode) in dir_meta.iter().rev() {
        let shown = root.host_path().join(rel);
        let at = match root.parent(rel, opts.parents) {
            Ok(at) => at,
            Err(e) => match Errno::from_io_error(&e) {
                Some(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => continue,
                _ => return Err(io_err("resolving", &shown)(e)),
            },
        };
        let is_dir = at
            .lstat()
            .map_err(io_err("inspecting", &shown))?
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory);
        if !is_dir {
            continue;
        }
        if let Some(mode) = mode {
            chmodat(
                &at.dir,
                &at.name,
                Mode::from_raw_mode(*mode),
                AtFlags::empty(),
            )
            .map_err(|e| io_err("setting mode of", &shown)(e.into()))?;
        }
        utimensat(&at.dir, &at.name, times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| io_err("setting times of", &shown)(e.into()))?;
    }
    Ok(())
}

/// Access and modification time both `mtime` (seconds), as the tar header gives it.
fn timestamps(mtime: u64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime as i64,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

fn node_err(path: &Path, e: Errno) -> ArchiveError {
    ArchiveError::Io {
        what: "creating node",
        path: path.to_path_buf(),
        source: e.into(),
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    /// A tar of `(path, kind, body or link target, mode)`.
    fn tar_of(entries: &[(&str, tar::EntryType, &str, u32)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (path, kind, data, mode) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_mtime(1_000_000);
            h.set_uid(0);
            h.set_gid(0);
            match kind {
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    h.set_size(0);
                    b.append_link(&mut h, path, data).unwrap();
                }
                _ => {
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_bytes()).unwrap();
                }
            }
        }
        b.into_inner().unwrap()
    }

    fn options(parents: Walk, ownership: Ownership) -> ExtractOptions {
        ExtractOptions {
            whiteouts: WhiteoutMode::Reject,
            ownership,
            parents,
            limit: u64::MAX,
        }
    }

    /// Walked beneath, an entry below a symlink of the archive (pointing out, or inside) is an
    /// error and nothing is written through the link; walked in the root, the same archive
    /// lands inside.
    #[test]
    fn beneath_never_writes_through_a_link_the_archive_made() {
        use tar::EntryType::{Directory, Regular, Symlink};
        let outside = tempfile::tempdir().unwrap();
        let out = outside.path().to_str().unwrap().to_string();
        for link in [out.as_str(), "../../..", "d"] {
            let archive = tar_of(&[
                ("d", Directory, "", 0o755),
                ("l", Symlink, link, 0o777),
                ("l/f", Regular, "x", 0o644),
            ]);
            let dest = tempfile::tempdir().unwrap();
            let root = Root::new(dest.path()).unwrap();
            let opts = options(Walk::Beneath, Ownership::Headers);
            assert!(
                extract_tar(&archive[..], &root, &opts).is_err(),
                "{link}: written below the link"
            );
            assert!(!outside.path().join("f").exists(), "{link}: wrote outside");
            assert!(!dest.path().join("d/f").exists(), "{link}: wrote through");

            let dest = tempfile::tempdir().unwrap();
            let root = Root::new(dest.path()).unwrap();
            let opts = options(Walk::InRoot, Ownership::Headers);
            extract_tar(&archive[..], &root, &opts).unwrap();
            assert!(!outside.path().join("f").exists(), "{link}: wrote outside");
        }
    }

    /// A link already in the destination is not written through either, and a hardlink's
    /// target is looked up beneath too.
    #[test]
    fn beneath_refuses_links_already_there_and_hardlinks_through_links() {
        use tar::EntryType::{Link, Regular};
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"host").unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dest.path().join("etc")).unwrap();
        let root = Root::new(dest.path()).unwrap();
        let opts = options(Walk::Beneath, Ownership::Headers);
        let archive = tar_of(&[("etc/passwd", Regular, "x", 0o644)]);
        assert!(extract_tar(&archive[..], &root, &opts).is_err());
        assert!(!outside.path().join("passwd").exists());
        let archive = tar_of(&[("h", Link, "etc/secret", 0o644)]);
        assert!(extract_tar(&archive[..], &root, &opts).is_err());
        assert!(!dest.path().join("h").exists(), "linked a host file in");
    }

    /// Without privileges a read-only directory still receives its children; its mode is set
    /// last. Entries replacing others never follow them.
    #[test]
    fn extractor_ownership_sets_read_only_directories_last() {
        use tar::EntryType::{Directory, Regular, Symlink};
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("f"), b"host").unwrap();
        let dest = tempfile::tempdir().unwrap();
        let root = Root::new(dest.path()).unwrap();
        let link = outside.path().join("f");
        let archive = tar_of(&[
            ("ro", Directory, "", 0o555),
            ("ro/f", Regular, "x", 0o644),
            ("ln", Symlink, link.to_str().unwrap(), 0o777),
            ("ln", Regular, "replaced", 0o600),
        ]);
        let opts = options(Walk::Beneath, Ownership::Extractor);
        extract_tar(&archive[..], &root, &opts).unwrap();
        let meta = std::fs::metadata(dest.path().join("ro")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o555);
        assert_eq!(meta.mtime(), 1_000_000);
        assert_eq!(std::fs::read(dest.path().join("ro/f")).unwrap(), b"x");
        assert_eq!(std::fs::read(dest.path().join("ln")).unwrap(), b"replaced");
        assert_eq!(std::fs::read(outside.path().join("f")).unwrap(), b"host");
        std::fs::set_permissions(
            dest.path().join("ro"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
    }

    /// A directory replaced by a later entry and made again receives what follows, not the
    /// directory that was removed.
    #[test]
    fn a_directory_replaced_and_made_again_receives_the_next_entries() {
        use tar::EntryType::{Directory, Regular};
        let entries = [
            ("d", Directory, "", 0o755),
            ("d/e", Directory, "", 0o755),
            ("d/e/a", Regular, "a", 0o644),
            ("d/e", Regular, "file", 0o644),
            ("d/e", Directory, "", 0o755),
            ("d/e/b", Regular, "b", 0o644),
            ("d", Regular, "file", 0o644),
            ("d", Directory, "", 0o755),
            ("d/c", Regular, "c", 0o644),
        ];
        for walk in [Walk::InRoot, Walk::Beneath] {
            let dest = tempfile::tempdir().unwrap();
            let root = Root::new(dest.path()).unwrap();
            let opts = options(walk, Ownership::Headers);
            extract_tar(&tar_of(&entries[..6])[..], &root, &opts).unwrap();
            assert_eq!(std::fs::read(dest.path().join("d/e/b")).unwrap(), b"b");
            assert!(!dest.path().join("d/e/a").exists());
            extract_tar(&tar_of(&entries)[..], &root, &opts).unwrap();
            assert_eq!(std::fs::read(dest.path().join("d/c")).unwrap(), b"c");
            assert!(!dest.path().join("d/e").exists());
        }
    }
}
