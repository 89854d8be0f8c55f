//! Cache keys and the step records they point at.
//!
//! A [`CacheKey`] is a blake3 hash the solver computes over everything that affects a step's
//! result (see `engine::solver::key` for the list). The key store maps a key to a [`StepRecord`]:
//! the layers of the resulting root filesystem and the image config after the step. Records live in
//! `keys-v1/<first two hex>/<hex>.json`; they are written to a temporary file and renamed, so a
//! reader sees a whole record or none. A record is only written after every blob it names is
//! committed to the content store, and [`KeyStore::get`] treats a record whose blobs have gone (a
//! garbage collection raced it) as a miss.

use crate::Digest;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// Name of the versioned directory holding key records; bump the suffix when [`StepRecord`] changes.
pub const KEYS_DIR: &str = crate::layout::Bucket::Keys.dir_name();

/// A step's cache key: 32 bytes of blake3.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CacheKey(#[serde(with = "hex_bytes")] pub [u8; 32]);

impl CacheKey {
    /// The key as lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses a key from 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = hex::decode(s).ok()?;
        Some(CacheKey(bytes.try_into().ok()?))
    }
}

impl fmt::Display for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for CacheKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CacheKey({})", &self.to_hex()[..12])
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(serde::de::Error::custom)?;
        v.try_into()
            .map_err(|_| serde::de::Error::custom("cache key must be 32 bytes"))
    }
}

/// One layer of a cached result, as the content store and the snapshot directory know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRef {
    /// Digest of the (compressed) layer blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar: names the unpacked snapshot.
    pub diff_id: Digest,
    /// Size of the blob in bytes.
    pub size: u64,
    /// OCI media type of the blob.
    pub media_type: String,
}

/// What a cached step produced: the whole root filesystem after it.
///
/// Storing the full state (not a delta) keeps a hit self-contained: the solver never needs the
/// records of the steps above a hit. The image config is not stored: it is folded from the
/// build graph's metadata, which the key already covers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepRecord {
    /// The layers of the root filesystem after the step, bottom first.
    pub layers: Vec<LayerRef>,
    /// How long the step took when it ran, in milliseconds.
    pub duration_ms: u64,
    /// When the record was written, seconds since the epoch.
    pub created: u64,
}

