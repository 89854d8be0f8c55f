//! Progress events for pulls and pushes, one per layer state change, rendered the way
//! `docker pull` / `docker push` print them.

use std::time::Duration;

use crate::digest::Digest;

/// What happened to one blob (or the whole transfer).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProgressEvent {
    /// The reference resolved to a manifest.
    Resolved { reference: String, digest: Digest },
    /// Pull: the blob is part of the image and waits its turn (`Pulling fs layer`).
    PullQueued { digest: Digest, size: u64 },
    /// Push: the blob is part of the image and waits its turn (`Preparing`).
    PushQueued { digest: Digest, size: u64 },
    /// Pull: the store already holds the blob; nothing is downloaded.
    AlreadyExists { digest: Digest },
    /// Pull: bytes arrived (`current` of `total`).
    Downloading {
        digest: Digest,
        current: u64,
        total: u64,
    },
    /// Pull: the blob was verified and stored.
    PullComplete { digest: Digest },
    /// Push: the registry already holds the blob; nothing is uploaded.
    LayerAlreadyExists { digest: Digest },
    /// Push: the blob was mounted from another repository on the same registry.
    Mounted { digest: Digest, from: String },
    /// Push: bytes were sent (`current` of `total`).
    Pushing {
        digest: Digest,
        current: u64,
        total: u64,
    },
    /// Push: the blob was uploaded.
    Pushed { digest: Digest },
    /// Push: the manifest was stored under a tag or digest.
    ManifestPushed { reference: String, digest: Digest },
    /// A request failed and is retried after a pause.
    Retrying {
        what: String,
        attempt: u32,
        delay: Duration,
        error: String,
    },
}

impl ProgressEvent {
    /// The line `docker pull`/`docker push` prints for this event (`a1b2c3d4e5f6: Pull complete`).
    pub fn docker_line(&self) -> String {
        match self {
            ProgressEvent::Resolved { reference, digest } => {
                format!("{reference}: digest: {digest}")
            }
            ProgressEvent::PullQueued { digest, .. } => {
                format!("{}: Pulling fs layer", digest.short())
            }
            ProgressEvent::PushQueued { digest, .. } => format!("{}: Preparing", digest.short()),
            ProgressEvent::AlreadyExists { digest } => {
                format!("{}: Already exists", digest.short())
            }
            ProgressEvent::Downloading {
                digest,
                current,
                total,
            } => format!("{}: Downloading {current}/{total}", digest.short()),
            ProgressEvent::PullComplete { digest } => format!("{}: Pull complete", digest.short()),
            ProgressEvent::LayerAlreadyExists { digest } => {
                format!("{}: Layer already exists", digest.short())
            }
            ProgressEvent::Mounted { digest, from } => {
                format!("{}: Mounted from {from}", digest.short())
            }
            ProgressEvent::Pushing {
                digest,
                current,
                total,
            } => format!("{}: Pushing {current}/{total}", digest.short()),
            ProgressEvent::Pushed { digest } => format!("{}: Pushed", digest.short()),
            ProgressEvent::ManifestPushed { reference, digest } => {
                format!("{reference}: digest: {digest}")
            }
            ProgressEvent::Retrying {
                what,
                attempt,
                delay,
                error,
            } => format!("Retrying in {delay:?} (attempt {attempt}) {what}: {error}"),
        }
    }
}

/// Receives progress events; called from the transfer tasks, so it must be cheap and thread-safe.
pub type Progress<'a> = &'a (dyn Fn(ProgressEvent) + Send + Sync);

/// A progress sink that drops every event.
pub fn no_progress(_: ProgressEvent) {}
