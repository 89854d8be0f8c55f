//! COPY/ADD semantics against real directories, real archives made by real tools, and a real
//! (tiny, local) HTTP server.

use engine::fileops::{
    self, CopyAction, FileAction, FileOpError, MkdirAction, MkfileAction, RmAction, SourceRoots,
    CONTEXT,
};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn copy(sources: &[&str], dest: &str) -> CopyAction {
    CopyAction {
        source_root: CONTEXT.into(),
        sources: sources.iter().map(|s| s.to_string()).collect(),
        dest: dest.into(),
        workdir: "/".into(),
        chown: None,
        source_owner: None,
        chmod: None,
        exclude: vec![],
        parents: false,
        checksum: None,
        hidden: vec![],
        follow_symlinks: false,
        drop_xattrs: false,
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    context: PathBuf,
    rootfs: PathBuf,
    roots: SourceRoots,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let context = tmp.path().join("context");
    let rootfs = tmp.path().join("rootfs");
    for d in ["dir/sub", "etc"] {
        std::fs::create_dir_all(context.join(d)).unwrap();
    }
    std::fs::create_dir_all(rootfs.join("existing")).unwrap();
    std::fs::create_dir_all(rootfs.join("etc")).unwrap();
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\napp:x:1001:\nstaff:x:50:app\n",
    )
    .unwrap();
    std::fs::write(rootfs.join("afile"), "f").unwrap();
    for (p, c) in [
        ("a.txt", "a"),
        ("b.txt", "b"),
        ("c.md", "c"),
        ("dir/x", "x"),
        ("dir/sub/y", "y"),
        ("etc/inside", "i"),
    ] {
        std::fs::write(context.join(p), c).unwrap();
    }
    let roots = SourceRoots::new().with(CONTEXT, &context);
    Fixture {
        _tmp: tmp,
        context,
        rootfs,
        roots,
    }
}

/// Files and links under `root`, relative, sorted, minus the fixture's own.
fn listing(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .min_depth(1)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(root).unwrap().display().to_string())
        .filter(|p| !matches!(p.as_str(), "etc/passwd" | "etc/group" | "afile"))
        .collect();
    out.sort();
    out
}