/// Errors of the key store.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cache record {path} is corrupt: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The directory of key → record entries under a cache root.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// Opens (creating if needed) the key store under `root`.
    pub fn open(root: &Path) -> Result<Self, KeyStoreError> {
        let dir = root.join(KEYS_DIR);
        fs::create_dir_all(&dir).map_err(|source| KeyStoreError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        Ok(KeyStore { dir })
    }

    fn path_of(&self, key: &CacheKey) -> PathBuf {
        let hex = key.to_hex();
        self.dir.join(&hex[..2]).join(format!("{hex}.json"))
    }

    /// Looks a key up. `blob_exists` is asked about every layer blob; a record naming a missing
    /// blob is a miss (and is removed, since it can never be used again).
    pub fn get(
        &self,
        key: &CacheKey,
        blob_exists: impl Fn(&Digest) -> bool,
    ) -> Result<Option<StepRecord>, KeyStoreError> {
        let path = self.path_of(key);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(KeyStoreError::Io {
                    action: "read",
                    path,
                    source,
                })
            }
        };
        let record: StepRecord = match serde_json::from_slice(&bytes) {
            Ok(r) => r,
            // A record from an incompatible writer or a damaged file: treat as a miss and let the
            // step run again; the new record replaces it.
            Err(_) => return Ok(None),
        };
        if record.layers.iter().all(|l| blob_exists(&l.digest)) {
            // Touch for LRU garbage collection; failure to touch only affects GC order.
            let _ = filetime_now(&path);
            Ok(Some(record))
        } else {
            let _ = fs::remove_file(&path);
            Ok(None)
        }
    }

    /// Stores a record atomically. Call only after every blob it names is committed.
    pub fn put(&self, key: &CacheKey, record: &StepRecord) -> Result<(), KeyStoreError> {
        let path = self.path_of(key);
        let parent = path.parent().unwrap_or(&self.dir).to_path_buf();
        fs::create_dir_all(&parent).map_err(|source| KeyStoreError::Io {
            action: "create",
            path: parent.clone(),
            source,
        })?;
        let bytes = serde_json::to_vec(record).map_err(|source| KeyStoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        let io = |action, source| KeyStoreError::Io {
            action,
            path: path.clone(),
            source,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&parent).map_err(|e| io("create", e))?;
        tmp.write_all(&bytes).map_err(|e| io("write", e))?;
        tmp.as_file().sync_data().map_err(|e| io("sync", e))?;
        tmp.persist(&path).map_err(|e| io("rename", e.error))?;
        Ok(())
    }

    /// Removes one entry (GC).
    pub fn remove(&self, key: &CacheKey) -> Result<(), KeyStoreError> {
        let path = self.path_of(key);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(KeyStoreError::Io {
                action: "remove",
                path,
                source,
            }),
        }
    }

    /// Every entry with its record, its size on disk and its last use (seconds since the epoch).
    /// Unreadable entries are skipped.
    pub fn entries(&self) -> Vec<KeyEntry> {
        let mut out = Vec::new();
        for entry in walkdir::WalkDir::new(&self.dir)
            .min_depth(2)
            .max_depth(2)
            .into_iter()
            .flatten()
        {
            let path = entry.path();
            let Some(key) = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(CacheKey::from_hex)
            else {
                continue;
            };
            let Ok(meta) = entry.metadata() else { continue };
            let Ok(bytes) = fs::read(path) else { continue };
            let Ok(record) = serde_json::from_slice::<StepRecord>(&bytes) else {
                continue;
            };
            let last_used = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .unwrap_or(0);
            out.push(KeyEntry {
                key,
                record,
                file_size: meta.len(),
                last_used,
                path: path.to_path_buf(),
            });
        }
        out
    }
}

/// A key store entry as [`KeyStore::entries`] lists it.
#[derive(Debug, Clone)]
pub struct KeyEntry {
    pub key: CacheKey,
    pub record: StepRecord,
    pub file_size: u64,
    pub last_used: u64,
    pub path: PathBuf,
}

fn filetime_now(path: &Path) -> std::io::Result<()> {
    let f = fs::File::options().write(true).open(path)?;
    f.set_modified(SystemTime::now())
}

/// Seconds since the epoch, for record timestamps.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(digest: &str) -> StepRecord {
        StepRecord {
            layers: vec![LayerRef {
                digest: Digest::of_bytes(digest.as_bytes()),
                diff_id: Digest::of_bytes(b"00"),
                size: 1,
                media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            }],
            duration_ms: 5,
            created: 1,
        }
    }

    #[test]
    fn put_then_get_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let key = CacheKey(*blake3::hash(b"step").as_bytes());
        assert!(store.get(&key, |_| true).unwrap().is_none());
        store.put(&key, &record("sha256:aa")).unwrap();
        assert_eq!(
            store.get(&key, |_| true).unwrap(),
            Some(record("sha256:aa"))
        );
        assert_eq!(store.entries().len(), 1);
    }

    #[test]
    fn record_with_missing_blob_is_a_miss_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let key = CacheKey(*blake3::hash(b"step").as_bytes());
        store.put(&key, &record("sha256:gone")).unwrap();
        assert!(store
            .get(&key, |d| *d != Digest::of_bytes(b"sha256:gone"))
            .unwrap()
            .is_none());
        assert!(store.entries().is_empty());
    }

    #[test]
    fn corrupt_record_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::open(dir.path()).unwrap();
        let key = CacheKey(*blake3::hash(b"step").as_bytes());
        store.put(&key, &record("sha256:aa")).unwrap();
        fs::write(store.path_of(&key), b"{not json").unwrap();
        assert!(store.get(&key, |_| true).unwrap().is_none());
    }
}
