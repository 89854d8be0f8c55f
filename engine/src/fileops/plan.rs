//! One resolution of a COPY/ADD's sources: which entries of the source root it reads, and what of
//! each reaches the layer.
//!
//! The solver makes a plan over the walked build context ([`ContextSnapshot`]) and digests it
//! into the step's cache key; the copy makes the same plan, with the same code, over the
//! filesystem ([`FsTree`]) and executes it. Wildcards (Go `filepath.Match`), symlinks in the
//! path, following a symlink named as a source, `.dockerignore` (the tree hides what it
//! excludes), `--exclude`, `--parents` and hardlinks are all decided here, once, so "the key
//! covers every input of the copy" holds by construction instead of by keeping two matchers in
//! step.

use super::chmod::Chmod;
use super::pattern::{match_component, ExcludeMatcher};
use super::root::Root;
use super::{CopyAction, FileOpError};
use crate::source::context::{ContextEntry, ContextSnapshot, EntryKind};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// How many symlinks one resolution may follow (as Linux's `MAXSYMLINKS` order of magnitude).
const MAX_LINKS: usize = 40;

/// A source root a plan can be made over. Paths are slash-separated and relative to the root;
/// `""` is the root directory. Paths given to it never go through a symlink (the resolver
/// follows links itself).
pub trait SourceTree {
    /// The entry at `rel` without following it, or `None` when absent (or hidden).
    fn lstat(&self, rel: &str) -> Result<Option<Cow<'_, ContextEntry>>, FileOpError>;
    /// Every entry below the directory `rel`, in path (byte) order.
    fn below(&self, rel: &str) -> Result<Vec<Cow<'_, ContextEntry>>, FileOpError>;
    /// The names of the directory's direct children.
    fn children(&self, rel: &str) -> Result<Vec<String>, FileOpError>;
    /// Whether the regular file at `rel` is a tar archive (plain or compressed), which ADD
    /// extracts.
    fn is_archive(&self, rel: &str) -> bool;
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_string()
    } else {
        format!("{parent}/{name}")
    }
}

impl SourceTree for ContextSnapshot {
    fn lstat(&self, rel: &str) -> Result<Option<Cow<'_, ContextEntry>>, FileOpError> {
        Ok(self.get(rel).map(Cow::Borrowed))
    }

    fn below(&self, rel: &str) -> Result<Vec<Cow<'_, ContextEntry>>, FileOpError> {
        Ok(ContextSnapshot::below(self, rel)
            .iter()
            .map(Cow::Borrowed)
            .collect())
    }

    fn is_archive(&self, rel: &str) -> bool {
        super::archive::is_archive(&self.root().join(rel)).unwrap_or(false)
    }

    fn children(&self, rel: &str) -> Result<Vec<String>, FileOpError> {
        let skip = if rel.is_empty() { 0 } else { rel.len() + 1 };
        Ok(ContextSnapshot::below(self, rel)
            .iter()
            .map(|e| &e.rel[skip..])
            .filter(|name| !name.contains('/'))
            .map(str::to_string)
            .collect())
    }
}

/// A directory on disk as a [`SourceTree`], with the paths the build hides (the context's
/// `.dockerignore`d paths, each with everything below it) left out.
pub struct FsTree {
    root: Root,
    hidden: HashSet<String>,
    op: &'static str,
}

impl FsTree {
    /// The tree of `root`, without `hidden`.
    pub fn new(root: Root, hidden: &[String], op: &'static str) -> FsTree {
        FsTree {
            root,
            hidden: hidden.iter().cloned().collect(),
            op,
        }
    }

    /// The root on disk.
    pub fn root(&self) -> &Root {
        &self.root
    }

    fn is_hidden(&self, rel: &str) -> bool {
        if self.hidden.is_empty() || rel.is_empty() {
            return false;
        }
        let mut end = rel.len();
        loop {
            if self.hidden.contains(&rel[..end]) {
                return true;
            }
            match rel[..end].rfind('/') {
                Some(i) => end = i,
                None => return false,
            }
        }
    }

    /// The host path of `rel`, its parents resolved in the root. Path-based for now: the
    /// source tree is listed and inspected with `std::fs` (`read_dir`, `Metadata` for
    /// [`ContextEntry`]); file contents are read through [`Root::open_read`].
    fn host(&self, rel: &str) -> Result<PathBuf, FileOpError> {
        self.root
            .resolve_parent(rel)
            .map_err(|source| FileOpError::Root {
                op: self.op,
                source,
            })
    }

