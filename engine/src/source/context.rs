//! The build context: a parallel walk, per-step content checksums, and an on-disk stat cache.
//!
//! A build walks its context once ([`ContextSnapshot::walk`]), never descending into directories the
//! ignore rules exclude. A COPY/ADD step then asks for the checksum of exactly the entries it reads
//! ([`ContextSnapshot::select`] + [`StatCache::checksum`]). File contents are hashed only when the
//! stat cache has no digest for the file's current (inode, size, mtime, ctime, mode): an unchanged
//! context costs one `lstat` per file, a changed file one hash of that file.
//!
//! An entry's checksum covers its path, type, permission bits, uid/gid, size, link target and bytes;
//! never its mtime.

use dashmap::DashMap;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
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
    pub ino: u64,
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
}

/// The walked context: every visible entry, sorted by path.
#[derive(Debug, Clone)]
pub struct ContextSnapshot {
    root: PathBuf,
    entries: Vec<ContextEntry>,
    /// Paths the filter excluded (each with everything below it), sorted.
    hidden: std::sync::Arc<Vec<String>>,
}

fn entry_from(rel: String, meta: &fs::Metadata, path: &Path) -> ContextEntry {
    let ft = meta.file_type();
    let kind = if ft.is_file() {
        EntryKind::File
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        EntryKind::Other
    };
    let link_target = if kind == EntryKind::Symlink {
        fs::read_link(path)
            .ok()
            .map(|t| t.to_string_lossy().into_owned())
    } else {
        None
    };
    ContextEntry {
        rel,
        kind,
        ino: meta.ino(),
        size: meta.size(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        link_target,
    }
}

fn join_rel(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

/// Walks one directory and its subdirectories in parallel, appending visible entries to `out`.
fn walk_dir(
    root: &Path,
    rel_dir: &str,
    filter: &dyn PathFilter,
    out: &std::sync::Mutex<Vec<ContextEntry>>,
    hidden: &std::sync::Mutex<Vec<String>>,
    errors: &std::sync::Mutex<Option<ContextError>>,
) {
    let dir = if rel_dir.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel_dir)
    };
    let read = match fs::read_dir(&dir) {
        Ok(r) => r,
        Err(source) => {
            errors
                .lock()
                .expect("walk error slot")
                .get_or_insert(ContextError::Io { path: dir, source });
            return;
        }
    };
    let mut local = Vec::new();
    let mut local_hidden = Vec::new();
    let mut subdirs = Vec::new();
    for item in read {
        let item = match item {
            Ok(i) => i,
            Err(source) => {
                errors
                    .lock()
                    .expect("walk error slot")
                    .get_or_insert(ContextError::Io {
                        path: dir.clone(),
                        source,
                    });
                continue;
            }
        };
        let name = item.file_name().to_string_lossy().into_owned();
        let rel = join_rel(rel_dir, &name);
        let path = item.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(source) => {
                errors
                    .lock()
                    .expect("walk error slot")
                    .get_or_insert(ContextError::Io { path, source });
                continue;
            }
        };
        let excluded = filter.is_excluded(&rel);
        let descend = meta.is_dir() && (!excluded || filter.must_descend(&rel));
        if descend {
            subdirs.push(rel.clone());
        }
        if !excluded {
            local.push(entry_from(rel, &meta, &path));
        } else if !descend {
            // Hidden with everything below it. An excluded directory that is still walked is
            // not listed: its excluded children are, one by one.
            local_hidden.push(rel);
        }
    }
    out.lock().expect("walk output").extend(local);
    hidden.lock().expect("walk output").extend(local_hidden);
    subdirs
        .par_iter()
        .for_each(|sub| walk_dir(root, sub, filter, out, hidden, errors));
}

