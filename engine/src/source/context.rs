//! The build context: a parallel walk, per-step content checksums, and an on-disk stat cache.
//!
//! A build walks its context once ([`ContextSnapshot::walk`]), never descending into directories the
//! ignore rules exclude (unless an exception may re-include something below). A COPY/ADD step's key
//! is made by `fileops::plan` over this snapshot, with file contents from
//! [`StatCache::content_digests`]; a RUN mount's from [`ContextSnapshot::select`] +
//! [`StatCache::checksum`]. File contents are hashed only when the stat cache has a digest for the
//! file's current (device, inode, size, mtime, ctime, mode): the cache vouches for a hash, never for
//! the truth, and any change of those fields (a same-size write with the mtime put back still moves
//! ctime) rehashes. An unchanged context costs one `lstat` per file, a changed file one hash.
//!
//! An entry's checksum covers its path, type, permission bits, uid/gid, size, link target and bytes;
//! never its mtime.

use dashmap::DashMap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Decides which context paths a build may see (the `.dockerignore` rules, for a Dockerfile build).
///
/// The engine does not know ignore-file syntax; the frontend supplies the matcher.
pub trait PathFilter: Send + Sync {
    /// True when `rel` (slash-separated, relative to the context root) is excluded.
    fn is_excluded(&self, rel: &str) -> bool;
    /// True when an excluded directory must still be walked because an exception rule could
    /// re-include something inside it.
    fn must_descend(&self, _rel_dir: &str) -> bool {
        false
    }
}

/// A filter that excludes nothing.
pub struct IncludeAll;

impl PathFilter for IncludeAll {
    fn is_excluded(&self, _rel: &str) -> bool {
        false
    }
}

/// The kind of a context entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Devices, fifos and sockets: copied as they are, hashed by metadata only.
    Other,
}

/// One entry of the context, with the `lstat` fields the checksum and the stat cache need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Slash-separated path relative to the context root.
    pub rel: String,
    pub kind: EntryKind,
    pub dev: u64,
    pub ino: u64,
    /// Hard link count: files sharing (dev, ino) are copied as one inode.
    pub nlink: u64,
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// The link target, for symlinks.
    pub link_target: Option<String>,
}

/// Errors while reading the context.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("cannot read build context {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid source path pattern {pattern:?}: {message}")]
    Pattern { pattern: String, message: String },
    /// A path deeper than the kernel takes one (see [`MAX_CONTEXT_PATH`]).
    #[error("build context {root}: the path {start}... is longer than {MAX_CONTEXT_PATH} bytes")]
    PathTooLong { root: PathBuf, start: String },
}

/// The walked context: every visible entry, sorted by path.
#[derive(Debug, Clone)]
pub struct ContextSnapshot {
    root: PathBuf,
    /// The root directory itself (path `""`).
    root_entry: ContextEntry,
    entries: Vec<ContextEntry>,
    /// Paths the filter excluded (each with everything below it), sorted.
    hidden: std::sync::Arc<Vec<String>>,
}

// The `stat` field types differ between architectures; the casts are no-ops on some.
#[allow(clippy::unnecessary_cast)]
fn entry_from(rel: String, st: &rustix::fs::Stat, link_target: Option<String>) -> ContextEntry {
    let kind = match rustix::fs::FileType::from_raw_mode(st.st_mode) {
        rustix::fs::FileType::RegularFile => EntryKind::File,
        rustix::fs::FileType::Directory => EntryKind::Dir,
        rustix::fs::FileType::Symlink => EntryKind::Symlink,
        _ => EntryKind::Other,
    };
    ContextEntry {
        rel,
        kind,
        dev: st.st_dev as u64,
        ino: st.st_ino as u64,
        nlink: st.st_nlink as u64,
        size: st.st_size as u64,
        mtime_ns: st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64,
        ctime_ns: st.st_ctime as i64 * 1_000_000_000 + st.st_ctime_nsec as i64,
        mode: st.st_mode as u32,
        uid: st.st_uid as u32,
        gid: st.st_gid as u32,
        link_target,
    }
}

fn join_rel(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        let mut rel = String::with_capacity(parent.len() + 1 + name.len());
        rel.push_str(parent);
        rel.push('/');
        rel.push_str(name);
        rel
    }
}

