//! Transfers between registries and the project's local storage: blobs in the content store
//! ([`cache::ContentStore`]), names in the image store ([`cache::ImageStore`]).
//!
//! `builder pull`, `builder push`, `FROM` of an image the store lacks and `build --push` all go
//! through here, so an image pulled by any of them is recorded the same way (its tag, and its
//! `repo@digest` for later cross-repository mounts) and a push always offers the repositories
//! the image came from as mount sources.

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::path::Path;

use cache::{CasError, ContentStore, ImageEntry, ImageRecord, ImageStore};

use crate::client::Client;
use crate::digest::Digest;
use crate::error::RegistryError;
use crate::manifest::{Descriptor, Manifest, Platform};
use crate::progress::Progress;
use crate::pull::PulledImage;
use crate::push::{PushOptions, PushedManifest};
use crate::reference::Reference;
use crate::store::{BlobIngest, BlobReader, BlobStore, StoreError};

fn store_error(error: CasError, digest: &Digest, root: &Path) -> StoreError {
    match error {
        CasError::NotFound(_) => StoreError::NotFound(digest.clone()),
        CasError::DigestMismatch { actual, .. } => StoreError::DigestMismatch {
            expected: digest.clone(),
            actual,
        },
        other => StoreError::Io {
            action: "content store",
            path: root.to_path_buf(),
            source: io::Error::other(other.to_string()),
        },
    }
}

/// A blob being written into the content store; committed only if it hashes to `expected`.
struct CasIngest {
    writer: cache::BlobWriter,
    expected: Digest,
    root: std::path::PathBuf,
}

impl Write for CasIngest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

impl BlobIngest for CasIngest {
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let CasIngest {
            writer,
            expected,
            root,
        } = *self;
        writer
            .commit(Some(&expected))
            .map(|_| ())
            .map_err(|e| store_error(e, &expected, &root))
    }
}

/// The content store is the client's blob store: pulled blobs land where images and cached
/// layers already live, so a layer is stored once however it arrived.
impl BlobStore for ContentStore {
    fn has(&self, digest: &Digest) -> bool {
        ContentStore::has(self, digest)
    }

    fn open(&self, digest: &Digest) -> Result<BlobReader, StoreError> {
        let file = self
            .open_blob(digest)
            .map_err(|e| store_error(e, digest, self.root()))?;
        let len = file
            .metadata()
            .map_err(|source| StoreError::Io {
                action: "reading metadata of",
                path: self.path(digest),
                source,
            })?
            .len();
        Ok(BlobReader {
            reader: Box::new(file),
            len,
        })
    }

    fn begin_ingest(&self, expected: &Digest) -> Result<Box<dyn BlobIngest + '_>, StoreError> {
        let writer = self
            .writer()
            .map_err(|e| store_error(e, expected, self.root()))?;
        Ok(Box::new(CasIngest {
            writer,
            expected: expected.clone(),
            root: self.root().to_path_buf(),
        }))
    }
}

/// An image pulled into the local store.
#[derive(Debug)]
pub struct StoredImage {
    /// What the registry sent.
    pub pulled: PulledImage,
    /// The image as recorded in the image store (its target is the platform's manifest).
    pub record: ImageRecord,
    /// Whether the store held this exact image before the pull (`Image is up to date`).
    pub existed: bool,
}

/// Pulls `reference` for `platform` into `cas` (only the blobs it lacks) and records it in
/// `images`: the reference's tag points at it (unless it was pulled by digest alone) and its
/// `repo@digest` is kept.
pub async fn pull_to_store(
    client: &Client,
    reference: &Reference,
    platform: &Platform,
    cas: &ContentStore,
    images: &ImageStore,
    progress: Progress<'_>,
) -> Result<StoredImage, RegistryError> {
    let pulled = client
        .pull_for_platform(reference, platform, cas, progress)
        .await?;
    let manifest = &pulled.manifest.descriptor;
    let target = cache::Descriptor::new(
        manifest.media_type.clone(),
        manifest.digest.clone(),
        manifest.size,
    );
    let mut record = ImageRecord::new(target, pulled.parsed_manifest.config.digest.clone());
    record.repo_digests = vec![format!(
        "{}@{}",
        reference.familiar_repository(),
        pulled.resolved_digest
    )];
    let mut names = Vec::new();
    if let Some(tag) = reference.tag() {
        names.push(reference.with_tag(tag)?);
    }
    let existed = images.get(&record.target.digest)?.is_some();
    images.put_and_tag(record.clone(), &names)?;
    // `put_and_tag` keeps an existing record as it was; add this repo digest to it.
    if existed {
        images.put(record.clone())?;
    }
    Ok(StoredImage {
        pulled,
        record,
        existed,
    })
}

