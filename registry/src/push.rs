//! Push: send only the blobs the registry lacks (`HEAD` first, then a cross-repository mount when
//! a source repository on the same registry is known, else a monolithic upload: `POST` then `PUT`
//! with the digest), then the config, then the manifest by tag. Indexes push their child
//! manifests by digest first. A connection lost during an upload restarts that upload from a new
//! `POST` (bounded); a later push picks up where the registry stands, since finished blobs answer
//! the `HEAD`.

use std::io::Read;

use futures::{StreamExt, TryStreamExt};
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use reqwest::{Body, StatusCode};
use url::Url;

use crate::client::Client;
use crate::digest::Digest;
use crate::error::RegistryError;
use crate::manifest::{self, Descriptor, Index, Manifest};
use crate::progress::{Progress, ProgressEvent};
use crate::reference::Reference;
use crate::session::Session;
use crate::store::BlobStore;

/// Bytes per chunk read from the store while uploading.
const UPLOAD_CHUNK: usize = 256 * 1024;
/// How deep indexes may nest in a push.
const MAX_INDEX_DEPTH: usize = 4;

/// Push settings beyond the reference and the manifest.
#[derive(Clone, Debug, Default)]
pub struct PushOptions {
    /// Repositories on the same registry that may already hold the blobs (the image's base):
    /// blobs are mounted from the first one instead of uploaded when the registry allows it.
    pub mount_from: Vec<String>,
}

/// What a push stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushedManifest {
    /// Where it was pushed (tag, or digest when the reference had no tag).
    pub reference: Reference,
    /// The root manifest's digest.
    pub digest: Digest,
    /// The root manifest's size.
    pub size: u64,
}

/// How one blob reached the registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlobPush {
    /// The registry already had it.
    AlreadyExists,
    /// It was mounted from another repository.
    Mounted,
    /// It was uploaded.
    Uploaded,
}

/// A request body streaming a blob out of the store, read on a blocking thread.
fn blob_body(store: &dyn BlobStore, digest: &Digest) -> Result<(Body, u64), RegistryError> {
    let blob = store.open(digest)?;
    let len = blob.len;
    let mut reader = blob.reader;
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::task::spawn_blocking(move || loop {
        let mut buffer = vec![0u8; UPLOAD_CHUNK];
        match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                buffer.truncate(n);
                if sender
                    .blocking_send(Ok(bytes::Bytes::from(buffer)))
                    .is_err()
                {
                    break;
                }
            }
            Err(e) => {
                let _ = sender.blocking_send(Err(e));
                break;
            }
        }
    });
    let stream = futures::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|item| (item, receiver))
    });
    Ok((Body::wrap_stream(stream), len))
}

