//! Which images running containers (`builder run`) use, so that `rmi` refuses to remove one
//! from under a container unless forced.
//!
//! Each running container holds a lease: `<root>/locks-v1/containers/<id>.json` naming its
//! image, and `<id>.lock` locked by the running process. A lease whose lock is free belongs to
//! a process that died without cleaning up; it is stale and readers sweep it. The lock, not a
//! pid, says whether a container runs, so a recycled pid never keeps an image "in use".

use crate::digest::Digest;
use crate::layout::Bucket;
use crate::lock::{EntryLock, LockError, RootDir};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Errors reading or writing leases; each names its path.
#[derive(Debug, thiserror::Error)]
pub enum ContainerLeaseError {
    /// A file operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Locking the lease failed.
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// What a lease records.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RunningContainer {
    /// The container id (64 hex digits).
    pub id: String,
    /// The manifest digest of the image it runs.
    pub image: Digest,
}

/// A running container's lease on its image; released (and its files removed) on drop.
#[derive(Debug)]
pub struct ContainerLease {
    record: RunningContainer,
    json: PathBuf,
    lock: Option<EntryLock>,
}

impl ContainerLease {
    /// The container this lease is for.
    pub fn container(&self) -> &RunningContainer {
        &self.record
    }
}

impl Drop for ContainerLease {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.json);
        if let Some(lock) = self.lock.take() {
            let path = lock.path().to_path_buf();
            let _ = fs::remove_file(&path);
            drop(lock);
        }
    }
}

fn dir(root: &RootDir) -> PathBuf {
    Bucket::Locks.path(root.path()).join("containers")
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ContainerLeaseError + 'a {
    move |source| ContainerLeaseError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A fresh container id: 64 hex digits from the time, the pid and a counter.
fn new_id() -> String {
    use sha2::Digest as _;
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seed = format!(
        "{nanos}:{}:{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    hex::encode(sha2::Sha256::digest(seed.as_bytes()))
}

/// Takes a lease on `image` for a new container, held until the returned value is dropped.
pub fn register(root: &RootDir, image: &Digest) -> Result<ContainerLease, ContainerLeaseError> {
    let dir = dir(root);
    fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
    let id = new_id();
    // Locked before the record exists: a reader never sees a live record with a free lock.
    let lock = EntryLock::acquire(dir.join(format!("{id}.lock")))?;
    let record = RunningContainer {
        id: id.clone(),
        image: image.clone(),
    };
    let json = dir.join(format!("{id}.json"));
    let tmp = dir.join(format!("{id}.json.tmp"));
    let bytes = serde_json::to_vec(&record).map_err(|e| ContainerLeaseError::Io {
        op: "encode",
        path: json.clone(),
        source: io::Error::other(e),
    })?;
    fs::write(&tmp, bytes).map_err(io_err("write", &tmp))?;
    fs::rename(&tmp, &json).map_err(io_err("rename", &json))?;
    Ok(ContainerLease {
        record,
        json,
        lock: Some(lock),
    })
}

/// The containers running now on `root`; stale leases (their process died) are removed.
pub fn running(root: &RootDir) -> Result<Vec<RunningContainer>, ContainerLeaseError> {
    let dir = dir(root);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("read directory", &dir)(e)),
    };
    let mut live = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("read directory", &dir))?;
        let path = entry.path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let Ok(bytes) = fs::read(&path) else {
            continue;
        };
        let Ok(record) = serde_json::from_slice::<RunningContainer>(&bytes) else {
            continue;
        };
        let lock_path = dir.join(format!("{}.lock", record.id));
        match EntryLock::try_acquire(&lock_path)? {
            Some(free) => {
                // Nobody holds it: the container's process is gone.
                let _ = fs::remove_file(&path);
                let _ = fs::remove_file(&lock_path);
                drop(free);
            }
            None => live.push(record),
        }
    }
    live.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_running_until_dropped_and_a_free_lock_is_stale() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        let image: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        let lease = register(&root, &image).unwrap();
        let live = running(&root).unwrap();
        assert_eq!(live, vec![lease.container().clone()]);
        drop(lease);
        assert!(running(&root).unwrap().is_empty());

        // A record left by a process that died: its lock is free, so it is swept.
        let lease = register(&root, &image).unwrap();
        let json = dir
            .path()
            .join("locks-v1/containers")
            .join(format!("{}.json", lease.container().id));
        let kept = fs::read(&json).unwrap();
        drop(lease);
        fs::write(&json, kept).unwrap();
        assert!(running(&root).unwrap().is_empty());
        assert!(!json.exists());
    }
}
