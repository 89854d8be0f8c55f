//! The content store: blobs named by their sha256 under `<root>/blobs/sha256/<hex>`, the layout an
//! OCI image layout uses, so a store directory is readable by OCI tools.
//!
//! Invariant: a blob under its final name is whole and matches its name. Writers stream into a
//! temp file in `<root>/tmp/` (same filesystem), hash while writing, check the expected digest,
//! fsync and rename. A killed writer leaves only a temp file; a mismatch keeps nothing. Two
//! writers of the same blob both succeed: the rename is atomic and the content identical.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::digest::Digest;

/// Errors of the content store; every I/O error names its path.
#[derive(Debug, thiserror::Error)]
pub enum CasError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Written content does not match the digest it was announced with.
    #[error("digest mismatch: expected {expected}, content is {actual}")]
    DigestMismatch {
        /// The digest the caller expected.
        expected: Digest,
        /// The digest of what was written.
        actual: Digest,
    },
    /// The blob is not in the store.
    #[error("blob {0} not found in the content store")]
    NotFound(Digest),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> CasError + 'a {
    move |source| CasError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A content-addressed blob store rooted at one directory.
#[derive(Clone, Debug)]
pub struct ContentStore {
    root: PathBuf,
    blobs: PathBuf,
    tmp: PathBuf,
}

impl ContentStore {
    /// Opens (creating if needed) the store under `root`: blobs in `root/blobs/sha256`, temp files
    /// in `root/tmp`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, CasError> {
        let root = root.as_ref().to_path_buf();
        let blobs = crate::layout::blob_dir(&root);
        let tmp = crate::layout::Bucket::Tmp.path(&root);
        fs::create_dir_all(&blobs).map_err(io_err("create directory", &blobs))?;
        fs::create_dir_all(&tmp).map_err(io_err("create directory", &tmp))?;
        Ok(ContentStore { root, blobs, tmp })
    }

    /// The directory the store was opened on.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the blob lives (or would live).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    /// Whether the blob is present.
    pub fn has(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// The blob's size in bytes.
    pub fn size(&self, digest: &Digest) -> Result<u64, CasError> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(CasError::NotFound(digest.clone()))
            }
            Err(e) => Err(io_err("stat", &path)(e)),
        }
    }

    /// Opens the blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File, CasError> {
        let path = self.path(digest);
        match File::open(&path) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(CasError::NotFound(digest.clone()))
            }
            Err(e) => Err(io_err("open", &path)(e)),
        }
    }

    /// Reads a whole blob into memory (for manifests and configs).
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, CasError> {
        let mut f = self.open_blob(digest)?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)
            .map_err(io_err("read", &self.path(digest)))?;
        Ok(buf)
    }

    /// Starts writing a new blob.
    pub fn writer(&self) -> Result<BlobWriter, CasError> {
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .tempfile_in(&self.tmp)
            .map_err(io_err("create temp file in", &self.tmp))?;
        Ok(BlobWriter {
            store: self.clone(),
            file,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// Stores `data` and returns its digest.
    pub fn put_bytes(&self, data: &[u8]) -> Result<Digest, CasError> {
        let digest = Digest::of_bytes(data);
        if self.has(&digest) {
            return Ok(digest);
        }
        let mut w = self.writer()?;
        w.write_all(data).map_err(io_err("write", &self.tmp))?;
        w.commit(Some(&digest))
    }

    /// Copies everything from `reader` into a blob, checking `expected` when given.
    pub fn put_reader(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
    ) -> Result<(Digest, u64), CasError> {
        let mut w = self.writer()?;
        io::copy(&mut reader, &mut w).map_err(io_err("write", &self.tmp))?;
        let size = w.size();
        Ok((w.commit(expected)?, size))
    }

    /// Removes a blob; returns whether it was present. Only garbage collection (under the
    /// exclusive root lock) should call this.
    pub fn delete(&self, digest: &Digest) -> Result<bool, CasError> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &path)(e)),
        }
    }

    /// Every blob in the store, in no particular order. Files whose names are not digests are
    /// skipped.
    pub fn iter(&self) -> Result<impl Iterator<Item = Result<Digest, CasError>> + '_, CasError> {
        let dir = fs::read_dir(&self.blobs).map_err(io_err("read directory", &self.blobs))?;
        Ok(dir.filter_map(move |entry| match entry {
            Err(e) => Some(Err(io_err("read directory", &self.blobs)(e))),
            Ok(entry) => Digest::from_hex(entry.file_name().to_str()?).ok().map(Ok),
        }))
    }
}

