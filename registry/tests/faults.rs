//! Failures during transfers: corrupt blobs, server errors, a registry killed mid-push.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use registry::{parse_reference, BlobStore, DirBlobStore, ProgressEvent, RegistryError};

#[tokio::test]
#[cfg_attr(missing_registry, ignore = "needs docker-registry")]
async fn corrupt_blob_fails_the_pull_and_leaves_nothing_in_the_store() {
    test_support::require(&[test_support::Need::Registry]);
    let registry = RegistryProcess::start(None);
    let proxy = CountingProxy::start(registry.port);
    let home = tempfile::tempdir().unwrap();
    let client = test_client(home.path());
    let source_dir = tempfile::tempdir().unwrap();
    let source = DirBlobStore::new(source_dir.path());
    let image = make_image(&source, &[30, 31], 100 * 1024, "amd64");
    let reference = parse_reference(&format!("{}/corrupt:1", proxy.registry())).unwrap();
    client
        .push(&reference, &image.manifest, &source, &registry::no_progress)
        .await
        .unwrap();

    let bad = image.layers[1].digest.clone();
    *proxy.corrupt_blob.lock().unwrap() = Some(bad.to_string());
    let dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(dir.path());
    let err = client
        .pull(&reference, &store, &registry::no_progress)
        .await
        .unwrap_err();
    let text = err.to_string();
    println!("corrupt blob error: {text}");
    assert!(
        matches!(err, RegistryError::DigestMismatch { .. }),
        "{text}"
    );
    assert!(
        text.contains(&proxy.registry()) && text.contains(&bad.to_string()),
        "{text}"
    );
    assert!(!store.has(&bad));
    let leftovers: Vec<_> = store
        .all_files()
        .unwrap()
        .into_iter()
        .filter(|p| {
            p.file_name().is_some_and(|n| {
                !n.to_string_lossy()
                    .starts_with(|c: char| c.is_ascii_hexdigit())
            })
        })
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
    assert!(!store_digests(&store).contains(&bad));
    assert!(
        !store.has(&image.manifest.digest),
        "an image with a bad layer is not recorded"
    );

    // Once the registry serves it intact, the same store completes the pull.
    *proxy.corrupt_blob.lock().unwrap() = None;
    let pulled = client
        .pull(&reference, &store, &registry::no_progress)
        .await
        .unwrap();
    assert_eq!(pulled.manifest.descriptor.digest, image.manifest.digest);
    assert!(store.has(&bad));
}

#[tokio::test]
#[cfg_attr(missing_registry, ignore = "needs docker-registry")]
async fn server_errors_are_retried_with_backoff() {
    test_support::require(&[test_support::Need::Registry]);
    let registry = RegistryProcess::start(None);
    let proxy = CountingProxy::start(registry.port);
    let home = tempfile::tempdir().unwrap();
    let client = test_client(home.path());
    let source_dir = tempfile::tempdir().unwrap();
    let source = DirBlobStore::new(source_dir.path());
    let image = make_image(&source, &[40], 10 * 1024, "amd64");
    let reference = parse_reference(&format!("{}/flaky:1", proxy.registry())).unwrap();
    client
        .push(&reference, &image.manifest, &source, &registry::no_progress)
        .await
        .unwrap();

    // Two 503s, then success (3 attempts allowed).
    *proxy.fail_blob_gets.lock().unwrap() = 2;
    let events = Events::default();
    let sink = events.sink();
    let dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(dir.path());
    client.pull(&reference, &store, &sink).await.unwrap();
    let retries = events
        .take()
        .into_iter()
        .filter(|e| matches!(e, ProgressEvent::Retrying { .. }))
        .count();
    assert_eq!(retries, 2);

    // More 503s than attempts: a clear error naming the registry and the blob.
    *proxy.fail_blob_gets.lock().unwrap() = 100;
    let dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(dir.path());
    let err = client
        .pull(&reference, &store, &registry::no_progress)
        .await
        .unwrap_err();
    let text = err.to_string();
    println!("persistent 503 error: {text}");
    assert!(
        text.contains("503") && text.contains(&proxy.registry()) && text.contains("blob sha256:"),
        "{text}"
    );
    *proxy.fail_blob_gets.lock().unwrap() = 0;
}

