//! The cache root: content-addressed blobs shared by images and cached layers, cache keys and
//! their records, locks, garbage collection, and cache import/export.
//!
//! Invariants: a blob is whole or absent (temp file, fsync, rename); a record only points at blobs
//! that exist; every on-disk format lives in a versioned directory.

pub mod keys;
pub mod records;
