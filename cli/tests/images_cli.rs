//! The image commands end to end through the `builder` binary on a private root.

use std::path::Path;
use std::process::{Command, Output};

use cache::{Descriptor, ImageRecord, ImageStore, Reference, RootDir};
use engine::image::{
    media_types, write_image, ContainerConfig, History, Image, ImageConfig, LayerInfo,
};

fn builder(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_builder"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

fn ok(root: &Path, args: &[&str]) -> String {
    let out = builder(root, args);
    assert!(
        out.status.success(),
        "builder {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (p, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o755);
        h.set_size(data.len() as u64);
        h.set_mtime(0);
        b.append_data(&mut h, p, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// Stores a small two-layer image in `root` under `names`.
fn seed_image(root: &Path, names: &[&str], cmd: &str) -> Image {
    let root = RootDir::open(root).unwrap();
    let cas = root.content_store().unwrap();
    let l1 = layer(&[("bin/busybox", &std::fs::read("/usr/bin/busybox").unwrap())]);
    let l2 = layer(&[("etc/motd", cmd.as_bytes())]);
    let layers: Vec<LayerInfo> = [l1, l2]
        .iter()
        .map(|l| {
            let d = cas.put_bytes(l).unwrap();
            LayerInfo {
                descriptor: Descriptor::new(media_types::OCI_LAYER, d.clone(), l.len() as u64),
                diff_id: d,
            }
        })
        .collect();
    let created = chrono::Utc::now() - chrono::Duration::hours(3);
    let config = ImageConfig {
        created: Some(created),
        architecture: "amd64".into(),
        os: "linux".into(),
        config: Some(ContainerConfig {
            cmd: Some(vec![
                "/bin/busybox".into(),
                "sh".into(),
                "-c".into(),
                cmd.into(),
            ]),
            env: Some(vec!["PATH=/bin".into()]),
            labels: Some([("org.example.k".to_string(), "v".to_string())].into()),
            ..Default::default()
        }),
        history: vec![
            History::new(Some(created), "COPY busybox /bin/busybox # buildkit", false),
            History::new(Some(created), "ENV PATH=/bin", true),
            History::new(
                Some(created),
                "RUN /bin/sh -c echo a very long command line that goes on and on # buildkit",
                false,
            ),
        ],
        ..Default::default()
    };
    let image = write_image(&cas, &config, &layers).unwrap();
    let store = ImageStore::open(root.images_dir()).unwrap();
    let names: Vec<Reference> = names.iter().map(|n| Reference::parse(n).unwrap()).collect();
    store
        .put_and_tag(
            ImageRecord::new(image.manifest_descriptor.clone(), image.id().clone()),
            &names,
        )
        .unwrap();
    image
}

#[test]
fn images_tag_inspect_history_rmi() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let image = seed_image(root, &["app:1"], "echo one");
    let id = image.id().short().to_string();

    let out = ok(root, &["images"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["REPOSITORY", "TAG", "IMAGE", "ID", "CREATED", "SIZE"]
    );
    assert!(
        lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{out}"
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&row[..3], ["app", "1", id.as_str()]);
    assert_eq!(&row[3..6], ["3", "hours", "ago"]);

    ok(root, &["tag", "app:1", "registry.example.com/team/app:2"]);
    assert_eq!(
        ok(root, &["images", "-q"]).lines().collect::<Vec<_>>(),
        [id.as_str(), id.as_str()]
    );
    let out = ok(
        root,
        &[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
            "--no-trunc",
        ],
    );
    assert!(out.contains(&format!("app:1 {}", image.id())), "{out}");
    assert!(out.contains("registry.example.com/team/app:2"), "{out}");
    let out = ok(
        root,
        &["images", "--digests", "--format", "{{.Digest}}", "app"],
    );
    assert_eq!(out.trim(), image.manifest_descriptor.digest.to_string());

    // inspect: Docker's JSON, and templates.
    let v: serde_json::Value = serde_json::from_str(&ok(root, &["inspect", "app:1"])).unwrap();
    assert_eq!(v[0]["Id"], image.id().to_string());
    assert_eq!(
        v[0]["RepoTags"],
        serde_json::json!(["app:1", "registry.example.com/team/app:2"])
    );
    assert_eq!(v[0]["Config"]["Cmd"][3], "echo one");
    assert_eq!(v[0]["Config"]["Entrypoint"], serde_json::Value::Null);
    assert_eq!(v[0]["RootFS"]["Layers"].as_array().unwrap().len(), 2);
    assert_eq!(
        ok(root, &["inspect", "--format", "{{.Config.Cmd}}", &id]),
        "[/bin/busybox sh -c echo one]\n"
    );
    assert_eq!(
        ok(
            root,
            &["inspect", "--format", "{{json .Config.Env}}", "app:1"]
        ),
        "[\"PATH=/bin\"]\n"
    );
    assert_eq!(
        ok(
            root,
            &[
                "inspect",
                "-f",
                "{{index .Config.Labels \"org.example.k\"}}",
                "app:1"
            ]
        ),
        "v\n"
    );
    assert_eq!(
        ok(
            root,
            &[
                "inspect",
                "-f",
                "{{.Config.Entrypoint}} {{.Config.Labels}}",
                "app:1"
            ]
        ),
        "[] map[org.example.k:v]\n"
    );
    let layers = ok(
        root,
        &[
            "inspect",
            "-f",
            "{{range .RootFS.Layers}}{{println .}}{{end}}",
            "app:1",
        ],
    );
    let want: String = image
        .config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| format!("{d}\n"))
        .collect();
    assert_eq!(layers, format!("{want}\n"));
    // Sizes as Docker counts them: the bytes of the layers' files, not of the compressed blobs.
    let size = ok(root, &["inspect", "-f", "{{.Size}}", "app:1"]);
    let files = std::fs::metadata("/usr/bin/busybox").unwrap().len() + "echo one".len() as u64;
    assert_eq!(size.trim().parse::<u64>().unwrap(), files);
    assert_ne!(
        files,
        image.manifest.layers.iter().map(|l| l.size).sum::<u64>()
    );
    let compressed = ok(
        root,
        &["images", "--format", "{{.CompressedSize}}", "app:1"],
    );
    assert!(compressed.trim().ends_with('B'), "{compressed}");

    // history: newest first, <missing> below the top, truncated CREATED BY.
    let out = ok(root, &["history", "app:1"]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].starts_with("IMAGE          CREATED       CREATED BY"),
        "{out}"
    );
    assert!(lines[1].starts_with(&id), "{out}");
    assert!(
        lines[1].contains("RUN /bin/sh -c echo a very long command line…"),
        "{out}"
    );
    assert!(
        lines[2].starts_with("<missing>")
            && lines[2].contains("ENV PATH=/bin")
            && lines[2].contains("0B"),
        "{out}"
    );
    assert!(lines[3].starts_with("<missing>"), "{out}");
    let out = ok(
        root,
        &[
            "history",
            "--no-trunc",
            "--format",
            "{{.CreatedBy}}|{{.Size}}",
            "app:1",
        ],
    );
    assert!(
        out.starts_with(
            "RUN /bin/sh -c echo a very long command line that goes on and on # buildkit|"
        ),
        "{out}"
    );

    // A second image takes the name; the first becomes dangling.
    assert_eq!(
        ok(root, &["rmi", "registry.example.com/team/app:2"]),
        "Untagged: registry.example.com/team/app:2\n"
    );
    let second = seed_image(root, &["app:1"], "echo two");
    let dangling = ok(
        root,
        &[
            "images",
            "--filter",
            "dangling=true",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}}",
        ],
    );
    assert_eq!(dangling, format!("<none>:<none> {id}\n"));
    let named = ok(root, &["images", "--filter", "dangling=false", "-q"]);
    assert_eq!(named, format!("{}\n", second.id().short()));
    let by_label = ok(root, &["images", "--filter", "label=org.example.k=v", "-q"]);
    assert_eq!(by_label.lines().count(), 2);
    assert_eq!(
        ok(root, &["rmi", &id]),
        format!("Deleted: {}\n", image.id())
    );
    assert_eq!(
        ok(root, &["images", "-q"]),
        format!("{}\n", second.id().short())
    );
}