impl Session<'_> {
    /// Whether the registry holds the blob in this repository.
    pub(crate) async fn blob_exists(&self, digest: &Digest) -> Result<bool, RegistryError> {
        let url = self.repo_url(&format!("blobs/{digest}"))?;
        let what = format!("checking blob {digest} in {}", self.repository);
        let http = self.client.http();
        let response = self.send(&what, || http.head(url.clone())).await?;
        match response.status() {
            status if status.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(self.fail(response, &what).await),
        }
    }

    /// Resolves an upload `Location` header (which may be relative) against the registry.
    fn upload_location(
        &self,
        response: &reqwest::Response,
        what: &str,
    ) -> Result<Url, RegistryError> {
        let location = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| RegistryError::Protocol {
                registry: self.registry.clone(),
                what: what.to_string(),
                message: "upload started without a Location header".to_string(),
            })?;
        response
            .url()
            .join(location)
            .map_err(|e| RegistryError::Protocol {
                registry: self.registry.clone(),
                what: what.to_string(),
                message: format!("bad upload Location `{location}`: {e}"),
            })
    }

    /// Sends one blob unless the registry has it (see the module doc).
    pub(crate) async fn push_blob(
        &self,
        store: &dyn BlobStore,
        descriptor: &Descriptor,
        mount_from: &[String],
    ) -> Result<BlobPush, RegistryError> {
        let digest = &descriptor.digest;
        if self.blob_exists(digest).await? {
            (self.progress)(ProgressEvent::LayerAlreadyExists {
                digest: digest.clone(),
            });
            return Ok(BlobPush::AlreadyExists);
        }
        let http = self.client.http();
        let start_url = self.repo_url("blobs/uploads/")?;
        let what = format!("uploading blob {digest} to {}", self.repository);
        let mut location = None;
        // One mount attempt: a refused mount already opens an upload session, used below.
        if let Some(source) = mount_from.iter().find(|s| **s != self.repository) {
            let mut url = start_url.clone();
            url.query_pairs_mut()
                .append_pair("mount", &digest.to_string())
                .append_pair("from", source);
            let response = self
                .send(&what, || http.post(url.clone()).header(CONTENT_LENGTH, 0))
                .await?;
            match response.status() {
                StatusCode::CREATED => {
                    (self.progress)(ProgressEvent::Mounted {
                        digest: digest.clone(),
                        from: source.clone(),
                    });
                    return Ok(BlobPush::Mounted);
                }
                StatusCode::ACCEPTED => {
                    // Not mountable from there; the registry opened an upload instead.
                    location = Some(self.upload_location(&response, &what)?);
                }
                _ => return Err(self.fail(response, &what).await),
            }
        }
        // Fail early with a store error rather than inside the body stream.
        drop(store.open(digest)?);
        let max_attempts = self.client.options().max_attempts;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let upload = match location.take() {
                Some(url) => url,
                None => {
                    let response = self
                        .send(&what, || {
                            http.post(start_url.clone()).header(CONTENT_LENGTH, 0)
                        })
                        .await?;
                    if response.status() != StatusCode::ACCEPTED {
                        return Err(self.fail(response, &what).await);
                    }
                    self.upload_location(&response, &what)?
                }
            };
            let mut put_url = upload;
            put_url
                .query_pairs_mut()
                .append_pair("digest", &digest.to_string());
            (self.progress)(ProgressEvent::Pushing {
                digest: digest.clone(),
                current: 0,
                total: descriptor.size,
            });
            let body_error = std::sync::Mutex::new(None);
            let result = self
                .send_once(&what, || match blob_body(store, digest) {
                    Ok((body, len)) => http
                        .put(put_url.clone())
                        .header(CONTENT_TYPE, "application/octet-stream")
                        .header(CONTENT_LENGTH, len)
                        .body(body),
                    Err(e) => {
                        if let Ok(mut slot) = body_error.lock() {
                            *slot = Some(e);
                        }
                        http.put(put_url.clone()).body(Body::from(Vec::new()))
                    }
                })
                .await;
            if let Some(e) = body_error.lock().ok().and_then(|mut slot| slot.take()) {
                return Err(e);
            }
            let retry_reason = match result {
                Ok(response)
                    if response.status() == StatusCode::CREATED
                        || response.status().is_success() =>
                {
                    (self.progress)(ProgressEvent::Pushing {
                        digest: digest.clone(),
                        current: descriptor.size,
                        total: descriptor.size,
                    });
                    (self.progress)(ProgressEvent::Pushed {
                        digest: digest.clone(),
                    });
                    return Ok(BlobPush::Uploaded);
                }
                Ok(response) if response.status().is_server_error() => {
                    format!("{}", response.status())
                }
                Ok(response) => return Err(self.fail(response, &what).await),
                Err(RegistryError::Unreachable { message, .. }) => message,
                Err(other) => return Err(other),
            };
            if attempt >= max_attempts {
                return Err(RegistryError::Unreachable {
                    registry: self.registry.clone(),
                    what,
                    attempts: attempt,
                    message: retry_reason,
                });
            }
            self.back_off(&what, attempt, retry_reason).await;
        }
    }

    /// Stores a manifest document under `tag_or_digest`.
    pub(crate) async fn put_manifest(
        &self,
        tag_or_digest: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<(), RegistryError> {
        let url = self.repo_url(&format!("manifests/{tag_or_digest}"))?;
        let what = format!("pushing manifest {}:{tag_or_digest}", self.repository);
        let http = self.client.http();
        let response = self
            .send(&what, || {
                http.put(url.clone())
                    .header(CONTENT_TYPE, media_type)
                    .body(bytes.to_vec())
            })
            .await?;
        if !response.status().is_success() {
            return Err(self.fail(response, &what).await);
        }
        Ok(())
    }

    /// Pushes the manifest (or index) `descriptor` and everything it reaches, storing the root
    /// under `tag` (or its digest).
    async fn push_tree(
        &self,
        store: &dyn BlobStore,
        descriptor: &Descriptor,
        tag: Option<&str>,
        mount_from: &[String],
        depth: usize,
    ) -> Result<(), RegistryError> {
        let bytes = store.read_all(&descriptor.digest)?;
        let invalid = |message: String| RegistryError::InvalidManifest {
            registry: self.registry.clone(),
            what: format!("{} (local)", descriptor.digest),
            message,
        };
        if manifest::is_index(&descriptor.media_type) {
            if depth >= MAX_INDEX_DEPTH {
                return Err(invalid(format!(
                    "indexes nested deeper than {MAX_INDEX_DEPTH}"
                )));
            }
            let index: Index =
                serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
            for child in &index.manifests {
                Box::pin(self.push_tree(store, child, None, mount_from, depth + 1)).await?;
            }
        } else {
            let parsed: Manifest =
                serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
            let concurrency = self.client.options().max_concurrent_transfers.max(1);
            for blob in parsed.layers.iter().chain([&parsed.config]) {
                (self.progress)(ProgressEvent::PushQueued {
                    digest: blob.digest.clone(),
                    size: blob.size,
                });
            }
            // Collected first so the future stays `Send` (see `fetch_blobs`).
            let uploads: Vec<_> = parsed
                .layers
                .iter()
                .map(|layer| self.push_blob(store, layer, mount_from))
                .collect();
            futures::stream::iter(uploads)
                .buffer_unordered(concurrency)
                .try_collect::<Vec<_>>()
                .await?;
            self.push_blob(store, &parsed.config, mount_from).await?;
        }
        let target = tag.map_or_else(|| descriptor.digest.to_string(), str::to_string);
        self.put_manifest(&target, &descriptor.media_type, &bytes)
            .await?;
        Ok(())
    }
}

