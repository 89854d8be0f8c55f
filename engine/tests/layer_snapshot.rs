//! Layer export and snapshot unpack against real files, real tools and real overlay mounts.

use engine::compression::Compression;
use engine::layer::{self, Digest, LayerOptions};
use engine::snapshot::{self, OverlayXattrs, SnapshotStore};
use std::ffi::CString;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

fn mknod(path: &Path, mode: libc::mode_t, dev: libc::dev_t) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), mode, dev) },
        0,
        "mknod {path:?}"
    );
}

/// A tree with every kind of entry a layer can hold, large enough to span many chunks.
fn sample_tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("usr/bin")).unwrap();
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    let mut big = Vec::with_capacity(3 << 20);
    let mut x: u64 = 0x9e3779b97f4a7c15;
    while big.len() < (3 << 20) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        // Half-compressible data, so compressed chunks differ in size.
        big.extend_from_slice(&x.to_le_bytes()[..4]);
        big.extend_from_slice(b"abcd");
    }
    std::fs::write(dir.join("usr/bin/big"), &big).unwrap();
    std::fs::write(dir.join("etc/hostname"), b"box\n").unwrap();
    std::fs::hard_link(dir.join("usr/bin/big"), dir.join("usr/bin/big-link")).unwrap();
    std::os::unix::fs::symlink("../etc/hostname", dir.join("usr/name")).unwrap();
    let setuid = dir.join("usr/bin/su");
    std::fs::write(&setuid, b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::chown(&setuid, Some(1000), Some(1001)).unwrap();
    std::fs::set_permissions(&setuid, std::fs::Permissions::from_mode(0o4755)).unwrap();
    xattr::set(
        &setuid,
        "security.capability",
        &[
            1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        ],
    )
    .unwrap();
    xattr::set(&setuid, "user.note", b"kept").unwrap();
    mknod(&dir.join("fifo"), libc::S_IFIFO | 0o644, 0);
    mknod(
        &dir.join("null"),
        libc::S_IFCHR | 0o666,
        libc::makedev(1, 3),
    );
    let long = "d".repeat(120);
    std::fs::create_dir_all(dir.join(&long)).unwrap();
    std::fs::write(dir.join(&long).join("f".repeat(90)), b"long").unwrap();
    for p in [
        "usr/bin/big",
        "etc/hostname",
        "usr/bin/su",
        "usr/bin",
        "usr",
        "etc",
        "fifo",
        "null",
    ] {
        filetime::set_symlink_file_times(
            dir.join(p),
            filetime::FileTime::from_unix_time(2_000_000_000, 0),
            filetime::FileTime::from_unix_time(2_000_000_000, 0),
        )
        .unwrap();
    }
}

fn export(dir: &Path, threads: usize, opts: &LayerOptions) -> (layer::LayerDescriptor, Vec<u8>) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        let mut out = Vec::new();
        let desc = layer::write_layer(dir, &mut out, opts).unwrap();
        (desc, out)
    })
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::of_bytes(bytes)
}

fn run_with_stdin(cmd: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    assert!(out.status.success(), "{cmd} {args:?} failed");
    out.stdout
}

#[test]
fn same_tree_gives_same_digest_at_1_and_4_threads() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(dir.path());
    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        let opts = LayerOptions {
            compression,
            chunk_size: 256 << 10,
            ..Default::default()
        };
        let (d1, b1) = export(dir.path(), 1, &opts);
        let (d4, b4) = export(dir.path(), 4, &opts);
        assert_eq!(d1, d4, "{compression:?}");
        assert_eq!(b1, b4, "{compression:?}");
        assert_eq!(d1.digest, sha256(&b1));
        assert_eq!(d1.size, b1.len() as u64);
        assert_eq!(
            Some(d1.media_type.as_str()),
            compression.oci_layer_media_type()
        );
        let plain = match compression {
            Compression::Gzip => run_with_stdin("gzip", &["-dc"], &b1),
            Compression::Zstd => run_with_stdin("zstd", &["-dcq"], &b1),
            Compression::None => b1.clone(),
            other => unreachable!("layers are not written with {other:?}"),
        };
        assert_eq!(
            d1.diff_id,
            sha256(&plain),
            "diffID is the uncompressed digest"
        );
        if compression == Compression::Gzip {
            assert!(b1.len() > 1 << 20, "several members were written");
        }
    }
}

