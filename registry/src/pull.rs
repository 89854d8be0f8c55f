//! Pull: resolve a tag or digest to a manifest (choosing this machine's platform from an index),
//! then download only the blobs the store lacks, verifying each against its digest while it
//! streams into the store. A download cut short resumes with a `Range` request (bounded
//! attempts); a digest or size mismatch fails at once and leaves nothing in the store.

use std::io::Write;

use futures::{StreamExt, TryStreamExt};
use reqwest::header::{ACCEPT, CONTENT_RANGE, CONTENT_TYPE, RANGE};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};

use crate::client::Client;
use crate::digest::Digest;
use crate::error::RegistryError;
use crate::manifest::{self, Descriptor, Index, Manifest, Platform, MANIFEST_ACCEPT};
use crate::progress::{Progress, ProgressEvent};
use crate::reference::{Reference, RegistryReference};
use crate::session::{error_chain, Session};
use crate::store::{BlobIngest, BlobStore, StoreError};

/// Largest manifest accepted (the limit registries apply too).
const MAX_MANIFEST_BYTES: usize = 4 * 1024 * 1024;
/// Emit a `Downloading` event at most once per this many bytes.
const PROGRESS_STEP: u64 = 512 * 1024;
/// How deep indexes may nest in an artifact pull.
const MAX_INDEX_DEPTH: usize = 4;

/// A manifest (or index) document as fetched: exact bytes, their digest and media type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchedManifest {
    /// Media type, digest and size of `bytes`.
    pub descriptor: Descriptor,
    /// The document exactly as served (its digest is over these bytes).
    pub bytes: Vec<u8>,
}

/// The result of pulling an image: everything the image store needs to register it. Manifest,
/// config (and index, when there was one) are also in the blob store.
#[derive(Clone, Debug)]
pub struct PulledImage {
    /// The reference as requested.
    pub reference: Reference,
    /// What the reference resolved to: the index digest for a multi-platform image, else the
    /// manifest digest.
    pub resolved_digest: Digest,
    /// The index the manifest was chosen from, if any.
    pub index: Option<FetchedManifest>,
    /// The platform manifest.
    pub manifest: FetchedManifest,
    /// The parsed platform manifest.
    pub parsed_manifest: Manifest,
    /// The image config bytes.
    pub config: Vec<u8>,
}

/// The result of pulling an arbitrary artifact: the root document; every blob it reaches is in
/// the blob store.
#[derive(Clone, Debug)]
pub struct PulledArtifact {
    /// The root manifest or index.
    pub root: FetchedManifest,
    /// Every blob reached (manifests, configs, layers), root first.
    pub blobs: Vec<Descriptor>,
}

/// Media type of a manifest document: the `Content-Type` the registry sent, else the document's
/// own `mediaType`, else guessed from its shape.
fn manifest_media_type(content_type: Option<&str>, bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let probe: Option<Probe> = serde_json::from_slice(bytes).ok();
    if let Some(media_type) = probe.as_ref().and_then(|p| p.media_type.clone()) {
        return Some(media_type);
    }
    if let Some(ct) = content_type.map(|ct| ct.split(';').next().unwrap_or(ct).trim()) {
        if manifest::is_index(ct) || manifest::is_manifest(ct) {
            return Some(ct.to_string());
        }
    }
    let probe = probe?;
    if probe.manifests.is_some() {
        Some(manifest::OCI_INDEX.to_string())
    } else if probe.config.is_some() {
        Some(manifest::OCI_MANIFEST.to_string())
    } else {
        content_type.map(str::to_string)
    }
}