impl Client {
    /// Pushes the image (or artifact) whose manifest or index is `manifest` in `store` to
    /// `reference` (its tag, or its digest when it has no tag).
    pub async fn push(
        &self,
        reference: &Reference,
        manifest: &Descriptor,
        store: &dyn BlobStore,
        progress: Progress<'_>,
    ) -> Result<PushedManifest, RegistryError> {
        self.push_with(
            reference,
            manifest,
            store,
            &PushOptions::default(),
            progress,
        )
        .await
    }

    /// [`Client::push`] with options (cross-repository mount sources).
    pub async fn push_with(
        &self,
        reference: &Reference,
        manifest: &Descriptor,
        store: &dyn BlobStore,
        options: &PushOptions,
        progress: Progress<'_>,
    ) -> Result<PushedManifest, RegistryError> {
        let extra_scopes = options
            .mount_from
            .iter()
            .filter(|s| s.as_str() != reference.path())
            .map(|s| format!("repository:{s}:pull"))
            .collect();
        let session = Session::open(
            self,
            reference.domain(),
            reference.path(),
            "pull,push",
            extra_scopes,
            progress,
        )
        .await?;
        if let Some(digest) = reference.digest() {
            if digest != &manifest.digest {
                return Err(RegistryError::DigestMismatch {
                    registry: reference.domain().to_string(),
                    what: format!("push of {reference}: the reference pins another manifest"),
                    expected: digest.clone(),
                    actual: manifest.digest.clone(),
                });
            }
        }
        session
            .push_tree(store, manifest, reference.tag(), &options.mount_from, 0)
            .await?;
        let pushed = match reference.tag() {
            Some(tag) => reference.with_tag(tag)?,
            None => reference.with_digest(manifest.digest.clone()),
        };
        progress(ProgressEvent::ManifestPushed {
            reference: pushed.to_string(),
            digest: manifest.digest.clone(),
        });
        Ok(PushedManifest {
            reference: pushed,
            digest: manifest.digest.clone(),
            size: manifest.size,
        })
    }

    /// Uploads one blob from `store` to `reference`'s repository unless the registry has it.
    /// For callers assembling their own artifacts (registry build caches).
    pub async fn push_blob(
        &self,
        reference: &Reference,
        blob: &Descriptor,
        store: &dyn BlobStore,
        progress: Progress<'_>,
    ) -> Result<BlobPush, RegistryError> {
        let session = Session::open(
            self,
            reference.domain(),
            reference.path(),
            "pull,push",
            Vec::new(),
            progress,
        )
        .await?;
        session.push_blob(store, blob, &[]).await
    }

    /// Stores manifest bytes under `reference`'s tag (or digest) without pushing any blob.
    pub async fn push_manifest_bytes(
        &self,
        reference: &Reference,
        media_type: &str,
        bytes: &[u8],
        progress: Progress<'_>,
    ) -> Result<Digest, RegistryError> {
        let session = Session::open(
            self,
            reference.domain(),
            reference.path(),
            "pull,push",
            Vec::new(),
            progress,
        )
        .await?;
        let digest = Digest::of_bytes(bytes);
        let target = reference
            .tag()
            .map_or_else(|| digest.to_string(), str::to_string);
        session.put_manifest(&target, media_type, bytes).await?;
        Ok(digest)
    }

    /// Downloads one blob of `reference`'s repository into `store` unless it is there already.
    /// Returns whether it was downloaded.
    pub async fn pull_blob(
        &self,
        reference: &Reference,
        blob: &Descriptor,
        store: &dyn BlobStore,
        progress: Progress<'_>,
    ) -> Result<bool, RegistryError> {
        let session = Session::for_pull(self, reference, progress).await?;
        session.fetch_blob(store, blob).await
    }
}