#[test]
fn tar_entries_are_sorted_numeric_and_carry_xattrs_and_hardlinks() {
    let dir = tempfile::tempdir().unwrap();
    sample_tree(dir.path());
    let opts = LayerOptions {
        compression: Compression::None,
        source_date_epoch: Some(1_700_000_000),
        ..Default::default()
    };
    let (_, bytes) = export(dir.path(), 2, &opts);
    let listing = String::from_utf8(run_with_stdin(
        "tar",
        &["-tv", "--numeric-owner", "-f", "-"],
        &bytes,
    ))
    .unwrap();
    let names: Vec<String> = tar::Archive::new(&bytes[..])
        .entries()
        .unwrap()
        .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| {
        // depth-first order with children sorted by name == sort by components
        a.trim_end_matches('/')
            .split('/')
            .cmp(b.trim_end_matches('/').split('/'))
    });
    assert_eq!(names, sorted);
    assert!(
        names.iter().any(|n| n.len() > 200),
        "long path via PAX: {names:?}"
    );
    assert!(
        listing.contains("usr/bin/big-link link to usr/bin/big")
            || listing.contains("usr/bin/big-link -> usr/bin/big")
            || listing.contains("big-link link to"),
        "{listing}"
    );
    let mut archive = tar::Archive::new(&bytes[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let h = entry.header().clone();
        assert!(h.username_bytes().is_none_or(|u| u.is_empty()));
        assert!(h.mtime().unwrap() <= 1_700_000_000, "clamped");
        if entry.path_bytes().as_ref() == b"usr/bin/su" {
            assert_eq!(h.mode().unwrap(), 0o4755);
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (1000, 1001));
            let pax: Vec<String> = entry
                .pax_extensions()
                .unwrap()
                .unwrap()
                .map(|e| e.unwrap().key().unwrap().to_string())
                .collect();
            assert_eq!(
                pax,
                ["SCHILY.xattr.security.capability", "SCHILY.xattr.user.note"]
            );
        }
    }
}

#[test]
fn id_map_translates_host_ids_and_rejects_unmapped_ones() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"x").unwrap();
    std::os::unix::fs::chown(dir.path().join("f"), Some(100_000), Some(100_005)).unwrap();
    let map = layer::IdMap {
        uids: vec![layer::IdMapping {
            container_id: 0,
            host_id: 100_000,
            size: 65536,
        }],
        gids: vec![layer::IdMapping {
            container_id: 0,
            host_id: 100_000,
            size: 65536,
        }],
    };
    let opts = LayerOptions {
        compression: Compression::None,
        id_map: Some(map),
        ..Default::default()
    };
    let (_, bytes) = export(dir.path(), 1, &opts);
    let mut archive = tar::Archive::new(&bytes[..]);
    let entry = archive.entries().unwrap().next().unwrap().unwrap();
    assert_eq!(
        (entry.header().uid().unwrap(), entry.header().gid().unwrap()),
        (0, 5)
    );
    std::os::unix::fs::chown(dir.path().join("f"), Some(7), Some(7)).unwrap();
    let err = layer::write_layer(dir.path(), &mut Vec::new(), &opts).unwrap_err();
    assert!(
        matches!(err, layer::LayerError::UnmappedId { id: 7, .. }),
        "{err}"
    );
}