impl Session<'_> {
    /// Fetches the manifest `reference` (a tag or `sha256:` digest) names, verifying it when it
    /// is a digest (and against `Docker-Content-Digest` when the registry sends one).
    pub(crate) async fn fetch_manifest(
        &self,
        reference: &str,
    ) -> Result<FetchedManifest, RegistryError> {
        let url = self.repo_url(&format!("manifests/{reference}"))?;
        let what = format!("fetching manifest {}:{reference}", self.repository);
        let http = self.client.http();
        let max_attempts = self.client.options().max_attempts;
        let mut attempt = 0;
        let (content_type, header_digest, bytes) = loop {
            attempt += 1;
            let response = self
                .send(&what, || {
                    http.get(url.clone()).header(ACCEPT, MANIFEST_ACCEPT)
                })
                .await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Err(RegistryError::NotFound {
                    registry: self.registry.clone(),
                    reference: format!("{}/{}:{reference}", self.registry, self.repository)
                        .replace(":sha256:", "@sha256:"),
                });
            }
            if !response.status().is_success() {
                return Err(self.fail(response, &what).await);
            }
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let header_digest = response
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<Digest>().ok());
            match self.read_manifest_body(response, &what).await {
                Ok(bytes) => break (content_type, header_digest, bytes),
                Err(DownloadError::Transport(message)) if attempt < max_attempts => {
                    self.back_off(&what, attempt, message).await;
                }
                Err(DownloadError::Transport(message)) => {
                    return Err(RegistryError::Unreachable {
                        registry: self.registry.clone(),
                        what,
                        attempts: attempt,
                        message,
                    })
                }
                Err(DownloadError::Fatal(error)) => return Err(error),
            }
        };
        let actual = Digest::of_bytes(&bytes);
        let expected = reference.parse::<Digest>().ok().or(header_digest);
        if let Some(expected) = expected {
            if expected != actual {
                return Err(RegistryError::DigestMismatch {
                    registry: self.registry.clone(),
                    what: format!("manifest {}:{reference}", self.repository),
                    expected,
                    actual,
                });
            }
        }
        let media_type = manifest_media_type(content_type.as_deref(), &bytes).ok_or_else(|| {
            RegistryError::InvalidManifest {
                registry: self.registry.clone(),
                what: format!("{}:{reference}", self.repository),
                message: "not a JSON manifest".to_string(),
            }
        })?;
        Ok(FetchedManifest {
            descriptor: Descriptor::new(media_type, actual, bytes.len() as u64),
            bytes,
        })
    }

    /// Reads a manifest body, bounded by `MAX_MANIFEST_BYTES`.
    async fn read_manifest_body(
        &self,
        response: reqwest::Response,
        what: &str,
    ) -> Result<Vec<u8>, DownloadError> {
        if response.content_length().unwrap_or(0) > MAX_MANIFEST_BYTES as u64 {
            return Err(self.too_large(what).into());
        }
        let mut bytes = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| DownloadError::Transport(error_chain(&e)))?;
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_MANIFEST_BYTES {
                return Err(self.too_large(what).into());
            }
        }
        Ok(bytes)
    }

    fn too_large(&self, what: &str) -> RegistryError {
        RegistryError::Protocol {
            registry: self.registry.clone(),
            what: what.to_string(),
            message: format!("manifest larger than {MAX_MANIFEST_BYTES} bytes"),
        }
    }

    /// Downloads one blob into `store` unless it is already there, verifying digest and size as
    /// it streams. A broken connection restarts the download (bounded); a digest or size
    /// mismatch fails at once. Either way nothing of a bad blob stays in the store.
    pub(crate) async fn fetch_blob(
        &self,
        store: &dyn BlobStore,
        descriptor: &Descriptor,
    ) -> Result<bool, RegistryError> {
        let digest = &descriptor.digest;
        if store.has(digest) {
            (self.progress)(ProgressEvent::AlreadyExists {
                digest: digest.clone(),
            });
            return Ok(false);
        }
        let url = self.repo_url(&format!("blobs/{digest}"))?;
        let what = format!("downloading blob {digest} of {}", self.repository);
        let max_attempts = self.client.options().max_attempts;
        let mut attempt = 0;
        let mut partial = None;
        loop {
            attempt += 1;
            match self
                .download_once(store, descriptor, &url, &what, &mut partial)
                .await
            {
                Ok(()) => break,
                Err(DownloadError::Transport(message)) if attempt < max_attempts => {
                    self.back_off(&what, attempt, message).await;
                }
                Err(DownloadError::Transport(message)) => {
                    return Err(RegistryError::Unreachable {
                        registry: self.registry.clone(),
                        what,
                        attempts: attempt,
                        message,
                    })
                }
                Err(DownloadError::Fatal(error)) => return Err(error),
            }
        }
        (self.progress)(ProgressEvent::PullComplete {
            digest: digest.clone(),
        });
        Ok(true)
    }

    /// One GET of a blob, resuming from `partial` with a `Range` request when a previous attempt
    /// was cut short (falling back to the whole blob if the registry answers 200).
    async fn download_once<'s>(
        &self,
        store: &'s dyn BlobStore,
        descriptor: &Descriptor,
        url: &url::Url,
        what: &str,
        partial: &mut Option<PartialBlob<'s>>,
    ) -> Result<(), DownloadError> {
        let digest = &descriptor.digest;
        let total = descriptor.size;
        let http = self.client.http();
        let offset = partial.as_ref().map_or(0, |p| p.received);
        let response = self
            .send(what, || {
                let request = http.get(url.clone());
                if offset > 0 {
                    request.header(RANGE, format!("bytes={offset}-"))
                } else {
                    request
                }
            })
            .await?;
        let resumed = offset > 0
            && response.status() == StatusCode::PARTIAL_CONTENT
            && response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with(&format!("bytes {offset}-")));
        if !resumed {
            if !response.status().is_success() || response.status() == StatusCode::PARTIAL_CONTENT {
                return Err(self.fail(response, what).await.into());
            }
            // Start over (dropping a previous partial write discards it).
            *partial = None;
        }
        let mut state = match partial.take() {
            Some(state) => state,
            None => {
                (self.progress)(ProgressEvent::Downloading {
                    digest: digest.clone(),
                    current: 0,
                    total,
                });
                PartialBlob {
                    writer: store.begin_ingest(digest)?,
                    hasher: Sha256::new(),
                    received: 0,
                }
            }
        };
        let mut reported = state.received;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => {
                    // Keep what arrived; the next attempt asks for the rest.
                    *partial = Some(state);
                    return Err(DownloadError::Transport(error_chain(&e)));
                }
            };
            state.received += chunk.len() as u64;
            if state.received > total {
                return Err(self.size_mismatch(descriptor, state.received).into());
            }
            state.hasher.update(&chunk);
            state.writer.write_all(&chunk).map_err(|source| {
                DownloadError::Fatal(RegistryError::Store(StoreError::Io {
                    action: "writing blob",
                    path: digest.to_string().into(),
                    source,
                }))
            })?;
            if state.received - reported >= PROGRESS_STEP {
                reported = state.received;
                (self.progress)(ProgressEvent::Downloading {
                    digest: digest.clone(),
                    current: state.received,
                    total,
                });
            }
        }
        if state.received != total {
            return Err(self.size_mismatch(descriptor, state.received).into());
        }
        let actual = Digest::from_sha256(state.hasher.finalize().into());
        if &actual != digest {
            // Dropping the writer discards the partial blob.
            return Err(RegistryError::DigestMismatch {
                registry: self.registry.clone(),
                what: format!("blob {digest} of {}", self.repository),
                expected: digest.clone(),
                actual,
            }
            .into());
        }
        let writer = state.writer;
        // The commit fsyncs; keep that off the async worker where the runtime allows it.
        off_async_thread(|| writer.commit())?;
        Ok(())
    }

    fn size_mismatch(&self, descriptor: &Descriptor, actual: u64) -> RegistryError {
        RegistryError::SizeMismatch {
            registry: self.registry.clone(),
            what: format!("blob {} of {}", descriptor.digest, self.repository),
            expected: descriptor.size,
            actual,
        }
    }

    /// Fetches every blob in `blobs`, several at a time; fails with the first error.
    pub(crate) async fn fetch_blobs(
        &self,
        store: &dyn BlobStore,
        blobs: &[Descriptor],
    ) -> Result<(), RegistryError> {
        let concurrency = self.client.options().max_concurrent_transfers.max(1);
        // Collected first: a lazily mapped iterator inside the stream would make the future
        // non-`Send` (a higher-ranked closure lifetime the compiler cannot prove general).
        for blob in blobs {
            (self.progress)(ProgressEvent::PullQueued {
                digest: blob.digest.clone(),
                size: blob.size,
            });
        }
        let transfers: Vec<_> = blobs.iter().map(|d| self.fetch_blob(store, d)).collect();
        futures::stream::iter(transfers)
            .buffer_unordered(concurrency)
            .try_collect::<Vec<_>>()
            .await?;
        Ok(())
    }

    /// Puts a fetched manifest into the store (it is verified again there).
    pub(crate) fn keep_manifest(
        &self,
        store: &dyn BlobStore,
        fetched: &FetchedManifest,
    ) -> Result<(), RegistryError> {
        if !store.has(&fetched.descriptor.digest) {
            store.ingest(&fetched.descriptor.digest, &mut fetched.bytes.as_slice())?;
        }
        Ok(())
    }

    fn parse_manifest(&self, fetched: &FetchedManifest) -> Result<Manifest, RegistryError> {
        serde_json::from_slice(&fetched.bytes).map_err(|e| RegistryError::InvalidManifest {
            registry: self.registry.clone(),
            what: format!("{}@{}", self.repository, fetched.descriptor.digest),
            message: e.to_string(),
        })
    }

    fn parse_index(&self, fetched: &FetchedManifest) -> Result<Index, RegistryError> {
        serde_json::from_slice(&fetched.bytes).map_err(|e| RegistryError::InvalidManifest {
            registry: self.registry.clone(),
            what: format!("{}@{}", self.repository, fetched.descriptor.digest),
            message: e.to_string(),
        })
    }
}