/// A blob being written. Dropping it without [`BlobWriter::commit`] discards the content.
pub struct BlobWriter {
    store: ContentStore,
    file: tempfile::NamedTempFile,
    hasher: Sha256,
    size: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Finishes the blob: checks `expected` (if given), fsyncs, and moves it under its digest.
    /// On a mismatch nothing is kept.
    pub fn commit(mut self, expected: Option<&Digest>) -> Result<Digest, CasError> {
        let tmp_path = self.file.path().to_path_buf();
        self.file.flush().map_err(io_err("write", &tmp_path))?;
        let actual = Digest::from_sha256(self.hasher.finalize().into());
        if let Some(expected) = expected {
            if *expected != actual {
                return Err(CasError::DigestMismatch {
                    expected: expected.clone(),
                    actual,
                });
            }
        }
        let final_path = self.store.path(&actual);
        if final_path.is_file() {
            // Another writer got there first; the content is the same by construction.
            return Ok(actual);
        }
        self.file
            .as_file()
            .sync_all()
            .map_err(io_err("fsync", &tmp_path))?;
        self.file
            .persist(&final_path)
            .map_err(|e| io_err("rename into", &final_path)(e.error))?;
        // Make the rename itself durable.
        if let Ok(dir) = File::open(&self.store.blobs) {
            let _ = dir.sync_all();
        }
        Ok(actual)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let cas = ContentStore::open(dir.path()).unwrap();
        let d = cas.put_bytes(b"hello").unwrap();
        assert!(cas.has(&d));
        assert_eq!(cas.read(&d).unwrap(), b"hello");
        assert_eq!(cas.size(&d).unwrap(), 5);
        assert_eq!(
            cas.iter().unwrap().map(|r| r.unwrap()).collect::<Vec<_>>(),
            vec![d.clone()]
        );
        assert!(cas.delete(&d).unwrap());
        assert!(!cas.has(&d));
        assert!(matches!(cas.read(&d), Err(CasError::NotFound(_))));
    }

    #[test]
    fn digest_mismatch_keeps_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cas = ContentStore::open(dir.path()).unwrap();
        let wrong = Digest::of_bytes(b"something else");
        let mut w = cas.writer().unwrap();
        w.write_all(b"content").unwrap();
        let err = w.commit(Some(&wrong)).unwrap_err();
        assert!(matches!(err, CasError::DigestMismatch { .. }), "{err}");
        assert!(!cas.has(&wrong));
        assert!(!cas.has(&Digest::of_bytes(b"content")));
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        assert_eq!(cas.iter().unwrap().count(), 0);
    }

    #[test]
    fn concurrent_writers_of_one_blob_both_succeed() {
        let dir = tempfile::tempdir().unwrap();
        let cas = ContentStore::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
        let expected = Digest::of_bytes(&data);
        // Interleave two writers chunk by chunk, then commit both.
        let mut a = cas.writer().unwrap();
        let mut b = cas.writer().unwrap();
        for chunk in data.chunks(65536) {
            a.write_all(chunk).unwrap();
            b.write_all(chunk).unwrap();
        }
        assert_eq!(a.commit(Some(&expected)).unwrap(), expected);
        assert_eq!(b.commit(Some(&expected)).unwrap(), expected);
        // And from threads racing on commit.
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let cas = cas.clone();
                let data = data.clone();
                std::thread::spawn(move || cas.put_reader(&data[..], None).unwrap().0)
            })
            .collect();
        for h in handles {
            assert_eq!(h.join().unwrap(), expected);
        }
        assert_eq!(cas.read(&expected).unwrap(), data);
    }
}