/// Where a walk collects what it finds, shared by the walking threads.
struct WalkSink<'a> {
    root: &'a Path,
    filter: &'a dyn PathFilter,
    entries: std::sync::Mutex<Vec<ContextEntry>>,
    hidden: std::sync::Mutex<Vec<String>>,
    implied: std::sync::Mutex<Vec<ContextEntry>>,
    error: std::sync::Mutex<Option<ContextError>>,
}

impl WalkSink<'_> {
    fn fail(&self, rel: &str, source: std::io::Error) {
        let path = if rel.is_empty() {
            self.root.to_path_buf()
        } else {
            self.root.join(rel)
        };
        self.error
            .lock()
            .expect("walk error slot")
            .get_or_insert(ContextError::Io { path, source });
    }
}

/// The longest path a context may hold, as the kernel takes one (`PATH_MAX` less its NUL): a
/// deeper tree is refused with its path, not walked until a stack or descriptor limit breaks.
pub const MAX_CONTEXT_PATH: usize = 4095;

/// The stack each walking thread gets: the walk recurses once per directory level, and a tree
/// within [`MAX_CONTEXT_PATH`] can be about 2,000 levels deep.
const WALK_STACK: usize = 64 << 20;

/// Gives rayon's global pool, which the walk's subdirectories run on, stacks for a deep tree
/// (its default is 2 MiB), when nothing built the pool before (the `builder` binary calls it
/// first thing). A pool of its own cost every build a few milliseconds of thread start-up.
pub fn deep_stacks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error means the pool exists already, built by the program with stacks of its
        // choosing.
        let _ = rayon::ThreadPoolBuilder::new()
            .stack_size(WALK_STACK)
            .build_global();
    });
}

