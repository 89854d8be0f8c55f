//! `builder build` with a registry: `FROM` pulls what the store lacks, `--pull` checks for a
//! newer base, `--push` and `-o type=registry` push the result; every transfer moves only the
//! blobs the other side lacks, counted from outside the client by a proxy in front of a real
//! `docker-registry`, and images on one base keep the base's bytes once on disk.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{builder_bin, Fixture, Need};
use test_support::registry::{CountingProxy, RegistryProcess};

/// A registry with a counting proxy in front; names use the proxy's address.
fn start_registry() -> (RegistryProcess, CountingProxy) {
    let registry = RegistryProcess::start(None);
    let proxy = CountingProxy::start(registry.port);
    (registry, proxy)
}

/// `builder --root ROOT ARGS` with a private Docker config (no credentials of the machine).
fn builder(root: &Path, args: &[&str]) -> Output {
    let config = root.with_extension("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    Command::new(builder_bin())
        .arg("--root")
        .arg(root)
        .args(args)
        .env("DOCKER_CONFIG", &config)
        .output()
        .unwrap()
}

/// Like [`builder`], failing the test on failure; returns stdout and stderr together.
fn builder_ok(root: &Path, args: &[&str]) -> String {
    let out = builder(root, args);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "builder {args:?} failed:\n{text}");
    text
}

/// Builds `context` on `root` with plain progress; returns the metadata and the output.
fn build_ok(root: &Path, context: &Path, args: &[&str]) -> (serde_json::Value, String) {
    let meta = root.with_extension("metadata.json");
    let _ = std::fs::remove_file(&meta);
    let mut all = vec!["build", "--progress", "plain", "--metadata-file"];
    let meta_arg = meta.to_string_lossy().to_string();
    all.push(&meta_arg);
    all.extend_from_slice(args);
    let context_arg = context.to_string_lossy().to_string();
    all.push(&context_arg);
    let text = builder_ok(root, &all);
    let metadata = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    (metadata, text)
}

fn context(dir: &Path, name: &str, dockerfile: &str) -> PathBuf {
    let dir = dir.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("Dockerfile"), dockerfile).unwrap();
    dir
}

fn manifest_digest(meta: &serde_json::Value) -> String {
    meta["containerimage.digest"]
        .as_str()
        .expect("metadata has the manifest digest")
        .to_string()
}

fn blob_path(root: &Path, digest: &str) -> PathBuf {
    root.join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

/// The manifest's layers and config as (digest, size), read from the root's content store.
struct ImageBlobs {
    layers: Vec<(String, u64)>,
    config: (String, u64),
    manifest: (String, u64),
}

fn image_blobs(root: &Path, manifest: &str) -> ImageBlobs {
    let bytes = std::fs::read(blob_path(root, manifest)).unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    let pair = |d: &serde_json::Value| {
        (
            d["digest"].as_str().unwrap().to_string(),
            d["size"].as_u64().unwrap(),
        )
    };
    ImageBlobs {
        layers: doc["layers"].as_array().unwrap().iter().map(pair).collect(),
        config: pair(&doc["config"]),
        manifest: (manifest.to_string(), bytes.len() as u64),
    }
}

/// Which manifest a name points at in the root's image store.
fn name_target(root: &Path, name: &str) -> Option<String> {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("images-v1/images.json")).ok()?).ok()?;
    state["names"][name].as_str().map(str::to_string)
}

/// `du -sb ROOT/blobs`: the bytes the content store takes.
fn du_blobs(root: &Path) -> u64 {
    let out = Command::new("du")
        .arg("-sb")
        .arg(root.join("blobs"))
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap()
}

