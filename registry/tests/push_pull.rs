//! Push and pull against a real `docker-registry`, with transfers counted by a proxy in front.

mod common;

use common::*;
use registry::manifest::{
    DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX,
};
use registry::{
    parse_reference, BlobStore, Descriptor, DirBlobStore, Index, Platform, ProgressEvent,
    PushOptions,
};

const LAYER: usize = 300 * 1024;

#[tokio::test]
#[cfg_attr(missing_registry, ignore = "needs docker-registry")]
async fn push_then_pull_round_trips_and_moves_only_missing_blobs() {
    test_support::require(&[test_support::Need::Registry]);
    let registry = RegistryProcess::start(None);
    let proxy = CountingProxy::start(registry.port);
    let home = tempfile::tempdir().unwrap();
    let client = test_client(home.path());
    let source_dir = tempfile::tempdir().unwrap();
    let source = DirBlobStore::new(source_dir.path());
    let base_seeds = [1, 2];
    let image_a = make_image(&source, &[1, 2, 3], LAYER, "amd64");
    let image_b = make_image(&source, &[1, 2, 4], LAYER, "amd64");
    assert_eq!(
        image_a.layers[..2],
        image_b.layers[..2],
        "B shares A's base layers {base_seeds:?}"
    );

    // First push: every layer and the config are uploaded.
    let events = Events::default();
    let sink = events.sink();
    let a_ref = parse_reference(&format!("{}/demo/app:a", proxy.registry())).unwrap();
    let pushed = client
        .push(&a_ref, &image_a.manifest, &source, &sink)
        .await
        .unwrap();
    assert_eq!(pushed.digest, image_a.manifest.digest);
    let first_push_uploads = proxy.blob_uploads();
    println!(
        "first push of A: {first_push_uploads} blob uploads, {} manifest PUTs",
        proxy.manifest_puts()
    );
    assert_eq!(first_push_uploads, 4, "3 layers + config");
    assert_eq!(proxy.manifest_puts(), 1);
    let pushed_lines = lines(&events.take());
    assert_eq!(
        pushed_lines
            .iter()
            .filter(|l| l.ends_with(": Pushed"))
            .count(),
        4,
        "{pushed_lines:?}"
    );

    // Same image again: no blob is uploaded, each is checked with HEAD.
    proxy.reset();
    client
        .push(&a_ref, &image_a.manifest, &source, &sink)
        .await
        .unwrap();
    println!(
        "second push of A: {} uploads, {} upload starts, {} HEADs",
        proxy.blob_uploads(),
        proxy.upload_starts(),
        proxy.blob_heads()
    );
    assert_eq!(proxy.blob_uploads(), 0);
    assert_eq!(proxy.upload_starts(), 0);
    assert_eq!(proxy.blob_heads(), 4);
    let again = lines(&events.take());
    assert_eq!(
        again
            .iter()
            .filter(|l| l.ends_with(": Layer already exists"))
            .count(),
        4,
        "{again:?}"
    );

    // Second image sharing the base: only the new layer and the new config go up.
    proxy.reset();
    let b_ref = parse_reference(&format!("{}/demo/app:b", proxy.registry())).unwrap();
    client
        .push(&b_ref, &image_b.manifest, &source, &sink)
        .await
        .unwrap();
    println!(
        "push of B (shares 2 base layers): {} blob uploads",
        proxy.blob_uploads()
    );
    assert_eq!(proxy.blob_uploads(), 2, "1 new layer + config");

    // Pull A into an empty store: identical digests and bytes, 4 blob downloads.
    proxy.reset();
    let pulled_dir = tempfile::tempdir().unwrap();
    let pulled = DirBlobStore::new(pulled_dir.path());
    let image = client.pull(&a_ref, &pulled, &sink).await.unwrap();
    println!(
        "pull of A into an empty store: {} blob downloads",
        proxy.blob_downloads()
    );
    assert_eq!(proxy.blob_downloads(), 4);
    assert_eq!(image.manifest.descriptor.digest, image_a.manifest.digest);
    assert_eq!(image.resolved_digest, image_a.manifest.digest);
    assert_eq!(image.parsed_manifest.layers, image_a.layers);
    assert_eq!(store_digests(&pulled), image_a.all_digests());
    for digest in image_a.all_digests() {
        assert_eq!(
            pulled.read_all(&digest).unwrap(),
            source.read_all(&digest).unwrap()
        );
    }
    assert_eq!(
        image.config,
        source.read_all(&image_a.config.digest).unwrap()
    );
    let pull_lines = lines(&events.take());
    assert_eq!(
        pull_lines
            .iter()
            .filter(|l| l.ends_with(": Pull complete"))
            .count(),
        4,
        "{pull_lines:?}"
    );
    assert_eq!(
        pull_lines
            .iter()
            .filter(|l| l.ends_with(": Pulling fs layer"))
            .count(),
        4,
        "{pull_lines:?}"
    );

    // Pull B where A (so the base) is present: only the new layer and config download.
    proxy.reset();
    let image = client.pull(&b_ref, &pulled, &sink).await.unwrap();
    println!(
        "pull of B with the base present: {} blob downloads",
        proxy.blob_downloads()
    );
    assert_eq!(proxy.blob_downloads(), 2);
    assert_eq!(image.manifest.descriptor.digest, image_b.manifest.digest);
    let pull_lines = lines(&events.take());
    let exists: Vec<_> = pull_lines
        .iter()
        .filter(|l| l.ends_with(": Already exists"))
        .collect();
    assert_eq!(exists.len(), 2, "{pull_lines:?}");
    for base_layer in &image_a.layers[..2] {
        let expected = format!("{}: Already exists", base_layer.digest.short());
        assert!(pull_lines.contains(&expected), "{pull_lines:?}");
    }

    // Pull by digest resolves to the same content, downloading nothing.
    proxy.reset();
    let by_digest = a_ref.with_digest(image_a.manifest.digest.clone());
    let image = client.pull(&by_digest, &pulled, &sink).await.unwrap();
    assert_eq!(image.manifest.descriptor.digest, image_a.manifest.digest);
    assert_eq!(proxy.blob_downloads(), 0);
}

