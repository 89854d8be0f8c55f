//! `--cache-to` / `--cache-from type=registry,ref=NAME`: build cache kept in a registry.
//!
//! The format is the local cache export's (a cache manifest mapping keys to step records, whose
//! layers are ordinary blobs), carried as an OCI artifact: an image manifest whose config is the
//! cache manifest (media type [`CACHE_MANIFEST_MEDIA_TYPE`]) and whose layers are every layer
//! the records name. Export writes the local format into a scratch directory under the root and
//! pushes it (only blobs the registry lacks go up); import pulls the artifact straight into the
//! root's content store (only blobs the root lacks come down) and lets the local backend add
//! the records, so both backends share one reader and one writer of the format.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::Mutex;

use cache::export::{
    CacheBackend, CacheTransferError, ExportReport, ImportReport, LocalCache,
    CACHE_MANIFEST_MEDIA_TYPE,
};
use cache::keys::{CacheKey, StepRecord};
use cache::RootDir;

use crate::client::{Client, ClientOptions};
use crate::digest::Digest;
use crate::error::RegistryError;
use crate::manifest::{Descriptor, Manifest, OCI_MANIFEST};
use crate::progress::ProgressEvent;
use crate::reference::Reference;
use crate::store::{BlobStore, DirBlobStore};

/// The `artifactType` of a build cache pushed to a registry.
pub const CACHE_ARTIFACT_TYPE: &str = "application/vnd.builder.cache.v1";

/// A build cache stored in a registry under one reference.
#[derive(Debug, Clone)]
pub struct RegistryCache {
    reference: Reference,
    options: ClientOptions,
}

impl RegistryCache {
    /// The cache at `reference` (`localhost:5000/app:buildcache`), reached with `options`.
    pub fn new(reference: &str, options: ClientOptions) -> Result<RegistryCache, RegistryError> {
        Ok(RegistryCache {
            reference: Reference::parse(reference)?,
            options,
        })
    }

    /// The cache's reference.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    fn remote_error(&self, message: impl std::fmt::Display) -> CacheTransferError {
        CacheTransferError::Remote {
            reference: self.reference.to_string(),
            message: message.to_string(),
        }
    }

    /// Runs a transfer on a thread of its own with a private runtime: the backend is called from
    /// synchronous code, which may itself be inside another runtime's blocking section.
    fn run<T: Send>(
        &self,
        transfer: impl FnOnce(&Client, &tokio::runtime::Runtime) -> Result<T, RegistryError> + Send,
    ) -> Result<T, CacheTransferError> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| self.remote_error(format!("starting the runtime: {e}")))?;
                    let client =
                        Client::new(self.options.clone()).map_err(|e| self.remote_error(e))?;
                    transfer(&client, &runtime).map_err(|e| self.remote_error(e))
                })
                .join()
                .unwrap_or_else(|_| Err(self.remote_error("the transfer thread panicked")))
        })
    }
}

