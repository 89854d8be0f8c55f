//! Base images for `FROM` and `COPY --from=<image>`: resolved from the local image store, or
//! pulled through a [`Puller`] when the store lacks them (the registry seam).

use crate::graph::Platform;
use crate::image::{read_image, ImageError};
use crate::solver::{ImageSource, ResolveError, ResolvedImage};
use cache::keys::LayerRef;
use cache::{ContentStore, ImageStore, ImageStoreError};
use std::sync::Arc;

/// Why a pull failed: the puller's own error type (the registry client's, underneath), boxed
/// since the engine does not know the registry crate.
pub type PullError = Box<dyn std::error::Error + Send + Sync>;

/// Fetches an image the local store lacks (a registry pull) into the store; returns the manifest
/// digest it stored. Blocking.
pub trait Puller: Send + Sync {
    fn pull(&self, reference: &str, platform: &Platform) -> Result<cache::Digest, PullError>;
}

/// Why a base image could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ImageSourceError {
    /// The local store lacks the image and there is no puller to ask.
    #[error("{source} (not in the local image store; load it with `builder load -i` or pull it)")]
    NotStored {
        #[source]
        source: ImageStoreError,
    },
    /// The stored image could not be read.
    #[error("{0}")]
    Read(#[from] ImageError),
    /// The puller failed.
    #[error("{0}")]
    Pull(#[source] PullError),
    /// A resolver's shared state was left poisoned by a panic.
    #[error("image resolution state poisoned")]
    Poisoned,
}

/// Resolves images from the local store, then (if set) a puller.
pub struct StoreImages {
    store: ImageStore,
    cas: ContentStore,
    puller: Option<Arc<dyn Puller>>,
    /// `--pull`: ask the puller first, even when the store has the image.
    always_pull: bool,
}

impl StoreImages {
    /// Resolves from `store` (names) and `cas` (blobs).
    pub fn new(store: ImageStore, cas: ContentStore) -> Self {
        StoreImages {
            store,
            cas,
            puller: None,
            always_pull: false,
        }
    }

    /// Falls back to (or, with `always`, prefers) `puller`.
    pub fn with_puller(mut self, puller: Arc<dyn Puller>, always: bool) -> Self {
        self.puller = Some(puller);
        self.always_pull = always;
        self
    }

    fn read(
        &self,
        manifest: &cache::Digest,
        platform: &Platform,
    ) -> Result<ResolvedImage, ImageSourceError> {
        let image = read_image(&self.cas, manifest, platform)?;
        let layers = image
            .layers()
            .into_iter()
            .map(|l| LayerRef {
                digest: l.descriptor.digest.clone(),
                diff_id: l.diff_id.clone(),
                size: l.descriptor.size,
                media_type: l.descriptor.media_type.clone(),
            })
            .collect();
        Ok(ResolvedImage {
            manifest_digest: image.manifest_descriptor.digest.clone(),
            config: image.config,
            layers,
        })
    }

    fn pull(
        &self,
        puller: &dyn Puller,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, ImageSourceError> {
        let manifest = puller
            .pull(reference, platform)
            .map_err(ImageSourceError::Pull)?;
        self.read(&manifest, platform)
    }

    /// Resolves `reference` for `platform`: the store first (the puller first with `--pull`),
    /// then the puller.
    pub fn resolve_image(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<ResolvedImage, ImageSourceError> {
        if self.always_pull {
            if let Some(puller) = &self.puller {
                return self.pull(puller.as_ref(), reference, platform);
            }
        }
        match self.store.resolve(reference) {
            Ok(entry) => self.read(&entry.record.target.digest, platform),
            Err(local) => match &self.puller {
                Some(puller) => self.pull(puller.as_ref(), reference, platform),
                None => Err(ImageSourceError::NotStored { source: local }),
            },
        }
    }
}

impl ImageSource for StoreImages {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, ResolveError> {
        self.resolve_image(reference, platform).map_err(Arc::new)
    }
}
