//! The seam between the registry client and whatever keeps blobs locally.
//!
//! The client needs only three things from a store: does it hold a blob, read a blob back, and
//! take in a new blob such that it is verified against its digest and either fully present or
//! absent (never half-written). [`BlobStore`] is that contract; the project's content store
//! implements it, and [`DirBlobStore`] is a small OCI-layout-compatible implementation
//! (`<root>/blobs/sha256/<hex>`) used by this crate's tests and usable on its own.
//!
//! A content store with a "temp writer, then commit with an expected digest" API maps onto the
//! trait directly: `has` → its `has`, `open` → open the blob file plus its size, `begin_ingest` →
//! a writer whose `commit` checks the expected digest and renames into place.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use crate::digest::Digest;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The blob is not in the store.
    #[error("blob {0} not found in the local store")]
    NotFound(Digest),
    /// The bytes written do not hash to the digest they were announced under; nothing was kept.
    #[error("blob content does not match its digest: expected {expected}, got {actual}")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// Filesystem failure, with the path involved.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// An open blob: a reader positioned at its start, and its length in bytes.
pub struct BlobReader {
    /// The blob's bytes.
    pub reader: Box<dyn Read + Send>,
    /// The blob's length.
    pub len: u64,
}

/// A blob being written. Bytes go in through [`Write`]; [`BlobIngest::commit`] verifies the
/// digest and publishes the blob atomically. Dropping without committing discards everything.
pub trait BlobIngest: Write + Send {
    /// Verifies the written bytes against the expected digest and makes the blob visible.
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// What the registry client needs from a local blob store.
pub trait BlobStore: Send + Sync {
    /// Whether the store holds the complete blob.
    fn has(&self, digest: &Digest) -> bool;

    /// Opens a blob for reading.
    fn open(&self, digest: &Digest) -> Result<BlobReader, StoreError>;

    /// Starts writing a blob that must hash to `expected`.
    fn begin_ingest(&self, expected: &Digest) -> Result<Box<dyn BlobIngest + '_>, StoreError>;

    /// Writes a whole blob from a reader: verified, atomic. Returns the number of bytes.
    fn ingest(&self, expected: &Digest, reader: &mut dyn Read) -> Result<u64, StoreError> {
        let mut writer = self.begin_ingest(expected)?;
        let written = io::copy(reader, &mut writer).map_err(|source| StoreError::Io {
            action: "writing blob",
            path: PathBuf::from(expected.to_string()),
            source,
        })?;
        writer.commit()?;
        Ok(written)
    }

    /// Reads a whole blob into memory (for manifests and configs, which are small).
    fn read_all(&self, digest: &Digest) -> Result<Vec<u8>, StoreError> {
        let mut blob = self.open(digest)?;
        let mut bytes = Vec::with_capacity(usize::try_from(blob.len).unwrap_or(0));
        blob.reader
            .read_to_end(&mut bytes)
            .map_err(|source| StoreError::Io {
                action: "reading blob",
                path: PathBuf::from(digest.to_string()),
                source,
            })?;
        Ok(bytes)
    }
}

/// A directory of blobs laid out as in an OCI image layout: `<root>/blobs/sha256/<hex>`.
/// Blobs are written to a temp file in the same directory, fsynced, then renamed into place.
#[derive(Clone, Debug)]
pub struct DirBlobStore {
    root: PathBuf,
}

impl DirBlobStore {
    /// A store rooted at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> DirBlobStore {
        DirBlobStore { root: root.into() }
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives (whether or not it is present).
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    fn blob_dir(&self) -> PathBuf {
        self.root.join("blobs").join("sha256")
    }

    /// Every complete blob in the store (temp files are not listed).
    pub fn list(&self) -> Result<Vec<Digest>, StoreError> {
        let dir = self.blob_dir();
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(StoreError::Io {
                    action: "listing",
                    path: dir,
                    source,
                })
            }
        };
        let mut digests = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| StoreError::Io {
                action: "listing",
                path: dir.clone(),
                source,
            })?;
            let name = entry.file_name();
            if let Ok(digest) = format!("sha256:{}", name.to_string_lossy()).parse::<Digest>() {
                digests.push(digest);
            }
        }
        digests.sort();
        Ok(digests)
    }

    /// Every file in the blob directory, complete or not (to prove nothing partial was left).
    pub fn all_files(&self) -> Result<Vec<PathBuf>, StoreError> {
        let dir = self.blob_dir();
        match fs::read_dir(&dir) {
            Ok(entries) => Ok(entries.filter_map(|e| e.ok().map(|e| e.path())).collect()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(StoreError::Io {
                action: "listing",
                path: dir,
                source,
            }),
        }
    }
}

impl BlobStore for DirBlobStore {
    fn has(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    fn open(&self, digest: &Digest) -> Result<BlobReader, StoreError> {
        let path = self.blob_path(digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound(digest.clone()))
            }
            Err(source) => {
                return Err(StoreError::Io {
                    action: "opening",
                    path,
                    source,
                })
            }
        };
        let len = file
            .metadata()
            .map_err(|source| StoreError::Io {
                action: "reading metadata of",
                path: path.clone(),
                source,
            })?
            .len();
        Ok(BlobReader {
            reader: Box::new(file),
            len,
        })
    }

    fn begin_ingest(&self, expected: &Digest) -> Result<Box<dyn BlobIngest + '_>, StoreError> {
        let dir = self.blob_dir();
        fs::create_dir_all(&dir).map_err(|source| StoreError::Io {
            action: "creating",
            path: dir.clone(),
            source,
        })?;
        let temp = tempfile::Builder::new()
            .prefix(".ingest-")
            .tempfile_in(&dir)
            .map_err(|source| StoreError::Io {
                action: "creating temp file in",
                path: dir.clone(),
                source,
            })?;
        Ok(Box::new(DirIngest {
            temp,
            hasher: Sha256::new(),
            expected: expected.clone(),
            target: self.blob_path(expected),
        }))
    }
}

struct DirIngest {
    temp: NamedTempFile,
    hasher: Sha256,
    expected: Digest,
    target: PathBuf,
}

impl Write for DirIngest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.temp.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.temp.flush()
    }
}

impl BlobIngest for DirIngest {
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let DirIngest {
            temp,
            hasher,
            expected,
            target,
        } = *self;
        let actual = Digest::from_hasher(hasher);
        if actual != expected {
            // Dropping `temp` deletes the partial file.
            return Err(StoreError::DigestMismatch { expected, actual });
        }
        temp.as_file().sync_all().map_err(|source| StoreError::Io {
            action: "syncing",
            path: temp.path().to_path_buf(),
            source,
        })?;
        temp.persist(&target).map_err(|e| StoreError::Io {
            action: "renaming blob into",
            path: target.clone(),
            source: e.error,
        })?;
        if let Some(dir) = target.parent() {
            // Make the rename durable; failure here does not lose data already synced.
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_verifies_and_publishes_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirBlobStore::new(dir.path());
        let good = Digest::sha256_of(b"hello");
        assert!(!store.has(&good));
        store.ingest(&good, &mut &b"hello"[..]).unwrap();
        assert!(store.has(&good));
        assert_eq!(store.read_all(&good).unwrap(), b"hello");

        let other = Digest::sha256_of(b"other");
        let err = store.ingest(&other, &mut &b"not other"[..]).unwrap_err();
        assert!(matches!(err, StoreError::DigestMismatch { .. }));
        assert!(!store.has(&other));
        assert_eq!(store.all_files().unwrap().len(), 1, "no temp file left");
        assert_eq!(store.list().unwrap(), vec![good]);
    }
}
