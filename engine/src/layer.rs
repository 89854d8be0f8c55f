//! Diff directory (an overlay upperdir) → OCI layer blob.
//!
//! Invariants:
//! - The same tree gives the same bytes, whatever the machine's thread count: entries are
//!   written depth-first with children sorted by name (byte order), headers carry numeric ids
//!   only (no user or group names), no atime/ctime, and timestamps are clamped to
//!   `SOURCE_DATE_EPOCH` when one is given.
//! - Overlay whiteouts become OCI whiteouts: a char device 0:0 `x` → empty file `.wh.x`; a
//!   directory with `trusted.overlay.opaque=y` (or `user.overlay.opaque=y`) → the directory
//!   followed by `dir/.wh..wh..opq`. Overlay's own xattrs are never copied into the layer.
//! - Hardlinks are detected by (dev, inode): the first path in walk order carries the data,
//!   later ones are link entries to it. Other xattrs (`security.capability`, ...) become PAX
//!   `SCHILY.xattr.*` records; long names and link targets become PAX `path`/`linkpath`.
//! - Compression runs in parallel on fixed-size chunks of the uncompressed tar stream: each
//!   chunk becomes one gzip member (concatenated members are one valid gzip stream) or one zstd
//!   frame. Chunk boundaries depend only on the stream, so the bytes do not depend on the thread
//!   count. The compressed digest (the OCI layer digest) and the diffID are computed in the same
//!   pass, and at most a bounded number of chunks is held in memory.

use crate::compression::Compression;
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, VecDeque};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, TryRecvError};

/// Uncompressed size of one independently compressed chunk.
pub const DEFAULT_CHUNK_SIZE: usize = 1 << 20;

pub use cache::Digest;

/// The digest of a layer's uncompressed tar (what image configs list in `rootfs.diff_ids`).
pub type DiffId = Digest;

/// One contiguous range of a user-namespace id map (as in `/proc/<pid>/uid_map`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMapping {
    /// First id inside the container.
    pub container_id: u32,
    /// First id on the host.
    pub host_id: u32,
    /// Number of ids in the range.
    pub size: u32,
}

/// Host → container id translation for rootless builds, whose upperdir holds host ids.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    /// uid ranges.
    pub uids: Vec<IdMapping>,
    /// gid ranges.
    pub gids: Vec<IdMapping>,
}

fn to_container(map: &[IdMapping], host: u32) -> Option<u32> {
    map.iter().find_map(|m| {
        (host >= m.host_id && host - m.host_id < m.size)
            .then(|| m.container_id + (host - m.host_id))
    })
}

/// How [`write_layer`] builds a layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerOptions {
    /// Blob compression.
    pub compression: Compression,
    /// Compression level (gzip 0-9, zstd 1-22); `None` for the codec's default.
    pub level: Option<i32>,
    /// Clamp every mtime to this (seconds since the epoch), for reproducible builds.
    pub source_date_epoch: Option<i64>,
    /// Translate host ids to container ids (rootless); `None` writes ids as found.
    pub id_map: Option<IdMap>,
    /// Uncompressed bytes per compressed chunk. Part of the output format: changing it changes
    /// the blob bytes (never the diffID).
    pub chunk_size: usize,
}

impl Default for LayerOptions {
    fn default() -> Self {
        LayerOptions {
            compression: Compression::Gzip,
            level: None,
            source_date_epoch: None,
            id_map: None,
            chunk_size: DEFAULT_CHUNK_SIZE,
        }
    }
}

/// What an exporter needs to reference a layer blob.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LayerDescriptor {
    /// sha256 of the blob as written (the OCI descriptor digest).
    pub digest: Digest,
    /// sha256 of the uncompressed tar.
    pub diff_id: DiffId,
    /// Size of the blob in bytes.
    pub size: u64,
    /// OCI media type of the blob.
    pub media_type: String,
}