#[test]
fn save_load_and_rmi() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a");
    let b = dir.path().join("b");
    let image = seed_image(&a, &["app:1", "app:2"], "echo one");
    for format in ["docker", "oci"] {
        let archive = dir.path().join(format!("{format}.tar"));
        ok(
            &a,
            &[
                "save",
                "--format",
                format,
                "-o",
                archive.to_str().unwrap(),
                "app:1",
            ],
        );
        let out = ok(&b, &["load", "-i", archive.to_str().unwrap()]);
        assert_eq!(out, "Loaded image: app:1\n");
        let v: serde_json::Value = serde_json::from_str(&ok(&b, &["inspect", "app:1"])).unwrap();
        assert_eq!(v[0]["Id"], image.id().to_string());
        let layers: Vec<String> = image
            .config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| d.to_string())
            .collect();
        assert_eq!(v[0]["RootFS"]["Layers"], serde_json::json!(layers));
    }
    // By id, with two names: refused without -f.
    let id = image.id().short().to_string();
    let out = builder(&a, &["rmi", &id]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be forced"));
    assert_eq!(ok(&a, &["rmi", "app:2"]), "Untagged: app:2\n");
    assert_eq!(
        ok(&a, &["rmi", "app:1"]),
        format!("Untagged: app:1\nDeleted: {}\n", image.id())
    );
    assert_eq!(ok(&a, &["images", "-q"]), "");
    let out = builder(&a, &["rmi", "app:1"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such image: app:1"));
}

/// A base image as Docker writes them: `null` lists and maps, fields this project does not
/// model (top level, in `config`, in a history entry), a fractional creation time.
const DOCKER_STYLE_BASE_CONFIG: &str = r##"{"architecture":"amd64","os":"linux",
  "created":"2024-01-02T03:04:05.12Z","author":"docker person","docker_version":"20.10.5",
  "container_config":{"Hostname":"abc","Cmd":["/bin/sh","-c","#(nop) CMD"]},
  "zzz_unknown":{"nested":[1,null,{"b":1,"a":2}]},
  "config":{"Hostname":"","AttachStdin":false,"Env":["PATH=/bin"],"Cmd":null,"Entrypoint":null,
    "Labels":null,"OnBuild":null,"Volumes":null,"ExposedPorts":{"22/tcp":{}},"WorkingDir":"",
    "ArgsEscaped":true,"StopSignal":"SIGQUIT","Shell":["/bin/sh","-c"],"Image":"sha256:feed",
    "Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":1000000000}},
  "rootfs":{"type":"layers","diff_ids":["DIFF_ID"]},
  "history":[{"created":"2024-01-02T03:04:05.120000Z","created_by":"/bin/sh -c #(nop) ADD file",
    "comment":"c","extra_key":1},{"created":"2024-01-02T03:04:05Z","created_by":"CMD","empty_layer":true}]}"##;