/// Runs blocking work (an fsync) with `block_in_place` on a multi-threaded runtime, so other
/// transfers keep going; runs it inline elsewhere (a current-thread runtime cannot hand off).
fn off_async_thread<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// A blob download cut short: the bytes so far are in the writer and the hasher.
struct PartialBlob<'s> {
    writer: Box<dyn BlobIngest + 's>,
    hasher: Sha256,
    received: u64,
}

/// A download failure: worth retrying (transport) or not.
enum DownloadError {
    Transport(String),
    Fatal(RegistryError),
}

impl From<RegistryError> for DownloadError {
    fn from(error: RegistryError) -> Self {
        DownloadError::Fatal(error)
    }
}

impl From<StoreError> for DownloadError {
    fn from(error: StoreError) -> Self {
        DownloadError::Fatal(error.into())
    }
}

impl Client {
    /// Fetches the manifest or index `reference` names without downloading any blob.
    pub async fn fetch_manifest(
        &self,
        reference: &Reference,
        progress: Progress<'_>,
    ) -> Result<FetchedManifest, RegistryError> {
        let session = Session::for_pull(self, reference, progress).await?;
        session
            .fetch_manifest(&reference.manifest_reference())
            .await
    }

    /// Pulls an image: resolves `reference`, picks this client's platform from an index,
    /// downloads the config and the layers `store` lacks, and keeps index, manifest and config in
    /// the store too.
    pub async fn pull(
        &self,
        reference: &Reference,
        store: &dyn BlobStore,
        progress: Progress<'_>,
    ) -> Result<PulledImage, RegistryError> {
        let platform = self.options().platform.clone();
        self.pull_for_platform(reference, &platform, store, progress)
            .await
    }