/// Why a layer could not be written.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    /// Reading the diff directory failed.
    #[error("layer: {what} {path:?}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// Writing the blob failed.
    #[error("layer: writing blob: {0}")]
    Write(#[source] io::Error),
    /// A file's name is reserved for whiteouts: in the layer it would delete its namesake.
    #[error(
        "layer: {path:?}: names starting with \".wh.\" are reserved for whiteouts; an image \
         layer cannot store such a file (unpacked, it would delete {hidden:?} instead)"
    )]
    ReservedName { path: PathBuf, hidden: String },
    /// A file is owned by a host id outside the id map.
    #[error("layer: {path:?} is owned by host {kind} {id}, which the id map does not cover")]
    UnmappedId {
        path: PathBuf,
        kind: &'static str,
        id: u32,
    },
}

/// Writes the layer for `diff_dir` to `out`, streaming: memory stays bounded by a few chunks
/// per worker thread whatever the tree's size. Run inside a rayon pool to choose its threads.
pub fn write_layer(
    diff_dir: &Path,
    out: &mut impl Write,
    opts: &LayerOptions,
) -> Result<LayerDescriptor, LayerError> {
    let media_type = opts.compression.oci_layer_media_type().ok_or_else(|| {
        LayerError::Write(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "layers are written with gzip, zstd or no compression, not {:?}",
                opts.compression
            ),
        ))
    })?;
    let sink = ChunkSink::new(out, opts);
    let mut builder = tar::Builder::new(sink);
    let mut walker = Walker {
        opts,
        links: HashMap::new(),
    };
    walker.walk_dir(&mut builder, diff_dir, b"")?;
    builder.finish().map_err(LayerError::Write)?;
    let sink = builder.into_inner().map_err(LayerError::Write)?;
    let (digest, diff_id, size) = sink.finish().map_err(LayerError::Write)?;
    Ok(LayerDescriptor {
        digest,
        diff_id,
        size,
        media_type: media_type.to_string(),
    })
}

/// Writes the layer for `diff_dir` to the file `dest` through a temporary file in the same
/// directory, synced and renamed: `dest` is either the whole blob or absent.
pub fn write_layer_file(
    diff_dir: &Path,
    dest: &Path,
    opts: &LayerOptions,
) -> Result<LayerDescriptor, LayerError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir).map_err(LayerError::Write)?;
    let mut writer = io::BufWriter::with_capacity(1 << 20, tmp);
    let desc = write_layer(diff_dir, &mut writer, opts)?;
    let tmp = writer
        .into_inner()
        .map_err(|e| LayerError::Write(e.into_error()))?;
    tmp.as_file().sync_all().map_err(LayerError::Write)?;
    tmp.persist(dest).map_err(|e| LayerError::Write(e.error))?;
    Ok(desc)
}

/// Removes from an overlay upper directory the non-directory entries the overlay only copied up
/// (same type, mode, owner, device, capabilities, size, mtime and content as the entry of the
/// `lower` stack at that path), as BuildKit's overlay differ leaves them out of a layer. The
/// visible difference is hardlinks: `ln /lower/file /new` copies `/lower/file` up next to
/// `/new`; the layer then holds `/new` alone, a file of its own, and the image's `/lower/file`
/// stays the lower layer's (not linked to `/new`). The upper directory is also the layer's
/// snapshot, so it is pruned rather than only skipped when writing, and both stay the same tree.
pub fn prune_copied_up(
    upper: &Path,
    lower: &crate::snapshot::LayerStack,
) -> Result<(), LayerError> {
    prune_dir(upper, "", lower)
}