/// Walks one open directory and its subdirectories in parallel.
///
/// Everything is looked up relative to the directory's descriptor (`fstatat`, `openat`,
/// `readlinkat`): the kernel resolves one name per call instead of the whole path, which is most
/// of what a stat costs in a deep tree.
fn walk_dir(mut dir: rustix::fs::Dir, rel_dir: &str, sink: &WalkSink<'_>) {
    use rustix::fs::{AtFlags, Mode, OFlags};
    // A descriptor of its own for the lookups, as reading the entries borrows `dir`.
    let dir_fd = match dir.fd().map(|fd| fd.try_clone_to_owned()) {
        Ok(Ok(fd)) => fd,
        Ok(Err(e)) => return sink.fail(rel_dir, e),
        Err(e) => return sink.fail(rel_dir, e.into()),
    };
    let mut local = Vec::new();
    let mut local_hidden = Vec::new();
    let mut subdirs: Vec<(std::ffi::CString, String)> = Vec::new();
    while let Some(item) = dir.read() {
        let item = match item {
            Ok(i) => i,
            Err(e) => {
                sink.fail(rel_dir, e.into());
                break;
            }
        };
        let name = item.file_name();
        if matches!(name.to_bytes(), b"." | b"..") {
            continue;
        }
        let rel = join_rel(rel_dir, &name.to_string_lossy());
        if rel.len() > MAX_CONTEXT_PATH {
            let start: String = rel.chars().take(60).collect();
            let error = ContextError::PathTooLong {
                root: sink.root.to_path_buf(),
                start,
            };
            sink.error
                .lock()
                .expect("walk error slot")
                .get_or_insert(error);
            continue;
        }
        let st = match rustix::fs::statat(&dir_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(e) => {
                sink.fail(&rel, e.into());
                continue;
            }
        };
        let file_type = rustix::fs::FileType::from_raw_mode(st.st_mode);
        let is_dir = file_type == rustix::fs::FileType::Directory;
        let excluded = sink.filter.is_excluded(&rel);
        let descend = is_dir && (!excluded || sink.filter.must_descend(&rel));
        if descend {
            subdirs.push((name.to_owned(), rel.clone()));
        }
        if excluded && descend {
            // Excluded, but walked for the exceptions: it is part of the context only when
            // something below it is (as BuildKit sends the parents of re-included files).
            sink.implied
                .lock()
                .expect("walk output")
                .push(entry_from(rel, &st, None));
        } else if !excluded {
            let link_target = if file_type == rustix::fs::FileType::Symlink {
                rustix::fs::readlinkat(&dir_fd, name, Vec::new())
                    .ok()
                    .map(|t| t.to_string_lossy().into_owned())
            } else {
                None
            };
            local.push(entry_from(rel, &st, link_target));
        } else if !descend {
            // Hidden with everything below it. An excluded directory that is still walked is
            // not listed: its excluded children are, one by one.
            local_hidden.push(rel);
        }
    }
    drop(dir);
    sink.entries.lock().expect("walk output").extend(local);
    sink.hidden
        .lock()
        .expect("walk output")
        .extend(local_hidden);
    // Each subdirectory is opened by the thread that walks it, so at most one descriptor per
    // level per thread is open however wide the tree is.
    subdirs.par_iter().for_each(|(name, rel)| {
        let opened = rustix::fs::openat(
            &dir_fd,
            name.as_c_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .and_then(rustix::fs::Dir::new);
        match opened {
            Ok(sub) => walk_dir(sub, rel, sink),
            Err(e) => sink.fail(rel, e.into()),
        }
    });
}

impl ContextSnapshot {
    /// Walks `root` in parallel, skipping what `filter` excludes (and never descending into an
    /// excluded directory unless the filter says an exception may re-include something inside).
    pub fn walk(root: &Path, filter: &dyn PathFilter) -> Result<Self, ContextError> {
        let sink = WalkSink {
            root,
            filter,
            entries: Default::default(),
            hidden: Default::default(),
            implied: Default::default(),
            error: Default::default(),
        };
        let opened = rustix::fs::open(
            root,
            rustix::fs::OFlags::RDONLY
                | rustix::fs::OFlags::DIRECTORY
                | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .and_then(rustix::fs::Dir::new);
        match opened {
            Ok(dir) => {
                deep_stacks();
                // On a pool thread, whose stack is sized for it: a level with one
                // subdirectory recurses on the calling thread (rayon does not split one item).
                rayon::scope(|_| walk_dir(dir, "", &sink))
            }
            Err(e) => sink.fail("", e.into()),
        }
        if let Some(e) = sink.error.into_inner().expect("walk error slot") {
            return Err(e);
        }
        let mut entries = sink.entries.into_inner().expect("walk output");
        // Paths are unique, so an unstable sort gives the same order, faster.
        entries.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));

        let mut hidden = sink.hidden.into_inner().expect("walk output");
        let implied = sink.implied.into_inner().expect("walk output");
        if !implied.is_empty() {
            let mut shown = Vec::new();
            for dir in implied {
                let prefix = format!("{}/", dir.rel);
                let at = entries.partition_point(|e| e.rel.as_str() < prefix.as_str());
                if entries.get(at).is_some_and(|e| e.rel.starts_with(&prefix)) {
                    shown.push(dir);
                } else {
                    hidden.push(dir.rel);
                }
            }
            entries.extend(shown);
            entries.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
        }
        hidden.sort_unstable();
        let root_entry = rustix::fs::stat(root)
            .map(|st| entry_from(String::new(), &st, None))
            .map_err(|e| ContextError::Io {
                path: root.to_path_buf(),
                source: e.into(),
            })?;
        Ok(ContextSnapshot {
            root: root.to_path_buf(),
            root_entry,
            entries,
            hidden: std::sync::Arc::new(hidden),
        })
    }

    /// The context root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every visible entry, sorted by path.
    pub fn entries(&self) -> &[ContextEntry] {
        &self.entries
    }

    /// The paths the ignore rules hide from the build (each with everything below it): a copy
    /// from the context must treat them as absent.
    pub fn hidden(&self) -> std::sync::Arc<Vec<String>> {
        self.hidden.clone()
    }

    /// The index of `rel` in the sorted entries (no separate index: one allocation less per
    /// file on the no-op path).
    fn position(&self, rel: &str) -> Option<usize> {
        self.entries
            .binary_search_by(|e| e.rel.as_str().cmp(rel))
            .ok()
    }

    /// Looks one entry up by its relative path (`""` is the root directory).
    pub fn get(&self, rel: &str) -> Option<&ContextEntry> {
        if rel.is_empty() {
            return Some(&self.root_entry);
        }
        self.position(rel).map(|i| &self.entries[i])
    }

    /// Every entry below the directory `rel` (`""`: the whole context), in path order.
    pub fn below(&self, rel: &str) -> &[ContextEntry] {
        if rel.is_empty() {
            return &self.entries;
        }
        let prefix = format!("{rel}/");
        let from = self
            .entries
            .partition_point(|e| e.rel.as_str() < prefix.as_str());
        let len = self.entries[from..].partition_point(|e| e.rel.starts_with(&prefix));
        &self.entries[from..from + len]
    }

    /// The entries a COPY/ADD with these source paths reads: each source (a path or a wildcard
    /// pattern relative to the context root) selects the matching entries and, for directories,
    /// everything below them. A source that matches nothing selects nothing (the copy reports it).
    pub fn select(&self, sources: &[String]) -> Result<Vec<&ContextEntry>, ContextError> {
        let mut picked = vec![false; self.entries.len()];
        for source in sources {
            let clean = clean_rel(source);
            if clean.is_empty() {
                picked.iter_mut().for_each(|p| *p = true);
                continue;
            }
            let has_wildcard = clean.contains(['*', '?', '[']);
            let mut roots: Vec<String> = Vec::new();
            if has_wildcard {
                let pattern = glob::Pattern::new(&clean).map_err(|e| ContextError::Pattern {
                    pattern: source.clone(),
                    message: e.to_string(),
                })?;
                let opts = glob::MatchOptions {
                    case_sensitive: true,
                    require_literal_separator: true,
                    require_literal_leading_dot: false,
                };
                roots.extend(
                    self.entries
                        .iter()
                        .filter(|e| pattern.matches_with(&e.rel, opts))
                        .map(|e| e.rel.clone()),
                );
            } else {
                roots.push(clean);
            }
            for root in roots {
                let Some(start) = self.position(&root) else {
                    continue;
                };
                picked[start] = true;
                let prefix = format!("{root}/");
                // Entries are sorted, so a directory's contents follow it contiguously among the
                // paths sharing its prefix.
                let from = self
                    .entries
                    .partition_point(|e| e.rel.as_str() < prefix.as_str());
                for (i, e) in self.entries[from..].iter().enumerate() {
                    if !e.rel.starts_with(&prefix) {
                        break;
                    }
                    picked[from + i] = true;
                }
            }
        }
        Ok(self
            .entries
            .iter()
            .zip(picked)
            .filter_map(|(e, p)| p.then_some(e))
            .collect())
    }
}