#[test]
fn destination_and_wildcard_rules() {
    type Case<'a> = (
        &'a str,
        &'a [&'a str],
        &'a str,
        &'a str,
        Result<&'a [&'a str], &'a str>,
    );
    let cases: &[Case] = &[
        ("file to new path", &["a.txt"], "/new", "/", Ok(&["new"])),
        (
            "file to trailing slash",
            &["a.txt"],
            "/new/",
            "/",
            Ok(&["new/a.txt"]),
        ),
        (
            "file into existing dir",
            &["a.txt"],
            "/existing",
            "/",
            Ok(&["existing/a.txt"]),
        ),
        (
            "dir copies contents",
            &["dir"],
            "/d",
            "/",
            Ok(&["d/sub/y", "d/x"]),
        ),
        (
            "dir into existing dir",
            &["dir"],
            "/existing/",
            "/",
            Ok(&["existing/sub/y", "existing/x"]),
        ),
        (
            "wildcard into dir",
            &["*.txt"],
            "/w/",
            "/",
            Ok(&["w/a.txt", "w/b.txt"]),
        ),
        (
            "wildcard, one match, file dest",
            &["a.*"],
            "/one",
            "/",
            Ok(&["one"]),
        ),
        (
            "wildcard in a parent component",
            &["d*/*/y"],
            "/g/",
            "/",
            Ok(&["g/y"]),
        ),
        (
            "wildcard matching a dir",
            &["d?r"],
            "/q",
            "/",
            Ok(&["q/sub/y", "q/x"]),
        ),
        (
            "relative dest against workdir",
            &["a.txt"],
            "rel/",
            "/app",
            Ok(&["app/rel/a.txt"]),
        ),
        (
            "dot dest is workdir",
            &["a.txt"],
            ".",
            "/app",
            Ok(&["app/a.txt"]),
        ),
        (
            "two sources into dir",
            &["a.txt", "b.txt"],
            "/m/",
            "/",
            Ok(&["m/a.txt", "m/b.txt"]),
        ),
        (
            "dotdot cannot leave the context",
            &["../../a.txt"],
            "/z",
            "/",
            Ok(&["z"]),
        ),
        // As BuildKit: each source, and each match of a wildcard, is copied in turn; to a path
        // that is not a directory the later file is written over the earlier one.
        (
            "two sources to a file path, in turn",
            &["a.txt", "b.txt"],
            "/m",
            "/",
            Ok(&["m"]),
        ),
        (
            "wildcard matches to a file path, in turn",
            &["*.txt"],
            "/w",
            "/",
            Ok(&["w"]),
        ),
        (
            "a directory's contents, then a file under its name",
            &["dir", "a.txt"],
            "/v",
            "/",
            Ok(&["v/a.txt", "v/sub/y", "v/x"]),
        ),
        (
            "a file, then a directory onto it",
            &["a.txt", "dir"],
            "/u",
            "/",
            Err("COPY failed: cannot copy directory \"dir\" to non-directory \"/u\""),
        ),
        (
            "missing file",
            &["src/missing.txt"],
            "/x",
            "/",
            Err("COPY failed: file not found in build context: \"src/missing.txt\""),
        ),
        // As current BuildKit (AllowEmptyWildcard): nothing is copied, not even `/x/` made.
        ("wildcard matching nothing", &["*.rs"], "/x/", "/", Ok(&[])),
        // As BuildKit: the directory before the wildcard must exist, even for no match.
        (
            "wildcard in a missing directory",
            &["nodir/*.txt"],
            "/x/",
            "/",
            Err("COPY failed: no such directory \"nodir\" for the wildcard in \"nodir/*.txt\""),
        ),
        (
            "wildcard in a file's place",
            &["a.txt/*.txt"],
            "/x/",
            "/",
            Ok(&[]),
        ),
        (
            "wildcard matching nothing beside a match",
            &["*.rs", "a.txt"],
            "/x/",
            "/",
            Ok(&["x/a.txt"]),
        ),
        (
            "dir onto file",
            &["dir"],
            "/afile",
            "/",
            Err("COPY failed: cannot copy directory \"dir\" to non-directory \"/afile\""),
        ),
    ];
    for (name, sources, dest, workdir, want) in cases {
        let f = fixture();
        let mut action = copy(sources, dest);
        action.workdir = workdir.to_string();
        let got = fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(action));
        match want {
            Ok(files) => {
                got.unwrap_or_else(|e| panic!("{name}: {e}"));
                let mut all = listing(&f.rootfs);
                all.retain(|p| {
                    !p.starts_with("existing/") || files.iter().any(|w| w.starts_with("existing/"))
                });
                assert_eq!(all, *files, "{name}");
            }
            Err(msg) => assert_eq!(got.unwrap_err().to_string(), *msg, "{name}"),
        }
    }
}

#[test]
fn parents_and_exclude() {
    let f = fixture();
    let mut a = copy(&["dir/sub/y", "./dir/./sub/y"], "/p/");
    a.parents = true;
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(a)).unwrap();
    assert_eq!(listing(&f.rootfs), ["p/dir/sub/y", "p/sub/y"]);

    let f = fixture();
    let mut a = copy(&["."], "/e/");
    a.exclude = vec!["*.md".into(), "dir/sub".into()];
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(a)).unwrap();
    assert_eq!(
        listing(&f.rootfs),
        ["e/a.txt", "e/b.txt", "e/dir/x", "e/etc/inside"]
    );

    let f = fixture();
    let mut a = copy(&["*"], "/w/");
    a.exclude = vec!["b.txt".into(), "*.md".into(), "**/y".into()];
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(a)).unwrap();
    // As in Docker, a directory matched by a wildcard has its contents copied, not itself;
    // the patterns apply below each match, never to the match itself (b.txt, c.md stay).
    assert_eq!(
        listing(&f.rootfs),
        ["w/a.txt", "w/b.txt", "w/c.md", "w/inside", "w/x"]
    );
}

