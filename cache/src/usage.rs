//! What a root holds and who holds on to it: the inventory garbage collection, `du` and `check`
//! share.
//!
//! Sizes are apparent sizes (`st_size`) of every file, directory and link in the root, each inode
//! counted once, exactly as `du -sb` counts them, so the total of [`Inventory::total`] matches
//! `du -sb <root>`. Ownership: a key record owns the blobs and snapshots of its layers; an image
//! owns its manifest (or index), config and layer blobs and the snapshots of its diffIDs. A blob
//! or snapshot with more than one owner is shared; with none it is garbage.

use crate::layout::Bucket;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::descriptor::referenced_descriptors;
use crate::digest::Digest;
use crate::images::{ImageStore, ImageStoreError};
use crate::keys::{KeyEntry, KeyStore, KeyStoreError};
use crate::lock::RootDir;

/// Errors while taking the inventory.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// The image store could not be read.
    #[error(transparent)]
    Images(#[from] ImageStoreError),
    /// The key store could not be opened.
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
}

/// Bytes under each top-level entry of the root (plus the root directory itself under `""`).
#[derive(Debug, Clone, Default)]
pub struct TreeSizes {
    /// Top-level name (`blobs`, `keys-v1`, ...) → bytes.
    pub by_top: BTreeMap<String, u64>,
    /// Snapshot directory name (diffID hex, or a leftover's name) → bytes.
    pub snapshots: BTreeMap<String, u64>,
    /// Every byte, as `du -sb` counts it.
    pub total: u64,
}

/// Walks `root` once, as `du -sb` does: apparent sizes, hard links once, symlinks not followed.
pub fn tree_sizes(root: &Path) -> TreeSizes {
    let mut out = TreeSizes::default();
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    for entry in walkdir::WalkDir::new(root).follow_links(false).into_iter() {
        // Entries vanishing under the walk (a concurrent build's temp files) are skipped.
        let Ok(entry) = entry else { continue };
        let Ok(meta) = entry.metadata() else { continue };
        if meta.nlink() > 1 && !meta.is_dir() && !seen.insert((meta.dev(), meta.ino())) {
            continue;
        }
        let size = meta.len();
        out.total += size;
        let rel = entry.path().strip_prefix(root).unwrap_or(entry.path());
        let mut comps = rel.iter().map(|c| c.to_string_lossy().into_owned());
        let top = comps.next().unwrap_or_default();
        if top == Bucket::Snapshots.dir_name() {
            if let (Some(sha), Some(name)) = (comps.next(), comps.next()) {
                if sha == "sha256" {
                    *out.snapshots.entry(name).or_default() += size;
                }
            }
        }
        *out.by_top.entry(top).or_default() += size;
    }
    out
}

/// Apparent size of one tree (hard links inside it once).
pub fn tree_size(path: &Path) -> u64 {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    walkdir::WalkDir::new(path)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.nlink() <= 1 || m.is_dir() || seen.insert((m.dev(), m.ino())))
        .map(|m| m.len())
        .sum()
}

/// What the images in the store keep alive.
#[derive(Debug, Clone, Default)]
pub struct ImageRefs {
    /// Every blob some image needs (manifests, indexes, configs, layers).
    pub blobs: BTreeSet<Digest>,
    /// diffID hex of every layer of every image (their snapshots).
    pub diff_ids: BTreeSet<String>,
    /// Per image (manifest digest): the blobs it needs that are missing.
    pub missing: Vec<(Digest, Digest)>,
    /// Manifest digest → blobs it needs (for per-image sizes).
    pub per_image: BTreeMap<Digest, BTreeSet<Digest>>,
}