/// Cleans a source path the way Docker does before matching: no leading `/` or `./`, no `.`
/// components, `..` never above the root.
pub fn clean_rel(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// What the stat cache remembers about one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct CachedStat {
    stat: StatFields,
    digest: [u8; 32],
}

/// The stat fields that vouch for a file's content: while they are unchanged, so is the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct StatFields {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    mode: u32,
}

impl StatFields {
    fn of(entry: &ContextEntry) -> StatFields {
        StatFields {
            dev: entry.dev,
            ino: entry.ino,
            size: entry.size,
            mtime_ns: entry.mtime_ns,
            ctime_ns: entry.ctime_ns,
            mode: entry.mode,
        }
    }
}

/// Name of the versioned directory holding stat caches.
pub const STAT_CACHE_DIR: &str = cache::Bucket::ContextHash.dir_name();

/// The first field of a stat cache file: its format. A file in any other format (an older one,
/// or a torn one) reads as an empty cache.
const STAT_CACHE_FORMAT: u64 = u64::from_le_bytes(*b"bstatc04");

/// One remembered file: where its path lies in [`StatCacheFile::paths`], and its stat fields
/// (its digest is at the same index in [`StatCacheFile::digests`]).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct StatRecord {
    start: u32,
    len: u32,
    stat: StatFields,
}

/// The stat cache as stored: every path in one string, one fixed-size record per path sorted by
/// path, and the digests in one byte string. Loading it costs three allocations and three bulk
/// copies however many files the context has, and a lookup is a binary search. (A map of owned
/// paths cost an allocation and an insert per file, and digests stored as arrays are decoded
/// byte by byte: together a fifth of a no-op rebuild.)
#[derive(Debug, Default, Serialize, Deserialize)]
struct StatCacheFile {
    format: u64,
    paths: String,
    records: Vec<StatRecord>,
    digests: serde_bytes::ByteBuf,
}

impl StatCacheFile {
    fn path_of(&self, r: &StatRecord) -> &str {
        self.paths
            .get(r.start as usize..(r.start as usize + r.len as usize))
            .unwrap_or("")
    }

