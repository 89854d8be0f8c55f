//! `builder build --load`: the image handed to a Docker engine over its API socket, and the
//! error when no engine answers.

mod common;

use common::dockerd::Dockerd;
use common::{Fixture, Need};

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns, missing_docker),
    ignore = "needs root, /usr/bin/busybox, slirp4netns and dockerd"
)]
fn load_hands_the_image_to_docker_which_runs_it() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns, Need::Docker]);
    let f = Fixture::new();
    let ctx = f.context(
        "load",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN echo built-here > /made\nWORKDIR /srv\nUSER app\n\
             CMD [\"sh\", \"-c\", \"cat /made; pwd; id -u\"]\n",
        )],
    );
    let d = Dockerd::start();
    let out = f
        .cmd()
        .env("DOCKER_HOST", d.host())
        .args(["build", "--progress", "plain", "--load", "-t", "loaded:e2e"])
        .arg(&ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build --load failed: {stderr}");
    assert!(
        stderr.contains("docker: Loaded image: loaded:e2e"),
        "{stderr}"
    );
    let printed = d.docker_ok(&["run", "--rm", "--network=none", "loaded:e2e"]);
    assert_eq!(printed, "built-here\n/srv\n1000\n");
    // The same image id in both stores.
    let ours = common::run_ok(f.cmd().args(["images", "-q", "--no-trunc", "loaded"]));
    let theirs = d.docker_ok(&["images", "-q", "--no-trunc", "loaded:e2e"]);
    assert_eq!(ours.trim(), theirs.trim());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn load_without_an_engine_fails_clearly_before_building() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "noengine",
        &[("Dockerfile", "FROM busybox:local\nRUN echo x > /x\n")],
    );
    let nowhere = f.dir.path().join("no-docker.sock");
    let host = format!("unix://{}", nowhere.display());
    let out = f
        .cmd()
        .env("DOCKER_HOST", &host)
        .args(["build", "--progress", "plain", "--load", "-t", "never:e2e"])
        .arg(&ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot load into Docker: no engine answers at {host} (is dockerd running? set \
             DOCKER_HOST)"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("RUN echo"), "it built first: {stderr}");
    let images = common::run_ok(f.cmd().args(["images", "-q", "never"]));
    assert_eq!(images, "");
    // A transport builder does not speak is named as such.
    let out = f
        .cmd()
        .env("DOCKER_HOST", "ssh://someone@somewhere")
        .args(["build", "--load"])
        .arg(&ctx)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("DOCKER_HOST=ssh://someone@somewhere is not supported"),
        "{stderr}"
    );
}
