//! Hostile inputs stay inside the image: layer tars and ADDed tars with `../` and absolute
//! entries, symlinks in the image pointing out of the root, RUN mounts naming paths outside
//! their root, and secrets, which must never be written anywhere under the builder's root.
//! (A context symlink to /etc/passwd is covered by `build_context.rs`.)

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use common::hostile_tar::{dir, file, hex, marker, raw_tar, symlink, Raw};
use common::Fixture;

/// `../` repeated `n` times.
fn up(n: usize) -> String {
    "../".repeat(n)
}

/// Entries that try to leave the directory they are extracted into: `../` at depths 1 to 8
/// and 16 (the last reaches the host's `/`), and absolute paths, all under names containing
/// `tag`.
fn escaping_names(tag: &str) -> Vec<String> {
    let mut names: Vec<String> = (1..=8)
        .chain([16])
        .map(|n| format!("{}{tag}-up{n}.txt", up(n)))
        .collect();
    names.push(format!("{}tmp/{tag}/deep-up.txt", up(16)));
    names.push(format!("/tmp/{tag}/absolute.txt"));
    names.push(format!("/{tag}-absolute-root.txt"));
    names
}

/// Every path under `root` (not following symlinks) whose file name contains `needle`.
fn find_named(root: &Path, needle: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().contains(needle) {
                found.push(p.clone());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            }
        }
    }
    found
}

/// The paths of a tar file's entries, normalised to absolute.
fn tar_paths(path: &Path) -> Vec<String> {
    let data = std::fs::read(path).unwrap();
    let mut a = tar::Archive::new(&data[..]);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            format!("/{}", p.trim_start_matches("./").trim_start_matches('/'))
        })
        .collect()
}

/// Applets of the base layer's busybox used by these tests.
const APPLETS: &[&str] = &[
    "sh", "cat", "ls", "touch", "mkdir", "echo", "test", "wc", "ln",
];