    /// The record at `index`, with its digest.
    fn stat_at(&self, index: usize) -> Option<CachedStat> {
        let r = self.records.get(index)?;
        let digest = self.digests.get(index * 32..index * 32 + 32)?;
        Some(CachedStat {
            stat: r.stat,
            digest: digest.try_into().ok()?,
        })
    }

    #[cfg(test)]
    fn get(&self, rel: &str) -> Option<CachedStat> {
        let index = self
            .records
            .binary_search_by(|r| self.path_of(r).cmp(rel))
            .ok()?;
        self.stat_at(index)
    }

    /// The index of the first record whose path is not before `rel`.
    fn first_at_or_after(&self, rel: &str) -> usize {
        self.records.partition_point(|r| self.path_of(r) < rel)
    }

    /// Looks `rel` up by walking forward from `cursor` (paths asked in increasing order):
    /// the record, if any, and where to continue from.
    fn seek(&self, mut cursor: usize, rel: &str) -> (Option<CachedStat>, usize) {
        while let Some(r) = self.records.get(cursor) {
            match self.path_of(r).cmp(rel) {
                std::cmp::Ordering::Less => cursor += 1,
                std::cmp::Ordering::Equal => return (self.stat_at(cursor), cursor + 1),
                std::cmp::Ordering::Greater => break,
            }
        }
        (None, cursor)
    }

    /// Every remembered file, in path order.
    fn iter(&self) -> impl Iterator<Item = (&str, CachedStat)> {
        (0..self.records.len())
            .filter_map(|i| Some((self.path_of(&self.records[i]), self.stat_at(i)?)))
    }

    /// Builds a file from `(path, stat)` pairs sorted by path; `None` when the paths do not fit
    /// 32-bit offsets.
    fn from_sorted<'a>(entries: impl Iterator<Item = (&'a str, CachedStat)>) -> Option<Self> {
        let mut file = StatCacheFile {
            format: STAT_CACHE_FORMAT,
            ..Default::default()
        };
        for (path, stat) in entries {
            let start = u32::try_from(file.paths.len()).ok()?;
            let len = u32::try_from(path.len()).ok()?;
            file.paths.push_str(path);
            file.records.push(StatRecord {
                start,
                len,
                stat: stat.stat,
            });
            file.digests.extend_from_slice(&stat.digest);
        }
        u32::try_from(file.paths.len()).ok()?;
        Some(file)
    }
}

/// The on-disk stat cache of one context directory: path → (device, inode, size, mtime, ctime, mode) → digest.
pub struct StatCache {
    file: Option<PathBuf>,
    /// What the last build saved.
    loaded: StatCacheFile,
    /// Files hashed by this build (new ones, and ones whose stat fields changed): the cache
    /// needs saving when this is not empty.
    fresh: DashMap<String, CachedStat>,
}

impl StatCache {
    /// An in-memory cache that is never saved.
    pub fn in_memory() -> Self {
        StatCache {
            file: None,
            loaded: StatCacheFile::default(),
            fresh: DashMap::new(),
        }
    }

    /// Loads the stat cache for `context` from the cache root. A missing, unreadable or
    /// older-format cache file gives an empty cache (every file is hashed once).
    pub fn load(cache_root: &Path, context: &Path) -> Self {
        let canonical = fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
        let name = blake3::hash(canonical.to_string_lossy().as_bytes()).to_hex();
        let file = cache_root
            .join(STAT_CACHE_DIR)
            .join(format!("{}.bin", &name[..32]));
        let loaded = fs::read(&file)
            .ok()
            .and_then(|bytes| bincode::deserialize::<StatCacheFile>(&bytes).ok())
            .filter(|f| f.format == STAT_CACHE_FORMAT)
            .unwrap_or_default();
        StatCache {
            file: Some(file),
            loaded,
            fresh: DashMap::new(),
        }
    }

    /// How many files this build had to read and hash (new or changed since the cache was
    /// saved).
    pub fn hashed(&self) -> usize {
        self.fresh.len()
    }

