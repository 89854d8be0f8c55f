//! The layout of a root directory, in one place: every versioned bucket it holds. A format change
//! bumps one bucket's name and costs that bucket alone (the old directory is left for `prune` to
//! sweep as "other"), as uv's cache buckets do.

use std::path::{Path, PathBuf};

/// One top-level directory of a root.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Content-addressed blobs, `blobs/sha256/<hex>` (the OCI layout's own shape, unversioned).
    Blobs,
    /// Image names and records.
    Images,
    /// Cache key → step record.
    Keys,
    /// Unpacked layers by diffID.
    Snapshots,
    /// `RUN --mount=type=cache` directories.
    Mounts,
    /// Build records (what each build did, for "why" and lint).
    Records,
    /// Per-entry lock files.
    Locks,
    /// The context stat caches (path → stat → digest).
    ContextHash,
    /// Content sizes of layers by diffID (what `images` and `history` show, as Docker counts).
    LayerSizes,
    /// In-progress writes; anything here is a leftover once no build runs.
    Tmp,
}

impl Bucket {
    /// Every bucket, in the order a root is created.
    pub const ALL: [Bucket; 10] = [
        Bucket::Blobs,
        Bucket::Images,
        Bucket::Keys,
        Bucket::Snapshots,
        Bucket::Mounts,
        Bucket::Records,
        Bucket::Locks,
        Bucket::ContextHash,
        Bucket::LayerSizes,
        Bucket::Tmp,
    ];

    /// The directory's name under the root.
    pub const fn dir_name(self) -> &'static str {
        match self {
            Bucket::Blobs => "blobs",
            Bucket::Images => "images-v1",
            Bucket::Keys => "keys-v1",
            Bucket::Snapshots => "snapshots-v1",
            Bucket::Mounts => "mounts-v1",
            Bucket::Records => "records-v1",
            Bucket::Locks => "locks-v1",
            Bucket::ContextHash => "contexthash-v1",
            Bucket::LayerSizes => "layersizes-v1",
            Bucket::Tmp => "tmp",
        }
    }

    /// The bucket's directory under `root`.
    pub fn path(self, root: &Path) -> PathBuf {
        root.join(self.dir_name())
    }
}

/// Where the blobs of `root` live: `blobs/sha256/<hex>`.
pub fn blob_dir(root: &Path) -> PathBuf {
    Bucket::Blobs.path(root).join("sha256")
}