/// The registry-side descriptor of a stored image's manifest.
pub fn manifest_descriptor(entry: &ImageEntry) -> Descriptor {
    let target = &entry.record.target;
    Descriptor::new(
        target.media_type.clone(),
        target.digest.clone(),
        target.size,
    )
}

/// The repositories of `entry`'s record on `reference`'s registry (other than the target).
fn repositories_on(record: &ImageRecord, reference: &Reference) -> Vec<String> {
    record
        .repo_digests
        .iter()
        .filter_map(|rd| rd.split('@').next())
        .filter_map(|name| Reference::parse(name).ok())
        .filter(|r| r.domain() == reference.domain() && r.path() != reference.path())
        .map(|r| r.path().to_string())
        .collect()
}

/// The layer digests of a stored manifest (empty when it cannot be read: the sources are a
/// best effort).
fn layer_digests(cas: &ContentStore, manifest: &Digest) -> BTreeSet<Digest> {
    cas.read(manifest)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Manifest>(&bytes).ok())
        .map(|m| m.layers.into_iter().map(|l| l.digest).collect())
        .unwrap_or_default()
}

/// Where a push may mount blobs from, best first: the repositories the image itself is known
/// in, then those of other stored images sharing the most layers with it (the base image a
/// build started from, pulled from the same registry). The client tries the first source for
/// each blob the registry lacks; a refused mount costs nothing, the registry opens an upload
/// instead.
fn mount_sources(
    entry: &ImageEntry,
    reference: &Reference,
    cas: &ContentStore,
    images: &ImageStore,
) -> Vec<String> {
    let mut sources = repositories_on(&entry.record, reference);
    let own = layer_digests(cas, &entry.record.target.digest);
    let mut sharing: Vec<(usize, String)> = Vec::new();
    if !own.is_empty() {
        for other in images.list().unwrap_or_default() {
            if other.record.target.digest == entry.record.target.digest {
                continue;
            }
            let repositories = repositories_on(&other.record, reference);
            if repositories.is_empty() {
                continue;
            }
            let shared = layer_digests(cas, &other.record.target.digest)
                .intersection(&own)
                .count();
            if shared > 0 {
                sharing.extend(repositories.into_iter().map(|r| (shared, r)));
            }
        }
    }
    sharing.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    for (_, repository) in sharing {
        if !sources.contains(&repository) {
            sources.push(repository);
        }
    }
    sources
}

/// Pushes the stored image `entry` to `reference` (only the blobs the registry lacks; blobs are
/// mounted from other repositories of the same registry that hold them: the image's own, or
/// those of stored images sharing its layers), then records the new `repo@digest` in `images`.
pub async fn push_from_store(
    client: &Client,
    entry: &ImageEntry,
    reference: &Reference,
    cas: &ContentStore,
    images: &ImageStore,
    progress: Progress<'_>,
) -> Result<PushedManifest, RegistryError> {
    let options = PushOptions {
        mount_from: mount_sources(entry, reference, cas, images),
    };
    let pushed = client
        .push_with(
            reference,
            &manifest_descriptor(entry),
            cas,
            &options,
            progress,
        )
        .await?;
    let repo_digest = format!("{}@{}", reference.familiar_repository(), pushed.digest);
    let key = entry.record.target.digest.clone();
    images.update(|state| {
        if let Some(record) = state.images.get_mut(&key) {
            if !record.repo_digests.contains(&repo_digest) {
                record.repo_digests.push(repo_digest);
            }
        }
        Ok(())
    })?;
    Ok(pushed)
}