/// The config document a build writes is byte for byte what it was when the solver folded
/// configs as JSON values: image ids must not change under a refactor. The build is metadata
/// only (no step runs), over a Docker-style base.
#[test]
fn built_config_document_is_byte_stable() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let rootdir = RootDir::open(&root).unwrap();
    let cas = rootdir.content_store().unwrap();
    let tar = layer(&[("etc/motd", b"hi\n")]);
    let digest = cas.put_bytes(&tar).unwrap();
    let config = DOCKER_STYLE_BASE_CONFIG.replace("DIFF_ID", &digest.to_string());
    let config_digest = cas.put_bytes(config.as_bytes()).unwrap();
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": media_types::OCI_MANIFEST,
        "config": {"mediaType": media_types::OCI_CONFIG, "digest": config_digest.to_string(), "size": config.len()},
        "layers": [{"mediaType": media_types::OCI_LAYER, "digest": digest.to_string(), "size": tar.len()}],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = cas.put_bytes(&manifest).unwrap();
    ImageStore::open(rootdir.images_dir())
        .unwrap()
        .put_and_tag(
            ImageRecord::new(
                Descriptor::new(
                    media_types::OCI_MANIFEST,
                    manifest_digest,
                    manifest.len() as u64,
                ),
                config_digest,
            ),
            &[Reference::parse("docker-style:1").unwrap()],
        )
        .unwrap();

    let context = dir.path().join("context");
    std::fs::create_dir_all(&context).unwrap();
    std::fs::write(
        context.join("Dockerfile"),
        "FROM docker-style:1\nMAINTAINER someone\nARG V=1\nENV A=1 PATH=/opt/bin:$PATH\n\
         LABEL x=y\nEXPOSE 80 443/udp\nVOLUME /data\nUSER app\nSHELL [\"/bin/sh\", \"-ec\"]\n\
         HEALTHCHECK --interval=5s --retries=3 CMD true\nSTOPSIGNAL SIGTERM\n\
         ONBUILD RUN echo child\nCMD [\"a\"]\nENTRYPOINT [\"/bin/sh\", \"-c\"]\n",
    )
    .unwrap();
    let meta = dir.path().join("meta.json");
    let out = Command::new(env!("CARGO_BIN_EXE_builder"))
        .arg("--root")
        .arg(&root)
        .args(["build", "--progress", "plain", "--label", "cli=1"])
        .arg("--metadata-file")
        .arg(&meta)
        .arg(&context)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    let id: cache::Digest = meta["containerimage.config.digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let written = String::from_utf8(cas.read(&id).unwrap()).unwrap();
    let expected = concat!(
        r##"{"created":"2023-11-14T22:13:20Z","author":"someone","architecture":"amd64","os":"linux","##,
        r##""config":{"User":"app","ExposedPorts":{"22/tcp":{},"443/udp":{},"80/tcp":{}},"Env":["PATH=/opt/bin:/bin","A=1"],"Entrypoint":["/bin/sh","-c"],"Cmd":["a"],"Volumes":{"/data":{}},"WorkingDir":"","Labels":{"cli":"1","x":"y"},"StopSignal":"SIGTERM","ArgsEscaped":true,"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000,"Retries":3},"OnBuild":["RUN echo child"],"Shell":["/bin/sh","-ec"],"AttachStdin":false,"Hostname":"","Image":"sha256:feed"},"##,
        r##""rootfs":{"type":"layers","diff_ids":["DIFF_ID"]},"history":["##,
        r##"{"created":"2024-01-02T03:04:05.120Z","created_by":"/bin/sh -c #(nop) ADD file","comment":"c"},"##,
        r##"{"created":"2024-01-02T03:04:05Z","created_by":"CMD","empty_layer":true},"##,
        r##"{"created":"2023-11-14T22:13:20Z","created_by":"MAINTAINER someone","comment":"buildkit.dockerfile.v0","empty_layer":true},"##,
        r##"{"created":"2023-11-14T22:13:20Z","created_by":"ARG V=1","comment":"buildkit.dockerfile.v0","empty_layer":true},"##,
        r##"{"created":"2023-11-14T22:13:20Z","created_by":"ENV A=1 PATH=/opt/bin:/bin","comment":"buildkit.dockerfile.v0","empty_layer":true},"##,
        r##"{"created":"2023-11-14T22:13:20Z","created_by":"LABEL x=y","comment":"buildkit.dockerfile.v0","empty_layer":true},"##,
        r##"{"created":"2023-11-14T22:13:20Z","created_by":"EXPOSE [443/udp 80/tcp]","comment":"buildkit.dockerfile.v0","empty_layer":true},"##,
        r##"{"created":"2023-11-14T22:13:20Z","created_by":"VOLUME [/data]","comment":"buildkit.dockerfile.v0","empty_layer":true},"##,
        r##"{"created":"2023-11-14T22:13:20Z","created_by":"USER app","comment":"buildkit.dockerfile.v0","empty_layer":true},"##,
        r##"{"created":"2023-11-14T22:13:20Z","created_by":"SHELL [/bin/sh -ec]","comment":"buildkit.dockerfile.v0","empty_layer":true},"##,
        r##"{"created":"2023-11-14T22:13:20Z","created_by":"HEALTHCHECK {Test:[CMD-SHELL true] Interval:5s Timeout:0s StartPeriod:0s StartInterval:0s Retries:3}","comment":"buildkit.dockerfile.v0","empty_layer":true},"##,
        r##"{"created":"2023-11-14T22:13:20Z","created_by":"STOPSIGNAL SIGTERM","comment":"buildkit.dockerfile.v0","empty_layer":true},"##,
        r##"{"created":"2023-11-14T22:13:20Z","created_by":"CMD [\"a\"]","comment":"buildkit.dockerfile.v0","empty_layer":true},"##,
        r##"{"created":"2023-11-14T22:13:20Z","created_by":"ENTRYPOINT [\"/bin/sh\" \"-c\"]","comment":"buildkit.dockerfile.v0","empty_layer":true}]"##,
        r##","container_config":{"Cmd":["/bin/sh","-c","#(nop) CMD"],"Hostname":"abc"},"docker_version":"20.10.5","zzz_unknown":{"nested":[1,null,{"a":2,"b":1}]}}"##,
    );
    assert_eq!(written, expected.replace("DIFF_ID", &digest.to_string()));
}
