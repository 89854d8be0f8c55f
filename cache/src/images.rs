//! The local image store: which images exist (by manifest digest) and which names point at them.
//!
//! State is one JSON document, `images-v1/images.json`, replaced atomically (temp file, fsync,
//! rename) under an exclusive lock on `images-v1/images.lock`; readers never see a half-written
//! file. An image stays in the store when its last name moves to another image (it becomes
//! "dangling", shown as `<none>:<none>`) until it is removed. The image id is the config digest,
//! as Docker shows it.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::lock::{EntryLock, LockError};
use crate::reference::{Reference, ReferenceError};

const STATE_FILE: &str = "images.json";
const LOCK_FILE: &str = "images.lock";

/// Errors of the image store.
#[derive(Debug, thiserror::Error)]
pub enum ImageStoreError {
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
    /// The state file is not valid JSON of the expected shape.
    #[error("corrupt image store {path}: {source}")]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// Locking failed.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A name is not a valid reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Nothing matches the name or id.
    #[error("No such image: {0}")]
    NotFound(String),
    /// A short id matches more than one image.
    #[error("ambiguous image id {0:?}: matches more than one image")]
    Ambiguous(String),
    /// A name was to be pointed at an image the store does not hold.
    #[error("image {0} is not in the store")]
    UnknownImage(Digest),
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImageStoreError + 'a {
    move |source| ImageStoreError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// One image in the store.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The manifest (or index) the image is; its digest is the store key.
    pub target: Descriptor,
    /// The config digest: the image id.
    pub config: Digest,
    /// When the image entered the store.
    pub stored: DateTime<Utc>,
    /// When a name was last pointed at it (Docker's `Metadata.LastTagTime`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_tagged: Option<DateTime<Utc>>,
    /// `repo@digest` names it is known by in registries (after push or pull).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub repo_digests: Vec<String>,
}

impl ImageRecord {
    /// A record for a newly stored image.
    pub fn new(target: Descriptor, config: Digest) -> Self {
        ImageRecord {
            target,
            config,
            stored: Utc::now(),
            last_tagged: None,
            repo_digests: Vec::new(),
        }
    }

    /// The image id (the config digest).
    pub fn id(&self) -> &Digest {
        &self.config
    }
}

/// An image with the names that point at it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageEntry {
    /// The image.
    pub record: ImageRecord,
    /// Names pointing at it (normalised, sorted).
    pub names: Vec<Reference>,
}

/// The whole store state, as kept on disk.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ImageStoreState {
    /// Images by manifest digest.
    pub images: BTreeMap<Digest, ImageRecord>,
    /// Normalised name (`docker.io/library/alpine:latest`) → manifest digest.
    pub names: BTreeMap<String, Digest>,
}

impl ImageStoreState {
    /// The names pointing at `manifest`.
    pub fn names_of(&self, manifest: &Digest) -> Vec<Reference> {
        self.names
            .iter()
            .filter(|(_, d)| *d == manifest)
            .filter_map(|(n, _)| Reference::parse_exact(n).ok())
            .collect()
    }

    /// Finds an image by name, full or short id (config digest), or manifest digest; returns
    /// its manifest digest.
    pub fn resolve(&self, query: &str) -> Result<Digest, ImageStoreError> {
        let q = query.strip_prefix("sha256:").unwrap_or(query);
        let looks_like_id = !q.is_empty()
            && q.len() <= 64
            && q.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        // A name wins over an id prefix, as in Docker, except for full 64-digit ids.
        if q.len() != 64 || !looks_like_id {
            if let Ok(r) = Reference::parse(query) {
                if let Some(d) = self.names.get(&r.to_string()) {
                    return Ok(d.clone());
                }
                // `name@sha256:...` is content-addressed: a stored manifest with that digest
                // is the image, whatever names it carries.
                if let Some(d) = r.digest().filter(|d| self.images.contains_key(*d)) {
                    return Ok(d.clone());
                }
            }
        }
        if looks_like_id {
            let matches: Vec<&Digest> = self
                .images
                .iter()
                .filter(|(m, rec)| {
                    rec.config.hex().starts_with(q) || (q.len() == 64 && m.hex() == q)
                })
                .map(|(m, _)| m)
                .collect();
            match matches.as_slice() {
                [one] => return Ok((*one).clone()),
                [] => {}
                _ => return Err(ImageStoreError::Ambiguous(query.to_string())),
            }
        }
        Err(ImageStoreError::NotFound(query.to_string()))
    }

