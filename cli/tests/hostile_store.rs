//! Hostile inputs against the store and the archives it reads and writes: whiteout names that
//! reach outside their directory, other local users reaching into the store, rootfs tars that
//! write through their own symlinks, OCI layout directories with links out of them, and files
//! named like whiteouts. Each test builds its hostile input itself, checks that the attack
//! fails or is contained with a clear error, and that the store is intact afterwards.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use common::hostile_tar::{busybox_layer, dir, file, hex, load_layers, marker, raw_tar, symlink};
use common::{assert_store_intact, Fixture};

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every path under the root's unpacked snapshots, relative, sorted (not following links).
fn snapshot_paths(f: &Fixture) -> Vec<PathBuf> {
    let base = f.root().join("snapshots-v1/sha256");
    let mut out: Vec<PathBuf> = walkdir::WalkDir::new(&base)
        .into_iter()
        .filter_map(|e| e.ok())
        .map(|e| e.path().strip_prefix(&base).unwrap().to_path_buf())
        .filter(|p| !p.to_string_lossy().ends_with(".lock"))
        .collect();
    out.sort();
    out
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn whiteouts_naming_dot_or_dotdot_are_rejected_and_other_snapshots_survive() {
    common::require_build();
    let f = Fixture::new();
    // Unpack the base image's layers first: those are the siblings `.wh...` used to wipe.
    let warm = f.context("warm", &[("Dockerfile", "FROM busybox:local\nRUN true\n")]);
    f.build_ok(&warm, &[]);
    let before = snapshot_paths(&f);
    assert!(before.iter().any(|p| p.ends_with("bin/busybox")));
    for (i, bad) in [".wh...", ".wh..", "etc/.wh...", "etc/.wh..", ".wh."]
        .iter()
        .enumerate()
    {
        let layer = busybox_layer(&[
            dir("etc/"),
            file("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
            file(bad, b""),
        ]);
        let name = format!("hostile:wh{i}");
        load_layers(&f, &name, &[layer]);
        let ctx = f.context(
            &format!("wh{i}"),
            &[("Dockerfile", &format!("FROM {name}\nRUN true\n"))],
        );
        let (out, _) = f.build(&ctx, &[]);
        assert!(!out.status.success(), "{bad}: the build succeeded");
        let err = stderr(&out);
        assert!(
            err.contains("invalid whiteout name"),
            "{bad}: unclear error: {err}"
        );
        assert_eq!(
            snapshot_paths(&f),
            before,
            "{bad}: unpacking changed other snapshots"
        );
    }
    assert_store_intact(&f);
}

/// Runs `args` as the user `nobody` (uid and gid 65534, no supplementary groups).
fn as_nobody(args: &[&str]) -> std::process::Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .output()
        .expect("setpriv (util-linux) is needed")
}

fn find_named(root: &Path, name: &str) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name() == name)
        .map(|e| e.path().to_path_buf())
        .collect()
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn other_users_cannot_reach_snapshots_setuid_binaries_or_cache_mounts() {
    common::require_build();
    let f = Fixture::new();
    // The fixture's temporary directory is 0700 itself: open it so that only the store's own
    // permissions stand between `nobody` and its contents.
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let ctx = f.context(
        "perms",
        &[(
            "Dockerfile",
            "FROM busybox:local\n\
             RUN cp /bin/busybox /suid-busybox && chmod 4755 /suid-busybox \
             && mkdir /wide-open && chmod 1777 /wide-open\n\
             RUN --mount=type=cache,id=poison,target=/cache,mode=0777 touch /cache/seeded\n",
        )],
    );
    f.build_ok(&ctx, &[]);
    let root = f.root();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&root), 0o700, "the root directory");
    for sub in ["snapshots-v1", "mounts-v1", "tmp", "blobs"] {
        assert_eq!(mode(&root.join(sub)), 0o700, "{sub}");
    }

    let suid = find_named(&root, "suid-busybox");
    assert!(!suid.is_empty(), "the setuid binary is not in the store");
    let wide = find_named(&root, "wide-open");
    let seeded = find_named(&root.join("mounts-v1"), "seeded");
    assert!(!seeded.is_empty(), "the cache mount is not in the store");
    let root_s = root.to_string_lossy().into_owned();
    let snapshots = root.join("snapshots-v1/sha256");

    let out = as_nobody(&["ls", &snapshots.to_string_lossy()]);
    assert!(!out.status.success(), "nobody listed the snapshots");
    let out = as_nobody(&["ls", &root_s]);
    assert!(!out.status.success(), "nobody listed the root");
    for s in &suid {
        assert!(s.metadata().unwrap().permissions().mode() & 0o4000 != 0);
        let out = as_nobody(&[&s.to_string_lossy(), "id", "-u"]);
        assert!(
            !out.status.success(),
            "nobody ran the image's setuid binary {}: {}",
            s.display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
    for target in seeded
        .iter()
        .map(|s| s.with_file_name("poisoned"))
        .chain(wide.iter().map(|w| w.join("poisoned")))
    {
        let out = as_nobody(&["touch", &target.to_string_lossy()]);
        assert!(
            !out.status.success() && !target.exists(),
            "nobody wrote {}",
            target.display()
        );
    }

    // A root left world-readable (by an older version) is narrowed by the next command.
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(
        root.join("snapshots-v1"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let out = f.cmd().args(["cache", "check"]).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("snapshots-v1")), 0o700);
    assert_store_intact(&f);
}

/// (path, entry type, link target) of every entry of a tar file, paths without `./` or `/`.
fn tar_entries(path: &Path) -> Vec<(String, tar::EntryType, String)> {
    let data = std::fs::read(path).unwrap();
    let mut a = tar::Archive::new(&data[..]);
    a.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let p = String::from_utf8_lossy(&e.path_bytes()).into_owned();
            let p = p.trim_start_matches("./").trim_matches('/').to_string();
            let link = e
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .unwrap_or_default();
            (p, e.header().entry_type(), link)
        })
        .collect()
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn rootfs_exports_never_write_below_a_symlink_they_wrote() {
    common::require_build();
    let f = Fixture::new();
    let tag = marker("sym");
    let host_abs = format!("/tmp/{tag}-abs");
    let rel_link = format!("{}tmp/{tag}-rel", "../".repeat(8));
    let lower = busybox_layer(&[
        symlink("abs", &host_abs),
        dir("abs/cron.d/"),
        file("abs/cron.d/job", b"* * * * * root evil\n"),
        symlink("rel", &rel_link),
        file("rel/job2", b"evil\n"),
    ]);
    // A later layer writing through the earlier layer's link.
    let upper = raw_tar(&[file("abs/cron.d/job3", b"evil\n")]);
    load_layers(&f, "hostile:links", &[lower, upper]);
    let ctx = f.context("links", &[("Dockerfile", "FROM hostile:links\n")]);

    let tar_out = f.dir.path().join("links.tar");
    f.build_ok(
        &ctx,
        &["-o", &format!("type=tar,dest={}", tar_out.display())],
    );
    let entries = tar_entries(&tar_out);
    let links: Vec<&String> = entries
        .iter()
        .filter(|e| e.1 == tar::EntryType::Symlink)
        .map(|e| &e.0)
        .collect();
    for (p, _, _) in &entries {
        for l in &links {
            assert!(
                !p.starts_with(&format!("{l}/")),
                "{p} lies below the symlink {l} of the same tar"
            );
        }
    }
    // Where the build saw them: the links resolved inside the image.
    let names: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    for want in [
        format!("tmp/{tag}-abs/cron.d/job"),
        format!("tmp/{tag}-abs/cron.d/job3"),
        format!("tmp/{tag}-rel/job2"),
    ] {
        assert!(names.contains(&want.as_str()), "{want} missing: {names:?}");
    }
    assert!(entries
        .iter()
        .any(|e| e.0 == "abs" && e.1 == tar::EntryType::Symlink && e.2 == host_abs));

    // Whoever extracts it with GNU tar gets nothing outside their directory.
    let x = f.dir.path().join("extract");
    std::fs::create_dir(&x).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&tar_out)
        .arg("-C")
        .arg(&x)
        .output()
        .unwrap();
    assert!(out.status.success(), "GNU tar: {}", stderr(&out));
    let outside = [host_abs.clone(), format!("/tmp/{tag}-rel")];
    for o in &outside {
        assert!(!Path::new(o).exists(), "extracting wrote {o}");
    }
    assert!(x.join(format!("tmp/{tag}-abs/cron.d/job")).is_file());

    // -o type=local writes the same tree.
    let local = f.dir.path().join("local");
    f.build_ok(
        &ctx,
        &["-o", &format!("type=local,dest={}", local.display())],
    );
    for o in &outside {
        assert!(!Path::new(o).exists(), "type=local wrote {o}");
    }
    assert!(local.join(format!("tmp/{tag}-abs/cron.d/job3")).is_file());
    assert!(local.join(format!("tmp/{tag}-rel/job2")).is_file());
    assert_store_intact(&f);
}