fn io_error(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CacheTransferError {
    let path = path.to_path_buf();
    move |source| CacheTransferError::Io { op, path, source }
}

fn scratch_dir(root: &RootDir) -> Result<tempfile::TempDir, CacheTransferError> {
    let tmp = root.tmp_dir();
    fs::create_dir_all(&tmp).map_err(io_error("create directory", &tmp))?;
    tempfile::Builder::new()
        .prefix("registry-cache-")
        .tempdir_in(&tmp)
        .map_err(io_error("create temp directory in", &tmp))
}

/// The cache manifest's descriptor in a local cache layout's `index.json`.
fn cache_manifest_of(layout: &Path) -> Result<Descriptor, CacheTransferError> {
    let path = layout.join("index.json");
    let bytes = fs::read(&path).map_err(io_error("read", &path))?;
    let format = |message: String| CacheTransferError::Format {
        path: path.clone(),
        message,
    };
    let index: crate::manifest::Index =
        serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
    index
        .manifests
        .into_iter()
        .find(|d| d.media_type == CACHE_MANIFEST_MEDIA_TYPE)
        .ok_or_else(|| format(format!("no {CACHE_MANIFEST_MEDIA_TYPE} manifest")))
}

impl CacheBackend for RegistryCache {
    fn export(
        &self,
        root: &RootDir,
        records: &[(CacheKey, StepRecord)],
    ) -> Result<ExportReport, CacheTransferError> {
        let scratch = scratch_dir(root)?;
        let layout = LocalCache {
            dir: scratch.path().join("layout"),
            mounts: false,
        };
        let local = layout.export(root, records)?;
        let config = cache_manifest_of(&layout.dir)?;
        let mut seen = BTreeSet::new();
        let mut layers = Vec::new();
        for (_, record) in records {
            for layer in &record.layers {
                let digest = layer.digest.clone();
                if seen.insert(digest.clone()) {
                    layers.push(Descriptor::new(
                        layer.media_type.clone(),
                        digest,
                        layer.size,
                    ));
                }
            }
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_string()),
            artifact_type: Some(CACHE_ARTIFACT_TYPE.to_string()),
            config,
            layers,
            subject: None,
            annotations: Default::default(),
        };
        let bytes = serde_json::to_vec(&manifest).map_err(|e| self.remote_error(e))?;
        let store = DirBlobStore::new(&layout.dir);
        let descriptor = Descriptor::of_bytes(OCI_MANIFEST, &bytes);
        store
            .ingest(&descriptor.digest, &mut bytes.as_slice())
            .map_err(|e| self.remote_error(e))?;
        let sizes: std::collections::HashMap<Digest, u64> = manifest
            .layers
            .iter()
            .chain(std::iter::once(&manifest.config))
            .map(|d| (d.digest.clone(), d.size))
            .collect();
        let moved = Mutex::new(ExportReport {
            keys: local.keys,
            ..Default::default()
        });
        let progress = |event: ProgressEvent| {
            let Ok(mut report) = moved.lock() else {
                return;
            };
            match event {
                ProgressEvent::Pushed { digest } => {
                    report.blobs_written += 1;
                    report.bytes_written += sizes.get(&digest).copied().unwrap_or(0);
                }
                ProgressEvent::LayerAlreadyExists { .. } | ProgressEvent::Mounted { .. } => {
                    report.blobs_reused += 1;
                }
                _ => {}
            }
        };
        self.run(|client, runtime| {
            runtime.block_on(client.push(&self.reference, &descriptor, &store, &progress))
        })?;
        let report = moved
            .into_inner()
            .map_err(|_| self.remote_error("progress state poisoned"))?;
        Ok(report)
    }

    fn import(&self, root: &RootDir) -> Result<ImportReport, CacheTransferError> {
        let cas = root
            .content_store()
            .map_err(|e| CacheTransferError::Spec(e.to_string()))?;
        let downloaded = Mutex::new(0usize);
        let progress = |event: ProgressEvent| {
            if let (ProgressEvent::PullComplete { .. }, Ok(mut n)) = (event, downloaded.lock()) {
                *n += 1;
            }
        };
        let pulled = self.run(|client, runtime| {
            runtime.block_on(client.pull_artifact(&self.reference, &cas, &progress))
        })?;
        let manifest: Manifest = serde_json::from_slice(&pulled.root.bytes)
            .map_err(|e| self.remote_error(format!("not a cache artifact: {e}")))?;
        if manifest.config.media_type != CACHE_MANIFEST_MEDIA_TYPE {
            return Err(self.remote_error(format!(
                "not a build cache (config media type {})",
                manifest.config.media_type
            )));
        }
        // The layers are in the root now; hand the cache manifest to the local backend in a
        // layout of its own, which adds the records (and finds every blob present).
        let scratch = scratch_dir(root)?;
        let layout = LocalCache {
            dir: scratch.path().join("layout"),
            mounts: false,
        };
        let blobs = DirBlobStore::new(&layout.dir);
        let cache_manifest = cas.read(&manifest.config.digest)?;
        blobs
            .ingest(&manifest.config.digest, &mut cache_manifest.as_slice())
            .map_err(|e| self.remote_error(e))?;
        let index = crate::manifest::Index {
            schema_version: 2,
            media_type: Some(crate::manifest::OCI_INDEX.to_string()),
            artifact_type: None,
            manifests: vec![manifest.config.clone()],
            annotations: Default::default(),
        };
        let index_path = layout.dir.join("index.json");
        let index_bytes = serde_json::to_vec(&index).map_err(|e| self.remote_error(e))?;
        fs::write(&index_path, index_bytes).map_err(io_error("write", &index_path))?;
        let layout_path = layout.dir.join("oci-layout");
        fs::write(&layout_path, br#"{"imageLayoutVersion":"1.0.0"}"#)
            .map_err(io_error("write", &layout_path))?;
        let mut report = layout.import(root)?;
        report.blobs_copied = downloaded
            .into_inner()
            .map_err(|_| self.remote_error("progress state poisoned"))?;
        Ok(report)
    }
}