/// The sum of the blob files' sizes (what `du -sb` counts, minus the directories).
fn blob_bytes(root: &Path) -> u64 {
    std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

fn present(root: &Path) -> BTreeSet<String> {
    std::fs::read_dir(root.join("blobs/sha256"))
        .unwrap()
        .map(|e| format!("sha256:{}", e.unwrap().file_name().to_string_lossy()))
        .collect()
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns, missing_registry),
    ignore = "needs root, /usr/bin/busybox and docker-registry"
)]
fn push_rmi_pull_round_trip_moves_only_missing_blobs() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns, Need::Registry]);
    let (_registry, proxy) = start_registry();
    let reg = proxy.registry();
    let f = Fixture::new();
    let root = f.root();
    let app1 = format!("{reg}/demo/app:1");
    let ctx1 = context(
        f.dir.path(),
        "one",
        "FROM busybox:local\nRUN echo one > /one\n",
    );

    // --push sends every blob once, then the manifest.
    let (meta1, text) = build_ok(&root, &ctx1, &["-t", &app1, "--push"]);
    let d1 = manifest_digest(&meta1);
    let image1 = image_blobs(&root, &d1);
    assert!(text.contains(&format!("digest: {d1}")), "{text}");
    assert_eq!(proxy.blob_uploads(), image1.layers.len() + 1, "{text}");
    assert_eq!(proxy.manifest_puts(), 1);

    // Pushing the same image again uploads no blob.
    proxy.reset();
    builder_ok(&root, &["push", &app1]);
    assert_eq!(proxy.blob_uploads(), 0);
    assert_eq!(proxy.upload_starts(), 0);

    // A second image on the same base, pushed with -o type=registry: only its own layer and
    // its config go up.
    proxy.reset();
    let app2 = format!("{reg}/demo/app:2");
    let ctx2 = context(
        f.dir.path(),
        "two",
        "FROM busybox:local\nRUN echo two > /two\n",
    );
    let (meta2, _) = build_ok(&root, &ctx2, &["-o", &format!("type=registry,name={app2}")]);
    let image2 = image_blobs(&root, &manifest_digest(&meta2));
    let new_layers = image2
        .layers
        .iter()
        .filter(|l| !image1.layers.contains(l))
        .count();
    assert_eq!(new_layers, 1, "the two images share the base's layers");
    assert_eq!(proxy.blob_uploads(), new_layers + 1);

    // Remove it locally, pull it back: the same manifest, with the same content.
    builder_ok(&root, &["rmi", &app1]);
    assert_eq!(name_target(&root, &app1), None);
    let text = builder_ok(&root, &["pull", &app1]);
    assert!(text.contains(&format!("Digest: {d1}")), "{text}");
    assert_eq!(name_target(&root, &app1).as_deref(), Some(d1.as_str()));
    let out = f.dir.path().join("out");
    let ctx3 = context(
        f.dir.path(),
        "three",
        &format!("FROM {app1}\nRUN cat /one > /copied\n"),
    );
    build_ok(
        &root,
        &ctx3,
        &["-o", &format!("type=local,dest={}", out.display())],
    );
    assert_eq!(
        std::fs::read_to_string(out.join("copied")).unwrap(),
        "one\n"
    );

    // Pinned by digest and already stored: the registry is not asked.
    proxy.reset();
    let ctx4 = context(
        f.dir.path(),
        "four",
        &format!("FROM {reg}/demo/app@{d1}\nRUN cat /one > /again\n"),
    );
    build_ok(&root, &ctx4, &[]);
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());

    // A base neither stored nor in the registry: a clear error naming both.
    let ctx5 = context(
        f.dir.path(),
        "five",
        &format!("FROM {reg}/demo/missing:1\nRUN true\n"),
    );
    let out = builder(
        &root,
        &[
            "build",
            "--progress",
            "plain",
            ctx5.to_string_lossy().as_ref(),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is not in the local image store and pulling it failed")
            && stderr.contains("not found"),
        "{stderr}"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns, missing_registry),
    ignore = "needs root, /usr/bin/busybox and docker-registry"
)]
fn pull_onto_a_present_base_downloads_and_stores_only_the_new_layers() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns, Need::Registry]);
    let (_registry, proxy) = start_registry();
    let reg = proxy.registry();
    let producer = Fixture::new();
    let app1 = format!("{reg}/demo/app:1");
    let ctx1 = context(
        producer.dir.path(),
        "one",
        "FROM busybox:local\nRUN echo one > /one\n",
    );
    let (meta1, _) = build_ok(&producer.root(), &ctx1, &["-t", &app1, "--push"]);
    let image1 = image_blobs(&producer.root(), &manifest_digest(&meta1));

    // Another root with the same base image loaded.
    let consumer = Fixture::new();
    let root = consumer.root();
    let before = present(&root);
    let missing: Vec<&(String, u64)> = image1
        .layers
        .iter()
        .filter(|(d, _)| !before.contains(d))
        .collect();
    assert_eq!(missing.len(), 1, "only the app's own layer is new");
    let (du_before, bytes_before) = (du_blobs(&root), blob_bytes(&root));
    proxy.reset();
    let text = builder_ok(&root, &["pull", &app1]);
    assert!(text.contains("Already exists"), "{text}");
    assert_eq!(proxy.blob_downloads(), missing.len() + 1, "layer + config");
    let new_bytes: u64 =
        missing.iter().map(|(_, s)| s).sum::<u64>() + image1.config.1 + image1.manifest.1;
    let base_bytes: u64 = image1
        .layers
        .iter()
        .filter(|(d, _)| before.contains(d))
        .map(|(_, s)| s)
        .sum();
    assert_eq!(blob_bytes(&root) - bytes_before, new_bytes);
    let du_growth = du_blobs(&root) - du_before;
    eprintln!(
        "pull onto present base: blobs/ grew by {du_growth} bytes (du -sb); new blobs {new_bytes}, base layers {base_bytes}"
    );
    assert!(du_growth < base_bytes, "the base was not stored again");

    // A second image built on the same base: blobs/ grows by its own layer, config and
    // manifest only.
    let (du_before, bytes_before) = (du_blobs(&root), blob_bytes(&root));
    let ctx2 = context(
        consumer.dir.path(),
        "two",
        "FROM busybox:local\nRUN echo two > /two\n",
    );
    let (meta2, _) = build_ok(&root, &ctx2, &["-t", "two:1"]);
    let image2 = image_blobs(&root, &manifest_digest(&meta2));
    let own: u64 = image2
        .layers
        .iter()
        .filter(|l| !image1.layers.contains(l))
        .map(|(_, s)| s)
        .sum::<u64>()
        + image2.config.1
        + image2.manifest.1;
    let grown = blob_bytes(&root) - bytes_before;
    let du_growth = du_blobs(&root) - du_before;
    eprintln!(
        "second image on the same base: blobs/ grew by {du_growth} bytes (du -sb), own blobs {own}, base layers {base_bytes}"
    );
    assert_eq!(grown, own);
    assert!(du_growth < base_bytes);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns, missing_registry),
    ignore = "needs root, /usr/bin/busybox and docker-registry"
)]
fn from_a_registry_base_pulls_it_and_pull_flag_checks_for_newer() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns, Need::Registry]);
    let (_registry, proxy) = start_registry();
    let base = format!("localhost:{}/base:1", proxy.port);
    let producer = Fixture::new();
    builder_ok(&producer.root(), &["tag", "busybox:local", &base]);
    builder_ok(&producer.root(), &["push", &base]);
    let base_manifest = name_target(&producer.root(), &base).unwrap();
    let base_layers = image_blobs(&producer.root(), &base_manifest).layers.len();

    // A fresh root: nothing loaded.
    let fresh = tempfile::tempdir().unwrap();
    let root = fresh.path().join("root");
    let ctx = context(
        fresh.path(),
        "app",
        &format!("FROM {base}\nRUN echo built > /built\n"),
    );
    let out = fresh.path().join("out");
    let local_out = format!("type=local,dest={}", out.display());
    proxy.reset();
    let (_, text) = build_ok(&root, &ctx, &["-o", &local_out]);
    assert!(text.contains(&format!("pulling {base}")), "{text}");
    assert!(text.contains("Pull complete"), "{text}");
    assert_eq!(
        std::fs::read_to_string(out.join("built")).unwrap(),
        "built\n"
    );
    assert_eq!(proxy.blob_downloads(), base_layers + 1);
    assert_eq!(
        name_target(&root, &base).as_deref(),
        Some(base_manifest.as_str()),
        "the pulled base is named in the store"
    );

    // Built again: the base is local now, the registry is not asked.
    proxy.reset();
    build_ok(&root, &ctx, &[]);
    assert!(proxy.requests().is_empty(), "{:?}", proxy.requests());

    // --pull asks the registry, finds the same image, downloads nothing.
    proxy.reset();
    let (_, text) = build_ok(&root, &ctx, &["--pull"]);
    assert!(text.contains("Image is up to date"), "{text}");
    assert!(proxy
        .requests()
        .iter()
        .any(|r| r.target.contains("/manifests/")));
    assert_eq!(proxy.blob_downloads(), 0);

    // A newer base under the same tag: --pull picks it up and the build uses it.
    let ctx_v2 = context(
        producer.dir.path(),
        "base-v2",
        "FROM busybox:local\nRUN echo v2 > /version\n",
    );
    build_ok(&producer.root(), &ctx_v2, &["-t", &base, "--push"]);
    proxy.reset();
    let ctx_check = context(
        fresh.path(),
        "check",
        &format!("FROM {base}\nRUN cat /version > /seen\n"),
    );
    let out2 = fresh.path().join("out2");
    let (_, text) = build_ok(
        &root,
        &ctx_check,
        &[
            "--pull",
            "-o",
            &format!("type=local,dest={}", out2.display()),
        ],
    );
    assert!(text.contains("Downloaded newer image"), "{text}");
    assert_eq!(std::fs::read_to_string(out2.join("seen")).unwrap(), "v2\n");
    assert_eq!(proxy.blob_downloads(), 2, "the new layer and config only");

    // Pushed to another repository of the same registry: the base's layers are mounted from
    // the repository the base came from, only the image's own layer and config are uploaded.
    let app = format!("localhost:{}/team/app:1", proxy.port);
    proxy.reset();
    let (meta, text) = build_ok(&root, &ctx_check, &["-t", &app, "--push"]);
    let layers = image_blobs(&root, &manifest_digest(&meta)).layers.len();
    assert_eq!(proxy.blob_uploads(), 2, "{text}");
    assert_eq!(
        proxy.mount_requests(),
        layers + 1,
        "every missing blob is offered a mount"
    );
    assert!(text.contains("Mounted from base"), "{text}");
}