fn write_blob(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn whiteouts_and_opaque_dirs_round_trip_to_overlay_form() {
    let work = tempfile::tempdir().unwrap();
    let upper = work.path().join("upper");
    std::fs::create_dir_all(upper.join("opaque/sub")).unwrap();
    std::fs::write(upper.join("opaque/sub/new"), b"n").unwrap();
    xattr::set(upper.join("opaque"), "trusted.overlay.opaque", b"y").unwrap();
    mknod(&upper.join("gone"), libc::S_IFCHR, 0);
    let old = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    for p in ["gone", "opaque/sub/new", "opaque/sub", "opaque"] {
        filetime::set_symlink_file_times(upper.join(p), old, old).unwrap();
    }
    let (desc, bytes) = export(&upper, 2, &LayerOptions::default());
    let names: Vec<String> = {
        let plain = run_with_stdin("gzip", &["-dc"], &bytes);
        tar::Archive::new(&plain[..])
            .entries()
            .unwrap()
            .map(|e| String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap())
            .collect()
    };
    assert_eq!(
        names,
        [
            ".wh.gone",
            "opaque/",
            "opaque/.wh..wh..opq",
            "opaque/sub/",
            "opaque/sub/new"
        ]
    );
    assert!(
        !names.iter().any(|n| n.contains("trusted")),
        "overlay xattrs stay out"
    );

    let blob = write_blob(work.path(), "blob", &bytes);
    let store = SnapshotStore::open(work.path().join("snapshots"), OverlayXattrs::Trusted).unwrap();
    let dest = store.ensure(&blob, &desc.diff_id).unwrap();
    let gone = std::fs::symlink_metadata(dest.join("gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert_eq!(
        xattr::get(dest.join("opaque"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!dest.join(".wh.gone").exists() && !dest.join("opaque/.wh..wh..opq").exists());
    // Exporting the unpacked snapshot again gives the identical layer.
    let (again, _) = export(&dest, 1, &LayerOptions::default());
    assert_eq!(again.digest, desc.digest);
}

fn mount_overlay(lowers: &[&Path], upper: &Path, workdir: &Path, target: &Path) -> bool {
    let lower = lowers
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":");
    let opts = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        upper.display(),
        workdir.display()
    );
    let status = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(target)
        .status()
        .unwrap();
    status.success()
}

fn umount(target: &Path) {
    assert!(Command::new("umount")
        .arg(target)
        .status()
        .unwrap()
        .success());
}

#[test]
#[cfg_attr(missing_root, ignore = "needs root (overlay mounts)")]
fn real_overlay_upperdir_exports_and_unpacks_into_working_lowerdirs() {
    test_support::require(&[test_support::Need::Root]);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    // Base layer: a file and a populated directory.
    let base_tree = w.join("base-tree");
    std::fs::create_dir_all(base_tree.join("d")).unwrap();
    std::fs::write(base_tree.join("a"), b"a").unwrap();
    std::fs::write(base_tree.join("d/x"), b"x").unwrap();
    let base_blob = w.join("base.tar.gz");
    let base = layer::write_layer_file(&base_tree, &base_blob, &LayerOptions::default()).unwrap();
    let store = SnapshotStore::open(w.join("snap"), OverlayXattrs::Trusted).unwrap();
    let lower1 = store.ensure(&base_blob, &base.diff_id).unwrap();

    // A step: delete `a`, replace `d` by a fresh directory, through a real overlay mount.
    for d in ["upper", "work", "merged"] {
        std::fs::create_dir_all(w.join(d)).unwrap();
    }
    assert!(
        mount_overlay(
            &[&lower1],
            &w.join("upper"),
            &w.join("work"),
            &w.join("merged"),
        ),
        "overlay mount failed (this test needs root and overlayfs)"
    );
    std::fs::remove_file(w.join("merged/a")).unwrap();
    std::fs::remove_dir_all(w.join("merged/d")).unwrap();
    std::fs::create_dir(w.join("merged/d")).unwrap();
    std::fs::write(w.join("merged/d/y"), b"y").unwrap();
    umount(&w.join("merged"));

    let step_blob = w.join("step.tar.zst");
    let step = layer::write_layer_file(
        &w.join("upper"),
        &step_blob,
        &LayerOptions {
            compression: Compression::Zstd,
            ..Default::default()
        },
    )
    .unwrap();
    let lower2 = store.ensure(&step_blob, &step.diff_id).unwrap();

    // Both snapshots as lowerdirs reproduce the step's view.
    for d in ["upper2", "work2", "merged2"] {
        std::fs::create_dir_all(w.join(d)).unwrap();
    }
    assert!(mount_overlay(
        &[&lower2, &lower1],
        &w.join("upper2"),
        &w.join("work2"),
        &w.join("merged2")
    ));
    let a_exists = w.join("merged2/a").exists();
    let mut d: Vec<String> = std::fs::read_dir(w.join("merged2/d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    d.sort();
    umount(&w.join("merged2"));
    assert!(!a_exists, "whiteout hides a");
    assert_eq!(d, ["y"], "opaque dir hides d/x");
}

/// Builds a raw ustar entry with an arbitrary name (the tar crate refuses hostile names).
fn raw_entry(out: &mut Vec<u8>, name: &str, kind: u8, link: &str, data: &[u8]) {
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::new(kind));
    let old = h.as_old_mut();
    old.name[..name.len()].copy_from_slice(name.as_bytes());
    old.linkname[..link.len()].copy_from_slice(link.as_bytes());
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn hostile_unpack(
    entries: &[(&str, u8, &str, &[u8])],
) -> (tempfile::TempDir, Result<(), snapshot::SnapshotError>) {
    let work = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    for (name, kind, link, data) in entries {
        raw_entry(&mut tar, name, *kind, link, data);
    }
    tar.extend_from_slice(&[0; 1024]);
    // The layer lives two levels down so `../` has somewhere to go.
    let blob = write_blob(work.path(), "evil.tar", &tar);
    let dest = work.path().join("a/b/layer");
    let res = snapshot::unpack_layer(&blob, &dest, None, OverlayXattrs::Trusted).map(|_| ());
    (work, res)
}

/// Every file under `root` except those inside `allowed` and the inputs.
fn stray_files(root: &Path, allowed: &Path) -> Vec<String> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap().path().to_path_buf())
        .filter(|p| {
            !p.starts_with(allowed) && p.symlink_metadata().map(|m| !m.is_dir()).unwrap_or(false)
        })
        .filter(|p| !p.ends_with("evil.tar") && !p.to_string_lossy().ends_with(".lock"))
        .map(|p| p.display().to_string())
        .collect()
}

#[test]
fn hostile_tars_never_write_outside_the_destination() {
    // `../` and absolute names are re-rooted inside the layer.
    let (work, res) = hostile_unpack(&[
        ("../../../escaped", b'0', "", b"x"),
        ("/abs-escaped", b'0', "", b"x"),
    ]);
    res.unwrap();
    let dest = work.path().join("a/b/layer");
    assert!(dest.join("escaped").is_file() && dest.join("abs-escaped").is_file());
    assert_eq!(stray_files(work.path(), &dest), Vec::<String>::new());

    // A symlink pointing out, then writes through it: they land inside.
    let outside = work.path().join("outside-target");
    let (work, res) = hostile_unpack(&[
        ("up", b'2', "../../..", b""),
        ("abs", b'2', "/", b""),
        ("up/through-rel", b'0', "", b"x"),
        ("abs/tmp/through-abs", b'0', "", b"x"),
    ]);
    res.unwrap();
    let dest = work.path().join("a/b/layer");
    assert!(dest.join("through-rel").is_file());
    assert!(dest.join("tmp/through-abs").is_file());
    assert_eq!(
        std::fs::read_link(dest.join("up")).unwrap(),
        Path::new("../../.."),
        "links are kept as written"
    );
    assert_eq!(stray_files(work.path(), &dest), Vec::<String>::new());
    assert!(!outside.exists());

    // A file written over a planted symlink replaces the link, not its target.
    let (work, res) = hostile_unpack(&[
        ("pw", b'2', "/../../../evil.tar", b""),
        ("pw", b'0', "", b"over"),
    ]);
    res.unwrap();
    let dest = work.path().join("a/b/layer");
    assert_eq!(std::fs::read(dest.join("pw")).unwrap(), b"over");
    assert_ne!(
        std::fs::read(work.path().join("evil.tar")).unwrap(),
        b"over"
    );

    // Hardlinks to something outside resolve inside; a missing target is rejected.
    let (work, res) = hostile_unpack(&[("hl", b'1', "../../evil.tar", b"")]);
    let err = res.unwrap_err().to_string();
    assert!(
        err.contains("hardlink") && err.contains("does not exist inside the root"),
        "{err}"
    );
    assert!(
        !work.path().join("a/b/layer").exists(),
        "no half directory under the final name"
    );
    let (work, res) = hostile_unpack(&[
        ("up", b'2', "../..", b""),
        ("hl", b'1', "up/a/b/layer/../../../evil.tar", b""),
    ]);
    assert!(res.is_err());
    let _ = work;
}

#[test]
fn wrong_diff_id_is_rejected_and_leaves_nothing_behind() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("t");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("f"), b"f").unwrap();
    let blob = work.path().join("blob");
    layer::write_layer_file(&tree, &blob, &LayerOptions::default()).unwrap();
    let wrong: Digest = format!("sha256:{}", "0".repeat(64)).parse().unwrap();
    let store = SnapshotStore::open(work.path().join("snap"), OverlayXattrs::Trusted).unwrap();
    let err = store.ensure(&blob, &wrong).unwrap_err();
    assert!(
        matches!(err, snapshot::SnapshotError::DiffIdMismatch { .. }),
        "{err}"
    );
    let left: Vec<_> = std::fs::read_dir(work.path().join("snap/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn concurrent_unpacks_of_one_layer_share_one_directory() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("t");
    sample_tree(&tree);
    let blob = work.path().join("blob");
    let desc = layer::write_layer_file(&tree, &blob, &LayerOptions::default()).unwrap();
    let store = SnapshotStore::open(work.path().join("snap"), OverlayXattrs::Trusted).unwrap();
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let (store, blob, id) = (store.clone(), blob.clone(), desc.diff_id.clone());
            std::thread::spawn(move || store.ensure(&blob, &id).unwrap())
        })
        .collect();
    let paths: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(paths.windows(2).all(|w| w[0] == w[1]));
    let su = std::fs::symlink_metadata(paths[0].join("usr/bin/su")).unwrap();
    assert_eq!(
        (su.mode() & 0o7777, su.uid(), su.gid()),
        (0o4755, 1000, 1001)
    );
    assert_eq!(
        xattr::get(paths[0].join("usr/bin/su"), "user.note")
            .unwrap()
            .as_deref(),
        Some(&b"kept"[..])
    );
    let big = std::fs::metadata(paths[0].join("usr/bin/big")).unwrap();
    let link = std::fs::metadata(paths[0].join("usr/bin/big-link")).unwrap();
    assert_eq!(big.ino(), link.ino(), "hardlink preserved");
    assert_eq!(big.mtime(), 2_000_000_000);
    assert!(std::fs::symlink_metadata(paths[0].join("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        std::fs::symlink_metadata(paths[0].join("null"))
            .unwrap()
            .rdev(),
        libc::makedev(1, 3)
    );
    assert_eq!(
        std::fs::metadata(paths[0].join("usr")).unwrap().mtime(),
        2_000_000_000,
        "dir mtimes set last"
    );
}

#[test]
fn layers_made_by_gnu_tar_unpack_with_the_right_diff_id() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    sample_tree(&tree);
    let blob = work.path().join("gnu.tar.gz");
    // GNU tar writes "./" prefixes, a root entry, GNU long names and its own padding.
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar --xattrs --numeric-owner -C '{}' -cf - . | gzip > '{}'",
            tree.display(),
            blob.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let plain = Command::new("gzip")
        .arg("-dc")
        .arg(&blob)
        .output()
        .unwrap()
        .stdout;
    let dest = work.path().join("snap");
    let diff_id = snapshot::unpack_layer(&blob, &dest, None, OverlayXattrs::Trusted).unwrap();
    assert_eq!(diff_id, sha256(&plain));
    assert_eq!(
        std::fs::read_to_string(dest.join("etc/hostname")).unwrap(),
        "box\n"
    );
    let long = "d".repeat(120);
    assert_eq!(
        std::fs::read(dest.join(&long).join("f".repeat(90))).unwrap(),
        b"long"
    );
    assert_eq!(std::fs::metadata(&dest).unwrap().mode() & 0o777, 0o755);
}

#[test]
fn an_empty_diff_is_a_valid_empty_layer() {
    let dir = tempfile::tempdir().unwrap();
    for compression in [Compression::Gzip, Compression::Zstd] {
        let opts = LayerOptions {
            compression,
            ..Default::default()
        };
        let (desc, bytes) = export(dir.path(), 1, &opts);
        let plain = match compression {
            Compression::Gzip => run_with_stdin("gzip", &["-dc"], &bytes),
            _ => run_with_stdin("zstd", &["-dcq"], &bytes),
        };
        assert_eq!(plain, vec![0u8; 1024]);
        assert_eq!(desc.diff_id, sha256(&plain));
    }
}

#[test]
fn overlay_xattrs_in_a_layer_are_dropped_and_stale_temp_dirs_cleaned() {
    let work = tempfile::tempdir().unwrap();
    let mut tar_bytes = Vec::new();
    {
        let mut b = tar::Builder::new(&mut tar_bytes);
        b.append_pax_extensions([
            ("SCHILY.xattr.trusted.overlay.redirect", &b"/elsewhere"[..]),
            ("SCHILY.xattr.user.kept", &b"1"[..]),
        ])
        .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_path("d/").unwrap();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
        b.finish().unwrap();
    }
    let blob = write_blob(work.path(), "x.tar", &tar_bytes);
    let dest = work.path().join("snap");
    std::fs::create_dir_all(work.path().join(".unpack-snap-stale/junk")).unwrap();
    snapshot::unpack_layer(&blob, &dest, None, OverlayXattrs::Trusted).unwrap();
    assert_eq!(
        xattr::get(dest.join("d"), "trusted.overlay.redirect").unwrap(),
        None
    );
    assert_eq!(
        xattr::get(dest.join("d"), "user.kept").unwrap().as_deref(),
        Some(&b"1"[..])
    );
    assert!(
        !work.path().join(".unpack-snap-stale").exists(),
        "a dead unpack's temp dir is removed"
    );
}

#[test]
fn whiteouts_naming_dot_dotdot_or_nothing_are_rejected_and_delete_nothing() {
    for bad in [
        ".wh..",
        ".wh...",
        ".wh.",
        "sub/.wh..",
        "sub/.wh...",
        "./.wh...",
    ] {
        let work = tempfile::tempdir().unwrap();
        // A sibling snapshot and a file next to the store, as in a real root.
        let snaps = work.path().join("snap/sha256");
        std::fs::create_dir_all(snaps.join("sibling/etc")).unwrap();
        std::fs::write(snaps.join("sibling/etc/passwd"), b"root").unwrap();
        std::fs::write(work.path().join("snap/keep"), b"keep").unwrap();
        let mut tar = Vec::new();
        raw_entry(&mut tar, "sub/", b'5', "", b"");
        raw_entry(&mut tar, "sub/f", b'0', "", b"f");
        raw_entry(&mut tar, bad, b'0', "", b"");
        tar.extend_from_slice(&[0; 1024]);
        let blob = write_blob(work.path(), "evil.tar", &tar);
        let dest = snaps.join("new");
        let err = snapshot::unpack_layer(&blob, &dest, None, OverlayXattrs::Trusted)
            .unwrap_err()
            .to_string();
        assert!(err.contains("invalid whiteout name"), "{bad}: {err}");
        assert_eq!(
            std::fs::read(snaps.join("sibling/etc/passwd")).unwrap(),
            b"root",
            "{bad} deleted a sibling snapshot"
        );
        assert!(work.path().join("snap/keep").is_file(), "{bad}");
        assert!(
            !dest.exists(),
            "{bad}: no half snapshot under the final name"
        );
        let left: Vec<_> = std::fs::read_dir(&snaps)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert_eq!(left, ["sibling"], "{bad}: temporary directory left behind");
    }
}

#[test]
fn aufs_meta_whiteouts_are_skipped_and_good_whiteouts_still_apply() {
    let work = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, ".wh..wh.plnk", b'0', "", b"");
    raw_entry(&mut tar, "d/", b'5', "", b"");
    raw_entry(&mut tar, "d/.wh.gone", b'0', "", b"");
    tar.extend_from_slice(&[0; 1024]);
    let blob = write_blob(work.path(), "l.tar", &tar);
    let dest = work.path().join("l");
    snapshot::unpack_layer(&blob, &dest, None, OverlayXattrs::Trusted).unwrap();
    assert!(!dest.join(".wh..wh.plnk").exists() && !dest.join(".wh.plnk").exists());
    let m = std::fs::symlink_metadata(dest.join("d/gone")).unwrap();
    assert!(m.file_type().is_char_device() && m.rdev() == 0);
}

