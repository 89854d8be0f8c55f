//! Output options of `builder build`: layer compression chosen with `-o ...,compression=`.

mod common;

use common::{Fixture, Need};

fn layer_media_types(archive: &std::path::Path) -> Vec<String> {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("oci-archive:{}", archive.display()))
        .output();
    let out = out.expect("running skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap().to_string())
        .collect()
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns, missing_skopeo),
    ignore = "needs root, /usr/bin/busybox and skopeo"
)]
fn output_compression_chooses_how_new_layers_are_written() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns, Need::Skopeo]);
    let f = Fixture::new();
    let ctx = f.context(
        "zstd",
        &[("Dockerfile", "FROM busybox:local\nRUN echo zstd > /z\n")],
    );
    let zstd = f.dir.path().join("zstd.tar");
    f.build_ok(
        &ctx,
        &[
            "-o",
            &format!("type=oci,dest={},compression=zstd", zstd.display()),
        ],
    );
    let types = layer_media_types(&zstd);
    if !types.is_empty() {
        assert_eq!(
            types.last().unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    let gzip = f.dir.path().join("gzip.tar");
    f.build_ok(
        &ctx,
        &[
            "--no-cache",
            "-o",
            &format!("type=oci,dest={}", gzip.display()),
        ],
    );
    let types = layer_media_types(&gzip);
    if !types.is_empty() {
        assert_eq!(
            types.last().unwrap(),
            "application/vnd.oci.image.layer.v1.tar+gzip"
        );
    }
}