#[test]
fn context_symlinks_are_copied_as_links_never_followed_outside() {
    let f = fixture();
    std::os::unix::fs::symlink("/etc/passwd", f.context.join("pw")).unwrap();
    std::os::unix::fs::symlink("/etc", f.context.join("hostetc")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", f.context.join("dir/pw-in-dir")).unwrap();
    fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Copy(copy(&["pw"], "/out/")),
    )
    .unwrap();
    let out = f.rootfs.join("out/pw");
    assert!(out.symlink_metadata().unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read_link(&out).unwrap(), Path::new("/etc/passwd"));
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(copy(&["dir"], "/d"))).unwrap();
    assert_eq!(
        std::fs::read_link(f.rootfs.join("d/pw-in-dir")).unwrap(),
        Path::new("/etc/passwd")
    );
    // With follow_symlinks (BuildKit's FollowSymlinks) the link is resolved inside the context.
    std::os::unix::fs::symlink("/etc/inside", f.context.join("rooted")).unwrap();
    let mut a = copy(&["rooted"], "/followed");
    a.follow_symlinks = true;
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(a)).unwrap();
    assert_eq!(
        std::fs::read_to_string(f.rootfs.join("followed")).unwrap(),
        "i"
    );
    let mut a = copy(&["pw"], "/followed-pw");
    a.follow_symlinks = true;
    let err = fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(a))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "COPY failed: file not found in build context: \"pw\" is a symlink to \"/etc/passwd\", \
         which does not exist (or is excluded by .dockerignore)"
    );
    // A symlinked parent resolves inside the context: hostetc/inside is <context>/etc/inside ...
    fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Copy(copy(&["hostetc/inside"], "/i")),
    )
    .unwrap();
    assert_eq!(std::fs::read_to_string(f.rootfs.join("i")).unwrap(), "i");
    // ... and the host's /etc/passwd is never reachable.
    let err = fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Copy(copy(&["hostetc/passwd"], "/leak")),
    )
    .unwrap_err();
    assert!(matches!(err, FileOpError::NotFound { .. }), "{err}");
    assert!(!f.rootfs.join("leak").exists());
}

#[test]
fn writes_through_destination_symlinks_stay_in_the_rootfs() {
    let f = fixture();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), f.rootfs.join("evil")).unwrap();
    fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Copy(copy(&["a.txt"], "/evil/")),
    )
    .unwrap();
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    let inside = f
        .rootfs
        .join(outside.path().strip_prefix("/").unwrap())
        .join("a.txt");
    assert!(inside.is_file(), "re-rooted at {inside:?}");
}

#[test]
fn chown_by_name_and_chmod_and_preserved_metadata() {
    let f = fixture();
    let src = f.context.join("a.txt");
    std::fs::set_permissions(&src, std::fs::Permissions::from_mode(0o640)).unwrap();
    let t = filetime::FileTime::from_unix_time(1_500_000_000, 0);
    filetime::set_file_times(&src, t, t).unwrap();
    std::fs::hard_link(f.context.join("dir/x"), f.context.join("dir/x2")).unwrap();

    fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Copy(copy(&["a.txt", "dir"], "/plain/")),
    )
    .unwrap();
    let m = std::fs::metadata(f.rootfs.join("plain/a.txt")).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.mtime()),
        (0o640, 1_500_000_000),
        "mode and mtime preserved"
    );
    let (x, x2) = (
        std::fs::metadata(f.rootfs.join("plain/x")).unwrap(),
        std::fs::metadata(f.rootfs.join("plain/x2")).unwrap(),
    );
    assert_eq!(x.ino(), x2.ino(), "hardlinks preserved");

    let mut a = copy(&["a.txt"], "/home/app/deep/");
    a.chown = Some("app".into());
    a.chmod = Some("u+x,g-r".into());
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(a)).unwrap();
    let m = std::fs::metadata(f.rootfs.join("home/app/deep/a.txt")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1001, 0o700));
    let parent = std::fs::metadata(f.rootfs.join("home/app/deep")).unwrap();
    assert_eq!(
        (parent.uid(), parent.gid(), parent.mode() & 0o7777),
        (1000, 1001, 0o755),
        "created parents"
    );

    let mut a = copy(&["dir"], "/o");
    a.chown = Some("app:staff".into());
    a.chmod = Some("0751".into());
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(a)).unwrap();
    for p in ["o", "o/x", "o/sub", "o/sub/y"] {
        let m = std::fs::metadata(f.rootfs.join(p)).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.mode() & 0o7777),
            (1000, 50, 0o751),
            "{p}"
        );
    }

    // BuildKit rejects no --chown value: an unknown name is root.
    let mut a = copy(&["a.txt"], "/n");
    a.chown = Some("ghost".into());
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(a)).unwrap();
    let m = std::fs::metadata(f.rootfs.join("n")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));

    // `--chown=:GID`: root with that group.
    let mut a = copy(&["a.txt"], "/group-only");
    a.chown = Some(":staff".into());
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(a)).unwrap();
    let m = std::fs::metadata(f.rootfs.join("group-only")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 50));
}

