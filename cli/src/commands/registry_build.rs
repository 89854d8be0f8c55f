//! What `builder build` does with registries: pulls base images the local store lacks (or, with
//! `--pull`, checks for newer ones), and pushes the result (`--push`, `-o type=registry`).
//!
//! Kept out of `build.rs` so the build command only wires these in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use cache::{ContentStore, ImageStore};
use engine::graph::Platform;
use engine::solver::progress::{Event, ProgressSink};
use engine::source::image::Puller;
use registry::{Client, ClientOptions, ProgressEvent, Reference};

/// Pulls through the registry client into the build's root, reporting on the build's progress
/// sink. Each reference is pulled at most once per build (lowering and the solver both resolve
/// base images), and its outcome, success or failure, is remembered for the rest of the build.
pub struct RegistryPuller {
    options: ClientOptions,
    cas: ContentStore,
    images: ImageStore,
    sink: Arc<dyn ProgressSink>,
    pulled: Mutex<HashMap<(String, String), Result<cache::Digest, String>>>,
}

impl RegistryPuller {
    /// A puller storing into `cas` and `images`, with the client configured from the
    /// environment (Docker credentials, `BUILDER_INSECURE_REGISTRIES`).
    pub fn new(cas: ContentStore, images: ImageStore, sink: Arc<dyn ProgressSink>) -> Self {
        RegistryPuller {
            options: ClientOptions::from_env(),
            cas,
            images,
            sink,
            pulled: Mutex::new(HashMap::new()),
        }
    }

    fn pull_now(&self, reference: &str, platform: &Platform) -> Result<cache::Digest, String> {
        let parsed = Reference::parse(reference).map_err(|e| e.to_string())?;
        // A digest-pinned image already stored cannot have changed: no registry round trip.
        if let Some(digest) = parsed.digest() {
            if let Ok(Some(entry)) = self.images.get(digest) {
                return Ok(entry.record.target.digest);
            }
        }
        let wanted = registry::Platform::new(
            &platform.os,
            &platform.architecture,
            platform.variant.as_deref(),
        );
        self.sink.emit(Event::Message {
            text: format!("pulling {parsed} for {platform}"),
        });
        let sink = self.sink.clone();
        let progress = move |event: ProgressEvent| {
            if !matches!(
                event,
                ProgressEvent::Downloading { .. } | ProgressEvent::Pushing { .. }
            ) {
                sink.emit(Event::Message {
                    text: format!("{reference}: {}", event.docker_line()),
                });
            }
        };
        // The solver resolves images on blocking threads and lowering on the main thread; a
        // thread of its own with a private runtime is safe from either (a runtime cannot be
        // entered from inside another one).
        let stored = std::thread::scope(|scope| {
            scope
                .spawn(|| -> Result<registry::StoredImage, String> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("starting the async runtime: {e}"))?;
                    let client = Client::new(self.options.clone()).map_err(|e| e.to_string())?;
                    runtime
                        .block_on(registry::pull_to_store(
                            &client,
                            &parsed,
                            &wanted,
                            &self.cas,
                            &self.images,
                            &progress,
                        ))
                        .map_err(|e| {
                            if self.images.resolve(reference).is_ok() {
                                format!("pulling {parsed}: {e}")
                            } else {
                                format!(
                                    "{parsed} is not in the local image store and pulling it \
                                     failed: {e} (load it with `builder load -i`, or check the \
                                     name and the registry)"
                                )
                            }
                        })
                })
                .join()
                .unwrap_or_else(|_| Err(format!("pulling {parsed}: the pull thread panicked")))
        })?;
        let status = if stored.existed {
            "Image is up to date for"
        } else {
            "Downloaded newer image for"
        };
        self.sink.emit(Event::Message {
            text: format!(
                "{reference}: Digest: {}; {status} {}",
                stored.pulled.resolved_digest,
                parsed.familiar()
            ),
        });
        Ok(stored.record.target.digest)
    }
}

