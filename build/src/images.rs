//! Base images for one build: resolved once and shared by lowering (which reads their env,
//! workdir, user, shell and ONBUILD triggers) and the solver (which needs their layers).

use super::registry_io::RegistryPuller;
use crate::BuildError;
use engine::graph::Platform;
use engine::solver::progress::ProgressSink;
use engine::solver::{ImageSource, ResolveError, ResolvedImage};
use engine::source::image::{ImageSourceError, StoreImages};
use frontend_dockerfile::lower::{BaseImageConfig, BaseImageResolver};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

type Resolved = Result<ResolvedImage, ResolveError>;

/// The build's image source: the local store, then the registry; each (reference, platform) is
/// resolved (and, where needed, pulled) at most once per build, success or failure.
#[derive(Clone)]
pub(crate) struct BaseImages {
    source: Arc<StoreImages>,
    resolved: Arc<Mutex<HashMap<(String, String), Resolved>>>,
}

impl BaseImages {
    /// Resolves from `store`/`cas`, pulling what they lack (always asking the registry with
    /// `pull`), and reports pulls on `progress`.
    pub(crate) fn new(
        store: &cache::ImageStore,
        cas: &cache::ContentStore,
        progress: &Arc<dyn ProgressSink>,
        pull: bool,
    ) -> BaseImages {
        let puller = RegistryPuller::new(cas.clone(), store.clone(), progress.clone());
        BaseImages {
            source: Arc::new(
                StoreImages::new(store.clone(), cas.clone()).with_puller(Arc::new(puller), pull),
            ),
            resolved: Arc::default(),
        }
    }
}

impl ImageSource for BaseImages {
    fn resolve(&self, reference: &str, platform: &Platform) -> Resolved {
        let key = (reference.to_string(), platform.to_string());
        // Held across the resolution: a second asker waits for the first instead of pulling twice.
        let mut resolved = self
            .resolved
            .lock()
            .map_err(|_| Arc::new(ImageSourceError::Poisoned))?;
        if let Some(done) = resolved.get(&key) {
            return done.clone();
        }
        let done = self.source.resolve(reference, platform);
        resolved.insert(key, done.clone());
        done
    }
}

impl BaseImageResolver for BaseImages {
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<BaseImageConfig>, String> {
        // An image lowering cannot see yet is the solver's to report, with its own error.
        let Ok(image) = ImageSource::resolve(self, reference, platform) else {
            return Ok(None);
        };
        let env = engine::solver::config::env_of(&image.config);
        let c = image.config.config.unwrap_or_default();
        Ok(Some(BaseImageConfig {
            env,
            working_dir: c.working_dir.unwrap_or_default(),
            user: c.user.unwrap_or_default(),
            shell: c.shell.unwrap_or_default(),
            onbuild: c.on_build.unwrap_or_default(),
        }))
    }
}

/// Stores the images of the OCI layout `dir` of `--build-context NAME=oci-layout://DIR[@DIGEST]`
/// (without the names its index gives them) and returns a reference that resolves to the chosen
/// image locally: `NAME@MANIFEST-DIGEST` (a digest reference finds the stored manifest by
/// content).
pub(crate) fn oci_layout_image(
    cas: &cache::ContentStore,
    store: &cache::ImageStore,
    name: &str,
    dir: &std::path::Path,
    digest: Option<&cache::Digest>,
) -> Result<String, BuildError> {
    let shown = || format!("--build-context {name}=oci-layout://{}", dir.display());
    let loaded = engine::export::import_oci_layout_dir(cas, store, dir)
        .map_err(|e| BuildError::Request(format!("{}: {e}", shown())))?;
    // The layout's index may name an index (a multi-platform image): its entry for this
    // platform is what was loaded.
    let wanted = digest.map(|d| d.to_string()).unwrap_or_default();
    let listed_in_index = || {
        std::fs::read(dir.join("index.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|index| {
                index["manifests"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|d| d["digest"].as_str() == Some(&wanted)))
            })
    };
    let chosen = match digest {
        Some(d) => loaded
            .iter()
            .find(|l| &l.manifest.digest == d)
            .or_else(|| (loaded.len() == 1 && listed_in_index()).then(|| &loaded[0])),
        None if loaded.len() == 1 => loaded.first(),
        None => {
            return Err(BuildError::Request(format!(
                "{}: the layout holds {} images; name one with @sha256:...",
                shown(),
                loaded.len()
            )))
        }
    };
    let Some(chosen) = chosen else {
        return Err(BuildError::Request(format!(
            "{}: no image with digest {wanted} in the layout",
            shown(),
        )));
    };
    let repository: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-/".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let reference = format!("{repository}@{}", chosen.manifest.digest);
    engine::graph::normalize_image_reference(&reference)
        .or_else(|_| {
            engine::graph::normalize_image_reference(&format!(
                "oci-layout@{}",
                chosen.manifest.digest
            ))
        })
        .map_err(|source| BuildError::BadName {
            name: reference,
            source,
        })
}