#[tokio::test]
#[cfg_attr(missing_registry, ignore = "needs docker-registry")]
async fn registry_killed_mid_push_then_next_push_completes() {
    test_support::require(&[test_support::Need::Registry]);
    let registry = Arc::new(Mutex::new(RegistryProcess::start(None)));
    let port = registry.lock().unwrap().port;
    let proxy = CountingProxy::start(port);
    let home = tempfile::tempdir().unwrap();
    // One transfer at a time, so exactly two uploads finish before the kill.
    let mut options = test_options(home.path());
    options.max_concurrent_transfers = 1;
    let client = registry::Client::new(options).unwrap();
    let source_dir = tempfile::tempdir().unwrap();
    let source = DirBlobStore::new(source_dir.path());
    let image = make_image(&source, &[50, 51, 52, 53], 200 * 1024, "amd64");
    let reference = parse_reference(&format!("{}/killed:1", proxy.registry())).unwrap();

    // Kill the registry when the third upload sends its PUT (the first two are complete).
    let puts = Arc::new(Mutex::new(0));
    {
        let registry = registry.clone();
        let puts = puts.clone();
        *proxy.hook.lock().unwrap() = Some(Box::new(move |request| {
            if request.method == "PUT" && request.target.contains("/blobs/uploads/") {
                let mut puts = puts.lock().unwrap();
                *puts += 1;
                if *puts == 3 {
                    registry.lock().unwrap().kill();
                }
            }
        }));
    }
    let err = client
        .push(&reference, &image.manifest, &source, &registry::no_progress)
        .await
        .unwrap_err();
    let text = err.to_string();
    println!("push with registry killed: {text}");
    assert!(matches!(err, RegistryError::Unreachable { .. }), "{text}");
    assert!(
        text.contains(&proxy.registry()) && text.contains("sha256:"),
        "{text}"
    );

    *proxy.hook.lock().unwrap() = None;
    registry.lock().unwrap().restart();
    proxy.reset();
    let pushed = client
        .push(&reference, &image.manifest, &source, &registry::no_progress)
        .await
        .unwrap();
    println!(
        "push after restart: {} blob uploads, {} blobs already there",
        proxy.blob_uploads(),
        5 - proxy.blob_uploads()
    );
    assert_eq!(pushed.digest, image.manifest.digest);
    assert_eq!(
        proxy.blob_uploads(),
        3,
        "the two finished uploads are not repeated"
    );
    assert_eq!(proxy.blob_heads(), 5);
    let dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(dir.path());
    client
        .pull(&reference, &store, &registry::no_progress)
        .await
        .unwrap();
    assert_eq!(store_digests(&store), image.all_digests());
}

#[tokio::test]
async fn unreachable_registry_is_a_clear_error_after_bounded_retries() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let home = tempfile::tempdir().unwrap();
    let client = test_client(home.path());
    let events = Events::default();
    let sink = events.sink();
    let dir = tempfile::tempdir().unwrap();
    let reference = parse_reference(&format!("127.0.0.1:{port}/nobody:1")).unwrap();
    let err = client
        .pull(&reference, &DirBlobStore::new(dir.path()), &sink)
        .await
        .unwrap_err();
    let text = err.to_string();
    println!("unreachable registry: {text}");
    assert!(
        matches!(err, RegistryError::Unreachable { attempts: 3, .. }),
        "{text}"
    );
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    let retries = events
        .take()
        .into_iter()
        .filter(|e| matches!(e, ProgressEvent::Retrying { .. }))
        .count();
    assert_eq!(retries, 2);
}

#[tokio::test]
#[cfg_attr(missing_registry, ignore = "needs docker-registry")]
async fn download_cut_short_resumes_with_a_range_request() {
    test_support::require(&[test_support::Need::Registry]);
    let registry = RegistryProcess::start(None);
    let proxy = CountingProxy::start(registry.port);
    let home = tempfile::tempdir().unwrap();
    let mut options = test_options(home.path());
    options.max_concurrent_transfers = 1;
    let client = registry::Client::new(options).unwrap();
    let source_dir = tempfile::tempdir().unwrap();
    let source = DirBlobStore::new(source_dir.path());
    let image = make_image(&source, &[90], 256 * 1024, "amd64");
    let reference = parse_reference(&format!("{}/resume:1", proxy.registry())).unwrap();
    client
        .push(&reference, &image.manifest, &source, &registry::no_progress)
        .await
        .unwrap();

    proxy.reset();
    *proxy.truncate_blob_gets.lock().unwrap() = 1;
    let dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(dir.path());
    let pulled = client
        .pull(&reference, &store, &registry::no_progress)
        .await
        .unwrap();
    assert_eq!(store_digests(&store), image.all_digests());
    assert_eq!(pulled.manifest.descriptor.digest, image.manifest.digest);
    let gets: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.target.contains("/blobs/sha256:"))
        .collect();
    println!(
        "pull with one download cut short: {} blob GETs, ranges {:?}",
        gets.len(),
        gets.iter().map(|g| g.range.clone()).collect::<Vec<_>>()
    );
    // config + layer, plus one resumed request for the cut-off blob.
    assert_eq!(gets.len(), 3);
    let resumed: Vec<_> = gets.iter().filter_map(|g| g.range.as_ref()).collect();
    assert_eq!(resumed.len(), 1);
    assert!(
        resumed[0].starts_with("bytes=") && resumed[0] != "bytes=0-",
        "{resumed:?}"
    );
}