fn prune_dir(dir: &Path, at: &str, lower: &crate::snapshot::LayerStack) -> Result<(), LayerError> {
    let read_err = |what, path: &Path| {
        let path = path.to_path_buf();
        move |source| LayerError::Read { what, path, source }
    };
    for entry in std::fs::read_dir(dir).map_err(read_err("reading directory", dir))? {
        let entry = entry.map_err(read_err("reading directory", dir))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(read_err("inspecting", &path))?;
        let name = format!("{at}/{}", entry.file_name().to_string_lossy());
        if meta.is_dir() {
            // Below an opaque directory everything is new.
            let opaque = OVERLAY_XATTR_PREFIXES.iter().any(|p| {
                xattr::get(&path, format!("{p}opaque"))
                    .ok()
                    .flatten()
                    .is_some_and(|v| v == b"y")
            });
            if opaque {
                continue;
            }
            // A directory the lower stack has no directory for is new, and all below it.
            let Some(base) = lower.find(&name).map_err(read_err("inspecting", &path))? else {
                continue;
            };
            let Ok(base_meta) = std::fs::symlink_metadata(&base) else {
                continue;
            };
            if !base_meta.is_dir() {
                continue;
            }
            prune_dir(&path, &name, lower)?;
            // A directory left empty that the lower one matches (type, mode, owner,
            // capabilities: BuildKit compares no more for directories) records nothing.
            let empty = std::fs::read_dir(&path)
                .map_err(read_err("reading directory", &path))?
                .next()
                .is_none();
            if empty && same_stat(&base, &base_meta, &path, &meta) {
                std::fs::remove_dir(&path).map_err(read_err("removing", &path))?;
            }
            continue;
        }
        if meta.file_type().is_char_device() && meta.rdev() == 0 {
            continue; // a whiteout
        }
        let Some(base) = lower.find(&name).map_err(read_err("inspecting", &path))? else {
            continue;
        };
        let Ok(base_meta) = std::fs::symlink_metadata(&base) else {
            continue;
        };
        if same_entry(&base, &base_meta, &path, &meta).map_err(read_err("comparing", &path))? {
            std::fs::remove_file(&path).map_err(read_err("removing", &path))?;
        }
    }
    Ok(())
}

/// Type, mode, owner, device and capabilities: what BuildKit's `sameDirent` compares first.
fn same_stat(a: &Path, am: &std::fs::Metadata, b: &Path, bm: &std::fs::Metadata) -> bool {
    let caps = |p: &Path| xattr::get(p, "security.capability").ok().flatten();
    (am.mode(), am.uid(), am.gid(), am.rdev()) == (bm.mode(), bm.uid(), bm.gid(), bm.rdev())
        && caps(a) == caps(b)
}