/// Walks every stored image from its manifest (or index) to everything it references.
pub fn image_refs(root: &RootDir) -> Result<ImageRefs, UsageError> {
    let images = ImageStore::open(root.images_dir())?;
    let state = images.state()?;
    let blob_path = |d: &Digest| crate::layout::blob_dir(root.path()).join(d.hex());
    let mut out = ImageRefs::default();
    for (manifest, record) in &state.images {
        let mut mine = BTreeSet::new();
        // (descriptor, optional): the manifests an index lists are optional, since a pull
        // stores only the platforms it needs; everything a manifest names is required.
        let mut queue = vec![(record.target.clone(), false)];
        queue.push((
            crate::Descriptor::new(
                "application/vnd.oci.image.config.v1+json",
                record.config.clone(),
                0,
            ),
            false,
        ));
        while let Some((desc, optional)) = queue.pop() {
            if mine.contains(&desc.digest) {
                continue;
            }
            let path = blob_path(&desc.digest);
            if !path.is_file() {
                if !optional {
                    out.missing.push((manifest.clone(), desc.digest.clone()));
                }
                continue;
            }
            mine.insert(desc.digest.clone());
            // Only JSON documents reference anything; layers are never read.
            let is_json = desc.media_type.ends_with("json") || desc.media_type.is_empty();
            if !is_json || fs::metadata(&path).map(|m| m.len()).unwrap_or(0) > 16 << 20 {
                continue;
            }
            let Ok(bytes) = fs::read(&path) else { continue };
            let doc = serde_json::from_slice::<serde_json::Value>(&bytes).ok();
            let is_index = doc.as_ref().is_some_and(|d| d["manifests"].is_array());
            if let Ok(children) = referenced_descriptors(&bytes) {
                queue.extend(children.into_iter().map(|c| (c, is_index)));
            }
            if let Some(doc) = doc {
                if let Some(ids) = doc["rootfs"]["diff_ids"].as_array() {
                    for id in ids.iter().filter_map(|v| v.as_str()) {
                        if let Some(hex) = id.strip_prefix("sha256:") {
                            out.diff_ids.insert(hex.to_string());
                        }
                    }
                }
            }
        }
        out.blobs.extend(mine.iter().cloned());
        out.per_image.insert(manifest.clone(), mine);
    }
    Ok(out)
}

/// Everything in a root, with sizes and owners.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Sizes of the whole tree.
    pub tree: TreeSizes,
    /// Blob → size.
    pub blobs: BTreeMap<Digest, u64>,
    /// Files in `blobs/sha256` whose names are not digests (leftovers).
    pub stray_blob_files: Vec<PathBuf>,
    /// Readable key records.
    pub keys: Vec<KeyEntry>,
    /// Key files (named like a key) that cannot be read as records.
    pub bad_keys: Vec<PathBuf>,
    /// Temp files of writers killed mid-write (`.tmp*` in the key, build-record and
    /// context-hash directories): harmless, removed by the next collection.
    pub temp_files: Vec<PathBuf>,
    /// What images keep alive.
    pub images: ImageRefs,
    /// Cache keys (hex) of the steps of the latest build of every target.
    pub recent_keys: BTreeSet<String>,
}

/// Why a plain `prune` keeps a cache record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keeper {
    /// A stored image holds the layer the step made.
    Image,
    /// The step belongs to the latest build of some Dockerfile target.
    RecentBuild,
}