fn make_archives(dir: &Path) -> Vec<(&'static str, PathBuf)> {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("pkg/bin")).unwrap();
    std::fs::write(tree.join("pkg/bin/tool"), "tool").unwrap();
    std::fs::write(tree.join("pkg/README"), "readme").unwrap();
    let tar = dir.join("a.tar");
    assert!(Command::new("tar")
        .arg("-cf")
        .arg(&tar)
        .arg("-C")
        .arg(&tree)
        .arg("pkg")
        .status()
        .unwrap()
        .success());
    let mut out = vec![("tar", tar.clone())];
    for (kind, tool, ext) in [
        ("gzip", "gzip", "gz"),
        ("xz", "xz", "xz"),
        ("zstd", "zstd", "zst"),
        ("bzip2", "bzip2", "bz2"),
    ] {
        let dest = dir.join(format!("a.tar.{ext}"));
        let data = Command::new(tool).arg("-c").arg(&tar).output().unwrap();
        assert!(data.status.success(), "{tool}");
        std::fs::write(&dest, data.stdout).unwrap();
        out.push((kind, dest));
    }
    out
}

#[test]
fn add_extracts_local_archives_of_every_compression() {
    let f = fixture();
    let archives = make_archives(&f.context);
    for (kind, path) in &archives {
        let name = path.file_name().unwrap().to_str().unwrap();
        let dest = format!("/x-{kind}");
        fileops::apply(&f.rootfs, &f.roots, &FileAction::Add(copy(&[name], &dest))).unwrap();
        assert_eq!(
            std::fs::read_to_string(f.rootfs.join(format!("x-{kind}/pkg/bin/tool"))).unwrap(),
            "tool",
            "{kind}"
        );
    }
    // COPY never extracts; a compressed non-tar is added as a plain file.
    fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Copy(copy(&["a.tar.gz"], "/c/")),
    )
    .unwrap();
    assert!(f.rootfs.join("c/a.tar.gz").is_file());
    let gz = Command::new("gzip")
        .arg("-c")
        .arg(f.context.join("a.txt"))
        .output()
        .unwrap()
        .stdout;
    std::fs::write(f.context.join("plain.gz"), gz).unwrap();
    fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Add(copy(&["plain.gz"], "/p/")),
    )
    .unwrap();
    assert!(f.rootfs.join("p/plain.gz").is_file());
}

#[test]
fn add_of_a_hostile_archive_stays_inside_the_destination() {
    let f = fixture();
    let mut tar = Vec::new();
    for (name, kind, link) in [
        ("../../../../escape", b'0', ""),
        ("lnk", b'2', "/"),
        ("lnk/etc/passwd", b'0', ""),
    ] {
        let mut h = tar::Header::new_ustar();
        h.set_size(if kind == b'0' { 1 } else { 0 });
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::new(kind));
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        if kind == b'0' {
            tar.extend_from_slice(b"E");
            tar.resize(tar.len().div_ceil(512) * 512, 0);
        }
    }
    tar.extend_from_slice(&[0; 1024]);
    std::fs::write(f.context.join("evil.tar"), tar).unwrap();
    fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Add(copy(&["evil.tar"], "/opt/x/")),
    )
    .unwrap();
    assert!(f.rootfs.join("opt/x/escape").is_file());
    assert!(f.rootfs.join("opt/x/etc/passwd").is_file());
    assert!(
        !f.rootfs.join("escape").exists() && !f.rootfs.parent().unwrap().join("escape").exists()
    );
    assert!(
        std::fs::read_to_string(f.rootfs.join("etc/passwd"))
            .unwrap()
            .contains("app:x"),
        "rootfs passwd untouched"
    );
}