/// BuildKit's `sameDirent` for non-directories.
fn same_entry(
    a: &Path,
    am: &std::fs::Metadata,
    b: &Path,
    bm: &std::fs::Metadata,
) -> io::Result<bool> {
    if !same_stat(a, am, b, bm) || am.size() != bm.size() || am.mtime() != bm.mtime() {
        return Ok(false);
    }
    if am.mtime_nsec() != 0 || bm.mtime_nsec() != 0 {
        return Ok(am.mtime_nsec() == bm.mtime_nsec());
    }
    // Whole seconds on both sides: the times may have been truncated, look at the data.
    if am.file_type().is_symlink() {
        return Ok(std::fs::read_link(a)? == std::fs::read_link(b)?);
    }
    if am.size() == 0 {
        return Ok(true);
    }
    if !am.is_file() {
        return Ok(true);
    }
    same_content(a, b)
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

fn read_full(f: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Pushes the entries of `dir` onto `pending` so that they pop in name order.
fn push_children(
    dir: &Path,
    prefix: &[u8],
    pending: &mut Vec<(PathBuf, Vec<u8>)>,
) -> Result<(), LayerError> {
    let read_err = |source| LayerError::Read {
        what: "reading directory",
        path: dir.to_path_buf(),
        source,
    };
    let mut names: Vec<std::ffi::OsString> = std::fs::read_dir(dir)
        .map_err(read_err)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(read_err)?;
    names.sort_by(|a, b| b.as_bytes().cmp(a.as_bytes()));
    for name in names {
        let mut rel = prefix.to_vec();
        rel.extend_from_slice(name.as_bytes());
        pending.push((dir.join(&name), rel));
    }
    Ok(())
}

struct Walker<'a> {
    opts: &'a LayerOptions,
    links: HashMap<(u64, u64), Vec<u8>>,
}

const OVERLAY_XATTR_PREFIXES: [&str; 2] = ["trusted.overlay.", "user.overlay."];

impl Walker<'_> {
    /// Writes everything below `dir`, depth first and each directory's entries in name order.
    /// The walk keeps its own stack of pending entries: a tree as deep as the kernel allows
    /// must not exhaust the thread's stack.
    fn walk_dir<W: Write>(
        &mut self,
        builder: &mut tar::Builder<W>,
        dir: &Path,
        prefix: &[u8],
    ) -> Result<(), LayerError> {
        let mut pending: Vec<(PathBuf, Vec<u8>)> = Vec::new();
        push_children(dir, prefix, &mut pending)?;
        while let Some((path, rel)) = pending.pop() {
            if let Some(prefix) = self.write_entry(builder, &path, rel)? {
                push_children(&path, &prefix, &mut pending)?;
            }
        }
        Ok(())
    }

    /// Writes one entry; for a directory, returns the prefix its entries get, for the walk to
    /// write them next.
    fn write_entry<W: Write>(
        &mut self,
        builder: &mut tar::Builder<W>,
        path: &Path,
        rel: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, LayerError> {
        let read_err = |what| {
            move |source| LayerError::Read {
                what,
                path: path.to_path_buf(),
                source,
            }
        };
        let base = base_of(&rel);
        if crate::fileops::archive::is_reserved_name(base) {
            return Err(LayerError::ReservedName {
                path: path.to_path_buf(),
                hidden: String::from_utf8_lossy(&base[4..]).into_owned(),
            });
        }
        let meta = std::fs::symlink_metadata(path).map_err(read_err("inspecting"))?;
        let ft = meta.file_type();
        let mtime = self.clamp(meta.mtime());
        let (uid, gid) = self.ids(path, meta.uid(), meta.gid())?;

        if ft.is_char_device() && meta.rdev() == 0 {
            let mut wh = parent_of(&rel).to_vec();
            wh.extend_from_slice(b".wh.");
            wh.extend_from_slice(base_of(&rel));
            return self
                .append_plain(builder, &wh, 0, uid, gid, mtime)
                .map(|()| None);
        }
        if ft.is_socket() {
            return Ok(None); // sockets cannot live in a layer (Docker skips them too)
        }

        let mut header = tar::Header::new_ustar();
        header.set_mode(meta.mode() & 0o7777);
        header.set_uid(uid as u64);
        header.set_gid(gid as u64);
        header.set_mtime(mtime);
        header.set_size(0);
        let mut pax: Vec<(String, Vec<u8>)> = Vec::new();
        let mut name = rel.clone();
        let mut data: Option<File> = None;

        if !ft.is_dir() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                header.set_entry_type(tar::EntryType::Link);
                set_link(&mut header, &mut pax, first);
                set_name(&mut header, &mut pax, &name);
                return append(builder, header, pax, io::empty(), path).map(|()| None);
            }
            self.links.insert(key, rel.clone());
        }

        if ft.is_dir() {
            header.set_entry_type(tar::EntryType::Directory);
            name.push(b'/');
        } else if ft.is_file() {
            header.set_entry_type(tar::EntryType::Regular);
            header.set_size(meta.len());
            data = Some(super::fileops::root::open_nofollow(path).map_err(read_err("opening"))?);
        } else if ft.is_symlink() {
            header.set_entry_type(tar::EntryType::Symlink);
            let target = std::fs::read_link(path).map_err(read_err("reading link"))?;
            set_link(&mut header, &mut pax, target.as_os_str().as_bytes());
        } else if ft.is_char_device() || ft.is_block_device() {
            header.set_entry_type(if ft.is_char_device() {
                tar::EntryType::Char
            } else {
                tar::EntryType::Block
            });
            let rdev = meta.rdev();
            let _ = header.set_device_major(rustix::fs::major(rdev));
            let _ = header.set_device_minor(rustix::fs::minor(rdev));
        } else if ft.is_fifo() {
            header.set_entry_type(tar::EntryType::Fifo);
        }
        set_name(&mut header, &mut pax, &name);

        let mut opaque = false;
        let mut xattrs: Vec<(String, Vec<u8>)> = Vec::new();
        if let Ok(names) = xattr::list(path) {
            for attr in names {
                let attr_name = attr.to_string_lossy().into_owned();
                if let Some(kind) = OVERLAY_XATTR_PREFIXES
                    .iter()
                    .find(|p| attr_name.starts_with(*p))
                {
                    if ft.is_dir() && attr_name == format!("{kind}opaque") {
                        let value = xattr::get(path, &attr).ok().flatten();
                        opaque |= value.as_deref() == Some(b"y");
                    }
                    continue;
                }
                if attr_name == "security.selinux" {
                    continue; // host labels do not belong in an image
                }
                if let Some(value) = xattr::get(path, &attr).map_err(read_err("reading xattr"))? {
                    xattrs.push((format!("SCHILY.xattr.{attr_name}"), value));
                }
            }
        }
        xattrs.sort();
        pax.extend(xattrs);

        match data {
            Some(file) => {
                let reader = ExactReader {
                    inner: file,
                    remaining: meta.len(),
                };
                append(builder, header, pax, reader, path)?;
            }
            None => append(builder, header, pax, io::empty(), path)?,
        }

        if !ft.is_dir() {
            return Ok(None);
        }
        if opaque {
            let mut marker = rel.clone();
            marker.extend_from_slice(b"/.wh..wh..opq");
            self.append_plain(builder, &marker, 0, uid, gid, mtime)?;
        }
        let mut prefix = rel;
        prefix.push(b'/');
        Ok(Some(prefix))
    }

    fn append_plain<W: Write>(
        &self,
        builder: &mut tar::Builder<W>,
        name: &[u8],
        mode: u32,
        uid: u32,
        gid: u32,
        mtime: u64,
    ) -> Result<(), LayerError> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(mode);
        header.set_uid(uid as u64);
        header.set_gid(gid as u64);
        header.set_mtime(mtime);
        header.set_size(0);
        let mut pax = Vec::new();
        set_name(&mut header, &mut pax, name);
        append(
            builder,
            header,
            pax,
            io::empty(),
            Path::new(OsStr::from_bytes(name)),
        )
    }

    fn clamp(&self, mtime: i64) -> u64 {
        let t = match self.opts.source_date_epoch {
            Some(epoch) => mtime.min(epoch),
            None => mtime,
        };
        t.max(0) as u64
    }

    fn ids(&self, path: &Path, uid: u32, gid: u32) -> Result<(u32, u32), LayerError> {
        let Some(map) = &self.opts.id_map else {
            return Ok((uid, gid));
        };
        let unmapped = |kind, id| LayerError::UnmappedId {
            path: path.to_path_buf(),
            kind,
            id,
        };
        Ok((
            to_container(&map.uids, uid).ok_or_else(|| unmapped("uid", uid))?,
            to_container(&map.gids, gid).ok_or_else(|| unmapped("gid", gid))?,
        ))
    }
}

