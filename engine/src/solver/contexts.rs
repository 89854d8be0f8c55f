//! The build contexts a solve reads: each walked and its stat cache loaded once per build, what
//! reading them cost (shown as `[internal] load build context` steps), and how a step record
//! summarises the files it read.

use super::{ContextInput, SolveError};
use crate::source::context::{ContextSnapshot, StatCache};
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

/// Context snapshots and stat caches, opened once per build per context name.
pub(super) struct ContextCache {
    pub(super) cache_root: PathBuf,
    pub(super) inputs: HashMap<String, ContextInput>,
    pub(super) opened: HashMap<String, (ContextSnapshot, StatCache)>,
    /// Time spent on each context, for the metadata's timings and for progress.
    pub(super) times: HashMap<String, ContextTimes>,
}

/// Time spent reading one build context.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct ContextTimes {
    /// Walking it and loading its stat cache.
    pub(super) walk: std::time::Duration,
    /// Selecting and checksumming what steps read from it.
    pub(super) hash: std::time::Duration,
}

impl ContextCache {
    pub(super) fn get(&mut self, name: &str) -> Result<&(ContextSnapshot, StatCache), SolveError> {
        if !self.opened.contains_key(name) {
            let input = self
                .inputs
                .get(name)
                .ok_or_else(|| SolveError::MissingContext(name.to_string()))?;
            let started = Instant::now();
            // The stat cache loads (deserialises) while the walk waits on the kernel.
            let (snapshot, stat) = std::thread::scope(|scope| {
                let stat = scope.spawn(|| StatCache::load(&self.cache_root, &input.dir));
                let snapshot = ContextSnapshot::walk(&input.dir, input.filter.as_ref());
                let stat = stat.join().unwrap_or_else(|_| StatCache::in_memory());
                (snapshot, stat)
            });
            let snapshot = snapshot?;
            self.times.entry(name.to_string()).or_default().walk += started.elapsed();
            self.opened.insert(name.to_string(), (snapshot, stat));
        }
        Ok(&self.opened[name])
    }

    pub(super) fn save(&self) {
        for (snapshot, stat) in self.opened.values() {
            // A stat cache that cannot be saved only costs rehashing next time.
            let _ = stat.save(Some(snapshot));
        }
    }

    /// What each context this build read cost, by context name.
    pub(super) fn loads(&self) -> Vec<ContextLoad> {
        let mut loads: Vec<ContextLoad> = self
            .opened
            .iter()
            .map(|(name, (snapshot, stat))| {
                let (files, bytes) = snapshot
                    .entries()
                    .iter()
                    .filter(|e| e.kind == crate::source::context::EntryKind::File)
                    .fold((0, 0), |(n, b), e| (n + 1, b + e.size));
                let times = self.times.get(name).copied().unwrap_or_default();
                ContextLoad {
                    name: name.clone(),
                    files,
                    bytes,
                    hashed: stat.hashed(),
                    duration: times.walk + times.hash,
                }
            })
            .collect();
        loads.sort_by(|a, b| a.name.cmp(&b.name));
        loads
    }
}

/// What loading one build context cost: shown as an `[internal] load build context` step.
#[derive(Debug, Clone)]
pub(super) struct ContextLoad {
    pub(super) name: String,
    /// Regular files visible to the build.
    pub(super) files: usize,
    /// Their total size.
    pub(super) bytes: u64,
    /// Files whose content was read because the stat cache could not vouch for them.
    pub(super) hashed: usize,
    /// Walk and checksum time.
    pub(super) duration: std::time::Duration,
}

/// Most per-file digests a step record keeps; bigger selections are summarised per directory.
pub(super) const MAX_RECORDED_FILES: usize = 4000;

/// The first `depth` parent directories of a slash-separated path (all of them when it has
/// fewer), as a prefix of it: `parent_prefix("a/b/c/d", 2) == "a/b"`.
pub(super) fn parent_prefix(path: &str, depth: usize) -> &str {
    if depth == 0 {
        return "";
    }
    let parents_end = path.rfind('/').unwrap_or(0);
    path.match_indices('/')
        .nth(depth - 1)
        .map_or(&path[..parents_end], |(i, _)| &path[..i])
}

pub(super) fn summarise_files(entries: &[(&str, [u8; 32])]) -> BTreeMap<String, String> {
    if entries.len() <= MAX_RECORDED_FILES {
        return entries
            .iter()
            .map(|(p, d)| (p.to_string(), hex::encode(&d[..16])))
            .collect();
    }
    // Too many files to keep one by one: one digest per directory prefix, shallower until few
    // enough (a change is then reported as `dir/**` changed). No allocation per file: a group
    // is a prefix of the path, and a depth gives up as soon as it has too many groups.
    let limit = MAX_RECORDED_FILES / 10;
    for depth in [2usize, 1, 0] {
        // (depth 0: everything in one group)
        let mut groups: HashMap<&str, blake3::Hasher> = HashMap::new();
        // Sorted paths keep a group's entries together, so the group being filled is kept
        // aside and goes into the map only when the next entry belongs elsewhere.
        let mut current: Option<(&str, blake3::Hasher)> = None;
        let mut too_many = false;
        for (p, d) in entries {
            let group = parent_prefix(p, depth);
            if current.as_ref().is_none_or(|(g, _)| *g != group) {
                if let Some((g, h)) = current.take() {
                    groups.insert(g, h);
                }
                let h = match groups.remove(group) {
                    Some(h) => h,
                    None if groups.len() + 1 > limit && depth > 0 => {
                        too_many = true;
                        break;
                    }
                    None => blake3::Hasher::new(),
                };
                current = Some((group, h));
            }
            if let Some((_, h)) = current.as_mut() {
                h.update(p.as_bytes());
                h.update(d);
            }
        }
        if let Some((g, h)) = current {
            groups.insert(g, h);
        }
        if !too_many {
            return groups
                .into_iter()
                .map(|(g, h)| {
                    let key = if g.is_empty() {
                        "**".to_string()
                    } else {
                        format!("{g}/**")
                    };
                    (key, h.finalize().to_hex()[..32].to_string())
                })
                .collect();
        }
    }
    BTreeMap::new()
}