    fn io(&self, what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> FileOpError {
        let (op, path) = (self.op, path.to_path_buf());
        move |source| FileOpError::Io {
            op,
            what,
            path,
            source,
        }
    }

    /// Everything below the directory `rel`, in no particular order. Below a directory the walk
    /// reached itself, a path is its parent's host path and a name: the walk follows no link,
    /// so nothing is resolved again from the root (which made a deep tree quadratic), and it
    /// keeps its own stack of directories to visit (a deep tree must not exhaust the thread's).
    fn walk(&self, rel: &str, out: &mut Vec<ContextEntry>) -> Result<(), FileOpError> {
        let start = if rel.is_empty() {
            self.root.host_path().to_path_buf()
        } else {
            self.host(rel)?
        };
        let mut pending = vec![(rel.to_string(), start)];
        while let Some((dir_rel, dir_host)) = pending.pop() {
            for name in self.names_in(&dir_rel, &dir_host)? {
                let child_rel = join(&dir_rel, &name);
                let child_host = dir_host.join(&name);
                if let Some(e) = self.lstat_host(child_rel, &child_host)? {
                    if e.kind == EntryKind::Dir {
                        pending.push((e.rel.clone(), child_host));
                    }
                    out.push(e);
                }
            }
        }
        Ok(())
    }

    /// The names in the directory `rel` (at `host`) that are not hidden, sorted.
    fn names_in(&self, rel: &str, host: &Path) -> Result<Vec<String>, FileOpError> {
        let mut names = Vec::new();
        for item in std::fs::read_dir(host).map_err(self.io("reading directory", host))? {
            let item = item.map_err(self.io("reading directory", host))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if !self.is_hidden(&join(rel, &name)) {
                names.push(name);
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// The entry `rel` found at `host` (not followed), or `None` when it is not there.
    fn lstat_host(&self, rel: String, host: &Path) -> Result<Option<ContextEntry>, FileOpError> {
        let meta = match std::fs::symlink_metadata(host) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
            Err(e) => return Err(self.io("inspecting", host)(e)),
        };
        let link = if meta.file_type().is_symlink() {
            let t = std::fs::read_link(host).map_err(self.io("reading link", host))?;
            Some(t.to_string_lossy().into_owned())
        } else {
            None
        };
        Ok(Some(entry_of(rel, &meta, link)))
    }
}

/// A [`ContextEntry`] from `lstat` metadata.
pub fn entry_of(
    rel: String,
    meta: &std::fs::Metadata,
    link_target: Option<String>,
) -> ContextEntry {
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
    ContextEntry {
        rel,
        kind,
        dev: meta.dev(),
        ino: meta.ino(),
        nlink: meta.nlink(),
        size: meta.size(),
        mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
        ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
        link_target,
    }
}

impl SourceTree for FsTree {
    fn lstat(&self, rel: &str) -> Result<Option<Cow<'_, ContextEntry>>, FileOpError> {
        if self.is_hidden(rel) {
            return Ok(None);
        }
        let host = self.host(rel)?;
        Ok(self.lstat_host(rel.to_string(), &host)?.map(Cow::Owned))
    }

    fn below(&self, rel: &str) -> Result<Vec<Cow<'_, ContextEntry>>, FileOpError> {
        let mut out = Vec::new();
        self.walk(rel, &mut out)?;
        out.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
        Ok(out.into_iter().map(Cow::Owned).collect())
    }

    fn is_archive(&self, rel: &str) -> bool {
        self.host(rel)
            .is_ok_and(|host| super::archive::is_archive(&host).unwrap_or(false))
    }

    fn children(&self, rel: &str) -> Result<Vec<String>, FileOpError> {
        let host = if rel.is_empty() {
            self.root.host_path().to_path_buf()
        } else {
            self.host(rel)?
        };
        self.names_in(rel, &host)
    }
}

/// One entry a copy writes: the source entry (its `rel` is its real path in the source root)
/// and where it goes, relative to the match's destination (`""` for the match itself).
#[derive(Debug, Clone)]
pub struct PlanEntry<'t> {
    pub entry: Cow<'t, ContextEntry>,
    pub out: String,
}

/// What one path matched by a source argument copies.
#[derive(Debug, Clone)]
pub struct PlanMatch<'t> {
    /// Index of the source argument in [`CopyAction::sources`].
    pub source: usize,
    /// The path as matched, before a final symlink is followed (its last component names a
    /// copied file at the destination).
    pub logical: String,
    /// With `--parents`: the part of `logical` kept under the destination.
    pub kept: String,
    /// The match itself first, then (for a directory) what it copies below it, in path order.
    pub entries: Vec<PlanEntry<'t>>,
    /// ADD of a local tar archive: extracted into the destination, so only its content
    /// matters.
    pub archive: bool,
}

impl PlanMatch<'_> {
    /// The matched entry (after following a symlink named as a source).
    pub fn top(&self) -> &ContextEntry {
        &self.entries[0].entry
    }

    /// The name a copied file gets in a destination directory.
    pub fn name(&self) -> &str {
        self.logical.rsplit('/').next().unwrap_or("")
    }
}

/// Everything one COPY/ADD action reads from its source root.
#[derive(Debug, Clone, Default)]
pub struct CopyPlan<'t> {
    pub matches: Vec<PlanMatch<'t>>,
}

/// Splits a source path into clean components (no `.`, no empty ones; `..` kept for the
/// resolver, which cannot leave the root).
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