impl Inventory {
    /// Takes the inventory of `root` (one walk of the tree, one read of every key and manifest).
    pub fn take(root: &RootDir) -> Result<Inventory, UsageError> {
        let tree = tree_sizes(root.path());
        let mut blobs = BTreeMap::new();
        let mut stray_blob_files = Vec::new();
        let blob_dir = crate::layout::blob_dir(root.path());
        if let Ok(dir) = fs::read_dir(&blob_dir) {
            for entry in dir.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                match (Digest::from_hex(&name), entry.metadata()) {
                    (Ok(d), Ok(m)) if m.is_file() => {
                        blobs.insert(d, m.len());
                    }
                    _ => stray_blob_files.push(entry.path()),
                }
            }
        }
        let store = KeyStore::open(root.path())?;
        let keys = store.entries();
        let good: HashSet<&Path> = keys.iter().map(|k| k.path.as_path()).collect();
        let is_temp = |e: &walkdir::DirEntry| e.file_name().to_string_lossy().starts_with(".tmp");
        let bad_keys = walkdir::WalkDir::new(root.keys_dir())
            .min_depth(1)
            .into_iter()
            .flatten()
            .filter(|e| e.file_type().is_file() && !good.contains(e.path()) && !is_temp(e))
            .map(|e| e.path().to_path_buf())
            .collect();
        let mut temp_files = Vec::new();
        for bucket in [Bucket::Keys, Bucket::Records, Bucket::ContextHash] {
            temp_files.extend(
                walkdir::WalkDir::new(bucket.path(root.path()))
                    .min_depth(1)
                    .into_iter()
                    .flatten()
                    .filter(|e| e.file_type().is_file() && is_temp(e))
                    .map(|e| e.path().to_path_buf()),
            );
        }
        let images = image_refs(root)?;
        let recent_keys = crate::records::RecordStore::open(root.path())
            .map(|r| r.recent_keys())
            .unwrap_or_default();
        Ok(Inventory {
            tree,
            blobs,
            stray_blob_files,
            keys,
            bad_keys,
            temp_files,
            images,
            recent_keys,
        })
    }

    /// Why the record at `index` is still needed, or `None` when it is dangling: no stored image
    /// holds the layer its step made, and no target's latest build used it.
    pub fn keeper(&self, index: usize) -> Option<Keeper> {
        let k = &self.keys[index];
        let top = k.record.layers.last();
        if top.is_some_and(|l| self.images.blobs.contains(&l.digest)) {
            return Some(Keeper::Image);
        }
        self.recent_keys
            .contains(&k.key.to_hex())
            .then_some(Keeper::RecentBuild)
    }

    /// The records a plain `prune` removes (see [`Inventory::keeper`]).
    pub fn dangling(&self) -> BTreeSet<usize> {
        (0..self.keys.len())
            .filter(|&i| self.keeper(i).is_none())
            .collect()
    }

    /// Bytes a collection frees by removing the records in `doomed` together with the garbage
    /// (blobs and snapshots no record or image needs, temp files). Snapshots of image layers
    /// count as owned by their images when `images_own_snapshots` (a plain or filtered prune
    /// keeps them; `--keep-storage` does not).
    pub fn freed_by(&self, doomed: &BTreeSet<usize>, images_own_snapshots: bool) -> u64 {
        let mut release = Release::new(self, images_own_snapshots);
        let mut freed = release.garbage();
        for &i in doomed {
            freed += release.record(i);
        }
        freed
    }

    /// The total bytes of the root, as `du -sb` counts them.
    pub fn total(&self) -> u64 {
        self.tree.total
    }

    /// Size of a snapshot directory by diffID hex (0 if absent).
    pub fn snapshot_size(&self, hex: &str) -> u64 {
        self.tree.snapshots.get(hex).copied().unwrap_or(0)
    }

    /// Owner counts: blob → number of key records and images needing it; diffID hex → number
    /// of records (and images, if `images_own_snapshots`) naming it.
    pub fn owner_counts(
        &self,
        images_own_snapshots: bool,
    ) -> (BTreeMap<Digest, usize>, BTreeMap<String, usize>) {
        let mut blobs: BTreeMap<Digest, usize> = BTreeMap::new();
        let mut snaps: BTreeMap<String, usize> = BTreeMap::new();
        for set in self.images.per_image.values() {
            for d in set {
                *blobs.entry(d.clone()).or_default() += 1;
            }
        }
        if images_own_snapshots {
            for hex in &self.images.diff_ids {
                *snaps.entry(hex.clone()).or_default() += 1;
            }
        }
        for k in &self.keys {
            for (d, hex) in record_refs(k) {
                if let Some(d) = d {
                    *blobs.entry(d).or_default() += 1;
                }
                if let Some(hex) = hex {
                    *snaps.entry(hex).or_default() += 1;
                }
            }
        }
        (blobs, snaps)
    }
}

/// Simulates removing records one by one: what each removal frees, given what the others
/// still hold. Shared by `du`'s reclaimable figure and `--keep-storage` planning, so both count
/// bytes the way the collection removes them.
pub struct Release<'a> {
    inv: &'a Inventory,
    blob_owners: BTreeMap<Digest, usize>,
    snap_owners: BTreeMap<String, usize>,
}

impl<'a> Release<'a> {
    /// Starts from the ownership of `inv` (see [`Inventory::owner_counts`]).
    pub fn new(inv: &'a Inventory, images_own_snapshots: bool) -> Release<'a> {
        let (blob_owners, snap_owners) = inv.owner_counts(images_own_snapshots);
        Release {
            inv,
            blob_owners,
            snap_owners,
        }
    }

    /// Bytes that are garbage already: blobs and snapshots nothing owns, and `tmp`.
    pub fn garbage(&self) -> u64 {
        let inv = self.inv;
        let blobs: u64 = inv
            .blobs
            .iter()
            .filter(|(d, _)| !self.blob_owners.contains_key(d))
            .map(|(_, s)| s)
            .sum();
        let snaps: u64 = inv
            .tree
            .snapshots
            .iter()
            .filter(|(hex, _)| !self.snap_owners.contains_key(*hex))
            .map(|(_, s)| s)
            .sum();
        blobs
            + snaps
            + inv
                .tree
                .by_top
                .get(Bucket::Tmp.dir_name())
                .copied()
                .unwrap_or(0)
    }

    /// Removes the record at `index`: its file, and each blob or snapshot it was the last owner of.
    pub fn record(&mut self, index: usize) -> u64 {
        let k = &self.inv.keys[index];
        let mut freed = k.file_size;
        for (d, hex) in record_refs(k) {
            if let Some(c) = d.as_ref().and_then(|d| self.blob_owners.get_mut(d)) {
                *c -= 1;
                if *c == 0 {
                    freed += d.and_then(|d| self.inv.blobs.get(&d).copied()).unwrap_or(0);
                }
            }
            if let Some(hex) = hex {
                if let Some(c) = self.snap_owners.get_mut(&hex) {
                    *c -= 1;
                    if *c == 0 {
                        freed += self.inv.snapshot_size(&hex);
                    }
                }
            }
        }
        freed
    }
}

/// The blobs and snapshot names (diffID hex) a key record needs, layer by layer, deduplicated.
pub fn record_refs(entry: &KeyEntry) -> Vec<(Option<Digest>, Option<String>)> {
    let mut seen = HashSet::new();
    entry
        .record
        .layers
        .iter()
        .filter(|l| seen.insert(l.digest.clone()))
        .map(|l| (Some(l.digest.clone()), Some(l.diff_id.hex().to_string())))
        .collect()
}

/// One key record's footprint for `du`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RecordUsage {
    /// The cache key (hex).
    pub key: String,
    /// Bytes of everything the record needs (its file, blobs and snapshots).
    pub size: u64,
    /// Of `size`, bytes also needed by another record or an image.
    pub shared: u64,
    /// Of `size`, bytes only this record needs (freed when it goes).
    pub exclusive: u64,
    /// Number of layers.
    pub layers: usize,
    /// Last use, seconds since the epoch.
    pub last_used: u64,
}