    /// The entry for one manifest digest.
    pub fn entry(&self, manifest: &Digest) -> Option<ImageEntry> {
        self.images.get(manifest).map(|record| ImageEntry {
            record: record.clone(),
            names: self.names_of(manifest),
        })
    }
}

/// The image name store of one root.
#[derive(Clone, Debug)]
pub struct ImageStore {
    dir: PathBuf,
}

impl ImageStore {
    /// Opens the store in `dir` (normally `RootDir::images_dir()`), creating it if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ImageStoreError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err("create directory", &dir))?;
        Ok(ImageStore { dir })
    }

    /// Reads the current state (a consistent snapshot, without locking).
    pub fn state(&self) -> Result<ImageStoreState, ImageStoreError> {
        let path = self.dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| ImageStoreError::Corrupt { path, source }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(ImageStoreState::default()),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Runs `f` on the state under the store lock and writes the result atomically if `f`
    /// succeeds. The one way every change is made.
    pub fn update<T>(
        &self,
        f: impl FnOnce(&mut ImageStoreState) -> Result<T, ImageStoreError>,
    ) -> Result<T, ImageStoreError> {
        let _lock = EntryLock::acquire(self.dir.join(LOCK_FILE))?;
        let mut state = self.state()?;
        let out = f(&mut state)?;
        self.write_state(&state)?;
        Ok(out)
    }

    fn write_state(&self, state: &ImageStoreState) -> Result<(), ImageStoreError> {
        let path = self.dir.join(STATE_FILE);
        let mut tmp = tempfile::Builder::new()
            .prefix(".images-")
            .tempfile_in(&self.dir)
            .map_err(io_err("create temp file in", &self.dir))?;
        let json = serde_json::to_vec_pretty(state).map_err(|source| ImageStoreError::Corrupt {
            path: path.clone(),
            source,
        })?;
        tmp.write_all(&json).map_err(io_err("write", tmp.path()))?;
        tmp.as_file().sync_all().map_err(io_err("fsync", &path))?;
        tmp.persist(&path)
            .map_err(|e| io_err("rename into", &path)(e.error))?;
        Ok(())
    }

    /// Adds an image (or refreshes its record, keeping its stored time and repo digests).
    pub fn put(&self, record: ImageRecord) -> Result<(), ImageStoreError> {
        self.update(|s| {
            let key = record.target.digest.clone();
            match s.images.get_mut(&key) {
                Some(existing) => {
                    existing.target = record.target;
                    existing.config = record.config;
                    for rd in record.repo_digests {
                        if !existing.repo_digests.contains(&rd) {
                            existing.repo_digests.push(rd);
                        }
                    }
                }
                None => {
                    s.images.insert(key, record);
                }
            }
            Ok(())
        })
    }

    /// Adds an image and points `names` at it in one update. Returns the manifest digests the
    /// names pointed at before (now possibly dangling).
    pub fn put_and_tag(
        &self,
        record: ImageRecord,
        names: &[Reference],
    ) -> Result<Vec<Digest>, ImageStoreError> {
        self.update(|s| {
            let key = record.target.digest.clone();
            s.images.entry(key.clone()).or_insert(record);
            let mut previous = Vec::new();
            for n in names {
                if let Some(old) = tag_in(s, n, &key)? {
                    previous.push(old);
                }
            }
            Ok(previous)
        })
    }

    /// Points `name` at the image `manifest`; returns what it pointed at before.
    pub fn tag(
        &self,
        name: &Reference,
        manifest: &Digest,
    ) -> Result<Option<Digest>, ImageStoreError> {
        self.update(|s| tag_in(s, name, manifest))
    }

    /// Removes `name`; returns what it pointed at (`None` if it did not exist).
    pub fn untag(&self, name: &Reference) -> Result<Option<Digest>, ImageStoreError> {
        self.update(|s| Ok(s.names.remove(&name.to_string())))
    }

    /// Removes an image and every name pointing at it; returns the names removed. The blobs
    /// stay until garbage collection.
    pub fn remove(&self, manifest: &Digest) -> Result<Vec<Reference>, ImageStoreError> {
        self.update(|s| {
            if s.images.remove(manifest).is_none() {
                return Err(ImageStoreError::NotFound(manifest.to_string()));
            }
            let names = s.names_of(manifest);
            s.names.retain(|_, d| d != manifest);
            Ok(names)
        })
    }

    /// Every image with its names, sorted by stored time, newest first.
    pub fn list(&self) -> Result<Vec<ImageEntry>, ImageStoreError> {
        let s = self.state()?;
        let mut out: Vec<ImageEntry> = s.images.keys().filter_map(|m| s.entry(m)).collect();
        out.sort_by_key(|e| std::cmp::Reverse(e.record.stored));
        Ok(out)
    }

    /// Finds an image by name, full or short id, or manifest digest.
    pub fn resolve(&self, query: &str) -> Result<ImageEntry, ImageStoreError> {
        let s = self.state()?;
        let m = s.resolve(query)?;
        s.entry(&m)
            .ok_or(ImageStoreError::NotFound(query.to_string()))
    }

    /// The image `manifest`, if stored.
    pub fn get(&self, manifest: &Digest) -> Result<Option<ImageEntry>, ImageStoreError> {
        Ok(self.state()?.entry(manifest))
    }
}

