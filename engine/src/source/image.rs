//! Base images for `FROM` and `COPY --from=<image>`: resolved from the local image store, or
//! pulled through a [`Puller`] when the store lacks them (the registry seam).

use crate::graph::Platform;
use crate::image::read_image;
use crate::solver::{ImageSource, ResolvedImage};
use cache::keys::LayerRef;
use cache::{ContentStore, ImageStore};
use std::sync::Arc;

/// Fetches an image the local store lacks (a registry pull) into the store; returns the manifest
/// digest it stored. Blocking.
pub trait Puller: Send + Sync {
    fn pull(&self, reference: &str, platform: &Platform) -> Result<cache::Digest, String>;
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

    fn read(&self, manifest: &cache::Digest, platform: &Platform) -> Result<ResolvedImage, String> {
        let image = read_image(&self.cas, manifest, platform).map_err(|e| e.to_string())?;
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
}

impl ImageSource for StoreImages {
    fn resolve(&self, reference: &str, platform: &Platform) -> Result<ResolvedImage, String> {
        if self.always_pull {
            if let Some(puller) = &self.puller {
                let manifest = puller.pull(reference, platform)?;
                return self.read(&manifest, platform);
            }
        }
        match self.store.resolve(reference) {
            Ok(entry) => self.read(&entry.record.target.digest, platform),
            Err(local) => match &self.puller {
                Some(puller) => {
                    let manifest = puller.pull(reference, platform)?;
                    self.read(&manifest, platform)
                }
                None => Err(format!(
                    "{local} (not in the local image store; load it with `builder load -i` or pull it)"
                )),
            },
        }
    }
}