impl ContextSnapshot {
    /// Walks `root` in parallel, skipping what `filter` excludes (and never descending into an
    /// excluded directory unless the filter says an exception may re-include something inside).
    pub fn walk(root: &Path, filter: &dyn PathFilter) -> Result<Self, ContextError> {
        let out = std::sync::Mutex::new(Vec::new());
        let hidden = std::sync::Mutex::new(Vec::new());
        let errors = std::sync::Mutex::new(None);
        walk_dir(root, "", filter, &out, &hidden, &errors);
        if let Some(e) = errors.into_inner().expect("walk error slot") {
            return Err(e);
        }
        let mut entries = out.into_inner().expect("walk output");
        entries.sort_by(|a, b| a.rel.cmp(&b.rel));

        let mut hidden = hidden.into_inner().expect("walk output");
        hidden.sort();
        Ok(ContextSnapshot {
            root: root.to_path_buf(),
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

    /// Looks one entry up by its relative path.
    pub fn get(&self, rel: &str) -> Option<&ContextEntry> {
        self.position(rel).map(|i| &self.entries[i])
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
    ino: u64,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    mode: u32,
    digest: [u8; 32],
}

/// Name of the versioned directory holding stat caches.
pub const STAT_CACHE_DIR: &str = "contexthash-v1";

/// The on-disk stat cache of one context directory: path → (inode, size, mtime, ctime, mode) → digest.
pub struct StatCache {
    file: Option<PathBuf>,
    map: DashMap<String, CachedStat>,
    dirty: std::sync::atomic::AtomicBool,
}

impl StatCache {
    /// An in-memory cache that is never saved.
    pub fn in_memory() -> Self {
        StatCache {
            file: None,
            map: DashMap::new(),
            dirty: Default::default(),
        }
    }

    /// Loads the stat cache for `context` from the cache root. A missing or unreadable cache file
    /// gives an empty cache (every file is hashed once).
    pub fn load(cache_root: &Path, context: &Path) -> Self {
        let canonical = fs::canonicalize(context).unwrap_or_else(|_| context.to_path_buf());
        let name = blake3::hash(canonical.to_string_lossy().as_bytes()).to_hex();
        let file = cache_root
            .join(STAT_CACHE_DIR)
            .join(format!("{}.bin", &name[..32]));
        let map = DashMap::new();
        if let Ok(bytes) = fs::read(&file) {
            if let Ok(entries) = bincode::deserialize::<Vec<(String, CachedStat)>>(&bytes) {
                for (k, v) in entries {
                    map.insert(k, v);
                }
            }
        }
        StatCache {
            file: Some(file),
            map,
            dirty: Default::default(),
        }
    }

    /// Writes the cache back if anything changed (temp file + rename; a concurrent build's save
    /// may win, which only costs rehashing).
    pub fn save(&self, snapshot: Option<&ContextSnapshot>) -> std::io::Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        if !self.dirty.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let mut entries: Vec<(String, CachedStat)> = self
            .map
            .iter()
            // Forget files that no longer exist in the context.
            .filter(|e| snapshot.is_none_or(|s| s.get(e.key()).is_some()))
            .map(|e| (e.key().clone(), *e.value()))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let bytes = bincode::serialize(&entries).map_err(std::io::Error::other)?;
        let dir = file.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&bytes)?;
        tmp.persist(file).map_err(|e| e.error)?;
        Ok(())
    }

    /// The content digest of a regular file, from the cache when its stat fields are unchanged.
    fn file_digest(&self, root: &Path, entry: &ContextEntry) -> Result<[u8; 32], ContextError> {
        if let Some(c) = self.map.get(&entry.rel) {
            if c.ino == entry.ino
                && c.size == entry.size
                && c.mtime_ns == entry.mtime_ns
                && c.ctime_ns == entry.ctime_ns
                && c.mode == entry.mode
            {
                return Ok(c.digest);
            }
        }
        let path = root.join(&entry.rel);
        let digest = hash_file(&path).map_err(|source| ContextError::Io { path, source })?;
        self.map.insert(
            entry.rel.clone(),
            CachedStat {
                ino: entry.ino,
                size: entry.size,
                mtime_ns: entry.mtime_ns,
                ctime_ns: entry.ctime_ns,
                mode: entry.mode,
                digest,
            },
        );
        self.dirty.store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(digest)
    }

    /// Checksums the given entries in parallel: one digest per entry (covering path, type,
    /// permission bits, uid/gid, size, link target and content) and one over all of them.
    pub fn checksum(
        &self,
        root: &Path,
        entries: &[&ContextEntry],
    ) -> Result<SelectionChecksum, ContextError> {
        let per_entry: Vec<(String, [u8; 32])> = entries
            .par_iter()
            .map(|e| {
                let mut h = blake3::Hasher::new();
                h.update(e.rel.as_bytes());
                h.update(&[0, kind_byte(e.kind)]);
                h.update(&(e.mode & 0o7777).to_le_bytes());
                h.update(&e.uid.to_le_bytes());
                h.update(&e.gid.to_le_bytes());
                match e.kind {
                    EntryKind::File => {
                        h.update(&e.size.to_le_bytes());
                        h.update(&self.file_digest(root, e)?);
                    }
                    EntryKind::Symlink => {
                        h.update(e.link_target.as_deref().unwrap_or("").as_bytes());
                    }
                    EntryKind::Dir | EntryKind::Other => {}
                }
                Ok((e.rel.clone(), *h.finalize().as_bytes()))
            })
            .collect::<Result<_, ContextError>>()?;
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
pub struct SelectionChecksum {
    /// One digest over every entry (path and entry digest, in path order).
    pub digest: [u8; 32],
    /// Each entry's digest, in path order (for "file X changed" explanations).
    pub entries: Vec<(String, [u8; 32])>,
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
    fn stat_cache_persists_and_skips_rehash() {
        let dir = context();
        let root = tempfile::tempdir().unwrap();
        let snap = ContextSnapshot::walk(dir.path(), &ExcludeTarget).unwrap();
        let sel = snap.select(&[".".to_string()]).unwrap();
        let cache = StatCache::load(root.path(), dir.path());
        let first = cache.checksum(dir.path(), &sel).unwrap();
        cache.save(Some(&snap)).unwrap();
        let reloaded = StatCache::load(root.path(), dir.path());
        assert_eq!(reloaded.map.len(), 3);
        assert_eq!(reloaded.checksum(dir.path(), &sel).unwrap(), first);
        assert!(!reloaded.dirty.load(std::sync::atomic::Ordering::Relaxed));
    }
}