/// Resolves `rel` inside `tree` the way the kernel would with the root as `/`: symlinks in
/// every component are followed (the last one only with `follow_last`), `..` stops at the root,
/// missing components are kept as written. The result has no symlink among its parents.
pub fn resolve_path<T: SourceTree + ?Sized>(
    tree: &T,
    rel: &str,
    follow_last: bool,
    op: &'static str,
) -> Result<String, FileOpError> {
    let mut stack: Vec<String> = components(rel)
        .into_iter()
        .rev()
        .map(String::from)
        .collect();
    let mut cur: Vec<String> = Vec::new();
    let mut links = 0;
    while let Some(comp) = stack.pop() {
        if comp == ".." {
            cur.pop();
            continue;
        }
        let cand = join(&cur.join("/"), &comp);
        let last = stack.is_empty();
        let entry = tree.lstat(&cand)?;
        match entry.as_deref() {
            Some(e) if e.kind == EntryKind::Symlink && (!last || follow_last) => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(FileOpError::SymlinkLoop {
                        op,
                        path: rel.to_string(),
                    });
                }
                let target = e.link_target.clone().unwrap_or_default();
                if target.starts_with('/') {
                    cur.clear();
                }
                stack.extend(components(&target).into_iter().rev().map(String::from));
            }
            _ => cur.push(comp),
        }
    }
    Ok(cur.join("/"))
}

/// Expands one source argument into (path as matched, real path of its parent + its name):
/// wildcards match directory entries with Go's `filepath.Match` rules, in byte order.
fn expand<T: SourceTree + ?Sized>(
    tree: &T,
    source: &str,
    op: &'static str,
) -> Result<Vec<(String, String)>, FileOpError> {
    let mut found = vec![(String::new(), String::new())];
    let mut literal = true;
    for comp in components(source) {
        let mut next = Vec::new();
        for (logical, real) in &found {
            if comp == ".." {
                let up = resolve_path(tree, &join(real, ".."), false, op)?;
                let mut l: Vec<&str> = components(logical);
                l.pop();
                next.push((l.join("/"), up));
                continue;
            }
            let dir = resolve_path(tree, real, true, op)?;
            if is_pattern(comp) {
                let Some(top) = tree.lstat(&dir)? else {
                    // As BuildKit's wildcard resolution: the directory before the first
                    // wildcard must exist (a wildcard may match nothing, but not in a
                    // directory that is not there).
                    if literal && !logical.is_empty() {
                        return Err(FileOpError::WildcardDirMissing {
                            op,
                            dir: logical.clone(),
                            pattern: source.to_string(),
                        });
                    }
                    continue;
                };
                if top.kind != EntryKind::Dir {
                    continue;
                }
                for name in tree.children(&dir)? {
                    let ok = match_component(comp, &name)
                        .map_err(|source| FileOpError::Pattern { op, source })?;
                    if ok {
                        next.push((join(logical, &name), join(&dir, &name)));
                    }
                }
            } else {
                next.push((join(logical, comp), join(&dir, comp)));
            }
        }
        literal &= !is_pattern(comp);
        found = next;
    }
    Ok(found)
}

/// Whether a path holds a wildcard not escaped by `\\` (BuildKit's `containsWildcards`): a
/// path without one names a file literally, backslashes included.
pub fn is_pattern(path: &str) -> bool {
    let mut chars = path.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '*' | '?' | '[' => return true,
            _ => {}
        }
    }
    false
}

/// Number of leading components before a `/./` pivot in a `--parents` source.
fn pivot_components(source: &str) -> usize {
    let trimmed = source.trim_start_matches("./");
    match trimmed.rfind("/./") {
        Some(i) => components(&trimmed[..i]).len(),
        None => 0,
    }
}

fn place(op_root: &str) -> String {
    if op_root == super::CONTEXT {
        "build context".to_string()
    } else {
        format!("{op_root:?}")
    }
}

