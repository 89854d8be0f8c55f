//! Image write/read, exporters and `load`, checked against real tools where they exist:
//! skopeo and umoci read our OCI archives, a private dockerd loads our docker-archive and its
//! `docker save` loads back into our store.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use cache::{ContentStore, Descriptor, Digest, ImageStore, Platform, Reference};
use engine::export::{
    export, load_archive, load_oci_layout_dir, store_image, write_docker_archive,
    write_oci_archive, write_rootfs_tar, ExportSpec, NamedImage,
};
use engine::image::{
    media_types, read_image, ContainerConfig, HealthConfig, History, Image, ImageConfig, LayerInfo,
};
use test_support::dockerd::Dockerd;
use test_support::Need;

fn tool(name: &str) -> Option<PathBuf> {
    ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h
}

/// A tar built from (path, content) pairs; content `None` = directory, `Some(Err(target))` = symlink.
enum E<'a> {
    Dir(&'a str),
    File(&'a str, &'a [u8], u32),
    Symlink(&'a str, &'a str),
}

fn make_tar(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        match e {
            E::Dir(p) => b
                .append_data(
                    &mut header(tar::EntryType::Directory, 0o755, 0),
                    p,
                    std::io::empty(),
                )
                .unwrap(),
            E::File(p, data, mode) => b
                .append_data(
                    &mut header(tar::EntryType::Regular, *mode, data.len() as u64),
                    p,
                    *data,
                )
                .unwrap(),
            E::Symlink(p, t) => b
                .append_link(&mut header(tar::EntryType::Symlink, 0o777, 0), p, t)
                .unwrap(),
        }
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A two-layer busybox image: layer 1 (uncompressed) has busybox and symlinks, /etc/hello and
/// /data/{a,b}; layer 2 (gzip) deletes /etc/hello, makes /data opaque with only /data/c, adds
/// /etc/new.
fn busybox_image(cas: &ContentStore) -> Image {
    let busybox =
        std::fs::read("/usr/bin/busybox").expect("busybox-static is installed at /usr/bin/busybox");
    let l1 = make_tar(&[
        E::Dir("bin/"),
        E::File("bin/busybox", &busybox, 0o755),
        E::Symlink("bin/sh", "busybox"),
        E::Symlink("bin/ls", "busybox"),
        E::Symlink("bin/cat", "busybox"),
        E::Symlink("bin/echo", "busybox"),
        E::Dir("etc/"),
        E::File("etc/hello", b"hello\n", 0o644),
        E::Dir("data/"),
        E::File("data/a", b"a", 0o644),
        E::File("data/b", b"b", 0o644),
    ]);
    let l2 = make_tar(&[
        E::Dir("etc/"),
        E::File("etc/.wh.hello", b"", 0o644),
        E::File("etc/new", b"new\n", 0o600),
        E::Dir("data/"),
        E::File("data/.wh..wh..opq", b"", 0o644),
        E::File("data/c", b"c", 0o644),
    ]);
    let l2z = gzip(&l2);
    let d1 = cas.put_bytes(&l1).unwrap();
    let d2 = cas.put_bytes(&l2z).unwrap();
    let layers = vec![
        LayerInfo {
            descriptor: Descriptor::new(media_types::OCI_LAYER, d1.clone(), l1.len() as u64),
            diff_id: d1,
        },
        LayerInfo {
            descriptor: Descriptor::new(media_types::OCI_LAYER_GZIP, d2, l2z.len() as u64),
            diff_id: Digest::of_bytes(&l2),
        },
    ];
    let created = chrono::DateTime::parse_from_rfc3339("2024-05-06T07:08:09Z")
        .unwrap()
        .to_utc();
    let host = Platform::host();
    let config = ImageConfig {
        created: Some(created),
        architecture: host.architecture,
        os: host.os,
        config: Some(ContainerConfig {
            env: Some(vec!["PATH=/bin".into(), "GREETING=hi".into()]),
            cmd: Some(vec!["/bin/sh".into(), "-c".into(), "echo $GREETING".into()]),
            working_dir: Some("/data".into()),
            labels: Some([("org.example.k".to_string(), "v".to_string())].into()),
            exposed_ports: Some([("8080/tcp".to_string(), serde_json::json!({}))].into()),
            healthcheck: Some(HealthConfig {
                test: Some(vec!["CMD".into(), "/bin/true".into()]),
                interval: Some(5_000_000_000),
                retries: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        }),
        history: vec![
            History::new(Some(created), "COPY busybox /bin/", false),
            History::new(Some(created), "ENV GREETING=hi", true),
            History::new(Some(created), "RUN rm /etc/hello", false),
        ],
        ..Default::default()
    };
    engine::image::write_image(cas, &config, &layers).unwrap()
}

fn named(image: &Image, names: &[&str]) -> NamedImage {
    NamedImage {
        image: image.clone(),
        names: names.iter().map(|n| Reference::parse(n).unwrap()).collect(),
    }
}

fn tar_listing(data: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut ar = tar::Archive::new(data);
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            (p, v)
        })
        .collect()
}

#[test]
fn flattened_rootfs_applies_whiteouts() {
    let dir = tempfile::tempdir().unwrap();
    let cas = ContentStore::open(dir.path()).unwrap();
    let image = busybox_image(&cas);
    let out = write_rootfs_tar(&cas, &image, Vec::new()).unwrap();
    let listing = tar_listing(&out);
    let paths: Vec<&str> = listing.iter().map(|(p, _)| p.as_str()).collect();
    for want in ["bin/busybox", "bin/sh", "etc/new", "data/c"] {
        assert!(paths.contains(&want), "{want} missing from {paths:?}");
    }
    for gone in [
        "etc/hello",
        "data/a",
        "data/b",
        "etc/.wh.hello",
        "data/.wh..wh..opq",
    ] {
        assert!(!paths.contains(&gone), "{gone} should be gone: {paths:?}");
    }
    assert_eq!(
        paths
            .iter()
            .filter(|p| p.trim_end_matches('/') == "etc")
            .count(),
        1
    );

    // type=local: the same tree on disk, and the busybox in it runs.
    let root = dir.path().join("rootfs");
    export(
        &cas,
        &[named(&image, &[])],
        &ExportSpec::parse(&format!("type=local,dest={}", root.display())).unwrap(),
    )
    .unwrap();
    assert_eq!(std::fs::read(root.join("etc/new")).unwrap(), b"new\n");
    assert!(!root.join("etc/hello").exists());
    assert!(!root.join("data/a").exists());
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    // A just-written executable can be briefly "busy" when another test thread forks while
    // its write fd is open (ETXTBSY); retry rather than fail on that race.
    let out = (0..50)
        .find_map(|_| {
            match Command::new(root.join("bin/busybox"))
                .args(["cat", root.join("data/c").to_str().unwrap()])
                .output()
            {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    None
                }
                other => Some(other.unwrap()),
            }
        })
        .expect("busybox stayed busy");
    assert_eq!(out.stdout, b"c");
}