/// A GNU sparse entry `name` declaring `real_size` bytes with one 512-byte data block at its end.
fn sparse_entry(out: &mut Vec<u8>, name: &str, real_size: u64) {
    fn octal(field: &mut [u8], v: u64) {
        let s = format!("{:0width$o}\0", v, width = field.len() - 1);
        field.copy_from_slice(s.as_bytes());
    }
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_mode(0o644);
    h.set_size(512);
    h.set_entry_type(tar::EntryType::GNUSparse);
    let gnu = h.as_gnu_mut().unwrap();
    octal(&mut gnu.realsize, real_size);
    octal(&mut gnu.sparse[0].offset, real_size - 512);
    octal(&mut gnu.sparse[0].numbytes, 512);
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(&[b'x'; 512]);
}

#[test]
fn layers_expanding_beyond_the_limit_stop_and_leave_nothing() {
    use flate2::write::GzEncoder;
    let limit = 4 << 20;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("gzip bomb", {
            // 64 MiB of zeros in one file: about 64 KiB compressed.
            let mut tar = Vec::new();
            raw_entry(&mut tar, "zeros", b'0', "", &vec![0; 64 << 20]);
            tar.extend_from_slice(&[0; 1024]);
            let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::best());
            gz.write_all(&tar).unwrap();
            gz.finish().unwrap()
        }),
        ("sparse entry of 3 GiB", {
            let mut tar = Vec::new();
            sparse_entry(&mut tar, "huge", 3 << 30);
            tar.extend_from_slice(&[0; 1024]);
            tar
        }),
        ("endless entries", {
            // Many small files: each costs an inode however small.
            let mut tar = Vec::new();
            for i in 0..20_000 {
                raw_entry(&mut tar, &format!("f{i}"), b'0', "", b"");
            }
            tar.extend_from_slice(&[0; 1024]);
            tar
        }),
    ];
    for (what, blob_bytes) in cases {
        let work = tempfile::tempdir().unwrap();
        let blob = write_blob(work.path(), "bomb", &blob_bytes);
        let dest = work.path().join("snap/layer");
        let err = snapshot::unpack_layer_limited(&blob, &dest, None, OverlayXattrs::Trusted, limit)
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("expands beyond the limit of 4194304 bytes")
                && text.contains("BUILDER_MAX_UNPACK"),
            "{what}: {text}"
        );
        assert!(!dest.exists(), "{what}: a snapshot was left");
        let left: Vec<_> = std::fs::read_dir(work.path().join("snap"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.ends_with(".lock"))
            .collect();
        assert!(left.is_empty(), "{what}: {left:?} left behind");
    }
    // Under the limit the same kinds of layer unpack.
    let work = tempfile::tempdir().unwrap();
    let mut tar = Vec::new();
    sparse_entry(&mut tar, "sparse", 1 << 20);
    tar.extend_from_slice(&[0; 1024]);
    let blob = write_blob(work.path(), "ok", &tar);
    let dest = work.path().join("snap/ok");
    snapshot::unpack_layer_limited(&blob, &dest, None, OverlayXattrs::Trusted, limit).unwrap();
    assert_eq!(
        std::fs::metadata(dest.join("sparse")).unwrap().len(),
        1 << 20
    );
}