    /// Writes the cache back if anything changed (temp file + rename; a concurrent build's save
    /// may win, which only costs rehashing).
    pub fn save(&self, snapshot: Option<&ContextSnapshot>) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if self.fresh.is_empty() {
            return Ok(());
        }
        let fresh: Vec<(String, CachedStat)> = self
            .fresh
            .iter()
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        let mut entries: Vec<(&str, CachedStat)> = self
            .loaded
            .iter()
            .filter(|(p, _)| !self.fresh.contains_key(*p))
            .chain(fresh.iter().map(|(p, c)| (p.as_str(), *c)))
            // Forget files that no longer exist in the context.
            .filter(|(p, _)| snapshot.is_none_or(|s| s.get(p).is_some()))
            .collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let Some(contents) = StatCacheFile::from_sorted(entries.into_iter()) else {
            return Ok(());
        };
        let bytes = bincode::serialize(&contents).map_err(std::io::Error::other)?;
        let dir = file.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&bytes)?;
        tmp.persist(file).map_err(|e| e.error)?;
        Ok(())
    }

    #[cfg(test)]
    fn loaded_or_fresh(&self, rel: &str) -> CachedStat {
        match self.loaded.get(rel) {
            Some(c) => c,
            None => *self.fresh.get(rel).expect("remembered"),
        }
    }

    /// The content digest of a regular file, from the cache when its stat fields are unchanged.
    /// `remembered` is what the loaded cache holds for it, if anything.
    fn file_digest(
        &self,
        root: &Path,
        entry: &ContextEntry,
        remembered: Option<CachedStat>,
    ) -> Result<[u8; 32], ContextError> {
        let stat = StatFields::of(entry);
        let unchanged = |c: &CachedStat| c.stat == stat;
        if let Some(c) = remembered.filter(unchanged) {
            return Ok(c.digest);
        }
        if let Some(c) = self.fresh.get(&entry.rel).filter(|c| unchanged(c)) {
            return Ok(c.digest);
        }
        let path = root.join(&entry.rel);
        let digest = hash_file(&path).map_err(|source| ContextError::Io { path, source })?;
        self.fresh
            .insert(entry.rel.clone(), CachedStat { stat, digest });
        Ok(digest)
    }

    /// The content digests of regular files, in the order given, hashing only files whose stat
    /// fields changed since the cache last saw them. `files` must be in path order (as
    /// [`ContextSnapshot::entries`] are): the cache is searched forward from one lookup per chunk.
    pub fn content_digests(
        &self,
        root: &Path,
        files: &[&ContextEntry],
    ) -> Result<Vec<[u8; 32]>, ContextError> {
        let chunks: Vec<Vec<[u8; 32]>> = files
            .par_chunks(512)
            .map(|chunk| {
                let mut out = Vec::with_capacity(chunk.len());
                let mut cursor = chunk
                    .first()
                    .map_or(0, |e| self.loaded.first_at_or_after(&e.rel));
                for e in chunk {
                    let remembered;
                    (remembered, cursor) = self.loaded.seek(cursor, &e.rel);
                    out.push(self.file_digest(root, e, remembered)?);
                }
                Ok(out)
            })
            .collect::<Result<_, ContextError>>()?;
        Ok(chunks.into_iter().flatten().collect())
    }

    /// Checksums the given entries in parallel: one digest per entry (covering path, type,
    /// permission bits, uid/gid, size, link target and content) and one over all of them.
    /// `entries` come in path order, as [`ContextSnapshot::select`] gives them (out of order,
    /// the result is the same but files are rehashed).
    pub fn checksum<'a>(
        &self,
        root: &Path,
        entries: &[&'a ContextEntry],
    ) -> Result<SelectionChecksum<'a>, ContextError> {
        // Entries and the loaded cache are both sorted by path, so each chunk of entries finds
        // its records by walking forward from one binary search. Each entry's fields go into one
        // small buffer hashed in one call: a streaming hasher per entry costs more to set up than
        // the few dozen bytes it hashes.
        let chunks: Vec<Vec<(&'a str, [u8; 32])>> = entries
            .par_chunks(512)
            .map(|chunk| {
                let mut out = Vec::with_capacity(chunk.len());
                let mut buf = Vec::new();
                let mut cursor = chunk
                    .first()
                    .map_or(0, |e| self.loaded.first_at_or_after(&e.rel));
                for e in chunk {
                    buf.clear();
                    buf.extend_from_slice(e.rel.as_bytes());
                    buf.extend_from_slice(&[0, kind_byte(e.kind)]);
                    buf.extend_from_slice(&(e.mode & 0o7777).to_le_bytes());
                    buf.extend_from_slice(&e.uid.to_le_bytes());
                    buf.extend_from_slice(&e.gid.to_le_bytes());
                    match e.kind {
                        EntryKind::File => {
                            let remembered;
                            (remembered, cursor) = self.loaded.seek(cursor, &e.rel);
                            buf.extend_from_slice(&e.size.to_le_bytes());
                            buf.extend_from_slice(&self.file_digest(root, e, remembered)?);
                        }
                        EntryKind::Symlink => {
                            buf.extend_from_slice(
                                e.link_target.as_deref().unwrap_or("").as_bytes(),
                            );
                        }
                        EntryKind::Dir | EntryKind::Other => {}
                    }
                    out.push((e.rel.as_str(), *blake3::hash(&buf).as_bytes()));
                }
                Ok(out)
            })
            .collect::<Result<_, ContextError>>()?;
        let per_entry: Vec<(&'a str, [u8; 32])> = chunks.into_iter().flatten().collect();
        let mut total = blake3::Hasher::new();
        for (rel, d) in &per_entry {
            total.update(rel.as_bytes());
            total.update(&[0]);
            total.update(d);
        }
        Ok(SelectionChecksum {
            digest: *total.finalize().as_bytes(),
            entries: per_entry,
        })
    }
}