    /// [`Client::pull`] for another platform than this client's (a build for `--platform`).
    pub async fn pull_for_platform(
        &self,
        reference: &Reference,
        wanted: &Platform,
        store: &dyn BlobStore,
        progress: Progress<'_>,
    ) -> Result<PulledImage, RegistryError> {
        let session = Session::for_pull(self, reference, progress).await?;
        let root = resolve_root(&session, reference, progress).await?;
        let resolved_digest = root.descriptor.digest.clone();
        let (index, fetched) = if manifest::is_index(&root.descriptor.media_type) {
            let index = session.parse_index(&root)?;
            let chosen = manifest::select_manifest(wanted, &index.manifests).ok_or_else(|| {
                RegistryError::NoMatchingPlatform {
                    reference: reference.to_string(),
                    wanted: wanted.to_string(),
                    available: index
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(|p| p.to_string()))
                        .collect(),
                }
            })?;
            let child = session.fetch_manifest(&chosen.digest.to_string()).await?;
            (Some(root), child)
        } else {
            (None, root)
        };
        if !manifest::is_manifest(&fetched.descriptor.media_type) {
            return Err(RegistryError::UnsupportedMediaType {
                reference: reference.to_string(),
                media_type: fetched.descriptor.media_type.clone(),
            });
        }
        let parsed = session.parse_manifest(&fetched)?;
        let mut blobs = vec![parsed.config.clone()];
        blobs.extend(parsed.layers.iter().cloned());
        session.fetch_blobs(store, &blobs).await?;
        let config = store.read_all(&parsed.config.digest)?;
        if let Some(index) = &index {
            session.keep_manifest(store, index)?;
        }
        session.keep_manifest(store, &fetched)?;
        Ok(PulledImage {
            reference: reference.clone(),
            resolved_digest,
            index,
            manifest: fetched,
            parsed_manifest: parsed,
            config,
        })
    }

    /// Pulls an arbitrary artifact: the root manifest or index and everything it reaches (every
    /// child manifest of an index, every config and layer), fetching only what `store` lacks.
    /// For registry-backed build caches, whose blobs are not images for one platform.
    pub async fn pull_artifact(
        &self,
        reference: &Reference,
        store: &dyn BlobStore,
        progress: Progress<'_>,
    ) -> Result<PulledArtifact, RegistryError> {
        let session = Session::for_pull(self, reference, progress).await?;
        let root = resolve_root(&session, reference, progress).await?;
        let mut reached = Vec::new();
        let mut pending = vec![(root.clone(), 0usize)];
        while let Some((document, depth)) = pending.pop() {
            reached.push(document.descriptor.clone());
            if manifest::is_index(&document.descriptor.media_type) {
                if depth >= MAX_INDEX_DEPTH {
                    return Err(RegistryError::InvalidManifest {
                        registry: session.registry.clone(),
                        what: reference.to_string(),
                        message: format!("indexes nested deeper than {MAX_INDEX_DEPTH}"),
                    });
                }
                for child in session.parse_index(&document)?.manifests {
                    let fetched = session.fetch_manifest(&child.digest.to_string()).await?;
                    pending.push((fetched, depth + 1));
                }
            } else {
                let parsed = session.parse_manifest(&document)?;
                let mut blobs = vec![parsed.config.clone()];
                blobs.extend(parsed.layers.iter().cloned());
                session.fetch_blobs(store, &blobs).await?;
                reached.extend(blobs);
            }
            session.keep_manifest(store, &document)?;
        }
        Ok(PulledArtifact {
            root,
            blobs: reached,
        })
    }
}

/// Fetches the manifest or index `reference` names and reports what it resolved to.
async fn resolve_root(
    session: &Session<'_>,
    reference: &Reference,
    progress: Progress<'_>,
) -> Result<FetchedManifest, RegistryError> {
    let root = session
        .fetch_manifest(&reference.manifest_reference())
        .await?;
    progress(ProgressEvent::Resolved {
        reference: reference.to_string(),
        digest: root.descriptor.digest.clone(),
    });
    Ok(root)
}