/// Serves `body` for `/files/tool.sh`, 404 otherwise, for `count` requests.
fn serve(body: &'static [u8], count: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(count) {
            let mut stream = stream.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&req)
                .lines()
                .next()
                .unwrap_or("")
                .to_string();
            let resp = if line.starts_with("GET /files/tool.sh ") {
                let mut r = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nLast-Modified: Tue, 14 Nov 2023 22:13:20 GMT\r\nConnection: close\r\n\r\n",
                    body.len()
                )
                .into_bytes();
                r.extend_from_slice(body);
                r
            } else {
                b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec()
            };
            stream.write_all(&resp).unwrap();
        }
    });
    format!("http://{addr}")
}

#[test]
fn add_from_url_verifies_checksum_and_names_the_file_like_docker() {
    let body: &'static [u8] = b"#!/bin/sh\necho hi\n";
    let good = {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(body)))
    };
    let base = serve(body, 4);
    let f = fixture();
    let url = format!("{base}/files/tool.sh");

    let mut a = copy(&[&url], "/dl/");
    a.checksum = Some(good.clone());
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Add(a)).unwrap();
    let out = f.rootfs.join("dl/tool.sh");
    assert_eq!(std::fs::read(&out).unwrap(), body);
    let m = std::fs::metadata(&out).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid(), m.mtime()),
        (0o600, 0, 1_700_000_000)
    );

    fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Add(copy(&[&url], "/named")),
    )
    .unwrap();
    assert_eq!(std::fs::read(f.rootfs.join("named")).unwrap(), body);

    let mut a = copy(&[&url], "/bad/");
    a.checksum = Some(format!("sha256:{}", "0".repeat(64)));
    let err = fileops::apply(&f.rootfs, &f.roots, &FileAction::Add(a))
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "ADD failed: checksum mismatch for {url}: expected sha256:{}, got {good}",
            "0".repeat(64)
        )
    );
    assert!(!f.rootfs.join("bad/tool.sh").exists());

    let err = fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Add(copy(&[&format!("{base}/nope")], "/x/")),
    )
    .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

#[test]
fn mkfile_mkdir_rm_and_the_action_is_serde_data() {
    let f = fixture();
    let actions = vec![
        FileAction::Mkdir(MkdirAction {
            path: "a/b/c".into(),
            workdir: "/srv".into(),
            mode: Some(0o750),
            parents: true,
            chown: Some("app".into()),
        }),
        FileAction::Mkfile(MkfileAction {
            path: "/srv/a/b/c/run.sh".into(),
            workdir: "/".into(),
            data: "echo hi\n".into(),
            mode: Some(0o755),
            chown: None,
            mtime: Some(0),
        }),
        FileAction::Rm(RmAction {
            path: "/afile".into(),
            workdir: "/".into(),
            allow_not_found: false,
        }),
        FileAction::Rm(RmAction {
            path: "/never".into(),
            workdir: "/".into(),
            allow_not_found: true,
        }),
    ];
    let json = serde_json::to_string(&actions).unwrap();
    assert!(json.contains("\"action\":\"mkdir\""), "{json}");
    let back: Vec<FileAction> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, actions);
    for a in &back {
        fileops::apply(&f.rootfs, &f.roots, a).unwrap();
    }
    let c = std::fs::metadata(f.rootfs.join("srv/a/b/c")).unwrap();
    assert_eq!((c.uid(), c.mode() & 0o7777), (1000, 0o750));
    let s = std::fs::metadata(f.rootfs.join("srv/a/b/c/run.sh")).unwrap();
    assert_eq!((s.mode() & 0o7777, s.mtime()), (0o755, 0));
    assert!(!f.rootfs.join("afile").exists());
    let err = fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Rm(RmAction {
            path: "/".into(),
            workdir: "/".into(),
            allow_not_found: false,
        }),
    );
    assert!(err.is_err());
    let json = r#"{"action":"copy","source_root":"context","sources":["a.txt"],"dest":"/j"}"#;
    let a: FileAction = serde_json::from_str(json).unwrap();
    fileops::apply(&f.rootfs, &f.roots, &a).unwrap();
    assert!(f.rootfs.join("j").is_file());
}