#[test]
fn save_load_round_trip_docker_and_oci() {
    let src = tempfile::tempdir().unwrap();
    let cas = ContentStore::open(src.path()).unwrap();
    let image = busybox_image(&cas);
    let mut docker = write_docker_archive(
        &cas,
        &[named(&image, &["app:1", "example.com/team/app:2"])],
        Vec::new(),
    )
    .unwrap();
    let oci = write_oci_archive(&cas, &[named(&image, &["app:oci"])], Vec::new()).unwrap();
    // Deterministic output.
    assert_eq!(
        write_oci_archive(&cas, &[named(&image, &["app:oci"])], Vec::new()).unwrap(),
        oci
    );

    let dst = tempfile::tempdir().unwrap();
    let cas2 = ContentStore::open(dst.path()).unwrap();
    let store2 = ImageStore::open(dst.path().join("images-v1")).unwrap();
    let loaded = load_archive(&cas2, &store2, &docker[..]).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        &loaded[0].config,
        image.id(),
        "config bytes survive unchanged"
    );
    let names: Vec<String> = loaded[0].names.iter().map(|n| n.to_string()).collect();
    assert_eq!(names, ["docker.io/library/app:1", "example.com/team/app:2"]);
    let back = read_image(&cas2, &loaded[0].manifest.digest, &Platform::host()).unwrap();
    assert_eq!(back.config.rootfs.diff_ids, image.config.rootfs.diff_ids);
    assert_eq!(back.config, image.config);
    assert_eq!(store2.resolve("app:1").unwrap().record.config, *image.id());

    let loaded = load_archive(&cas2, &store2, &oci[..]).unwrap();
    assert_eq!(
        loaded[0].manifest.digest, image.manifest_descriptor.digest,
        "OCI keeps the manifest as is"
    );
    assert_eq!(
        store2.resolve("app:oci").unwrap().record.target.digest,
        image.manifest_descriptor.digest
    );

    // A gzip-compressed archive loads too; a corrupted one is rejected.
    let cas3dir = tempfile::tempdir().unwrap();
    let cas3 = ContentStore::open(cas3dir.path()).unwrap();
    let store3 = ImageStore::open(cas3dir.path().join("images-v1")).unwrap();
    assert_eq!(
        load_archive(&cas3, &store3, &gzip(&oci)[..]).unwrap().len(),
        1
    );
    let pos = docker.windows(6).position(|w| w == b"hello\n").unwrap();
    docker[pos] = b'j';
    let err = load_archive(&cas3, &store3, &docker[..]).unwrap_err();
    assert!(err.to_string().contains("diff id"), "{err}");

    // `name=` in the output spec names the image; store_image records it locally.
    let named_tar = cas3dir.path().join("named.tar");
    let spec = format!("type=docker,dest={},name=extra/name:x", named_tar.display());
    export(
        &cas,
        &[named(&image, &[])],
        &ExportSpec::parse(&spec).unwrap(),
    )
    .unwrap();
    let loaded = load_archive(&cas3, &store3, std::fs::File::open(&named_tar).unwrap()).unwrap();
    assert_eq!(loaded[0].names[0].to_string(), "docker.io/extra/name:x");
    let store_a = ImageStore::open(src.path().join("images-v1")).unwrap();
    let app = Reference::parse("built:1").unwrap();
    assert!(store_image(&store_a, &image, std::slice::from_ref(&app))
        .unwrap()
        .is_empty());
    assert_eq!(
        store_a.resolve("built:1").unwrap().record.config,
        *image.id()
    );

    // An OCI layout directory loads as well.
    let layout = tempfile::tempdir().unwrap();
    tar::Archive::new(&oci[..]).unpack(layout.path()).unwrap();
    let loaded = load_oci_layout_dir(&cas3, &store3, layout.path()).unwrap();
    assert_eq!(loaded[0].manifest.digest, image.manifest_descriptor.digest);
}