fn tag_in(
    s: &mut ImageStoreState,
    name: &Reference,
    manifest: &Digest,
) -> Result<Option<Digest>, ImageStoreError> {
    let Some(rec) = s.images.get_mut(manifest) else {
        return Err(ImageStoreError::UnknownImage(manifest.clone()));
    };
    rec.last_tagged = Some(Utc::now());
    Ok(s.names
        .insert(name.to_string(), manifest.clone())
        .filter(|old| old != manifest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u8) -> ImageRecord {
        let m = Digest::of_bytes(&[n]);
        let c = Digest::of_bytes(&[n, n]);
        ImageRecord::new(
            Descriptor::new("application/vnd.oci.image.manifest.v1+json", m, 100),
            c,
        )
    }

    #[test]
    fn tag_untag_resolve_remove() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let a = record(1);
        let b = record(2);
        let app = Reference::parse("app").unwrap();
        store
            .put_and_tag(a.clone(), std::slice::from_ref(&app))
            .unwrap();
        assert_eq!(
            store.resolve("app").unwrap().record.target.digest,
            a.target.digest
        );
        assert_eq!(
            store.resolve("app:latest").unwrap().record,
            store.resolve("docker.io/library/app").unwrap().record
        );
        assert_eq!(
            store.resolve(a.config.short()).unwrap().record.config,
            a.config
        );
        assert_eq!(
            store.resolve(&a.config.to_string()).unwrap().record.config,
            a.config
        );
        assert!(matches!(
            store.resolve("nope"),
            Err(ImageStoreError::NotFound(_))
        ));

        // Moving the name leaves the old image dangling.
        let prev = store
            .put_and_tag(b.clone(), std::slice::from_ref(&app))
            .unwrap();
        assert_eq!(prev, vec![a.target.digest.clone()]);
        let list = store.list().unwrap();
        assert_eq!(list.len(), 2);
        let dangling: Vec<_> = list.iter().filter(|e| e.names.is_empty()).collect();
        assert_eq!(dangling.len(), 1);
        assert_eq!(dangling[0].record.config, a.config);

        let v2 = Reference::parse("app:v2").unwrap();
        store.tag(&v2, &b.target.digest).unwrap();
        assert_eq!(
            store.resolve("app:v2").unwrap().names,
            vec![app.clone(), v2.clone()]
        );
        assert_eq!(store.untag(&v2).unwrap(), Some(b.target.digest.clone()));
        assert_eq!(store.untag(&v2).unwrap(), None);
        assert_eq!(store.remove(&b.target.digest).unwrap(), vec![app]);
        assert_eq!(store.list().unwrap().len(), 1);
        assert!(matches!(
            store.tag(&v2, &b.target.digest),
            Err(ImageStoreError::UnknownImage(_))
        ));
    }

    #[test]
    fn a_digest_reference_finds_the_stored_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let a = record(1);
        store.put(a.clone()).unwrap();
        let by_digest = format!("anything@{}", a.target.digest);
        assert_eq!(
            store.resolve(&by_digest).unwrap().record.target.digest,
            a.target.digest
        );
        let missing = format!("anything@{}", record(2).target.digest);
        assert!(store.resolve(&missing).is_err());
    }

    #[test]
    fn concurrent_updates_are_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let store = ImageStore::open(dir.path()).unwrap();
        let handles: Vec<_> = (0..8u8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let r = record(i);
                    let name = Reference::parse(&format!("img{i}")).unwrap();
                    store.put_and_tag(r, &[name]).unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(store.state().unwrap().names.len(), 8);
    }
}