#[tokio::test]
#[cfg_attr(missing_registry, ignore = "needs docker-registry")]
async fn cross_repository_mount_avoids_uploading_the_base() {
    test_support::require(&[test_support::Need::Registry]);
    let registry = RegistryProcess::start(None);
    let proxy = CountingProxy::start(registry.port);
    let home = tempfile::tempdir().unwrap();
    let client = test_client(home.path());
    let source_dir = tempfile::tempdir().unwrap();
    let source = DirBlobStore::new(source_dir.path());
    let base = make_image(&source, &[10, 11], LAYER, "amd64");
    let app = make_image(&source, &[10, 11, 12], LAYER, "amd64");
    let base_ref = parse_reference(&format!("{}/base:1", proxy.registry())).unwrap();
    client
        .push(&base_ref, &base.manifest, &source, &registry::no_progress)
        .await
        .unwrap();

    proxy.reset();
    let events = Events::default();
    let sink = events.sink();
    let app_ref = parse_reference(&format!("{}/team/app:1", proxy.registry())).unwrap();
    let options = PushOptions {
        mount_from: vec!["base".to_string()],
    };
    client
        .push_with(&app_ref, &app.manifest, &source, &options, &sink)
        .await
        .unwrap();
    let mounted = events
        .take()
        .into_iter()
        .filter(|e| matches!(e, ProgressEvent::Mounted { .. }))
        .count();
    println!(
        "push of app with mount from base: {mounted} mounted, {} mount requests, {} uploads",
        proxy.mount_requests(),
        proxy.blob_uploads()
    );
    assert_eq!(mounted, 2);
    assert_eq!(proxy.blob_uploads(), 2, "new layer + config");
    let pulled_dir = tempfile::tempdir().unwrap();
    let pulled = DirBlobStore::new(pulled_dir.path());
    client
        .pull(&app_ref, &pulled, &registry::no_progress)
        .await
        .unwrap();
    assert_eq!(store_digests(&pulled), app.all_digests());
}

#[tokio::test]
#[cfg_attr(missing_registry, ignore = "needs docker-registry")]
async fn pulls_the_host_platform_from_a_docker_manifest_list() {
    test_support::require(&[test_support::Need::Registry]);
    let registry = RegistryProcess::start(None);
    let home = tempfile::tempdir().unwrap();
    let source_dir = tempfile::tempdir().unwrap();
    let source = DirBlobStore::new(source_dir.path());
    let make = |seed: u64, arch: &str| {
        make_image_typed(
            &source,
            &[seed],
            4096,
            arch,
            DOCKER_MANIFEST,
            DOCKER_CONFIG,
            DOCKER_LAYER_GZIP,
        )
    };
    let amd = make(20, "amd64");
    let arm = make(21, "arm64");
    let mut amd_entry = amd.manifest.clone();
    amd_entry.platform = Platform::parse("linux/amd64").ok();
    let mut arm_entry = arm.manifest.clone();
    arm_entry.platform = Platform::parse("linux/arm64/v8").ok();
    let list = Index {
        schema_version: 2,
        media_type: Some(DOCKER_MANIFEST_LIST.to_string()),
        artifact_type: None,
        manifests: vec![arm_entry, amd_entry],
        annotations: Default::default(),
    };
    let list_bytes = serde_json::to_vec(&list).unwrap();
    let list_desc = Descriptor::of_bytes(DOCKER_MANIFEST_LIST, &list_bytes);
    source
        .ingest(&list_desc.digest, &mut list_bytes.as_slice())
        .unwrap();
    let reference = parse_reference(&format!("{}/multi:1", registry.address())).unwrap();
    let client = test_client(home.path());
    client
        .push(&reference, &list_desc, &source, &registry::no_progress)
        .await
        .unwrap();

    for (platform, expected) in [("linux/amd64", &amd), ("linux/arm64", &arm)] {
        let mut options = test_options(home.path());
        options.platform = Platform::parse(platform).unwrap();
        let client = registry::Client::new(options).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = DirBlobStore::new(dir.path());
        let image = client
            .pull(&reference, &store, &registry::no_progress)
            .await
            .unwrap();
        assert_eq!(image.resolved_digest, list_desc.digest);
        assert_eq!(
            image.manifest.descriptor.digest, expected.manifest.digest,
            "{platform}"
        );
        assert_eq!(image.manifest.descriptor.media_type, DOCKER_MANIFEST);
        assert!(store.has(&list_desc.digest));
        assert!(!store.has(
            &if platform == "linux/amd64" {
                &arm
            } else {
                &amd
            }
            .layers[0]
                .digest
        ));
    }
    let mut options = test_options(home.path());
    options.platform = Platform::parse("linux/s390x").unwrap();
    let client = registry::Client::new(options).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = client
        .pull(
            &reference,
            &DirBlobStore::new(dir.path()),
            &registry::no_progress,
        )
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("linux/s390x") && text.contains("linux/amd64"),
        "{text}"
    );
}

