//! Transfer figures against a local `docker-registry`: push and pull of a generated image, cold
//! (nothing on the other side) and warm (everything already there).
//!
//! Method: one image of `BENCH_LAYERS` layers (default 4) of `BENCH_LAYER_MB` MiB (default 16)
//! of incompressible data, a registry on loopback with filesystem storage in a temp dir, default
//! client options. Run with `cargo bench -p registry --bench transfer` (add `--profile dev` to
//! skip the optimised build; figures then reflect unoptimised hashing). Prints one line per case.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use registry::{parse_reference, DirBlobStore};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let layers = env_usize("BENCH_LAYERS", 4);
    let layer_mb = env_usize("BENCH_LAYER_MB", 16);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let registry = RegistryProcess::start(None);
    let home = tempfile::tempdir().expect("temp dir");
    let client = test_client(home.path());
    let source_dir = tempfile::tempdir().expect("temp dir");
    let source = DirBlobStore::new(source_dir.path());
    let seeds: Vec<u64> = (0..layers as u64).map(|i| 1000 + i).collect();
    let image = make_image(&source, &seeds, layer_mb << 20, "amd64");
    let total: u64 = image.layers.iter().map(|l| l.size).sum::<u64>() + image.config.size;
    let mib = total as f64 / (1 << 20) as f64;
    let reference =
        parse_reference(&format!("{}/bench/app:1", registry.address())).expect("reference");
    println!("image: {layers} layers, {mib:.1} MiB of blobs");

    let report = |case: &str, started: Instant| {
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{case:<22} {:>8.1} ms  {:>8.1} MiB/s",
            secs * 1e3,
            mib / secs
        );
    };
    runtime.block_on(async {
        let started = Instant::now();
        client
            .push(&reference, &image.manifest, &source, &registry::no_progress)
            .await
            .expect("push");
        report("push (cold)", started);
        let started = Instant::now();
        client
            .push(&reference, &image.manifest, &source, &registry::no_progress)
            .await
            .expect("push");
        report("push (all present)", started);
        let dir = tempfile::tempdir().expect("temp dir");
        let store = DirBlobStore::new(dir.path());
        let started = Instant::now();
        client
            .pull(&reference, &store, &registry::no_progress)
            .await
            .expect("pull");
        report("pull (cold)", started);
        let started = Instant::now();
        client
            .pull(&reference, &store, &registry::no_progress)
            .await
            .expect("pull");
        report("pull (all present)", started);
    });
}