/// Loads a hand-made docker-archive `hostile:base` whose only layer holds busybox, the
/// escaping entries for `tag`, and the given extra entries.
fn load_hostile_base(f: &Fixture, tag: &str, extra: &[Raw<'_>]) {
    let busybox = std::fs::read("/usr/bin/busybox").unwrap();
    let names = escaping_names(tag);
    let links: Vec<String> = APPLETS.iter().map(|a| format!("bin/{a}")).collect();
    let mut entries = vec![dir("bin/"), dir("etc/"), dir("tmp/")];
    entries.push(Raw {
        name: "bin/busybox",
        kind: tar::EntryType::Regular,
        mode: 0o755,
        data: &busybox,
        link: "",
    });
    for l in &links {
        entries.push(symlink(l, "busybox"));
    }
    for n in &names {
        entries.push(file(n, b"escaped from the layer\n"));
    }
    for e in extra {
        entries.push(Raw {
            name: e.name,
            kind: e.kind,
            mode: e.mode,
            data: e.data,
            link: e.link,
        });
    }
    let layer = raw_tar(&entries);
    let diff_id = format!("sha256:{}", hex(&Sha256::digest(&layer)));
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
            "Cmd": ["/bin/sh"]
        },
        "rootfs": { "type": "layers", "diff_ids": [diff_id] },
        "history": [{ "created_by": "hand-made hostile layer" }]
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_name = format!("{}.json", hex(&Sha256::digest(&config)));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": config_name,
        "RepoTags": ["hostile:base"],
        "Layers": ["layer/layer.tar"]
    }]))
    .unwrap();
    let archive = raw_tar(&[
        file(&config_name, &config),
        dir("layer/"),
        file("layer/layer.tar", &layer),
        file("manifest.json", &manifest),
    ]);
    let path = f.dir.path().join("hostile.tar");
    std::fs::write(&path, archive).unwrap();
    let out = f.cmd().args(["load", "-i"]).arg(&path).output().unwrap();
    assert!(
        out.status.success(),
        "load of the hostile archive failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file named after `tag` on this machine's /tmp and under the fixture lies inside a
/// directory the builder extracts layers into: one holding the layer's own `bin/busybox`
/// (entries clamped to the layer root) or, for ADD, under the ADD destination `dest`.
fn assert_contained(f: &Fixture, tag: &str, dest: Option<&str>) {
    assert!(
        !Path::new("/tmp").join(tag).exists(),
        "an entry escaped to the host's /tmp/{tag}"
    );
    let mut found = find_named(Path::new("/tmp"), tag);
    found.sort();
    found.dedup();
    for p in &found {
        let inside_layer_root = p
            .ancestors()
            .skip(1)
            .any(|a| a.join("bin/busybox").is_file() && a.starts_with(f.root()));
        let inside_dest = dest.is_some_and(|d| {
            p.to_string_lossy().contains(&format!("/{d}/")) && p.starts_with(f.root())
        });
        assert!(
            inside_layer_root || inside_dest,
            "{} is outside any layer root",
            p.display()
        );
    }
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn layer_tar_entries_with_dotdot_and_absolute_names_stay_in_the_layer() {
    common::require_build();
    let f = Fixture::new();
    let tag = marker("layer");
    load_hostile_base(&f, &tag, &[]);
    let ctx = f.context(
        "layer",
        &[(
            "Dockerfile",
            "FROM hostile:base\nRUN ls -R / > /listing.txt 2>/dev/null || true\n",
        )],
    );
    let rootfs = f.dir.path().join("layer.rootfs.tar");
    let dest = format!("type=tar,dest={}", rootfs.display());
    let (out, _) = f.build(&ctx, &["-t", "hostile:run", "-o", &dest]);
    assert_contained(&f, &tag, None);
    if out.status.success() {
        // Sanitised as BuildKit does: `..` stops at the root, absolute names are rooted in it.
        let paths = tar_paths(&rootfs);
        for p in &paths {
            assert!(!p.contains(".."), "exported path {p} still has ..");
        }
        assert!(
            paths.contains(&format!("/tmp/{tag}/absolute.txt")),
            "the absolute entry is not rooted in the image: {paths:?}"
        );
        assert!(paths.contains(&format!("/{tag}-up1.txt")));
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("..") || err.contains("outside") || err.contains("absolute"),
            "the build failed without saying why: {err}"
        );
    }
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn added_tar_entries_with_dotdot_and_absolute_names_stay_in_the_destination() {
    common::require_build();
    let f = Fixture::new();
    let tag = marker("add");
    let names = escaping_names(&tag);
    let mut entries = vec![file("ok.txt", b"fine\n")];
    for n in &names {
        entries.push(file(n, b"escaped from ADD\n"));
    }
    let ctx = f.context(
        "add",
        &[("Dockerfile", "FROM busybox:local\nADD evil.tar /dest/\n")],
    );
    std::fs::write(ctx.join("evil.tar"), raw_tar(&entries)).unwrap();
    let rootfs = f.dir.path().join("add.rootfs.tar");
    let dest = format!("type=tar,dest={}", rootfs.display());
    let (out, _) = f.build(&ctx, &["-o", &dest]);
    assert_contained(&f, &tag, Some("dest"));
    if out.status.success() {
        let paths = tar_paths(&rootfs);
        assert!(paths.contains(&"/dest/ok.txt".to_string()));
        for p in paths.iter().filter(|p| p.contains(&tag)) {
            assert!(p.starts_with("/dest/"), "ADD put {p} outside /dest");
            assert!(!p.contains(".."), "exported path {p} still has ..");
        }
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("..") || err.contains("outside") || err.contains("absolute"),
            "the build failed without saying why: {err}"
        );
    }
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn writes_through_symlinks_out_of_the_root_stay_in_the_rootfs() {
    common::require_build();
    let f = Fixture::new();
    let tag = marker("link");
    // `/escape -> /` and `/up -> ../../../../../../../../tmp` in the image's own layer.
    let up_link = format!("{}tmp", up(8));
    load_hostile_base(&f, &tag, &[symlink("escape", "/"), symlink("up", &up_link)]);
    let dockerfile = format!(
        "FROM hostile:base\n\
         COPY file.txt /escape/tmp/{tag}/copied.txt\n\
         COPY file.txt /up/{tag}-up/copied.txt\n\
         RUN mkdir -p /escape/tmp/{tag}-run && echo run > /escape/tmp/{tag}-run/x \
         && echo run > /up/{tag}-run-up\n"
    );
    let ctx = f.context(
        "link",
        &[("Dockerfile", &dockerfile), ("file.txt", "copied\n")],
    );
    let rootfs = f.dir.path().join("link.rootfs.tar");
    let dest = format!("type=tar,dest={}", rootfs.display());
    let (out, _) = f.build(&ctx, &["-o", &dest]);
    for p in [
        format!("/tmp/{tag}"),
        format!("/tmp/{tag}-up"),
        format!("/tmp/{tag}-run"),
        format!("/tmp/{tag}-run-up"),
    ] {
        assert!(!Path::new(&p).exists(), "a write escaped to the host's {p}");
    }
    assert!(
        out.status.success(),
        "build failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // As in BuildKit, the links resolve inside the image's root.
    let paths = tar_paths(&rootfs);
    for p in [
        format!("/tmp/{tag}/copied.txt"),
        format!("/tmp/{tag}-up/copied.txt"),
        format!("/tmp/{tag}-run/x"),
        format!("/tmp/{tag}-run-up"),
    ] {
        assert!(paths.contains(&p), "{p} is not in the image");
    }
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn bind_mount_sources_cannot_leave_their_root() {
    common::require_build();
    let f = Fixture::new();
    let tag = marker("bind");
    // A host directory the builds must not see.
    let host_dir = Path::new("/tmp").join(&tag);
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("secret.txt"), "HOST-ONLY\n").unwrap();
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(host_dir.clone());

    // A context nested so that `../../etc` from it is a real directory with a marker.
    let outer = f.dir.path().join("outer");
    std::fs::create_dir_all(outer.join("etc")).unwrap();
    std::fs::write(outer.join("etc/marker"), "OUTSIDE-CONTEXT\n").unwrap();
    let ctx = outer.join("inner/ctx");
    std::fs::create_dir_all(&ctx).unwrap();

    let cases = [
        (
            "context ../../etc",
            "FROM busybox:local\n\
             RUN --mount=type=bind,source=../../etc,target=/m cat /m/marker /m/passwd > /out.txt || true\n"
                .to_string(),
        ),
        (
            "stage symlink to a host dir",
            format!(
                "FROM busybox:local AS s\n\
                 RUN ln -s /tmp/{tag} /hostlink && ln -s ../../../../../../../../tmp/{tag} /uplink\n\
                 FROM busybox:local\n\
                 RUN --mount=type=bind,from=s,source=/hostlink,target=/m cat /m/secret.txt > /out.txt || true\n\
                 RUN --mount=type=bind,from=s,source=/uplink,target=/m cat /m/secret.txt >> /out.txt || true\n"
            ),
        ),
        (
            "cache id ../../x",
            format!(
                "FROM busybox:local\n\
                 RUN --mount=type=cache,id=../../{tag}-cache,target=/c touch /c/{tag}-pwned && echo ok > /out.txt\n"
            ),
        ),
    ];
    for (what, dockerfile) in cases {
        std::fs::write(ctx.join("Dockerfile"), &dockerfile).unwrap();
        let out_dir = f.dir.path().join(format!("out-{}", what.replace(' ', "-")));
        let dest = format!("type=local,dest={}", out_dir.display());
        let (out, _) = f.build(&ctx, &["-o", &dest]);
        if out.status.success() {
            let text = std::fs::read_to_string(out_dir.join("out.txt")).unwrap_or_default();
            assert!(
                !text.contains("OUTSIDE-CONTEXT") && !text.contains("HOST-ONLY"),
                "{what}: the mount reached outside its root: {text}"
            );
        }
        // Cache directories live under the builder's root, whatever their id says.
        for p in find_named(f.dir.path(), &format!("{tag}-pwned"))
            .into_iter()
            .chain(find_named(Path::new("/tmp"), &format!("{tag}-cache")))
        {
            assert!(
                p.starts_with(f.root()),
                "{what}: {} is outside the builder's root",
                p.display()
            );
        }
    }
}

/// Every file under `dir`, and gzip/zstd-decompressed where it is compressed, searched for
/// `needle`; returns the files that contain it.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(p);
                continue;
            }
            if !t.is_file() {
                continue;
            }
            let Ok(data) = std::fs::read(&p) else {
                continue;
            };
            let mut views = vec![data.clone()];
            if data.starts_with(&[0x1f, 0x8b]) {
                let mut out = Vec::new();
                if flate2::read::MultiGzDecoder::new(&data[..])
                    .read_to_end(&mut out)
                    .is_ok()
                {
                    views.push(out);
                }
            }
            if data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                if let Ok(out) = zstd::decode_all(&data[..]) {
                    views.push(out);
                }
            }
            if views
                .iter()
                .any(|v| v.windows(needle.len()).any(|w| w == needle))
            {
                hits.push(p);
            }
        }
    }
    hits
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn secrets_never_reach_layers_history_config_or_cache_records() {
    common::require_build();
    let f = Fixture::new();
    let secret = marker("secret-value");
    let control = marker("control-value");
    let ctx = f.context(
        "secret",
        &[
            (
                "Dockerfile",
                "FROM busybox:local\n\
                 COPY control.txt /control.txt\n\
                 RUN --mount=type=secret,id=token test -s /run/secrets/token && cat /run/secrets/token > /dev/null && echo file > /used.txt\n\
                 RUN --mount=type=secret,id=token,env=TOKEN test -n \"$TOKEN\" && echo env >> /used.txt\n\
                 RUN --mount=type=secret,id=token,target=/etc/app/token cat /etc/app/token | wc -c >> /used.txt\n",
            ),
            ("control.txt", &format!("{control}\n")),
        ],
    );
    let secret_file = f.dir.path().join("token.txt");
    std::fs::write(&secret_file, &secret).unwrap();
    let secret_arg = format!("id=token,src={}", secret_file.display());
    let archive = f.dir.path().join("secret.docker.tar");
    let dest = format!("type=docker,dest={}", archive.display());
    let meta = f.build_ok(
        &ctx,
        &["-t", "secret:test", "--secret", &secret_arg, "-o", &dest],
    );
    let exported = f.dir.path().join("exported");
    std::fs::create_dir_all(&exported).unwrap();
    std::fs::copy(&archive, exported.join("secret.docker.tar")).unwrap();
    let history = f
        .cmd()
        .args(["history", "--no-trunc", "secret:test"])
        .output()
        .unwrap();
    let inspect = f.cmd().args(["inspect", "secret:test"]).output().unwrap();

    // The scan works: the control value, which is in a layer, is found in a blob.
    let control_hits = files_containing(&f.root(), control.as_bytes());
    assert!(
        !control_hits.is_empty(),
        "the scan did not find the control value in any blob"
    );
    let hits = files_containing(&f.root(), secret.as_bytes());
    assert!(hits.is_empty(), "the secret is stored in {hits:?}");
    let hits = files_containing(&exported, secret.as_bytes());
    assert!(hits.is_empty(), "the secret is in the exported archive");
    for (what, out) in [("history", &history.stdout), ("inspect", &inspect.stdout)] {
        assert!(
            !String::from_utf8_lossy(out).contains(&secret),
            "the secret is in `builder {what}`"
        );
    }
    assert!(
        !meta.to_string().contains(&secret),
        "the secret is in the metadata file"
    );
}