/// `-o type=local` into a directory that already holds links where the image has
/// directories: nothing is written through them, whether they lead out of the directory or
/// elsewhere inside it. A link where the image has a directory entry is replaced by the
/// directory; a link on the way to an entry whose directory has no entry of its own stops the
/// export with an error naming it.
#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn local_export_never_writes_through_links_already_in_the_destination() {
    common::require_build();
    let f = Fixture::new();
    // `srv/` has an entry of its own; `opt/` does not (only `opt/data` does).
    let lower = busybox_layer(&[
        dir("srv/"),
        file("srv/data", b"image\n"),
        file("opt/data", b"image\n"),
    ]);
    load_layers(&f, "plain:srv", &[lower]);
    let ctx = f.context("srv", &[("Dockerfile", "FROM plain:srv\n")]);
    let outside = f.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    // Each destination gets a link to a directory outside it, or to one inside it.
    for (name, inside) in [("out", false), ("in", true)] {
        for (link, fails) in [("srv", false), ("opt", true)] {
            let local = f.dir.path().join(format!("{name}-{link}"));
            std::fs::create_dir_all(local.join("elsewhere")).unwrap();
            let target = if inside {
                local.join("elsewhere")
            } else {
                outside.clone()
            };
            std::os::unix::fs::symlink(&target, local.join(link)).unwrap();
            let dest = format!("type=local,dest={}", local.display());
            let (out, _) = f.build(&ctx, &["-o", &dest]);
            let err = stderr(&out);
            assert!(
                !target.join("data").exists(),
                "{name}: wrote through {link}"
            );
            if fails {
                assert!(
                    !out.status.success(),
                    "{name}: the export went through {link}"
                );
                assert!(
                    err.contains(link) && err.contains("symbolic link"),
                    "{name}: {err}"
                );
                assert!(local.join(link).symlink_metadata().unwrap().is_symlink());
            } else {
                assert!(out.status.success(), "{name}: {err}");
                assert!(local.join(link).symlink_metadata().unwrap().is_dir());
                assert_eq!(std::fs::read(local.join("srv/data")).unwrap(), b"image\n");
            }
        }
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
    assert_store_intact(&f);
}

fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// A one-layer OCI layout in `dir` whose config and layer blobs are files in `blob_home`,
/// reached from `dir/blobs/sha256/` through symlinks when `link` (else copied in).
fn write_layout(dir: &Path, blob_home: &Path, link: bool) -> (String, String) {
    let layer = raw_tar(&[file("hello.txt", b"hello\n")]);
    let layer_hex = sha256_hex(&layer);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]},
    }))
    .unwrap();
    let config_hex = sha256_hex(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": format!("sha256:{config_hex}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": format!("sha256:{layer_hex}"), "size": layer.len()}],
    }))
    .unwrap();
    let manifest_hex = sha256_hex(&manifest);
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "digest": format!("sha256:{manifest_hex}"), "size": manifest.len(),
                       "annotations": {"io.containerd.image.name": "docker.io/library/layout:test"}}],
    }))
    .unwrap();
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(blob_home).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    std::fs::write(dir.join("index.json"), &index).unwrap();
    std::fs::write(blobs.join(&manifest_hex), &manifest).unwrap();
    for (hex, data) in [(&config_hex, &config), (&layer_hex, &layer)] {
        if link {
            let home = blob_home.join(hex);
            std::fs::write(&home, data).unwrap();
            std::os::unix::fs::symlink(&home, blobs.join(hex)).unwrap();
        } else {
            std::fs::write(blobs.join(hex), data).unwrap();
        }
    }
    (config_hex, layer_hex)
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn load_of_a_layout_directory_reads_nothing_outside_it() {
    common::require_build();
    let f = Fixture::new();
    // The same layout with its blobs inside loads: the layout itself is valid.
    let good = f.dir.path().join("good-layout");
    write_layout(&good, &f.dir.path().join("unused"), false);
    let out = f.cmd().args(["load", "-i"]).arg(&good).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));

    // Blobs that are symlinks to host files outside the layout.
    let evil = f.dir.path().join("evil-layout");
    let host = f.dir.path().join("host-files");
    let fresh = Fixture::new();
    let (config_hex, layer_hex) = write_layout(&evil, &host, true);
    let out = fresh
        .cmd()
        .args(["load", "-i"])
        .arg(&evil)
        .output()
        .unwrap();
    assert!(!out.status.success(), "load read blobs through links out");
    let err = stderr(&out);
    assert!(
        err.contains("not found in the content store") || err.contains("lacks"),
        "{err}"
    );
    for hex in [&config_hex, &layer_hex] {
        assert!(
            !fresh.root().join("blobs/sha256").join(hex).exists(),
            "a host file was stored as blob {hex}"
        );
    }

    // The whole blobs directory a link to one outside.
    let evil2 = f.dir.path().join("evil-layout2");
    write_layout(&evil2, &host, false);
    let moved = f.dir.path().join("moved-blobs");
    std::fs::rename(evil2.join("blobs"), &moved).unwrap();
    std::os::unix::fs::symlink(&moved, evil2.join("blobs")).unwrap();
    let out = fresh
        .cmd()
        .args(["load", "-i"])
        .arg(&evil2)
        .output()
        .unwrap();
    assert!(!out.status.success(), "load followed a directory link out");
    assert_store_intact(&fresh);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn files_named_like_whiteouts_are_refused_with_a_clear_error() {
    common::require_build();
    let f = Fixture::new();
    let cases: Vec<(&str, &str)> = vec![
        ("ctx-dir", "FROM busybox:local\nCOPY . /etc/\n"),
        (
            "ctx-dest",
            "FROM busybox:local\nCOPY ok.txt /etc/.wh.passwd\n",
        ),
        ("add-tar", "FROM busybox:local\nADD evil.tar /etc/\n"),
        ("run", "FROM busybox:local\nRUN touch /etc/.wh.passwd\n"),
    ];
    for (name, dockerfile) in cases {
        let ctx = f.context(name, &[("Dockerfile", dockerfile), ("ok.txt", "ok\n")]);
        if name == "ctx-dir" {
            std::fs::write(ctx.join(".wh.passwd"), b"").unwrap();
        }
        if name == "add-tar" {
            let tar = raw_tar(&[file("ok.txt", b"ok\n"), file(".wh.passwd", b"")]);
            std::fs::write(ctx.join("evil.tar"), tar).unwrap();
        }
        let (out, _) = f.build(&ctx, &[]);
        assert!(!out.status.success(), "{name}: the build succeeded");
        let err = stderr(&out);
        assert!(
            err.contains(".wh.passwd") && err.contains("reserved for whiteouts"),
            "{name}: unclear error: {err}"
        );
    }
    assert_store_intact(&f);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn archives_and_layers_expanding_beyond_the_limit_stop_with_a_clear_error() {
    use std::io::Write;
    common::require_build();
    let f = Fixture::new();
    // ADD of a gzip bomb: 64 MiB of zeros, about 64 KiB compressed.
    let zeros = vec![0u8; 64 << 20];
    let tar = raw_tar(&[file("zeros", &zeros)]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar).unwrap();
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    let ctx = f.context(
        "bomb",
        &[("Dockerfile", "FROM busybox:local\nADD bomb.tar.gz /x/\n")],
    );
    std::fs::write(ctx.join("bomb.tar.gz"), &bomb).unwrap();
    let meta = f.dir.path().join("bomb-meta.json");
    let out = f
        .cmd()
        .env("BUILDER_MAX_UNPACK", "4M")
        .args(["build", "--progress", "plain", "--metadata-file"])
        .arg(&meta)
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the bomb was added");
    let err = stderr(&out);
    assert!(
        err.contains("expands beyond the limit of 4194304 bytes"),
        "unclear error: {err}"
    );

    // `load` of a compressed archive that expands beyond the limit stores nothing.
    let blobs_before = std::fs::read_dir(f.root().join("blobs/sha256"))
        .unwrap()
        .count();
    let load_bomb = f.dir.path().join("load-bomb.tar.gz");
    std::fs::write(&load_bomb, &bomb).unwrap();
    let out = f
        .cmd()
        .args(["--max-unpack-size", "4M", "load", "-i"])
        .arg(&load_bomb)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the load bomb was stored");
    assert!(
        stderr(&out).contains("expands beyond the limit"),
        "{}",
        stderr(&out)
    );
    let blobs_after = std::fs::read_dir(f.root().join("blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs_before, blobs_after, "a partial blob was kept");

    // A base layer of 16 MiB, against `--max-unpack-size 1M`.
    let big = vec![7u8; 16 << 20];
    load_layers(&f, "hostile:big", &[busybox_layer(&[file("big", &big)])]);
    let ctx = f.context("big", &[("Dockerfile", "FROM hostile:big\nRUN true\n")]);
    let out = f
        .cmd()
        .args(["--max-unpack-size", "1M", "build", "--progress", "plain"])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the layer was unpacked");
    assert!(
        stderr(&out).contains("expands beyond the limit of 1048576 bytes"),
        "{}",
        stderr(&out)
    );
    let out = f
        .cmd()
        .args(["--max-unpack-size", "lots", "cache", "check"])
        .output()
        .unwrap();
    assert!(!out.status.success() && stderr(&out).contains("not a size"));
    // Without the limit the same layer unpacks.
    f.build_ok(&ctx, &[]);
    assert_store_intact(&f);
}
