//! Garbage collection: removes cache records least recently used first, then every blob and
//! snapshot nothing needs any more, leftovers of killed processes and stale lock files.
//!
//! Invariants:
//! - Runs only under the exclusive root lock ([`RootDir::lock_exclusive`]), so no build is using a
//!   snapshot, writing a temp file or about to read a record it just looked up.
//! - Never removes a blob an image in the store needs (its manifest or index, config, layers).
//! - Records go before blobs: a crash midway leaves unreferenced blobs (removed next time), never
//!   a record pointing at a missing blob.
//! - Snapshots are derivable from blobs (unpacked again on demand), so they go when no remaining
//!   record names their diffID. Only a plain collection (no `all`, no `keep_storage`) also keeps
//!   the snapshots of stored images; a size-driven one treats those as cache too.

use crate::layout::Bucket;
use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::keys::{now_secs, KeyStore};
use crate::lock::{RootDir, RootLock};
use crate::usage::{record_refs, Inventory, UsageError};

/// Errors of garbage collection; every I/O error names its path.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The caller holds the shared lock, not the exclusive one.
    #[error("garbage collection needs the exclusive root lock")]
    NotExclusive,
    /// A removal failed.
    #[error("remove {path}: {source}")]
    Io {
        /// What could not be removed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The inventory could not be taken.
    #[error(transparent)]
    Usage(#[from] UsageError),
}

/// What to collect. The default removes only garbage (unreferenced blobs and snapshots, broken
/// records, leftovers, stale locks) and keeps every usable cache record.
#[derive(Debug, Clone, Default)]
pub struct GcOptions {
    /// Remove every cache record, every snapshot and the cache mounts (images stay).
    pub all: bool,
    /// Remove records least recently used first until the root is at most this many bytes.
    pub keep_storage: Option<u64>,
    /// Remove only records unused for longer than this (with `keep_storage`: consider only
    /// these; alone: remove all of these).
    pub unused_for: Option<Duration>,
}

/// What a collection removed, and what it kept.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcReport {
    /// Cache keys (hex) whose records were removed.
    pub removed_records: Vec<String>,
    /// Records kept because a stored image holds the layer their step made.
    pub kept_for_images: usize,
    /// Records kept because they belong to the latest build of a Dockerfile target.
    pub kept_for_recent_builds: usize,
    /// Blobs removed.
    pub removed_blobs: usize,
    /// Snapshot directories removed.
    pub removed_snapshots: usize,
    /// Leftovers removed (temp files and directories, lock files, stray files).
    pub removed_leftovers: usize,
    /// Bytes of the root before.
    pub before: u64,
    /// Bytes of the root after.
    pub after: u64,
}

impl GcReport {
    /// Bytes freed.
    pub fn reclaimed(&self) -> u64 {
        self.before.saturating_sub(self.after)
    }
}

/// Parses a size the way Docker's `--keep-storage` does: a number with an optional unit
/// (`b`, `k`/`kb`, `m`/`mb`, `g`/`gb`, `t`/`tb`; binary multiples, case-insensitive; `KiB`
/// spellings too). Hand-written: the rule is this one line of Docker's and no crate spells it.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().to_ascii_lowercase();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num.parse().ok()?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return None,
    };
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    Some((value * mult as f64) as u64)
}

fn remove_path(path: &Path) -> Result<(), GcError> {
    let result = match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(GcError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Mount points at or below `dir` in this mount namespace (a leftover must never be removed
/// through a mount).
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(text) = fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    let mut out = String::new();
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v as char);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

/// Removes the entries of `dir` accepted by `pred`, skipping anything with a mount below it.
fn clear_dir(dir: &Path, pred: impl Fn(&str) -> bool) -> Result<usize, GcError> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(0);
    };
    let canonical = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = mounts_under(&canonical);
    let mut n = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !pred(&name) {
            continue;
        }
        let path = canonical.join(&name);
        if mounts.iter().any(|m| m.starts_with(&path)) {
            continue;
        }
        remove_path(&entry.path())?;
        n += 1;
    }
    Ok(n)
}