/// Makes the plan of `a` over `tree`: the same function for the cache key and for the copy.
///
/// Rules (as BuildKit's copy): a source without wildcards must exist; a wildcard may match
/// nothing (the copy then writes nothing for it). A symlink named as a source, or matched by a
/// wildcard, is followed when `follow_symlinks` is set, and must then lead to something. Inside
/// a copied directory symlinks are copied as links. `--exclude` patterns are matched against
/// paths inside a copied directory (relative to it), never against a source or a wildcard's
/// match itself (BuildKit's copy matches them below the copied root only); an
/// excluded directory holding a file re-included by a `!` pattern is copied with only what is
/// re-included.
pub fn resolve<'t, T: SourceTree + ?Sized>(
    tree: &'t T,
    a: &CopyAction,
    op: &'static str,
) -> Result<CopyPlan<'t>, FileOpError> {
    let exclude =
        ExcludeMatcher::new(&a.exclude).map_err(|source| FileOpError::Pattern { op, source })?;
    let mut plan = CopyPlan::default();
    for (index, source) in a.sources.iter().enumerate() {
        if op == "ADD" && (source.starts_with("http://") || source.starts_with("https://")) {
            continue;
        }
        let wild = is_pattern(source);
        let mut matches = Vec::new();
        // A match is copied whatever `--exclude` says: the patterns apply below it only.
        for (logical, real) in expand(tree, source, op)? {
            let Some(entry) = tree.lstat(&real)? else {
                continue;
            };
            matches.push((logical, real, entry));
        }
        if matches.is_empty() && !wild {
            return Err(FileOpError::NotFound {
                op,
                place: place(&a.source_root),
                path: source.clone(),
            });
        }
        let pivot = pivot_components(source);
        for (logical, real, mut top) in matches {
            if a.follow_symlinks && top.kind == EntryKind::Symlink {
                let target = resolve_path(tree, &real, true, op)?;
                top = tree
                    .lstat(&target)?
                    .ok_or_else(|| FileOpError::DanglingSource {
                        op,
                        place: place(&a.source_root),
                        path: logical.clone(),
                        target: top.link_target.clone().unwrap_or_default(),
                    })?;
            }
            let kept = components(&logical)
                .into_iter()
                .skip(pivot)
                .collect::<Vec<_>>()
                .join("/");
            let mut entries = Vec::new();
            let top_rel = top.rel.clone();
            let is_dir = top.kind == EntryKind::Dir;
            entries.push(PlanEntry {
                entry: top,
                out: String::new(),
            });
            if is_dir {
                let skip = if top_rel.is_empty() {
                    0
                } else {
                    top_rel.len() + 1
                };
                let below = tree.below(&top_rel)?;
                if exclude.is_empty() {
                    entries.extend(below.into_iter().map(|e| {
                        let out = e.rel[skip..].to_string();
                        PlanEntry { entry: e, out }
                    }));
                } else {
                    entries.extend(filter_excluded(below, skip, &exclude));
                }
            }
            let archive = op == "ADD"
                && entries[0].entry.kind == EntryKind::File
                && tree.is_archive(&entries[0].entry.rel);
            plan.matches.push(PlanMatch {
                source: index,
                logical,
                kept,
                entries,
                archive,
            });
        }
    }
    Ok(plan)
}

/// The entries of a copied directory that `--exclude` leaves in: those not excluded, and the
/// excluded directories that hold one of them (a `!` exception re-included it).
fn filter_excluded<'t>(
    below: Vec<Cow<'t, ContextEntry>>,
    skip: usize,
    exclude: &ExcludeMatcher,
) -> Vec<PlanEntry<'t>> {
    let keep: Vec<bool> = below
        .iter()
        .map(|e| !exclude.is_excluded(&e.rel[skip..]))
        .collect();
    let mut needed: HashSet<&str> = HashSet::new();
    if exclude.has_negations() {
        for (e, k) in below.iter().zip(&keep) {
            if *k {
                let out = &e.rel[skip..];
                let mut end = out.len();
                while let Some(i) = out[..end].rfind('/') {
                    needed.insert(&out[..i]);
                    end = i;
                }
            }
        }
    }
    let needed: HashSet<String> = needed.into_iter().map(str::to_string).collect();
    below
        .into_iter()
        .zip(keep)
        .filter(|(e, k)| *k || needed.contains(&e.rel[skip..]))
        .map(|(e, _)| {
            let out = e.rel[skip..].to_string();
            PlanEntry { entry: e, out }
        })
        .collect()
}

/// How [`CopyPlan::digest`] sees one entry: what of it reaches the layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFacts {
    pub kind: EntryKind,
    /// Permission bits as written (after `--chmod`).
    pub mode: u32,
    /// Owner, when the copy keeps it (no `--chown`).
    pub owner: Option<(u32, u32)>,
    pub link_target: Option<String>,
    /// Content digest of a regular file.
    pub content: Option<[u8; 32]>,
    /// An archive `ADD` extracts: keyed by its bytes only (as BuildKit keys it), so a change of
    /// its bytes that extraction would not show still counts.
    pub archive: bool,
    /// Where the entry lands depends on what the base holds at the destination (a directory
    /// there, or not), which a key computed before the base exists cannot know: the key then
    /// covers both places, so a change may rebuild although the base hides it (a file a later
    /// match overwrites). BuildKit keys every match's content in this case too.
    pub placed_by_base: bool,
}

impl EntryFacts {
    /// Feeds every fact into `h`, each length-prefixed (no text formatting: this runs once per
    /// copied entry on every build).
    fn hash_into(&self, h: &mut blake3::Hasher) {
        let kind = match self.kind {
            EntryKind::File => b'f',
            EntryKind::Dir => b'd',
            EntryKind::Symlink => b'l',
            EntryKind::Other => b'o',
        };
        h.update(&[kind]);
        h.update(&self.mode.to_le_bytes());
        match self.owner {
            Some((u, g)) => {
                h.update(&[1]);
                h.update(&u.to_le_bytes());
                h.update(&g.to_le_bytes());
            }
            None => {
                h.update(&[0]);
            }
        }
        if let Some(c) = &self.content {
            h.update(&[1]);
            h.update(c);
        } else {
            h.update(&[0]);
        }
        let link = self.link_target.as_deref().unwrap_or("");
        h.update(&(link.len() as u64).to_le_bytes());
        h.update(link.as_bytes());
    }