/// One stored image's footprint for `du`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ImageUsage {
    /// The manifest (or index) digest.
    pub manifest: String,
    /// Bytes of every blob the image needs.
    pub size: u64,
    /// Of `size`, bytes a cache record or another image needs too.
    pub shared: u64,
}

/// The whole root by category, every byte counted once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Usage {
    /// Per key record, least recently used first.
    pub records: Vec<RecordUsage>,
    /// Per stored image.
    pub image_list: Vec<ImageUsage>,
    /// Key record files.
    pub key_files: u64,
    /// Blobs only cache records need.
    pub cache_blobs: u64,
    /// Blobs an image needs.
    pub image_blobs: u64,
    /// Blobs nothing needs.
    pub unreferenced_blobs: u64,
    /// Number of images.
    pub images: usize,
    /// Unpacked layers (`snapshots-v1`).
    pub snapshots: u64,
    /// Number of snapshot directories.
    pub snapshot_count: usize,
    /// RUN cache-mount contents (`mounts-v1`).
    pub cache_mounts: u64,
    /// Build records (`records-v1`).
    pub build_records: u64,
    /// Context stat caches (`contexthash-v1`).
    pub context_hashes: u64,
    /// Leftover scratch (`tmp`).
    pub tmp: u64,
    /// Everything else: directories, lock files, the image name store.
    pub other: u64,
    /// What a plain `prune` frees: the records no image and no target's latest build needs,
    /// what only they hold, and the garbage.
    pub reclaimable: u64,
    /// What `prune --all` could free (records, cache-only and unreferenced blobs, every
    /// snapshot, cache mounts, tmp).
    pub reclaimable_all: u64,
    /// Every byte of the root, as `du -sb` counts them.
    pub total: u64,
}