fn parent_of(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => &rel[..=i],
        None => b"",
    }
}

fn base_of(rel: &[u8]) -> &[u8] {
    match rel.iter().rposition(|&b| b == b'/') {
        Some(i) => &rel[i + 1..],
        None => rel,
    }
}

/// Sets the header name, falling back to a PAX `path` record (and a truncated header name, as
/// Go's archive/tar does) when it does not fit ustar's name/prefix fields.
fn set_name(header: &mut tar::Header, pax: &mut Vec<(String, Vec<u8>)>, name: &[u8]) {
    let fits = name.len() <= 100 && name.is_ascii();
    if fits && header.set_path(OsStr::from_bytes(name)).is_ok() {
        return;
    }
    pax.insert(0, ("path".into(), name.to_vec()));
    let field = &mut header.as_old_mut().name;
    *field = [0; 100];
    let n = name.len().min(100);
    field[..n].copy_from_slice(&name[..n]);
}

fn set_link(header: &mut tar::Header, pax: &mut Vec<(String, Vec<u8>)>, target: &[u8]) {
    if target.len() <= 100 && header.set_link_name_literal(target).is_ok() {
        return;
    }
    pax.push(("linkpath".into(), target.to_vec()));
    let field = &mut header.as_old_mut().linkname;
    *field = [0; 100];
    let n = target.len().min(100);
    field[..n].copy_from_slice(&target[..n]);
}

