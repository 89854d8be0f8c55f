//! `docker build`'s flags, each doing what Docker's (BuildKit's) does: `--label`, `--network`,
//! `--add-host`, `--build-context`, `--call check`, `--shm-size`, `--ulimit`, `--ssh`.

mod common;

use common::{run_ok, Fixture};
use std::path::{Path, PathBuf};

/// The `Config` of the stored image `name`, as `builder inspect` shows it.
fn image_config(f: &Fixture, name: &str) -> serde_json::Value {
    let text = run_ok(f.cmd().args(["inspect", name]));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v[0]["Config"].clone()
}

/// Builds `ctx` with `args` plus a local output; returns the output directory.
fn build_to_dir(f: &Fixture, ctx: &Path, out: &str, args: &[&str]) -> PathBuf {
    let dest = f.dir.path().join(out);
    let o = format!("type=local,dest={}", dest.display());
    let mut all = vec!["-o", o.as_str()];
    all.extend_from_slice(args);
    f.build_ok(ctx, &all);
    dest
}

/// Runs a build expected to fail; returns its stderr.
fn build_err(f: &Fixture, ctx: &Path, args: &[&str]) -> String {
    let (out, _) = f.build(ctx, args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the build should fail:\n{stderr}");
    stderr
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn label_sets_image_labels_over_the_dockerfiles() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "label",
        &[(
            "Dockerfile",
            "FROM busybox:local\nLABEL keep=file over=file\nRUN true\n",
        )],
    );
    build_to_dir(
        &f,
        &ctx,
        "out",
        &["-t", "labelled", "--label", "over=flag", "--label=new=a=b"],
    );
    let labels = &image_config(&f, "labelled")["Labels"];
    assert_eq!(labels["keep"], "file", "{labels}");
    assert_eq!(labels["over"], "flag", "{labels}");
    assert_eq!(labels["new"], "a=b", "{labels}");
    let err = build_err(&f, &ctx, &["--label", "=x"]);
    assert!(err.contains("expected KEY=VALUE"), "{err}");
}