fn kind_byte(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::File => b'f',
        EntryKind::Dir => b'd',
        EntryKind::Symlink => b'l',
        EntryKind::Other => b'o',
    }
}

/// The checksum of the entries one step reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionChecksum<'a> {
    /// One digest over every entry (path and entry digest, in path order).
    pub digest: [u8; 32],
    /// Each entry's path (borrowed from the snapshot) and digest, in path order (for "file X
    /// changed" explanations).
    pub entries: Vec<(&'a str, [u8; 32])>,
}

fn hash_file(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = fs::File::open(path)?;
    let mut hasher = blake3::Hasher::new();
    let len = file.metadata()?.len();
    if len > 1 << 20 {
        // Large files: memory-map-free streaming in big reads keeps memory flat.
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    } else {
        let mut buf = Vec::with_capacity(len as usize);
        file.read_to_end(&mut buf)?;
        hasher.update(&buf);
    }
    Ok(*hasher.finalize().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct ExcludeTarget;
    impl PathFilter for ExcludeTarget {
        fn is_excluded(&self, rel: &str) -> bool {
            rel == "target" || rel.starts_with("target/")
        }
    }

    fn context() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("src/nested")).unwrap();
        fs::create_dir_all(p.join("target/debug")).unwrap();
        fs::write(p.join("src/a.rs"), "a").unwrap();
        fs::write(p.join("src/nested/b.rs"), "b").unwrap();
        fs::write(p.join("Cargo.toml"), "[package]").unwrap();
        fs::write(p.join("target/debug/big"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", p.join("link")).unwrap();
        dir
    }

    #[test]
    fn walk_skips_excluded_trees() {
        let dir = context();
        let snap = ContextSnapshot::walk(dir.path(), &ExcludeTarget).unwrap();
        let rels: Vec<_> = snap.entries().iter().map(|e| e.rel.as_str()).collect();
        assert_eq!(
            rels,
            [
                "Cargo.toml",
                "link",
                "src",
                "src/a.rs",
                "src/nested",
                "src/nested/b.rs"
            ]
        );
        assert_eq!(snap.get("link").unwrap().kind, EntryKind::Symlink);
    }

    #[test]
    fn select_follows_directories_and_wildcards() {
        let dir = context();
        let snap = ContextSnapshot::walk(dir.path(), &ExcludeTarget).unwrap();
        let rels = |srcs: &[&str]| -> Vec<String> {
            let srcs: Vec<String> = srcs.iter().map(|s| s.to_string()).collect();
            snap.select(&srcs)
                .unwrap()
                .iter()
                .map(|e| e.rel.clone())
                .collect()
        };
        assert_eq!(rels(&["src/nested/"]), ["src/nested", "src/nested/b.rs"]);
        assert_eq!(rels(&["*.toml"]), ["Cargo.toml"]);
        assert_eq!(rels(&["./src/*.rs"]), ["src/a.rs"]);
        assert_eq!(rels(&["."]).len(), 6);
        assert!(rels(&["missing"]).is_empty());
    }

    #[test]
    fn checksum_ignores_mtime_but_sees_content_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = context();
        let cache = StatCache::in_memory();
        let sum = |cache: &StatCache| {
            let snap = ContextSnapshot::walk(dir.path(), &ExcludeTarget).unwrap();
            let sel = snap.select(&["src".to_string()]).unwrap();
            cache.checksum(dir.path(), &sel).unwrap().digest
        };
        let first = sum(&cache);
        filetime::set_file_mtime(
            dir.path().join("src/a.rs"),
            filetime::FileTime::from_unix_time(1, 0),
        )
        .unwrap();
        assert_eq!(sum(&cache), first, "mtime must not matter");
        fs::write(dir.path().join("src/a.rs"), "changed").unwrap();
        let changed = sum(&cache);
        assert_ne!(changed, first);
        fs::set_permissions(
            dir.path().join("src/a.rs"),
            fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        assert_ne!(sum(&cache), changed);
    }

    #[test]
    fn reloaded_cache_rehashes_exactly_the_changed_files() {
        // More entries than one chunk of the parallel checksum, in a subset of the context.
        let dir = tempfile::tempdir().unwrap();
        for i in 0..1500 {
            let sub = dir.path().join(format!("d{}", i % 7));
            fs::create_dir_all(&sub).unwrap();
            fs::write(sub.join(format!("f{i}")), format!("{i}")).unwrap();
        }
        let root = tempfile::tempdir().unwrap();
        let snap = ContextSnapshot::walk(dir.path(), &IncludeAll).unwrap();
        let all = snap.select(&[".".to_string()]).unwrap();
        let cache = StatCache::load(root.path(), dir.path());
        cache.checksum(dir.path(), &all).unwrap();
        cache.save(Some(&snap)).unwrap();

        fs::write(dir.path().join("d3/f3"), "changed").unwrap();
        fs::write(dir.path().join("d5/f1405"), "changed").unwrap();
        let snap = ContextSnapshot::walk(dir.path(), &IncludeAll).unwrap();
        let picked = snap.select(&["d3".to_string(), "d5".to_string()]).unwrap();
        let reloaded = StatCache::load(root.path(), dir.path());
        let sum = reloaded.checksum(dir.path(), &picked).unwrap();
        let from_scratch = StatCache::in_memory()
            .checksum(dir.path(), &picked)
            .unwrap();
        assert_eq!(sum, from_scratch);
        let mut rehashed: Vec<String> = reloaded.fresh.iter().map(|e| e.key().clone()).collect();
        rehashed.sort();
        assert_eq!(rehashed, ["d3/f3", "d5/f1405"]);
    }

    #[test]
    fn stat_cache_in_another_format_reads_as_empty() {
        let dir = context();
        let root = tempfile::tempdir().unwrap();
        let snap = ContextSnapshot::walk(dir.path(), &ExcludeTarget).unwrap();
        let sel = snap.select(&[".".to_string()]).unwrap();
        let cache = StatCache::load(root.path(), dir.path());
        let first = cache.checksum(dir.path(), &sel).unwrap().digest;
        cache.save(Some(&snap)).unwrap();
        let file = cache.file.clone().unwrap();
        // The format before this one: a list of (path, stat) pairs.
        let old: Vec<(String, CachedStat)> =
            vec![("src/a.rs".into(), cache.loaded_or_fresh("src/a.rs"))];
        fs::write(&file, bincode::serialize(&old).unwrap()).unwrap();
        let reloaded = StatCache::load(root.path(), dir.path());
        assert!(reloaded.loaded.records.is_empty());
        assert_eq!(reloaded.checksum(dir.path(), &sel).unwrap().digest, first);
        // Torn files too.
        fs::write(&file, b"bstatc04\x01").unwrap();
        assert!(StatCache::load(root.path(), dir.path())
            .loaded
            .records
            .is_empty());
    }

    #[test]
    fn stat_cache_persists_and_skips_rehash() {
        let dir = context();
        let root = tempfile::tempdir().unwrap();
        let snap = ContextSnapshot::walk(dir.path(), &ExcludeTarget).unwrap();
        let sel = snap.select(&[".".to_string()]).unwrap();
        let cache = StatCache::load(root.path(), dir.path());
        let first = cache.checksum(dir.path(), &sel).unwrap();
        cache.save(Some(&snap)).unwrap();
        let reloaded = StatCache::load(root.path(), dir.path());
        assert_eq!(reloaded.loaded.records.len(), 3);
        assert_eq!(reloaded.checksum(dir.path(), &sel).unwrap(), first);
        assert!(reloaded.fresh.is_empty(), "nothing to save");
    }
}
