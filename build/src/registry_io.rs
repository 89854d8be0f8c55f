//! What a build does with registries: pulls base images the local store lacks (or, with
//! `--pull`, checks for newer ones), and pushes the result (`--push`, `-o type=registry`).

use crate::BuildError;
use cache::{ContentStore, ImageStore};
use engine::graph::Platform;
use engine::solver::progress::{Event, ProgressSink};
use engine::source::image::Puller;
use registry::{Client, ClientOptions, ProgressEvent, Reference};
use std::sync::Arc;

/// Pulls through the registry client into the build's root, reporting on the build's progress
/// sink. Remembering outcomes is the caller's job
/// ([`crate::images::BaseImages`] resolves each image once per build).
pub(crate) struct RegistryPuller {
    options: ClientOptions,
    cas: ContentStore,
    images: ImageStore,
    sink: Arc<dyn ProgressSink>,
}

impl RegistryPuller {
    /// A puller storing into `cas` and `images`, with the client configured from the
    /// environment (Docker credentials, `BUILDER_INSECURE_REGISTRIES`).
    pub(crate) fn new(cas: ContentStore, images: ImageStore, sink: Arc<dyn ProgressSink>) -> Self {
        RegistryPuller {
            options: ClientOptions::from_env(),
            cas,
            images,
            sink,
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
                            platform,
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
        self.pull_now(reference, platform)
    }
}

/// Pushes the built image (`manifest`, already in `images`) to every name in `targets`,
/// reporting on `sink`; only the blobs each registry lacks are uploaded.
pub(crate) fn push(
    runtime: &tokio::runtime::Runtime,
    cas: &ContentStore,
    images: &ImageStore,
    manifest: &cache::Digest,
    targets: &[cache::Reference],
    sink: &Arc<dyn ProgressSink>,
) -> Result<(), BuildError> {
    if targets.is_empty() {
        return Ok(());
    }
    let entry = images
        .get(manifest)
        .map_err(BuildError::ImageStore)?
        .ok_or_else(|| BuildError::ImageMissing(manifest.clone()))?;
    let client = Client::new(ClientOptions::from_env()).map_err(|source| BuildError::Push {
        reference: String::new(),
        source,
    })?;
    for target in targets {
        let reference = target.clone();
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
            .map_err(|source| BuildError::Push {
                reference: reference.to_string(),
                source,
            })?;
        sink.emit(Event::Message {
            text: format!(
                "pushed {}: digest: {} size: {}",
                pushed.reference, pushed.digest, pushed.size
            ),
        });
    }
    Ok(())
}