    /// A short text of the facts, for "what changed" explanations.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            EntryKind::File => "file",
            EntryKind::Dir => "dir",
            EntryKind::Symlink => "symlink",
            EntryKind::Other => "other",
        };
        if self.archive {
            let content = self
                .content
                .map(|c| hex::encode(&c[..8]))
                .unwrap_or_default();
            return format!("archive content={content}");
        }
        let mut s = format!("{kind} mode={:o}", self.mode);
        if let Some((u, g)) = self.owner {
            s.push_str(&format!(" owner={u}:{g}"));
        }
        if let Some(c) = &self.content {
            s.push_str(" content=");
            s.push_str(&hex::encode(&c[..8]));
        }
        if let Some(t) = &self.link_target {
            s.push_str(" link=");
            s.push_str(t);
        }
        if self.placed_by_base {
            s.push_str(" (placed by the base)");
        }
        s
    }
}

/// What one action's plan writes: each destination path (absolute, without the leading `/`)
/// with the digest of what lands there, in write order; the directory the action makes for
/// its destination, if any; and the facts of each written entry with its source path.
pub struct PlanWrites<'p> {
    pub written: Vec<(String, [u8; 32])>,
    /// For each written path, the hardlink group it belongs to when the copy links it to
    /// another path it writes (match index, device, inode).
    pub links: Vec<Option<(usize, u64, u64)>>,
    pub made: Option<String>,
    /// Each written entry by its source, with its digest and facts.
    pub entries: Vec<(EntrySource<'p>, [u8; 32], EntryFacts)>,
}

/// The inode a written path shares with others of the same copy: (action, match, device, inode).
type LinkGroup = (usize, usize, u64, u64);

/// Where a written entry comes from: the path as the source named it (a followed link by its
/// name, not its target) and below it, and its real path in the source tree. Kept as borrowed
/// parts: a copy of 20,000 files builds no name it does not print.
#[derive(Debug, Clone, Copy)]
pub struct EntrySource<'p> {
    pub logical: &'p str,
    pub out: &'p str,
    pub rel: &'p str,
}

impl EntrySource<'_> {
    /// The path as named: `logical`, and `out` below it.
    pub fn name(&self) -> String {
        if self.out.is_empty() {
            self.logical.to_string()
        } else {
            format!("{}/{}", self.logical.trim_end_matches('/'), self.out)
        }
    }
}

/// What the COPY/ADD actions of one step write, combined in order: the last write of a path
/// wins, as on disk, so overlapping sources (`COPY * . /d/`) are keyed by what remains.
#[derive(Debug, Default)]
pub struct WriteSet {
    /// Path → digest of what lands there, and its hardlink group (see [`WriteSet::digest`]).
    written: std::collections::BTreeMap<String, ([u8; 32], Option<LinkGroup>)>,
    /// Actions added so far: hardlink groups are told apart by action.
    actions: usize,
    made: std::collections::BTreeSet<String>,
    /// Archives extracted so far: each is keyed with its place in that order, since a later
    /// one overwrites what an earlier one wrote (two steps extracting the same archives in
    /// another order write different trees).
    archives: usize,
}

impl WriteSet {
    /// Adds the writes of the step's next action. A file or link written where an earlier
    /// action wrote a directory replaces it with all it held, as the copy does on disk.
    pub fn add(&mut self, w: PlanWrites<'_>) {
        self.actions += 1;
        let writes = w.written.into_iter().zip(w.links).zip(&w.entries);
        for (((path, digest), link), (_, _, facts)) in writes {
            if facts.kind != EntryKind::Dir {
                let below = format!("{path}/");
                let gone: Vec<String> = self
                    .written
                    .range(below.clone()..)
                    .take_while(|(k, _)| k.starts_with(&below))
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in gone {
                    self.written.remove(&k);
                }
            }
            let path = match path.split_once("\0archive ") {
                Some((dest, content)) => {
                    self.archives += 1;
                    format!("{dest}\0archive #{} {content}", self.archives)
                }
                None => path,
            };
            let link = link.map(|(m, dev, ino)| (self.actions, m, dev, ino));
            self.written.insert(path, (digest, link));
        }
        self.made.extend(w.made);
    }