fn append<W: Write>(
    builder: &mut tar::Builder<W>,
    mut header: tar::Header,
    pax: Vec<(String, Vec<u8>)>,
    data: impl Read,
    path: &Path,
) -> Result<(), LayerError> {
    if !pax.is_empty() {
        builder
            .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(LayerError::Write)?;
    }
    header.set_cksum();
    builder.append(&header, data).map_err(|source| {
        if source.kind() == io::ErrorKind::UnexpectedEof {
            LayerError::Read {
                what: "file changed size while reading",
                path: path.to_path_buf(),
                source,
            }
        } else {
            LayerError::Write(source)
        }
    })
}

/// Yields exactly `remaining` bytes, failing if the file shrank while it was being read (a short
/// entry would corrupt the archive).
struct ExactReader<R> {
    inner: R,
    remaining: u64,
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.remaining as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file shrank while being archived",
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// The tar stream's sink: hashes the uncompressed bytes, cuts them into fixed-size chunks, hands
/// each chunk to a rayon task as soon as it is full (so files are read while earlier chunks are
/// compressed), and writes the compressed chunks strictly in order while hashing the blob. At
/// most `max_in_flight` chunks exist at once.
struct ChunkSink<'w, W: Write> {
    out: &'w mut W,
    compression: Compression,
    level: Option<i32>,
    chunk_size: usize,
    max_in_flight: usize,
    current: Vec<u8>,
    in_flight: VecDeque<Receiver<io::Result<Vec<u8>>>>,
    diff_hasher: Sha256,
    blob_hasher: Sha256,
    blob_size: u64,
}

impl<'w, W: Write> ChunkSink<'w, W> {
    fn new(out: &'w mut W, opts: &LayerOptions) -> Self {
        let chunk_size = opts.chunk_size.max(4096);
        ChunkSink {
            out,
            compression: opts.compression,
            level: opts.level,
            chunk_size,
            // Bounds memory only; it never changes the output.
            max_in_flight: (rayon::current_num_threads() * 2).clamp(2, 16),
            current: Vec::with_capacity(chunk_size),
            in_flight: VecDeque::new(),
            diff_hasher: Sha256::new(),
            blob_hasher: Sha256::new(),
            blob_size: 0,
        }
    }