impl Usage {
    /// Computes the usage from an inventory.
    pub fn of(inv: &Inventory) -> Usage {
        let (blob_owners, snap_owners) = inv.owner_counts(true);
        let mut records: Vec<RecordUsage> = inv
            .keys
            .iter()
            .map(|k| {
                let mut shared = 0;
                let mut exclusive = k.file_size;
                for (d, hex) in record_refs(k) {
                    if let Some(d) = d {
                        let size = inv.blobs.get(&d).copied().unwrap_or(0);
                        if blob_owners.get(&d).copied().unwrap_or(0) > 1 {
                            shared += size;
                        } else {
                            exclusive += size;
                        }
                    }
                    if let Some(hex) = hex {
                        let size = inv.snapshot_size(&hex);
                        if snap_owners.get(&hex).copied().unwrap_or(0) > 1 {
                            shared += size;
                        } else {
                            exclusive += size;
                        }
                    }
                }
                RecordUsage {
                    key: k.key.to_hex(),
                    size: shared + exclusive,
                    shared,
                    exclusive,
                    layers: k.record.layers.len(),
                    last_used: k.last_used,
                }
            })
            .collect();
        records.sort_by_key(|r| (r.last_used, r.key.clone()));
        let cache_refs: HashSet<Digest> = inv
            .keys
            .iter()
            .flat_map(record_refs)
            .filter_map(|(d, _)| d)
            .collect();
        let (mut cache_blobs, mut image_blobs, mut unreferenced_blobs) = (0, 0, 0);
        for (d, size) in &inv.blobs {
            if inv.images.blobs.contains(d) {
                image_blobs += size;
            } else if cache_refs.contains(d) {
                cache_blobs += size;
            } else {
                unreferenced_blobs += size;
            }
        }
        let top = |name: &str| inv.tree.by_top.get(name).copied().unwrap_or(0);
        let key_files = top(Bucket::Keys.dir_name());
        let snapshots = top(Bucket::Snapshots.dir_name());
        let cache_mounts = top(Bucket::Mounts.dir_name());
        let build_records = top(Bucket::Records.dir_name());
        let context_hashes = top(Bucket::ContextHash.dir_name());
        let tmp = top(Bucket::Tmp.dir_name());
        let counted = key_files
            + cache_blobs
            + image_blobs
            + unreferenced_blobs
            + snapshots
            + cache_mounts
            + build_records
            + context_hashes
            + tmp;
        let total = inv.total();
        let image_list = inv
            .images
            .per_image
            .iter()
            .map(|(manifest, blobs)| {
                let (mut size, mut shared) = (0, 0);
                for d in blobs {
                    let b = inv.blobs.get(d).copied().unwrap_or(0);
                    size += b;
                    if blob_owners.get(d).copied().unwrap_or(0) > 1 {
                        shared += b;
                    }
                }
                ImageUsage {
                    manifest: manifest.to_string(),
                    size,
                    shared,
                }
            })
            .collect();
        Usage {
            records,
            image_list,
            key_files,
            cache_blobs,
            image_blobs,
            unreferenced_blobs,
            images: inv.images.per_image.len(),
            snapshots,
            snapshot_count: inv.tree.snapshots.len(),
            cache_mounts,
            build_records,
            context_hashes,
            tmp,
            other: total.saturating_sub(counted),
            reclaimable: inv.freed_by(&inv.dangling(), true),
            reclaimable_all: key_files
                + cache_blobs
                + unreferenced_blobs
                + snapshots
                + cache_mounts
                + tmp,
            total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn platforms_an_index_lists_but_the_store_lacks_are_not_missing() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        let cas = root.content_store().unwrap();
        let layer = cas.put_bytes(b"layer").unwrap();
        let config = cas
            .put_bytes(br#"{"rootfs":{"type":"layers","diff_ids":["sha256:ab"]}}"#)
            .unwrap();
        let manifest = serde_json::json!({"schemaVersion": 2,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": config.to_string(), "size": 1},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": layer.to_string(), "size": 5},
                       {"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": Digest::of_bytes(b"gone").to_string(), "size": 4}]});
        let m = cas.put_bytes(manifest.to_string().as_bytes()).unwrap();
        let other_platform = Digest::of_bytes(b"arm64 manifest");
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": m.to_string(), "size": 1},
            {"mediaType": "application/vnd.oci.image.manifest.v1+json",
             "digest": other_platform.to_string(), "size": 1}]});
        let i = cas.put_bytes(index.to_string().as_bytes()).unwrap();
        crate::ImageStore::open(root.images_dir())
            .unwrap()
            .put(crate::ImageRecord::new(
                crate::Descriptor::new("application/vnd.oci.image.index.v1+json", i.clone(), 1),
                config.clone(),
            ))
            .unwrap();
        let refs = image_refs(&root).unwrap();
        assert_eq!(
            refs.missing,
            vec![(i.clone(), Digest::of_bytes(b"gone"))],
            "a missing layer counts, an absent platform does not"
        );
        for d in [&i, &m, &config, &layer] {
            assert!(refs.blobs.contains(d));
        }
        assert!(refs.diff_ids.contains("ab"));
    }

    #[test]
    fn tree_size_counts_like_du_sb() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("a/b")).unwrap();
        fs::write(p.join("a/f"), vec![0u8; 1000]).unwrap();
        fs::hard_link(p.join("a/f"), p.join("a/b/g")).unwrap();
        symlink("a/f", p.join("link")).unwrap();
        let dirs: u64 = [p.to_path_buf(), p.join("a"), p.join("a/b")]
            .iter()
            .map(|d| fs::metadata(d).unwrap().len())
            .sum();
        assert_eq!(tree_size(p), dirs + 1000 + 3);
        let out = std::process::Command::new("du").arg("-sb").arg(p).output();
        if let Ok(out) = out {
            let text = String::from_utf8_lossy(&out.stdout);
            let du: u64 = text.split_whitespace().next().unwrap().parse().unwrap();
            assert_eq!(tree_size(p), du);
            assert_eq!(tree_sizes(p).total, du);
        }
    }
}