#[test]
fn a_destination_dir_keeps_its_metadata_or_is_created_like_a_parent_nested_dirs_take_the_source() {
    let f = fixture();
    let app = f.rootfs.join("app");
    std::fs::create_dir(&app).unwrap();
    std::fs::set_permissions(&app, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::os::unix::fs::chown(&app, Some(7), Some(7)).unwrap();
    std::fs::set_permissions(
        f.context.join("dir"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    std::fs::set_permissions(&f.context, std::fs::Permissions::from_mode(0o750)).unwrap();
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(copy(&["."], "/app"))).unwrap();
    let m = std::fs::metadata(&app).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid()),
        (0o711, 7),
        "existing dest keeps its metadata"
    );
    assert_eq!(
        std::fs::metadata(app.join("dir")).unwrap().mode() & 0o7777,
        0o700
    );
    fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Copy(copy(&["."], "/fresh")),
    )
    .unwrap();
    // As BuildKit: a destination COPY creates is made first (0755, root), then filled.
    let m = std::fs::metadata(f.rootfs.join("fresh")).unwrap();
    assert_eq!(
        (m.mode() & 0o7777, m.uid()),
        (0o755, 0),
        "a new dest does not take the source's metadata"
    );
    assert_eq!(
        std::fs::metadata(f.rootfs.join("fresh/dir"))
            .unwrap()
            .mode()
            & 0o7777,
        0o700
    );
}

/// A tar of one directory and two files with the given owners.
fn owned_tar() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, uid, gid, mode) in [
        ("pkg/", 1234, 5678, 0o750),
        ("pkg/x", 42, 43, 0o640),
        ("pkg/y", 0, 0, 0o644),
    ] {
        let mut h = tar::Header::new_gnu();
        let data: &[u8] = if path.ends_with('/') { b"" } else { b"x\n" };
        h.set_entry_type(if path.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(gid);
        b.append_data(&mut h, path, data).unwrap();
    }
    b.into_inner().unwrap()
}

#[test]
fn add_archive_keeps_tar_owners_and_chown_applies_to_extracted_files() {
    let f = fixture();
    std::fs::write(f.context.join("own.tar"), owned_tar()).unwrap();
    let ids = |p: &str| {
        let m = std::fs::symlink_metadata(f.rootfs.join(p)).unwrap();
        (m.uid(), m.gid())
    };
    // The build context's own files belong to root; the archive's keep the archive's owners.
    let mut a = copy(&["own.tar", "a.txt"], "/own/");
    a.source_owner = Some((0, 0));
    std::os::unix::fs::chown(f.context.join("a.txt"), Some(7), Some(7)).unwrap();
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Add(a)).unwrap();
    assert_eq!(ids("own/pkg"), (1234, 5678));
    assert_eq!(ids("own/pkg/x"), (42, 43));
    assert_eq!(ids("own/pkg/y"), (0, 0));
    assert_eq!(ids("own/a.txt"), (0, 0));
    // `--chown` applies to everything ADD writes, as current BuildKit does.
    let mut a = copy(&["own.tar"], "/own-chown/");
    a.chown = Some("9:10".into());
    a.source_owner = Some((0, 0));
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Add(a)).unwrap();
    for p in [
        "own-chown",
        "own-chown/pkg",
        "own-chown/pkg/x",
        "own-chown/pkg/y",
    ] {
        assert_eq!(ids(p), (9, 10), "{p}");
    }
    // `--chmod` leaves the archive's modes, and the destination the archive makes is 0755.
    let mode = |p: &str| std::fs::metadata(f.rootfs.join(p)).unwrap().mode() & 0o7777;
    let mut a = copy(&["own.tar", "a.txt"], "/own-mode/");
    a.chmod = Some("600".into());
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Add(a)).unwrap();
    assert_eq!(mode("own-mode"), 0o755);
    assert_eq!(mode("own-mode/pkg"), 0o750);
    assert_eq!(mode("own-mode/pkg/x"), 0o640);
    assert_eq!(mode("own-mode/a.txt"), 0o600);
}