    fn submit(&mut self, chunk: Vec<u8>) -> io::Result<()> {
        let (tx, rx) = sync_channel(1);
        let (compression, level) = (self.compression, self.level);
        rayon::spawn(move || {
            let _ = tx.send(compression.compress_chunk(&chunk, level));
        });
        self.in_flight.push_back(rx);
        while self.in_flight.len() >= self.max_in_flight {
            self.write_oldest()?;
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(rx) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let compressed = wait_for(&rx)?;
        self.blob_hasher.update(&compressed);
        self.blob_size += compressed.len() as u64;
        self.out.write_all(&compressed)
    }

    fn finish(mut self) -> io::Result<(Digest, DiffId, u64)> {
        if !self.current.is_empty() {
            let chunk = std::mem::take(&mut self.current);
            self.submit(chunk)?;
        }
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        self.out.flush()?;
        let diff_id = Digest::from_sha256(self.diff_hasher.finalize().into());
        let digest = if self.compression == Compression::None {
            diff_id.clone()
        } else {
            Digest::from_sha256(self.blob_hasher.finalize().into())
        };
        Ok((digest, diff_id, self.blob_size))
    }
}

/// Waits for a chunk's compression. On a rayon worker (the caller ran us inside
/// `pool.install`) it keeps executing pool jobs meanwhile, so a one-thread pool cannot
/// deadlock waiting for a job queued behind it.
fn wait_for(rx: &Receiver<io::Result<Vec<u8>>>) -> io::Result<Vec<u8>> {
    let gone = || io::Error::other("compression task vanished");
    loop {
        match rx.try_recv() {
            Ok(result) => return result,
            Err(TryRecvError::Disconnected) => return Err(gone()),
            Err(TryRecvError::Empty) => match rayon::yield_now() {
                Some(rayon::Yield::Executed) => {}
                Some(rayon::Yield::Idle) => std::thread::yield_now(),
                None => return rx.recv().map_err(|_| gone())?,
            },
        }
    }
}

impl<W: Write> Write for ChunkSink<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.diff_hasher.update(buf);
        if self.compression == Compression::None {
            // The blob is the tar itself: its digest is the diffID, hashed once in finish().
            self.blob_size += buf.len() as u64;
            self.out.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut rest = buf;
        while !rest.is_empty() {
            let room = self.chunk_size - self.current.len();
            let take = room.min(rest.len());
            self.current.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            if self.current.len() == self.chunk_size {
                let full =
                    std::mem::replace(&mut self.current, Vec::with_capacity(self.chunk_size));
                self.submit(full)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(()) // chunk boundaries must not depend on when callers flush
    }
}

#[cfg(test)]
mod prune_tests {
    use super::*;

    #[test]
    fn hardlink_to_a_lower_file_leaves_the_lower_file_out_of_the_layer() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::create_dir_all(upper.join("etc")).unwrap();
        let when = filetime::FileTime::from_unix_time(1_600_000_000, 0);
        for (name, data) in [("group", "root:x:0:\n"), ("hosts", "old\n")] {
            let p = lower.join("etc").join(name);
            std::fs::write(&p, data).unwrap();
            filetime::set_file_mtime(&p, when).unwrap();
        }
        // What overlay leaves after `ln /etc/group /group-link`: the copy-up, linked.
        std::fs::copy(lower.join("etc/group"), upper.join("etc/group")).unwrap();
        filetime::set_file_mtime(upper.join("etc/group"), when).unwrap();
        std::fs::hard_link(upper.join("etc/group"), upper.join("group-link")).unwrap();
        // A changed file with the same size and time keeps its place (content differs).
        std::fs::write(upper.join("etc/hosts"), "new\n").unwrap();
        filetime::set_file_mtime(upper.join("etc/hosts"), when).unwrap();
        let layers = vec![lower];
        let stack =
            crate::snapshot::LayerStack::open(&layers, crate::snapshot::OverlayXattrs::Trusted)
                .unwrap();
        prune_copied_up(&upper, &stack).unwrap();
        assert!(
            !upper.join("etc/group").exists(),
            "unchanged copy-up removed"
        );
        assert!(upper.join("group-link").is_file(), "the new name stays");
        assert!(upper.join("etc/hosts").is_file(), "changed content stays");

        // Once `etc` holds nothing new, it goes too.
        std::fs::remove_file(upper.join("etc/hosts")).unwrap();
        prune_copied_up(&upper, &stack).unwrap();
        assert!(
            !upper.join("etc").exists(),
            "an unchanged, emptied directory records nothing"
        );
    }
}
