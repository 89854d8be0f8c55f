//! Interoperability with a third-party client: images pushed by `skopeo` pull here, and images
//! pushed here are read and verified by `skopeo`.

mod common;

use std::process::Command;

use common::*;
use registry::{parse_reference, BlobStore, DirBlobStore};

fn skopeo(args: &[&str]) -> Vec<u8> {
    let output = Command::new("skopeo")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        output.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

/// Makes the store's root a complete OCI image layout with `tag` naming the manifest.
fn write_layout(store: &DirBlobStore, image: &Fixture, tag: &str) {
    std::fs::write(
        store.root().join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    let mut entry = image.manifest.clone();
    entry
        .annotations
        .get_or_insert_default()
        .insert("org.opencontainers.image.ref.name".into(), tag.into());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [entry]});
    std::fs::write(store.root().join("index.json"), index.to_string()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    any(missing_registry, missing_skopeo),
    ignore = "needs docker-registry and skopeo"
)]
async fn skopeo_and_this_client_read_each_others_pushes() {
    test_support::require(&[test_support::Need::Registry, test_support::Need::Skopeo]);
    let registry = RegistryProcess::start(None);
    let home = tempfile::tempdir().unwrap();
    let client = test_client(home.path());
    let source_dir = tempfile::tempdir().unwrap();
    let source = DirBlobStore::new(source_dir.path());
    let image = make_image(&source, &[80, 81], 64 * 1024, "amd64");
    write_layout(&source, &image, "v1");

    // skopeo pushes, this client pulls the same digests.
    let skopeo_ref = format!("{}/interop/by-skopeo:1", registry.address());
    skopeo(&[
        "copy",
        "--dest-tls-verify=false",
        &format!("oci:{}:v1", source_dir.path().display()),
        &format!("docker://{skopeo_ref}"),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(dir.path());
    let pulled = client
        .pull(
            &parse_reference(&skopeo_ref).unwrap(),
            &store,
            &registry::no_progress,
        )
        .await
        .unwrap();
    assert_eq!(pulled.parsed_manifest.layers, image.layers);
    assert_eq!(pulled.parsed_manifest.config.digest, image.config.digest);

    // This client pushes; skopeo sees the exact manifest bytes and copies (verifying) every blob.
    let ours = format!("{}/interop/by-builder:1", registry.address());
    client
        .push(
            &parse_reference(&ours).unwrap(),
            &image.manifest,
            &source,
            &registry::no_progress,
        )
        .await
        .unwrap();
    let raw = skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{ours}"),
    ]);
    assert_eq!(raw, source.read_all(&image.manifest.digest).unwrap());
    let copy_dir = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "--src-tls-verify=false",
        &format!("docker://{ours}"),
        &format!("oci:{}:copied", copy_dir.path().display()),
    ]);
    let copied = DirBlobStore::new(copy_dir.path());
    for digest in image.all_digests() {
        assert!(copied.has(&digest), "skopeo copy lacks {digest}");
    }
}
