//! Test harness: a real `docker-registry` on a free loopback port with filesystem storage in a
//! temp dir, a counting HTTP proxy in front of it (so transfers are counted from outside the
//! client, and faults can be injected), and image fixtures built from generated layers.

#![allow(dead_code)]

pub use test_support::registry::*;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use registry::manifest::{OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use registry::{
    BlobStore, Client, ClientOptions, Descriptor, Digest, DirBlobStore, Manifest, ProgressEvent,
};

/// Deterministic pseudo-random bytes (so layers do not compress away and differ by seed).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u8
        })
        .collect()
}

/// A gzip-compressed tar layer with one file; returns (compressed bytes, diff id).
pub fn make_layer(seed: u64, size: usize) -> (Vec<u8>, Digest) {
    let mut tar = tar::Builder::new(Vec::new());
    let data = noise(seed, size);
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, format!("file-{seed}"), data.as_slice())
        .expect("tar");
    let raw = tar.into_inner().expect("tar finish");
    let diff_id = Digest::of_bytes(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).expect("gzip");
    (gz.finish().expect("gzip finish"), diff_id)
}

/// A test image in a store.
#[derive(Clone, Debug)]
pub struct Fixture {
    pub manifest: Descriptor,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
}

impl Fixture {
    /// Every blob digest (config and layers) plus the manifest.
    pub fn all_digests(&self) -> Vec<Digest> {
        let mut all: Vec<Digest> = self.layers.iter().map(|d| d.digest.clone()).collect();
        all.push(self.config.digest.clone());
        all.push(self.manifest.digest.clone());
        all.sort();
        all
    }
}

fn put(store: &DirBlobStore, bytes: &[u8]) -> Digest {
    let digest = Digest::of_bytes(bytes);
    store.ingest(&digest, &mut &bytes[..]).expect("ingest");
    digest
}

/// Builds an image from layer seeds into `store` (OCI media types unless `docker` is set).
pub fn make_image(store: &DirBlobStore, seeds: &[u64], layer_size: usize, arch: &str) -> Fixture {
    make_image_typed(
        store,
        seeds,
        layer_size,
        arch,
        OCI_MANIFEST,
        OCI_CONFIG,
        OCI_LAYER_GZIP,
    )
}

pub fn make_image_typed(
    store: &DirBlobStore,
    seeds: &[u64],
    layer_size: usize,
    arch: &str,
    manifest_type: &str,
    config_type: &str,
    layer_type: &str,
) -> Fixture {
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for &seed in seeds {
        let (blob, diff_id) = make_layer(seed, layer_size);
        put(store, &blob);
        layers.push(Descriptor::of_bytes(layer_type, &blob));
        diff_ids.push(diff_id.to_string());
    }
    let config = serde_json::json!({
        "architecture": arch,
        "os": "linux",
        "config": {"Env": [format!("SEEDS={seeds:?}")]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    });
    let config_bytes = serde_json::to_vec(&config).expect("config json");
    put(store, &config_bytes);
    let config = Descriptor::of_bytes(config_type, &config_bytes);
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(manifest_type.to_string()),
        artifact_type: None,
        config: config.clone(),
        layers: layers.clone(),
        subject: None,
        annotations: Default::default(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).expect("manifest json");
    put(store, &manifest_bytes);
    Fixture {
        manifest: Descriptor::of_bytes(manifest_type, &manifest_bytes),
        config,
        layers,
    }
}

/// Client options for tests: fast retries, an isolated Docker config dir.
pub fn test_options(config_dir: &Path) -> ClientOptions {
    ClientOptions {
        docker_config_dir: Some(config_dir.to_path_buf()),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
        ..ClientOptions::default()
    }
}

pub fn test_client(config_dir: &Path) -> Client {
    Client::new(test_options(config_dir)).expect("client")
}

/// Collects progress events.
#[derive(Default, Clone)]
pub struct Events(pub Arc<Mutex<Vec<ProgressEvent>>>);

impl Events {
    pub fn sink(&self) -> impl Fn(ProgressEvent) + Send + Sync + 'static {
        let events = self.0.clone();
        move |event| events.lock().unwrap().push(event)
    }

    pub fn take(&self) -> Vec<ProgressEvent> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }
}

pub fn lines(events: &[ProgressEvent]) -> Vec<String> {
    events
        .iter()
        .filter(|e| {
            !matches!(
                e,
                ProgressEvent::Downloading { .. } | ProgressEvent::Pushing { .. }
            )
        })
        .map(|e| e.docker_line())
        .collect()
}

pub fn store_digests(store: &DirBlobStore) -> Vec<Digest> {
    store.list().expect("list store")
}