impl Puller for RegistryPuller {
    fn pull(&self, reference: &str, platform: &Platform) -> Result<cache::Digest, String> {
        let key = (reference.to_string(), platform.to_string());
        // Held across the pull: concurrent resolutions of the same image wait for one transfer.
        let mut pulled = self
            .pulled
            .lock()
            .map_err(|_| "image pull state poisoned".to_string())?;
        if let Some(outcome) = pulled.get(&key) {
            return outcome.clone();
        }
        let outcome = self.pull_now(reference, platform);
        pulled.insert(key, outcome.clone());
        outcome
    }
}

/// The names an `-o` value asks to push to: `type=registry,name=a[,name=b]` and BuildKit's
/// `type=image,name=...,push=true`. `None` when the output is not a registry push.
pub fn registry_output(spec: &str) -> Result<Option<Vec<String>>> {
    let mut kind = None;
    let mut push = false;
    let mut names = Vec::new();
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => kind = Some(v.trim()),
            Some(("name", v)) => {
                names.extend(v.split(';').filter(|s| !s.is_empty()).map(str::to_string))
            }
            Some(("push", v)) => push = v.trim() == "true",
            _ => {}
        }
    }
    let is_push = match kind {
        Some("registry") => true,
        Some("image") => push,
        _ => false,
    };
    if !is_push {
        return Ok(None);
    }
    if names.is_empty() {
        bail!("-o {spec}: a registry output needs name=REGISTRY/REPOSITORY[:TAG]");
    }
    Ok(Some(names))
}

/// Every name a build pushes to: the `-t` names with `--push`, and the names of registry
/// outputs. Checked before the build starts so a bad request fails fast.
pub fn push_targets(push: bool, tags: &[String], outputs: &[String]) -> Result<Vec<String>> {
    let mut targets = Vec::new();
    if push {
        if tags.is_empty() {
            bail!("--push needs a name to push to: give -t REGISTRY/REPOSITORY[:TAG]");
        }
        targets.extend(tags.iter().cloned());
    }
    for spec in outputs {
        targets.extend(registry_output(spec)?.unwrap_or_default());
    }
    for target in &targets {
        Reference::parse(target).with_context(|| format!("invalid push target {target:?}"))?;
    }
    Ok(targets)
}

/// Pushes the built image (`manifest`, already in `images`) to every name in `targets`,
/// reporting on `sink`; only the blobs each registry lacks are uploaded.
pub fn push_image(
    runtime: &tokio::runtime::Runtime,
    cas: &ContentStore,
    images: &ImageStore,
    manifest: &cache::Digest,
    targets: &[String],
    sink: &Arc<dyn ProgressSink>,
) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    let entry = images
        .get(manifest)?
        .with_context(|| format!("image {manifest} is not in the local store"))?;
    let client = Client::new(ClientOptions::from_env())?;
    for target in targets {
        let reference =
            Reference::parse(target).with_context(|| format!("invalid push target {target:?}"))?;
        sink.emit(Event::Message {
            text: format!("pushing {reference}"),
        });
        let progress_sink = sink.clone();
        let shown = reference.to_string();
        let progress = move |event: ProgressEvent| {
            if !matches!(
                event,
                ProgressEvent::Downloading { .. } | ProgressEvent::Pushing { .. }
            ) {
                progress_sink.emit(Event::Message {
                    text: format!("{shown}: {}", event.docker_line()),
                });
            }
        };
        let pushed = runtime
            .block_on(registry::push_from_store(
                &client, &entry, &reference, cas, images, &progress,
            ))
            .with_context(|| format!("pushing {reference}"))?;
        sink.emit(Event::Message {
            text: format!(
                "pushed {}: digest: {} size: {}",
                pushed.reference, pushed.digest, pushed.size
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_registry_outputs() {
        assert_eq!(
            registry_output("type=registry,name=localhost:5000/app:1").unwrap(),
            Some(vec!["localhost:5000/app:1".to_string()])
        );
        assert_eq!(
            registry_output("type=image,name=r.example/a;r.example/b,push=true").unwrap(),
            Some(vec!["r.example/a".to_string(), "r.example/b".to_string()])
        );
        assert_eq!(registry_output("type=image,name=x").unwrap(), None);
        assert_eq!(registry_output("type=oci,dest=out.tar").unwrap(), None);
        assert_eq!(registry_output("out-dir").unwrap(), None);
        assert!(registry_output("type=registry").is_err());
    }
}
