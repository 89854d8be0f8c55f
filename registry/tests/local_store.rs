//! Transfers between a registry and the project's local storage (content store + image store):
//! names and repo digests are recorded, and a push mounts from repositories of stored images
//! sharing the image's layers.

mod common;

use common::*;
use registry::{parse_reference, pull_to_store, push_from_store, Platform};

const LAYER: usize = 64 * 1024;

#[tokio::test]
#[cfg_attr(missing_registry, ignore = "needs docker-registry")]
async fn pull_records_the_image_and_push_mounts_shared_layers() {
    test_support::require(&[test_support::Need::Registry]);
    let registry = RegistryProcess::start(None);
    let proxy = CountingProxy::start(registry.port);
    let home = tempfile::tempdir().unwrap();
    let client = test_client(home.path());
    let source_dir = tempfile::tempdir().unwrap();
    let source = registry::DirBlobStore::new(source_dir.path());
    let base = make_image(&source, &[1, 2], LAYER, "amd64");
    let app = make_image(&source, &[1, 2, 3], LAYER, "amd64");
    let base_ref = parse_reference(&format!("{}/lib/base:1", proxy.registry())).unwrap();
    let app_ref = parse_reference(&format!("{}/team/app:1", proxy.registry())).unwrap();
    client
        .push(&base_ref, &base.manifest, &source, &registry::no_progress)
        .await
        .unwrap();
    client
        .push(&app_ref, &app.manifest, &source, &registry::no_progress)
        .await
        .unwrap();

    let root_dir = tempfile::tempdir().unwrap();
    let root = cache::RootDir::open(root_dir.path()).unwrap();
    let cas = root.content_store().unwrap();
    let images = cache::ImageStore::open(root.images_dir()).unwrap();
    let amd64 = Platform::new("linux", "amd64", None);

    // Pulled into the content store; named and given its repo digest.
    proxy.reset();
    let stored = pull_to_store(
        &client,
        &base_ref,
        &amd64,
        &cas,
        &images,
        &registry::no_progress,
    )
    .await
    .unwrap();
    assert!(!stored.existed);
    assert_eq!(proxy.blob_downloads(), 3, "two layers and the config");
    let entry = images.resolve(&base_ref.to_string()).unwrap();
    assert_eq!(entry.record.target.digest, base.manifest.digest);
    assert_eq!(
        entry.record.repo_digests,
        vec![format!(
            "{}/lib/base@{}",
            proxy.registry(),
            base.manifest.digest
        )]
    );
    for digest in base.all_digests() {
        assert!(cas.has(&digest), "{digest} in the content store");
    }

    // Pulling again finds it up to date and downloads nothing.
    proxy.reset();
    let again = pull_to_store(
        &client,
        &base_ref,
        &amd64,
        &cas,
        &images,
        &registry::no_progress,
    )
    .await
    .unwrap();
    assert!(again.existed);
    assert_eq!(proxy.blob_downloads(), 0);

    // The app pulled too (only its own layer and config come down), then pushed to a third
    // repository: the shared layers are mounted from the base's repository.
    proxy.reset();
    pull_to_store(
        &client,
        &app_ref,
        &amd64,
        &cas,
        &images,
        &registry::no_progress,
    )
    .await
    .unwrap();
    assert_eq!(proxy.blob_downloads(), 2);
    images
        .update(|state| {
            // Forget where the app came from: mounts must come from the base sharing layers.
            if let Some(record) = state.images.get_mut(&app.manifest.digest) {
                record.repo_digests.clear();
            }
            Ok(())
        })
        .unwrap();
    let app_entry = images.resolve(&app_ref.to_string()).unwrap();
    let mirror = parse_reference(&format!("{}/mirror/app:1", proxy.registry())).unwrap();
    proxy.reset();
    let pushed = push_from_store(
        &client,
        &app_entry,
        &mirror,
        &cas,
        &images,
        &registry::no_progress,
    )
    .await
    .unwrap();
    assert_eq!(pushed.digest, app.manifest.digest);
    assert_eq!(proxy.blob_uploads(), 2, "the app's own layer and config");
    assert_eq!(
        proxy.mount_requests(),
        4,
        "a mount offered for each missing blob"
    );
    let entry = images.get(&app.manifest.digest).unwrap().unwrap();
    assert!(entry.record.repo_digests.contains(&format!(
        "{}/mirror/app@{}",
        proxy.registry(),
        app.manifest.digest
    )));
}
