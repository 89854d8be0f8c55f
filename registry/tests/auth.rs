//! Authentication against a real registry: basic auth from an htpasswd file, login and logout
//! through the Docker config.

mod common;

use common::*;
use registry::{parse_reference, DirBlobStore, RegistryError};

fn htpasswd_line(user: &str, password: &str) -> String {
    format!("{user}:{}\n", bcrypt::hash(password, 5).unwrap())
}

#[tokio::test]
async fn basic_auth_login_push_pull_logout() {
    let registry = RegistryProcess::start(Some(&htpasswd_line("alice", "s3cret")));
    let home = tempfile::tempdir().unwrap();
    let client = test_client(home.path());
    let source_dir = tempfile::tempdir().unwrap();
    let source = DirBlobStore::new(source_dir.path());
    let image = make_image(&source, &[60, 61], 8 * 1024, "amd64");
    let reference = parse_reference(&format!("{}/private/app:1", registry.address())).unwrap();

    // Anonymous: refused with a hint to log in.
    let err = client.push(&reference, &image.manifest, &source, &registry::no_progress).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains("builder login"), "{err}");

    // Wrong password: refused, nothing written.
    let err = client.login(&registry.address(), "alice", "wrong").await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    assert!(!home.path().join("config.json").exists());

    // Right password: stored in `auths`, then used for push and pull.
    client.login(&registry.address(), "alice", "s3cret").await.unwrap();
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.path().join("config.json")).unwrap()).unwrap();
    assert!(config["auths"][registry.address()]["auth"].is_string(), "{config}");
    client.push(&reference, &image.manifest, &source, &registry::no_progress).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = DirBlobStore::new(dir.path());
    let pulled = client.pull(&reference, &store, &registry::no_progress).await.unwrap();
    assert_eq!(pulled.manifest.descriptor.digest, image.manifest.digest);

    // Logout removes the entry; access is refused again.
    assert!(client.logout(&registry.address()).unwrap());
    assert!(!client.logout(&registry.address()).unwrap());
    let fresh = test_client(home.path());
    let err = fresh.pull(&reference, &store, &registry::no_progress).await.unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
}
