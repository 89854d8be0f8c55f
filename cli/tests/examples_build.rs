//! Every Dockerfile in `examples/` builds, and its outputs are read by tools this project did
//! not write: skopeo and umoci read the `-o type=oci` archive, and a real Docker engine loads the
//! `-o type=docker` archive and runs the image, printing what the Dockerfile says it prints.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::dockerd::Dockerd;
use common::{example_names, example_secret_arg, examples_dir, run_ok, Fixture, Need};

/// Builds every example once, with OCI and docker-archive outputs; returns
/// (name, oci archive, docker archive) per example.
fn build_examples(f: &Fixture) -> Vec<(String, PathBuf, PathBuf)> {
    let secret = example_secret_arg();
    let mut built = Vec::new();
    for name in example_names() {
        let oci = f.dir.path().join(format!("{name}.oci.tar"));
        let docker = f.dir.path().join(format!("{name}.docker.tar"));
        let tag = format!("example-{name}:e2e");
        let oci_out = format!("type=oci,dest={}", oci.display());
        let docker_out = format!("type=docker,dest={}", docker.display());
        f.build_ok(
            &examples_dir().join(&name),
            &[
                "-t",
                &tag,
                "--secret",
                &secret,
                "-o",
                &oci_out,
                "-o",
                &docker_out,
            ],
        );
        assert!(oci.is_file(), "{name}: no OCI archive at {}", oci.display());
        assert!(docker.is_file(), "{name}: no docker archive");
        built.push((name, oci, docker));
    }
    built
}

/// What each example's default command prints, derived from its Dockerfile and files.
fn expected_output(name: &str) -> Option<String> {
    let ex = examples_dir().join(name);
    let read = |p: &str| std::fs::read_to_string(ex.join(p)).unwrap();
    match name {
        "hello" => {
            let greeting = read("greeting.txt");
            let words = greeting.split_whitespace().count();
            Some(format!("{greeting}words: {words} greeting.txt\n"))
        }
        "multistage" => {
            let left = read("parts/left.txt").to_uppercase();
            let right: String = read("parts/right.txt")
                .lines()
                .map(|l| format!("{}\n", l.chars().rev().collect::<String>()))
                .collect();
            Some(format!("{left}{right}"))
        }
        "heredoc-add" => Some("name=heredoc-example\nmode=demo\none.txt\ntwo.txt\n".into()),
        "mounts" => Some("secret was available\nsecret env was available\n".into()),
        _ => None,
    }
}

#[test]
#[cfg_attr(
    any(
        missing_root,
        missing_busybox,
        missing_slirp4netns,
        missing_skopeo,
        missing_umoci
    ),
    ignore = "needs root, /usr/bin/busybox, skopeo and umoci"
)]
fn examples_build_and_skopeo_and_umoci_read_the_oci_output() {
    common::require(&[
        Need::Root,
        Need::Busybox,
        Need::Slirp4netns,
        Need::Skopeo,
        Need::Umoci,
    ]);
    let f = Fixture::new();
    let built = build_examples(&f);
    assert!(built.len() >= 4, "examples found: {built:?}");
    for (name, oci, _) in &built {
        // skopeo: the manifest and config of the archive.
        let inspect = run_ok(
            Command::new("skopeo")
                .arg("inspect")
                .arg(format!("oci-archive:{}", oci.display())),
        );
        let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
        let layers = v["Layers"].as_array().map(|a| a.len()).unwrap_or(0);
        assert!(
            layers >= 2,
            "{name}: skopeo sees {layers} layers: {inspect}"
        );
        assert_eq!(v["Os"], "linux", "{name}: {inspect}");
        let config = run_ok(
            Command::new("skopeo")
                .args(["inspect", "--config"])
                .arg(format!("oci-archive:{}", oci.display())),
        );
        let c: serde_json::Value = serde_json::from_str(&config).unwrap();
        assert!(c["config"]["Cmd"].is_array(), "{name}: {config}");

        // umoci: unpack the layout by its tag into a runtime bundle.
        let layout = f.dir.path().join(format!("{name}.layout"));
        std::fs::create_dir_all(&layout).unwrap();
        run_ok(
            Command::new("tar")
                .arg("-xf")
                .arg(oci)
                .arg("-C")
                .arg(&layout),
        );
        let bundle = f.dir.path().join(format!("{name}.bundle"));
        run_ok(
            Command::new("umoci")
                .args(["unpack", "--image"])
                .arg(format!("{}:e2e", layout.display()))
                .arg(&bundle),
        );
        let rootfs = bundle.join("rootfs");
        assert!(
            rootfs.join("bin/busybox").is_file(),
            "{name}: umoci's rootfs has no /bin/busybox"
        );
        let spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
        assert!(spec["process"]["args"].is_array(), "{name}: {spec}");
        match name.as_str() {
            "hello" => {
                assert_eq!(
                    std::fs::read_to_string(rootfs.join("app/greeting.txt")).unwrap(),
                    std::fs::read_to_string(examples_dir().join("hello/greeting.txt")).unwrap()
                );
                assert_eq!(spec["process"]["cwd"], "/app");
            }
            "multistage" => {
                for f in ["out/left.out", "out/right.out", "out/original-left.txt"] {
                    assert!(rootfs.join(f).is_file(), "multistage: no /{f}");
                }
            }
            "heredoc-add" => {
                assert!(rootfs.join("opt/files/one.txt").is_file());
                assert!(rootfs.join("out/summary.txt").is_file());
            }
            _ => {}
        }
    }
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns, missing_docker),
    ignore = "needs root, /usr/bin/busybox and dockerd"
)]
fn docker_loads_and_runs_the_examples() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns, Need::Docker]);
    let f = Fixture::new();
    let built = build_examples(&f);
    let d = Dockerd::start();
    for (name, _, docker) in &built {
        let loaded = d.docker_ok(&["load", "-i", docker.to_str().unwrap()]);
        let tag = format!("example-{name}:e2e");
        assert!(loaded.contains(&tag), "{name}: docker load said {loaded}");
        let printed = d.docker_ok(&["run", "--rm", "--network=none", &tag]);
        if let Some(expected) = expected_output(name) {
            assert_eq!(printed, expected, "{name}: what `docker run` printed");
        }
    }
    // USER and WORKDIR reach the container.
    let id = d.docker_ok(&[
        "run",
        "--rm",
        "--network=none",
        "example-hello:e2e",
        "sh",
        "-c",
        "id -u; pwd",
    ]);
    assert_eq!(id, "1000\n/app\n");
}