#[test]
fn copy_chmod_gives_its_mode_to_the_directories_it_creates() {
    let f = fixture();
    let mode = |p: &str| std::fs::metadata(f.rootfs.join(p)).unwrap().mode() & 0o7777;
    let mut a = copy(&["dir"], "/deep/er/copied/");
    a.chmod = Some("0700".into());
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(a)).unwrap();
    for p in ["deep", "deep/er", "deep/er/copied", "deep/er/copied/sub"] {
        assert_eq!(mode(p), 0o700, "{p}");
    }
    assert_eq!(mode("deep/er/copied/x"), 0o700);
    let mut a = copy(&["a.txt"], "/deep2/er/a.txt");
    a.chmod = Some("4750".into());
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(a)).unwrap();
    assert_eq!(
        mode("deep2"),
        0o750,
        "permission bits only for created parents"
    );
    assert_eq!(mode("deep2/er/a.txt"), 0o4750);
    // A symbolic mode applies to what is copied; created parents are 0755.
    let mut a = copy(&["a.txt"], "/deep3/a.txt");
    a.chmod = Some("u+x".into());
    fileops::apply(&f.rootfs, &f.roots, &FileAction::Copy(a)).unwrap();
    assert_eq!(mode("deep3"), 0o755);
}

#[test]
fn copy_onto_an_existing_symlink_writes_through_it_inside_the_root() {
    let f = fixture();
    std::fs::create_dir_all(f.rootfs.join("real")).unwrap();
    std::os::unix::fs::symlink("/real/target", f.rootfs.join("dest-link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/t", f.rootfs.join("dangling")).unwrap();
    fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Copy(copy(&["a.txt"], "/dest-link")),
    )
    .unwrap();
    assert!(std::fs::symlink_metadata(f.rootfs.join("dest-link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(
        std::fs::read_to_string(f.rootfs.join("real/target")).unwrap(),
        "a"
    );
    fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Copy(copy(&["b.txt"], "/dest-link")),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(f.rootfs.join("real/target")).unwrap(),
        "b",
        "an existing target is replaced through the link"
    );
    fileops::apply(
        &f.rootfs,
        &f.roots,
        &FileAction::Copy(copy(&["a.txt"], "/dangling")),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(f.rootfs.join("nowhere/t")).unwrap(),
        "a",
        "missing parents of the target are created"
    );
}

/// A `.wh.` name is refused in an `ADD` archive wherever it would be created: as the entry's own
/// name, as a directory on the entry's path (`d/.wh.x/f`, which extraction makes as a parent),
/// and as the target of a symlink the entry's path goes through (`l -> .wh.x`, then `l/f`).
#[test]
fn add_archive_refuses_whiteout_names_in_the_directories_an_entry_lands_in() {
    let cases: [&[(&str, u8, &str)]; 3] = [
        &[("d/.wh.x/f", b'0', "")],
        &[("l", b'2', ".wh.x"), ("l/f", b'0', "")],
        &[
            ("d/", b'5', ""),
            ("l", b'2', "/d/.wh.x/y"),
            ("l/f", b'0', ""),
        ],
    ];
    for entries in cases {
        let f = fixture();
        let mut tar = Vec::new();
        for (name, kind, link) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_size(if *kind == b'0' { 1 } else { 0 });
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::new(*kind));
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
            h.set_cksum();
            tar.extend_from_slice(h.as_bytes());
            if *kind == b'0' {
                tar.extend_from_slice(b"E");
                tar.resize(tar.len().div_ceil(512) * 512, 0);
            }
        }
        tar.extend_from_slice(&[0; 1024]);
        std::fs::write(f.context.join("evil.tar"), tar).unwrap();
        let err = fileops::apply(
            &f.rootfs,
            &f.roots,
            &FileAction::Add(copy(&["evil.tar"], "/opt/x/")),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("reserved for whiteouts") && err.contains("\"x\""),
            "{entries:?}: {err}"
        );
        let written: Vec<_> = walkdir::WalkDir::new(f.rootfs.join("opt"))
            .into_iter()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".wh."))
            .collect();
        assert_eq!(written, Vec::<String>::new(), "{entries:?}");
    }
}