    /// The digest of everything written and made.
    pub fn digest(&self) -> [u8; 32] {
        let mut total = blake3::Hasher::new();
        let mut field = |b: &[u8]| {
            total.update(&(b.len() as u64).to_le_bytes());
            total.update(b);
        };
        for m in &self.made {
            field(b"made");
            field(m.as_bytes());
        }
        // Paths still linked to another one that remains, each keyed by the first path of its
        // group: a partner a later write replaced links nothing any more, as on disk.
        let mut groups: HashMap<LinkGroup, Vec<&str>> = HashMap::new();
        for (path, (_, link)) in &self.written {
            if let Some(g) = link {
                groups.entry(*g).or_default().push(path);
            }
        }
        for (path, (d, link)) in &self.written {
            field(path.as_bytes());
            field(d);
            let linked = link.and_then(|g| groups.get(&g)).filter(|m| m.len() > 1);
            if let Some(members) = linked {
                field(b"link");
                field(members[0].as_bytes());
            }
        }
        *total.finalize().as_bytes()
    }
}

impl CopyPlan<'_> {
    /// The regular files the plan reads, each once, in path order (as the stat cache wants).
    pub fn files(&self) -> Vec<&ContextEntry> {
        let mut files: Vec<&ContextEntry> = self
            .matches
            .iter()
            .flat_map(|m| m.entries.iter())
            .map(|e| e.entry.as_ref())
            .filter(|e| e.kind == EntryKind::File)
            .collect();
        files.sort_unstable_by(|a, b| a.rel.cmp(&b.rel));
        files.dedup_by(|a, b| a.rel == b.rel);
        files
    }

    /// Where each planned entry lands, relative to the destination (`None`: it writes nothing,
    /// as the top of a copied directory, which the copy makes like the directories on its way
    /// or keeps as it was). A file copied to a destination that is not known to be a directory lands on
    /// the destination itself (`""`), or below it under its name when the base has a directory
    /// there: its name is then part of what it writes, so it is kept as `"\0name"`.
    fn outputs(
        &self,
        a: &CopyAction,
        content: &HashMap<&str, [u8; 32]>,
        base_empty: bool,
    ) -> Vec<Vec<Option<String>>> {
        let into_dir = into_dir(a);
        let dest = super::copy::dest_path(&a.workdir, &a.dest)
            .to_string_lossy()
            .into_owned();
        // Matches are copied in turn: once one has made the destination a directory (a copied
        // directory's contents, an extracted archive), later files land under their names.
        let mut dest_made_dir = false;
        self.matches
            .iter()
            .map(|m| {
                let dir_before = dest_made_dir;
                dest_made_dir |= m.archive || m.top().kind == EntryKind::Dir;
                if m.archive {
                    // Extracted: what it writes is known from its content only.
                    let c = content
                        .get(m.top().rel.as_str())
                        .copied()
                        .unwrap_or_default();
                    return vec![Some(format!("{dest}\0archive {}", hex::encode(c)))];
                }
                let top_dir = m.top().kind == EntryKind::Dir;
                m.entries
                    .iter()
                    .map(|pe| {
                        if a.parents {
                            Some(join(&dest, &join(&m.kept, &pe.out)))
                        } else if top_dir {
                            // The top is made, or kept, as the copy's own destination
                            // (`made`); the source directory's metadata never reaches it.
                            (!pe.out.is_empty()).then(|| join(&dest, &pe.out))
                        } else if into_dir || dir_before {
                            Some(join(&dest, m.name()))
                        } else if base_empty {
                            // Nothing is there to make the destination a directory.
                            Some(dest.clone())
                        } else {
                            Some(format!("{dest}\0{}", m.name()))
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// What the copy writes: for each destination path, the entry's type, mode as written, owner when kept, link target,
    /// content and hardlink grouping. Two plans that write the same files give the same digest
    /// however they got there (another wildcard match, a symlink followed by another path, an
    /// empty directory matched into an existing destination). `content` gives the digest of a
    /// file by its source path.
    ///
    /// Compared with BuildKit's `contenthash`, which hashes each selected source path with its
    /// header (mode, uid/gid, size, link name) and content: ours hashes the destination side,
    /// leaves the owner out when `--chown` (or the build context's root-owned rule) replaces it
    /// and applies `--chmod` first, so a change the layer cannot show misses nothing; and it is
    /// stricter in covering hardlink grouping, which the copy preserves, so relinking two files
    /// changes the key.
    pub fn writes<'p>(
        &'p self,
        a: &CopyAction,
        chmod: Option<&Chmod>,
        keep_owner: bool,
        content: &HashMap<&str, [u8; 32]>,
        base_empty: bool,
    ) -> PlanWrites<'p> {
        let outputs = self.outputs(a, content, base_empty);
        let mut written: Vec<(String, [u8; 32])> = Vec::new();
        let mut links = Vec::new();
        let mut out = Vec::new();
        for (index, (m, outs)) in self.matches.iter().zip(outputs).enumerate() {
            // Only inodes met more than once here make links in the layer (a file whose other
            // names are not copied is a plain file).
            let mut seen: HashMap<(u64, u64), usize> = HashMap::new();
            for pe in &m.entries {
                if pe.entry.kind != EntryKind::Dir && pe.entry.nlink > 1 {
                    *seen.entry((pe.entry.dev, pe.entry.ino)).or_default() += 1;
                }
            }
            for (pe, dest) in m.entries.iter().zip(outs) {
                let e = pe.entry.as_ref();
                let mode = match chmod {
                    Some(c) if e.kind != EntryKind::Symlink => {
                        c.apply(e.mode, e.kind == EntryKind::Dir) & 0o7777
                    }
                    _ => e.mode & 0o7777,
                };
                // An extracted archive writes what its bytes say, whatever its own metadata.
                let facts = EntryFacts {
                    kind: e.kind,
                    mode: if m.archive { 0 } else { mode },
                    owner: keep_owner.then_some((e.uid, e.gid)).filter(|_| !m.archive),
                    link_target: e.link_target.clone(),
                    content: (e.kind == EntryKind::File)
                        .then(|| content.get(e.rel.as_str()).copied().unwrap_or_default()),
                    archive: m.archive,
                    placed_by_base: !m.archive && dest.as_deref().is_some_and(|d| d.contains('\0')),
                };
                let mut h = blake3::Hasher::new();
                facts.hash_into(&mut h);
                let d = *h.finalize().as_bytes();
                if let Some(dest) = dest {
                    // The copy links the names of one inode within a match (one copied path).
                    let linked = seen.get(&(e.dev, e.ino)).is_some_and(|n| *n > 1);
                    links.push(linked.then_some((index, e.dev, e.ino)));
                    written.push((dest, d));
                    let source = EntrySource {
                        logical: &m.logical,
                        out: &pe.out,
                        rel: &e.rel,
                    };
                    out.push((source, d, facts));
                }
            }
        }
        // The directory the copy makes for its destination: none when nothing matched (as
        // BuildKit), the destination itself when copying into it or copying a directory's
        // contents to it, else its parent.
        let dest = super::copy::dest_path(&a.workdir, &a.dest);
        let owner = a.chown.as_deref().unwrap_or("");
        let dir_contents = !a.parents
            && self
                .matches
                .iter()
                .any(|m| !m.archive && m.top().kind == EntryKind::Dir);
        let made = match self.matches.len() {
            0 => None,
            _ if into_dir(a) || dir_contents => Some(format!("{} {owner}", dest.display())),
            _ => Some(format!(
                "{} {owner}",
                dest.parent().unwrap_or(Path::new("")).display()
            )),
        };
        PlanWrites {
            written,
            links,
            made,
            entries: out,
        }
    }

    /// The digest of what this plan alone writes ([`CopyPlan::writes`] into a [`WriteSet`]).
    pub fn digest(
        &self,
        a: &CopyAction,
        chmod: Option<&Chmod>,
        keep_owner: bool,
        content: &HashMap<&str, [u8; 32]>,
        base_empty: bool,
    ) -> [u8; 32] {
        let mut set = WriteSet::default();
        set.add(self.writes(a, chmod, keep_owner, content, base_empty));
        set.digest()
    }
}

/// Whether a copy writes into its destination as a directory whatever is there (a trailing `/`,
/// `.`, or `--parents`); otherwise each match decides by what it finds (see [`super::copy`]).
pub(super) fn into_dir(a: &CopyAction) -> bool {
    a.dest.is_empty()
        || a.dest == "."
        || a.dest.ends_with('/')
        || a.dest.ends_with("/.")
        || a.parents
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::context::PathFilter;
    use std::os::unix::fs::symlink;

    /// `.dockerignore`-like: `c` excluded, `c/*d` re-included, `secret` excluded.
    struct Ignore;
    impl PathFilter for Ignore {
        fn is_excluded(&self, rel: &str) -> bool {
            let reincluded = rel
                .strip_prefix("c/")
                .is_some_and(|r| !r.contains('/') && r.ends_with('d'));
            (rel == "c" || rel.starts_with("c/") || rel == "secret") && !reincluded
        }
        fn must_descend(&self, rel_dir: &str) -> bool {
            rel_dir == "c"
        }
    }

    fn context() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        for d in ["real/sub", "c/e", "[x]", "loops"] {
            std::fs::create_dir_all(p.join(d)).unwrap();
        }
        for f in [
            "real/f",
            "real/sub/g",
            "c/xd",
            "c/y",
            "c/e/z",
            "secret",
            "a",
            "b",
            "[x]/in",
        ] {
            std::fs::write(p.join(f), f).unwrap();
        }
        std::fs::hard_link(p.join("a"), p.join("real/a-link")).unwrap();
        symlink("real", p.join("dirlink")).unwrap();
        symlink("/real/f", p.join("abs")).unwrap();
        symlink("../secret", p.join("loops/to-secret")).unwrap();
        symlink("loop2", p.join("loops/loop1")).unwrap();
        symlink("loop1", p.join("loops/loop2")).unwrap();
        dir
    }

    fn action(sources: &[&str]) -> CopyAction {
        CopyAction {
            source_root: super::super::CONTEXT.into(),
            sources: sources.iter().map(|s| s.to_string()).collect(),
            dest: "/d/".into(),
            workdir: "/".into(),
            chown: None,
            source_owner: None,
            chmod: None,
            exclude: vec!["**/g".into(), "!sub/g".into()],
            parents: false,
            checksum: None,
            hidden: vec![],
            follow_symlinks: true,
            drop_xattrs: true,
        }
    }

    fn shape(plan: &CopyPlan<'_>) -> Vec<(String, String, String)> {
        plan.matches
            .iter()
            .flat_map(|m| {
                m.entries
                    .iter()
                    .map(|e| (m.logical.clone(), e.entry.rel.clone(), e.out.clone()))
            })
            .collect()
    }

    #[test]
    fn the_snapshot_and_the_filesystem_resolve_alike() {
        let dir = context();
        let snap = ContextSnapshot::walk(dir.path(), &Ignore).unwrap();
        let fs = FsTree::new(Root::new(dir.path()).unwrap(), &snap.hidden(), "COPY");
        for sources in [
            &["."][..],
            &["*"],
            &["[^a]*"],
            &["dirlink/f"],
            &["dirlink/*"],
            &["abs"],
            &["c"],
            &["[[]x]"],
            &["*\\[x]"],
            &["nomatch*", "b"],
            &["real/./sub"],
        ] {
            let a = action(sources);
            let from_snap = resolve(&snap, &a, "COPY").unwrap();
            let from_fs = resolve(&fs, &a, "COPY").unwrap();
            assert_eq!(shape(&from_snap), shape(&from_fs), "{sources:?}");
            let files =
                |p: &CopyPlan<'_>| p.files().iter().map(|e| e.rel.clone()).collect::<Vec<_>>();
            assert_eq!(files(&from_snap), files(&from_fs));
        }
    }

    #[test]
    fn resolution_rules() {
        let dir = context();
        let snap = ContextSnapshot::walk(dir.path(), &Ignore).unwrap();
        let plan = |s: &[&str]| resolve(&snap, &action(s), "COPY");
        // A symlinked parent is followed; the file keeps the name it was asked by.
        let p = plan(&["dirlink/f"]).unwrap();
        assert_eq!(p.matches[0].top().rel, "real/f");
        assert_eq!(p.matches[0].name(), "f");
        // Excluded directories hold only what an exception re-includes.
        let outs: Vec<String> = plan(&["c"]).unwrap().matches[0]
            .entries
            .iter()
            .map(|e| e.out.clone())
            .collect();
        assert_eq!(outs, ["", "xd"]);
        // --exclude inside a copied directory, with an exception.
        let outs: Vec<String> = plan(&["real"]).unwrap().matches[0]
            .entries
            .iter()
            .map(|e| e.out.clone())
            .collect();
        assert_eq!(outs, ["", "a-link", "f", "sub", "sub/g"]);
        // A literal source must exist; a wildcard may match nothing.
        assert!(matches!(
            plan(&["missing"]),
            Err(FileOpError::NotFound { .. })
        ));
        assert!(plan(&["zz*"]).unwrap().matches.is_empty());
        // A followed symlink to an ignored file names both.
        assert!(matches!(
            plan(&["loops/to-secret"]),
            Err(FileOpError::DanglingSource { ref target, .. }) if target == "../secret"
        ));
        assert!(matches!(
            plan(&["loops/loop1"]),
            Err(FileOpError::SymlinkLoop { .. })
        ));
        // Escapes: `\[x]` is literal text (no unescaped wildcard), `*\[x]` a pattern.
        assert!(!is_pattern("\\[x]"));
        assert!(is_pattern("*\\[x]"));
        assert_eq!(plan(&["*\\[x]"]).unwrap().matches[0].logical, "[x]");
    }

    #[test]
    fn the_digest_covers_what_is_written_only() {
        let dir = context();
        let digest = |a: &CopyAction| {
            let snap = ContextSnapshot::walk(dir.path(), &Ignore).unwrap();
            let p = resolve(&snap, a, "COPY").unwrap();
            let content: HashMap<&str, [u8; 32]> = p
                .files()
                .iter()
                .map(|e| (e.rel.as_str(), [0; 32]))
                .collect();
            p.digest(a, None, a.keeps_source_owner(), &content, false)
        };
        let mut a = action(&["real"]);
        a.chown = Some("0:0".into());
        let first = digest(&a);
        // The top of a directory copied into a directory is not written: its mode is no input.
        std::fs::set_permissions(
            dir.path().join("real"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        assert_eq!(digest(&a), first);
        // Owners are replaced by --chown.
        std::os::unix::fs::lchown(dir.path().join("real/f"), Some(7), Some(7)).unwrap();
        assert_eq!(digest(&a), first);
        // Mode bits of a written file are an input.
        std::fs::set_permissions(
            dir.path().join("real/f"),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        assert_ne!(digest(&a), first);
    }
}