#[test]
#[cfg_attr(any(missing_skopeo, missing_umoci), ignore = "needs skopeo and umoci")]
fn skopeo_and_umoci_accept_oci_archive() {
    test_support::require(&[Need::Skopeo, Need::Umoci]);
    let (skopeo, umoci) = (tool("skopeo").unwrap(), tool("umoci").unwrap());
    let dir = tempfile::tempdir().unwrap();
    let cas = ContentStore::open(dir.path().join("store")).unwrap();
    let image = busybox_image(&cas);
    let archive = dir.path().join("x.tar");
    export(
        &cas,
        &[named(&image, &["app:latest"])],
        &ExportSpec::parse(&format!("type=oci,dest={}", archive.display())).unwrap(),
    )
    .unwrap();

    let out = Command::new(&skopeo)
        .args(["inspect", &format!("oci-archive:{}", archive.display())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(v["Labels"]["org.example.k"], "v");
    assert_eq!(v["Env"][1], "GREETING=hi");
    let out = Command::new(&skopeo)
        .args([
            "inspect",
            "--config",
            &format!("oci-archive:{}", archive.display()),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        cfg["rootfs"]["diff_ids"][1],
        image.config.rootfs.diff_ids[1].to_string()
    );

    // The layout-directory form (tar=false) is what umoci reads.
    let layout = dir.path().join("layout");
    export(
        &cas,
        &[named(&image, &["app:latest"])],
        &ExportSpec::parse(&format!("type=oci,tar=false,dest={}", layout.display())).unwrap(),
    )
    .unwrap();
    let out = Command::new(&skopeo)
        .args(["inspect", &format!("oci:{}:latest", layout.display())])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect oci: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bundle = dir.path().join("bundle");
    let out = Command::new(&umoci)
        .args([
            "unpack",
            "--image",
            &format!("{}:latest", layout.display()),
            bundle.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "umoci unpack: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rootfs = bundle.join("rootfs");
    assert!(rootfs.join("bin/busybox").is_file());
    assert_eq!(std::fs::read(rootfs.join("etc/new")).unwrap(), b"new\n");
    assert!(!rootfs.join("etc/hello").exists());
    assert!(!rootfs.join("data/a").exists());
    let spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["cwd"], "/data");
}

#[test]
#[cfg_attr(any(missing_root, missing_docker), ignore = "needs root and dockerd")]
fn docker_loads_our_archive_and_we_load_docker_save() {
    test_support::require(&[Need::Root, Need::Docker]);
    let dir = tempfile::tempdir().unwrap();
    let cas = ContentStore::open(dir.path().join("store")).unwrap();
    let image = busybox_image(&cas);
    let archive = dir.path().join("docker.tar");
    export(
        &cas,
        &[named(&image, &["builder-test/app:v1"])],
        &ExportSpec::parse(&format!("type=docker,dest={}", archive.display())).unwrap(),
    )
    .unwrap();

    let d = Dockerd::start();
    let out = d.docker(&["load", "-i", archive.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "docker load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("builder-test/app:v1"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = d.docker(&["image", "inspect", "builder-test/app:v1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let v = &v[0];
    assert_eq!(v["Id"], image.id().to_string());
    assert_eq!(v["Config"]["Cmd"][2], "echo $GREETING");
    assert_eq!(v["Config"]["Env"][1], "GREETING=hi");
    assert_eq!(v["Config"]["WorkingDir"], "/data");
    assert_eq!(v["Config"]["Labels"]["org.example.k"], "v");
    assert_eq!(v["Config"]["Healthcheck"]["Retries"], 3);
    let layers: Vec<String> = v["RootFS"]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect();
    let ours: Vec<String> = image
        .config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| d.to_string())
        .collect();
    assert_eq!(layers, ours);
    let out = d.docker(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        "builder-test/app:v1",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().next(),
        Some("RUN rm /etc/hello")
    );

    // docker save → our load: same config, same diff ids.
    let saved = dir.path().join("saved.tar");
    let out = d.docker(&["save", "-o", saved.to_str().unwrap(), "builder-test/app:v1"]);
    assert!(
        out.status.success(),
        "docker save: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let back_dir = tempfile::tempdir().unwrap();
    let cas2 = ContentStore::open(back_dir.path()).unwrap();
    let store2 = ImageStore::open(back_dir.path().join("images-v1")).unwrap();
    let loaded = load_archive(&cas2, &store2, std::fs::File::open(&saved).unwrap()).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(
        loaded[0].names[0].to_string(),
        "docker.io/builder-test/app:v1"
    );
    let back = read_image(&cas2, &loaded[0].manifest.digest, &Platform::host()).unwrap();
    assert_eq!(back.config.rootfs.diff_ids, image.config.rootfs.diff_ids);
    assert_eq!(back.id(), image.id());
    // And the flattened rootfs is the same.
    assert_eq!(
        tar_listing(&write_rootfs_tar(&cas2, &back, Vec::new()).unwrap()),
        tar_listing(&write_rootfs_tar(&cas, &image, Vec::new()).unwrap())
    );
}

#[test]
fn loads_pre_1_10_docker_archive() {
    let base_layer = make_tar(&[E::Dir("bin/"), E::File("bin/tool", b"#!/bin/sh\n", 0o755)]);
    let top_layer = make_tar(&[E::File("etc/motd", b"hi\n", 0o644)]);
    let (base, top) = ("a".repeat(64), "b".repeat(64));
    let base_json = serde_json::json!({
        "id": base, "created": "2015-01-01T00:00:00Z", "architecture": "amd64", "os": "linux",
        "container_config": {"Cmd": ["/bin/sh", "-c", "#(nop) ADD file:x in /"]},
        "config": {"Cmd": ["/bin/sh"]}
    });
    let top_json = serde_json::json!({
        "id": top, "parent": base, "created": "2015-01-02T00:00:00Z", "architecture": "amd64", "os": "linux",
        "author": "someone", "Size": 3,
        "container_config": {"Cmd": ["/bin/sh", "-c", "echo hi > /etc/motd"]},
        "config": {"Cmd": ["cat", "/etc/motd"], "Env": ["A=1"]}
    });
    let repos = serde_json::json!({ "old/app": { "v1": top } }).to_string();
    let (bj, tj) = (base_json.to_string(), top_json.to_string());
    let archive = make_tar(&[
        E::File("repositories", repos.as_bytes(), 0o644),
        E::Dir(&format!("{base}/")),
        E::File(&format!("{base}/VERSION"), b"1.0", 0o644),
        E::File(&format!("{base}/json"), bj.as_bytes(), 0o644),
        E::File(&format!("{base}/layer.tar"), &base_layer, 0o644),
        E::Dir(&format!("{top}/")),
        E::File(&format!("{top}/VERSION"), b"1.0", 0o644),
        E::File(&format!("{top}/json"), tj.as_bytes(), 0o644),
        E::File(&format!("{top}/layer.tar"), &top_layer, 0o644),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let cas = ContentStore::open(dir.path()).unwrap();
    let store = ImageStore::open(dir.path().join("images-v1")).unwrap();
    let loaded = load_archive(&cas, &store, &archive[..]).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].names[0].to_string(), "docker.io/old/app:v1");
    let image = read_image(&cas, &loaded[0].manifest.digest, &Platform::host()).unwrap();
    assert_eq!(
        image.config.rootfs.diff_ids,
        vec![Digest::of_bytes(&base_layer), Digest::of_bytes(&top_layer)]
    );
    let cfg = image.config.config.as_ref().unwrap();
    assert_eq!(
        cfg.cmd.as_deref(),
        Some(&["cat".to_string(), "/etc/motd".to_string()][..])
    );
    assert_eq!(image.config.author.as_deref(), Some("someone"));
    assert_eq!(image.config.history.len(), 2);
    assert_eq!(
        image.config.history[1].created_by.as_deref(),
        Some("/bin/sh -c echo hi > /etc/motd")
    );
    assert!(!image.config.extra.contains_key("parent") && !image.config.extra.contains_key("id"));
}
