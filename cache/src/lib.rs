//! The cache root: content-addressed blobs shared by images and cached layers, cache keys and
//! their records, locks, garbage collection, and cache import/export; and the image vocabulary
//! every crate shares (digests, references, descriptors, platforms, manifests and indexes).
//!
//! Invariants: a blob is whole or absent (temp file, fsync, rename); a record only points at blobs
//! that exist; every on-disk format lives in a versioned directory.

pub mod cas;
pub mod check;
pub mod containers;
pub mod descriptor;
pub mod digest;
pub mod export;
pub mod gc;
pub mod images;
pub mod keys;
pub mod layer_sizes;
pub mod layout;
pub mod lock;
pub mod manifest;
pub mod records;
pub mod reference;
pub mod usage;

pub use cas::{BlobWriter, CasError, ContentStore};
pub use descriptor::{referenced_descriptors, Descriptor, Platform, PlatformError};
pub use digest::{Digest, DigestError};
pub use images::{ImageEntry, ImageRecord, ImageStore, ImageStoreError};
pub use layout::Bucket;
pub use lock::{EntryLock, RootDir, RootLock};
pub use manifest::{media_types, Index, Manifest};
pub use reference::{Reference, ReferenceError};
