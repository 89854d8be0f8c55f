//! What a build does with registries: pulls base images the local store lacks (or, with
//! `--pull`, checks for newer ones), and pushes the result (`--push`, `-o type=registry`).

use crate::BuildError;
use cache::{ContentStore, ImageStore};
use engine::graph::Platform;
use engine::solver::progress::{Event, ProgressSink};
use engine::source::image::{PullError, Puller};
use registry::{Client, ClientOptions, ProgressEvent, Reference, RegistryError};
use std::sync::Arc;

/// Why pulling a base image failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryPullError {
    /// The reference does not parse.
    #[error("{0}")]
    BadReference(#[from] cache::ReferenceError),
    /// The pull thread's runtime could not start.
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The registry client could not be made.
    #[error("{0}")]
    Client(#[source] Box<RegistryError>),
    /// The pull of an image the store has under that name failed (`--pull`).
    #[error("pulling {reference}: {source}")]
    Refresh {
        reference: Reference,
        #[source]
        source: Box<RegistryError>,
    },
    /// The pull of an image the store lacks failed.
    #[error(
        "{reference} is not in the local image store and pulling it failed: {source} (load it \
         with `builder load -i`, or check the name and the registry)"
    )]
    Missing {
        reference: Reference,
        #[source]
        source: Box<RegistryError>,
    },
    /// The pull thread panicked.
    #[error("pulling {0}: the pull thread panicked")]
    Panicked(Reference),
}

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

    fn pull_now(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<cache::Digest, RegistryPullError> {
        let parsed = Reference::parse(reference)?;
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
                .spawn(|| -> Result<registry::StoredImage, RegistryPullError> {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(RegistryPullError::Runtime)?;
                    let client = Client::new(self.options.clone())
                        .map_err(|e| RegistryPullError::Client(Box::new(e)))?;
                    runtime
                        .block_on(registry::pull_to_store(
                            &client,
                            &parsed,
                            platform,
                            &self.cas,
                            &self.images,
                            &progress,
                        ))
                        .map_err(|source| {
                            let source = Box::new(source);
                            let stored = self.images.resolve(reference).is_ok();
                            let reference = parsed.clone();
                            if stored {
                                RegistryPullError::Refresh { reference, source }
                            } else {
                                RegistryPullError::Missing { reference, source }
                            }
                        })
                })
                .join()
                .unwrap_or_else(|_| Err(RegistryPullError::Panicked(parsed.clone())))
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
    fn pull(&self, reference: &str, platform: &Platform) -> Result<cache::Digest, PullError> {
        Ok(self.pull_now(reference, platform)?)
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