#[tokio::test]
#[cfg_attr(missing_registry, ignore = "needs docker-registry")]
async fn artifacts_with_arbitrary_blobs_round_trip() {
    test_support::require(&[test_support::Need::Registry]);
    let registry = RegistryProcess::start(None);
    let home = tempfile::tempdir().unwrap();
    let client = test_client(home.path());
    let source_dir = tempfile::tempdir().unwrap();
    let source = DirBlobStore::new(source_dir.path());
    let blob_a = b"cache record a".to_vec();
    let blob_b = common::noise(99, 50_000);
    let config = br#"{"layers":[0,1]}"#.to_vec();
    for bytes in [&blob_a, &blob_b, &config] {
        source
            .ingest(&registry::Digest::of_bytes(bytes), &mut bytes.as_slice())
            .unwrap();
    }
    let manifest = registry::Manifest {
        schema_version: 2,
        media_type: Some(registry::manifest::OCI_MANIFEST.to_string()),
        artifact_type: Some("application/vnd.builder.cache.v1".to_string()),
        config: Descriptor::of_bytes("application/vnd.builder.cache.config.v1+json", &config),
        layers: vec![
            Descriptor::of_bytes("application/vnd.builder.cache.record", &blob_a),
            Descriptor::of_bytes("application/octet-stream", &blob_b),
        ],
        subject: None,
        annotations: Default::default(),
    };
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_desc = Descriptor::of_bytes(registry::manifest::OCI_MANIFEST, &manifest_bytes);
    source
        .ingest(&manifest_desc.digest, &mut manifest_bytes.as_slice())
        .unwrap();
    let index = Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_string()),
        artifact_type: None,
        manifests: vec![manifest_desc.clone()],
        annotations: Default::default(),
    };
    let index_bytes = serde_json::to_vec(&index).unwrap();
    let index_desc = Descriptor::of_bytes(OCI_INDEX, &index_bytes);
    source
        .ingest(&index_desc.digest, &mut index_bytes.as_slice())
        .unwrap();

    let reference = parse_reference(&format!("{}/cache:buildcache", registry.address())).unwrap();
    client
        .push(&reference, &index_desc, &source, &registry::no_progress)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(dir.path());
    let pulled = client
        .pull_artifact(&reference, &store, &registry::no_progress)
        .await
        .unwrap();
    assert_eq!(pulled.root.descriptor.digest, index_desc.digest);
    assert_eq!(store_digests(&store), store_digests(&source));
    assert_eq!(pulled.blobs.len(), 5, "index, manifest, config, 2 layers");
    let fetched = client
        .fetch_manifest(&reference, &registry::no_progress)
        .await
        .unwrap();
    assert_eq!(fetched.bytes, index_bytes);
    assert_eq!(fetched.descriptor.media_type, OCI_INDEX);
}

#[tokio::test]
#[cfg_attr(missing_registry, ignore = "needs docker-registry")]
async fn missing_tag_is_a_clear_not_found_error() {
    test_support::require(&[test_support::Need::Registry]);
    let registry = RegistryProcess::start(None);
    let home = tempfile::tempdir().unwrap();
    let client = test_client(home.path());
    let dir = tempfile::tempdir().unwrap();
    let reference = parse_reference(&format!("{}/nothing:here", registry.address())).unwrap();
    let err = client
        .pull(
            &reference,
            &DirBlobStore::new(dir.path()),
            &registry::no_progress,
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, registry::RegistryError::NotFound { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("nothing:here"), "{err}");
}