/// Runs a collection. `lock` must be the exclusive root lock.
pub fn collect(root: &RootDir, lock: &RootLock, opts: &GcOptions) -> Result<GcReport, GcError> {
    if !lock.is_exclusive() {
        return Err(GcError::NotExclusive);
    }
    let inv = Inventory::take(root)?;
    let mut report = GcReport {
        before: inv.total(),
        ..Default::default()
    };
    let keys = KeyStore::open(root.path()).map_err(UsageError::from)?;

    // 1. Which records go.
    let now = now_secs();
    let old_enough = |last_used: u64| match opts.unused_for {
        Some(d) => now.saturating_sub(last_used) > d.as_secs(),
        None => true,
    };
    let mut doomed: BTreeSet<usize> = BTreeSet::new();
    for (i, k) in inv.keys.iter().enumerate() {
        let broken = k
            .record
            .layers
            .iter()
            .any(|l| !inv.blobs.contains_key(&l.digest));
        let by_filter = opts.unused_for.is_some() && opts.keep_storage.is_none();
        // A plain prune (no --all, size or age) removes dangling cache, as `docker builder
        // prune` does: records no image and no target's latest build needs.
        let plain = !opts.all && opts.keep_storage.is_none() && opts.unused_for.is_none();
        let dangling = plain && inv.keeper(i).is_none();
        if broken || opts.all || dangling || (by_filter && old_enough(k.last_used)) {
            doomed.insert(i);
        }
    }
    if let (Some(limit), false) = (opts.keep_storage, opts.all) {
        plan_keep_storage(&inv, limit, &old_enough, &mut doomed);
    }

    for i in (0..inv.keys.len()).filter(|i| !doomed.contains(i)) {
        match inv.keeper(i) {
            Some(crate::usage::Keeper::Image) => report.kept_for_images += 1,
            Some(crate::usage::Keeper::RecentBuild) => report.kept_for_recent_builds += 1,
            None => {}
        }
    }

    // 2. Records first (so a crash never leaves a record without its blobs).
    for &i in &doomed {
        let k = &inv.keys[i];
        keys.remove(&k.key).map_err(UsageError::from)?;
        report.removed_records.push(k.key.to_hex());
    }
    for path in inv.bad_keys.iter().chain(&inv.temp_files) {
        remove_path(path)?;
        report.removed_leftovers += 1;
    }

    // 3. Blobs and snapshots nothing needs any more.
    let mut live_blobs = inv.images.blobs.clone();
    let mut live_snaps: BTreeSet<String> = if opts.all || opts.keep_storage.is_some() {
        BTreeSet::new()
    } else {
        inv.images.diff_ids.clone()
    };
    for (i, k) in inv.keys.iter().enumerate() {
        if doomed.contains(&i) {
            continue;
        }
        for (d, hex) in record_refs(k) {
            live_blobs.extend(d);
            if !opts.all {
                live_snaps.extend(hex);
            }
        }
    }
    for d in inv.blobs.keys() {
        if !live_blobs.contains(d) {
            remove_path(&crate::layout::blob_dir(root.path()).join(d.hex()))?;
            report.removed_blobs += 1;
        }
    }
    for path in &inv.stray_blob_files {
        remove_path(path)?;
        report.removed_leftovers += 1;
    }
    let snap_dir = root.snapshots_dir().join("sha256");
    report.removed_snapshots = clear_dir(&snap_dir, |name| {
        is_hex64(name) && !live_snaps.contains(name)
    })?;
    // Unpack leftovers (`.unpack-*`) and per-snapshot lock files.
    report.removed_leftovers += clear_dir(&snap_dir, |name| !is_hex64(name))?;

    // 4. Leftovers of killed processes and stale locks.
    report.removed_leftovers += clear_dir(&root.tmp_dir(), |_| true)?;
    report.removed_leftovers += clear_dir(&Bucket::Locks.path(root.path()), |_| true)?;
    if opts.all {
        clear_dir(&root.mounts_dir(), |_| true)?;
    } else {
        report.removed_leftovers += clear_dir(&root.mounts_dir(), |n| n.ends_with(".lock"))?;
    }
    // Empty fan-out directories of the key store.
    if let Ok(entries) = fs::read_dir(root.keys_dir()) {
        for e in entries.flatten() {
            let _ = fs::remove_dir(e.path());
        }
    }
    report.after = crate::usage::tree_size(root.path());
    Ok(report)
}