#[test]
fn push_without_a_name_fails_before_building() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let ctx = context(dir.path(), "ctx", "FROM scratch\n");
    let out = builder(&root, &["build", "--push", ctx.to_string_lossy().as_ref()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--push needs a name"), "{stderr}");
    let out = builder(
        &root,
        &[
            "build",
            "-o",
            "type=registry",
            ctx.to_string_lossy().as_ref(),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs name="), "{stderr}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns, missing_registry),
    ignore = "needs root, /usr/bin/busybox and docker-registry"
)]
fn registry_cache_export_and_import_turn_a_fresh_root_into_hits() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns, Need::Registry]);
    let (_registry, proxy) = start_registry();
    let cache_ref = format!("{}/demo/cache:build", proxy.registry());
    let dockerfile = "FROM busybox:local\nRUN echo one > /one\nRUN echo two > /two\n";
    let f = Fixture::new();
    let ctx = context(f.dir.path(), "app", dockerfile);
    let to = format!("type=registry,ref={cache_ref},mode=max");
    let (first, text) = build_ok(&f.root(), &ctx, &["--cache-to", &to]);
    assert!(text.contains("exported cache"), "{text}");
    let first_uploads = proxy.blob_uploads();
    assert!(first_uploads >= 3, "layers and the cache manifest went up");

    // Exported again: the registry has every blob, only the manifest is stored again.
    proxy.reset();
    let (_, text) = build_ok(&f.root(), &ctx, &["--cache-to", &to]);
    assert_eq!(proxy.blob_uploads(), 0, "{text}");
    assert!(text.contains(", 0 new blobs"), "{text}");

    // A fresh root with the base loaded: every step hits, the same image comes out, and only
    // the two RUN layers and the cache manifest are downloaded.
    let fresh = Fixture::new();
    let ctx2 = context(fresh.dir.path(), "app", dockerfile);
    proxy.reset();
    let from = format!("type=registry,ref={cache_ref}");
    let (meta, text) = build_ok(&fresh.root(), &ctx2, &["--cache-from", &from]);
    assert!(text.contains("imported cache"), "{text}");
    let steps = common::steps(&meta);
    assert!(steps.iter().all(|s| s.1), "{steps:#?}\n{text}");
    assert_eq!(manifest_digest(&meta), manifest_digest(&first));
    assert_eq!(
        proxy.blob_downloads(),
        3,
        "two layers and the cache manifest"
    );
}