#[test]
fn unpack_sizes_parse_with_binary_suffixes() {
    use engine::fileops::archive::parse_size;
    assert_eq!(parse_size("1048576"), Some(1 << 20));
    assert_eq!(parse_size("512K"), Some(512 << 10));
    assert_eq!(parse_size("10G"), Some(10 << 30));
    assert_eq!(parse_size("2GiB"), Some(2 << 30));
    assert_eq!(parse_size("1T"), Some(1 << 40));
    assert_eq!(parse_size("lots"), None);
    assert_eq!(parse_size(""), None);
}

/// Directory times are applied after the last entry; by then a later entry may have replaced a
/// parent of that directory with a symlink leading out. The times must land on what the path
/// names inside the snapshot, never on a directory outside it.
#[test]
fn directory_times_set_after_extraction_never_follow_a_replaced_parent() {
    use std::os::unix::fs::MetadataExt;
    let work = tempfile::tempdir().unwrap();
    // The layer is unpacked into `a/b/.unpack-layer-*`; `../../../victim` from there is
    // `work/victim`.
    let victim = work.path().join("victim/x");
    std::fs::create_dir_all(&victim).unwrap();
    let stamp = filetime::FileTime::from_unix_time(1_000_000_000, 0);
    filetime::set_file_times(&victim, stamp, stamp).unwrap();
    filetime::set_file_times(work.path().join("victim"), stamp, stamp).unwrap();
    let mut tar = Vec::new();
    raw_entry(&mut tar, "d/", b'5', "", b"");
    raw_entry(&mut tar, "d/x/", b'5', "", b"");
    raw_entry(&mut tar, "d", b'2', "../../../victim", b"");
    tar.extend_from_slice(&[0; 1024]);
    let blob = write_blob(work.path(), "evil.tar", &tar);
    let dest = work.path().join("a/b/layer");
    let _ = snapshot::unpack_layer(&blob, &dest, None, OverlayXattrs::Trusted);
    for p in [work.path().join("victim"), victim] {
        assert_eq!(
            std::fs::metadata(&p).unwrap().mtime(),
            1_000_000_000,
            "the times of {p:?}, outside the layer, were changed"
        );
    }
    assert_eq!(stray_files(work.path(), &dest), Vec::<String>::new());
}