fn is_hex64(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Adds least recently used records to `doomed` until the predicted size is at most `limit`.
/// Garbage (unreferenced blobs and snapshots, tmp) is counted as freed up front.
fn plan_keep_storage(
    inv: &Inventory,
    limit: u64,
    eligible: &dyn Fn(u64) -> bool,
    doomed: &mut BTreeSet<usize>,
) {
    let mut release = crate::usage::Release::new(inv, false);
    // Already-doomed records and garbage.
    let mut size = inv.total().saturating_sub(release.garbage());
    for &i in doomed.iter() {
        size = size.saturating_sub(release.record(i));
    }
    let mut order: Vec<usize> = (0..inv.keys.len())
        .filter(|i| !doomed.contains(i) && eligible(inv.keys[*i].last_used))
        .collect();
    order.sort_by_key(|&i| (inv.keys[i].last_used, inv.keys[i].key));
    for i in order {
        if size <= limit {
            break;
        }
        size = size.saturating_sub(release.record(i));
        doomed.insert(i);
    }
}

/// Bytes the root takes now (one walk), for deciding whether an automatic collection is due.
pub fn root_size(root: &RootDir) -> u64 {
    crate::usage::tree_size(root.path())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{CacheKey, LayerRef, StepRecord};
    use crate::Digest;

    #[test]
    fn sizes_parse_like_docker() {
        assert_eq!(parse_size("1GB"), Some(1 << 30));
        assert_eq!(parse_size("512mb"), Some(512 << 20));
        assert_eq!(parse_size("10k"), Some(10 << 10));
        assert_eq!(parse_size("1234"), Some(1234));
        assert_eq!(parse_size("1.5g"), Some(3 << 29));
        assert_eq!(parse_size("ten"), None);
        assert_eq!(parse_size("5XB"), None);
    }

    fn put_record(root: &RootDir, name: &str, blobs: &[&[u8]]) -> (CacheKey, Vec<Digest>) {
        let cas = root.content_store().unwrap();
        let keys = KeyStore::open(root.path()).unwrap();
        let mut digests = Vec::new();
        let layers = blobs
            .iter()
            .map(|b| {
                let d = cas.put_bytes(b).unwrap();
                digests.push(d.clone());
                LayerRef {
                    digest: d.clone(),
                    diff_id: d.clone(),
                    size: b.len() as u64,
                    media_type: "application/vnd.oci.image.layer.v1.tar".into(),
                }
            })
            .collect();
        let key = CacheKey(*blake3::hash(name.as_bytes()).as_bytes());
        keys.put(
            &key,
            &StepRecord {
                layers,
                duration_ms: 1,
                created: 1,
            },
        )
        .unwrap();
        (key, digests)
    }

    #[test]
    fn shared_lock_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        let shared = root.lock_shared().unwrap();
        assert!(matches!(
            collect(&root, &shared, &GcOptions::default()),
            Err(GcError::NotExclusive)
        ));
    }

    #[test]
    fn default_keeps_what_the_latest_build_used_and_removes_dangling_records_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        let cas = root.content_store().unwrap();
        let (key, used) = put_record(&root, "a", &[b"layer-a"]);
        let (dangling_key, dangling) = put_record(&root, "old", &[b"layer-old"]);
        let step = crate::records::StepReport {
            name: "RUN a".into(),
            stage: String::new(),
            line: 2,
            end_line: 2,
            cached: false,
            reason: serde_json::Value::Null,
            duration_ms: 1,
            key: key.to_hex(),
            inputs: Default::default(),
            history: None,
        };
        crate::records::RecordStore::open(root.path())
            .unwrap()
            .write(&crate::records::BuildRecord {
                target_id: "t".into(),
                dockerfile: "Dockerfile".into(),
                target: String::new(),
                started_ms: 1,
                duration_ms: 1,
                success: true,
                steps: vec![step],
                image: None,
            })
            .unwrap();
        let garbage = cas.put_bytes(b"nobody needs me").unwrap();
        fs::create_dir_all(root.tmp_dir().join("step-x/upper")).unwrap();
        fs::write(root.tmp_dir().join("blob-123"), b"half").unwrap();
        fs::create_dir_all(root.snapshots_dir().join("sha256/.unpack-1")).unwrap();
        fs::create_dir_all(root.keys_dir().join("ab")).unwrap();
        fs::write(root.keys_dir().join("ab/.tmpXYZ"), b"{half").unwrap();
        let lock = root.lock_exclusive().unwrap();
        let report = collect(&root, &lock, &GcOptions::default()).unwrap();
        assert_eq!(report.removed_records, vec![dangling_key.to_hex()]);
        assert_eq!(report.kept_for_recent_builds, 1);
        assert_eq!(report.removed_blobs, 2);
        assert!(cas.has(&used[0]));
        assert!(!cas.has(&dangling[0]));
        assert!(!cas.has(&garbage));
        assert_eq!(fs::read_dir(root.tmp_dir()).unwrap().count(), 0);
        assert!(!root.keys_dir().join("ab/.tmpXYZ").exists());
        assert!(report.reclaimed() > 0);
        assert_eq!(report.after, crate::usage::tree_size(root.path()));
    }

    #[test]
    fn all_removes_records_but_keeps_image_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        let cas = root.content_store().unwrap();
        let (_, only_cache) = put_record(&root, "a", &[b"cache-only"]);
        let layer = cas.put_bytes(b"image layer").unwrap();
        let config = cas
            .put_bytes(br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#)
            .unwrap();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config.to_string(), "size": 1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer.to_string(), "size": 11}]
        });
        let m = cas.put_bytes(manifest.to_string().as_bytes()).unwrap();
        let images = crate::ImageStore::open(root.images_dir()).unwrap();
        images
            .put(crate::ImageRecord::new(
                crate::Descriptor::new("application/vnd.oci.image.manifest.v1+json", m.clone(), 1),
                config.clone(),
            ))
            .unwrap();
        // A record sharing the image's layer keeps nothing extra alive once gone.
        put_record(&root, "b", &[b"image layer"]);
        let lock = root.lock_exclusive().unwrap();
        let opts = GcOptions {
            all: true,
            ..Default::default()
        };
        let report = collect(&root, &lock, &opts).unwrap();
        assert_eq!(report.removed_records.len(), 2);
        assert!(!cas.has(&only_cache[0]));
        for d in [&layer, &config, &m] {
            assert!(cas.has(d), "image blob {d} must stay");
        }
        assert!(KeyStore::open(root.path()).unwrap().entries().is_empty());
    }

    #[test]
    fn keep_storage_removes_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        let big = vec![7u8; 200_000];
        let mut big2 = big.clone();
        big2[0] = 8;
        let (old, old_blobs) = put_record(&root, "old", &[&big]);
        let (new, new_blobs) = put_record(&root, "new", &[&big2]);
        let keys = KeyStore::open(root.path()).unwrap();
        // Make "old" least recently used.
        let path = keys
            .entries()
            .into_iter()
            .find(|e| e.key == old)
            .unwrap()
            .path;
        fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1000))
            .unwrap();
        let total = crate::usage::tree_size(root.path());
        let lock = root.lock_exclusive().unwrap();
        let opts = GcOptions {
            keep_storage: Some(total - 100_000),
            ..Default::default()
        };
        let report = collect(&root, &lock, &opts).unwrap();
        assert_eq!(report.removed_records, vec![old.to_hex()]);
        let cas = root.content_store().unwrap();
        assert!(!cas.has(&old_blobs[0]));
        assert!(cas.has(&new_blobs[0]));
        assert!(report.after <= total - 100_000);
        assert!(keys.entries().iter().any(|e| e.key == new));
    }
}
