//! The build context as a build sees it: `.dockerignore`d files are absent from COPY and from
//! `RUN --mount=type=bind`, and a symlink in the context is copied as a link, never followed out
//! of the context.

mod common;

use common::Fixture;

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn ignored_files_are_not_copied_and_cannot_be_named() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "ignore",
        &[
            ("Dockerfile", "FROM busybox:local\nCOPY . /app/\n"),
            (
                ".dockerignore",
                "secret.txt\nnode_modules\n*.log\n!keep.log\n",
            ),
            ("secret.txt", "do not ship\n"),
            ("node_modules/dep/index.js", "x\n"),
            ("debug.log", "noise\n"),
            ("keep.log", "kept\n"),
            ("src/main.txt", "main\n"),
        ],
    );
    let out_dir = f.dir.path().join("out");
    let dest = format!("type=local,dest={}", out_dir.display());
    f.build_ok(&ctx, &["-o", &dest]);
    assert!(out_dir.join("app/src/main.txt").is_file());
    assert!(out_dir.join("app/keep.log").is_file());
    assert!(!out_dir.join("app/secret.txt").exists());
    assert!(!out_dir.join("app/node_modules").exists());
    assert!(!out_dir.join("app/debug.log").exists());

    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:local\nCOPY secret.txt /\n",
    )
    .unwrap();
    let (out, _) = f.build(&ctx, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("secret.txt"), "{stderr}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn context_symlink_to_a_host_file_is_never_followed_out_of_the_context() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "links",
        &[("Dockerfile", "FROM busybox:local\nCOPY . /ctx/\n")],
    );
    std::os::unix::fs::symlink("/etc/passwd", ctx.join("passwd-link")).unwrap();
    let out_dir = f.dir.path().join("out");
    let dest = format!("type=local,dest={}", out_dir.display());
    f.build_ok(&ctx, &["-o", &dest]);
    let link = out_dir.join("ctx/passwd-link");
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "a link inside a copied directory stays a link"
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap().to_str(),
        Some("/etc/passwd")
    );

    // Named as the source, the link is followed inside the context, as BuildKit does: the
    // host's /etc/passwd is not there, so the copy fails instead of leaking the host file.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:local\nCOPY passwd-link /single\n",
    )
    .unwrap();
    let (out, _) = f.build(&ctx, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("passwd-link"), "{stderr}");
    assert!(stderr.contains("build context"), "{stderr}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn ignored_files_are_absent_from_bind_mounts_of_the_context() {
    use std::os::unix::fs::PermissionsExt;
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "bind-ignore",
        &[
            (
                "Dockerfile",
                "FROM busybox:local\n\
                 RUN --mount=type=bind,target=/ctx,rw \\\n\
                 \x20 (cd /ctx && find . | sort > /seen-all && stat -c %a src > /src-mode \\\n\
                 \x20 && echo scratch > src/written && cat src/written > /wrote)\n\
                 RUN --mount=type=bind,source=src,target=/src find /src | sort > /seen-src\n",
            ),
            (
                ".dockerignore",
                "secret.txt\nnode_modules\nsrc/gen\n*.log\n!keep.log\n",
            ),
            ("secret.txt", "do not ship\n"),
            ("node_modules/dep/index.js", "x\n"),
            ("debug.log", "noise\n"),
            ("keep.log", "kept\n"),
            ("src/main.txt", "main\n"),
            ("src/gen/out.txt", "generated\n"),
        ],
    );
    std::fs::set_permissions(ctx.join("src"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let out_dir = f.dir.path().join("out");
    let dest = format!("type=local,dest={}", out_dir.display());
    f.build_ok(&ctx, &["-o", &dest]);
    let read = |p: &str| std::fs::read_to_string(out_dir.join(p)).unwrap();
    assert_eq!(
        read("seen-all"),
        ".\n./.dockerignore\n./Dockerfile\n./keep.log\n./src\n./src/main.txt\n"
    );
    assert_eq!(
        read("src-mode"),
        "750\n",
        "a masked directory keeps its mode"
    );
    assert_eq!(read("wrote"), "scratch\n", "the mount takes writes");
    assert!(
        !ctx.join("src/written").exists(),
        "writes never reach the context"
    );
    assert_eq!(read("seen-src"), "/src\n/src/main.txt\n");

    // Naming an ignored path as the mount source fails as COPY does.
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:local\nRUN --mount=type=bind,source=node_modules,target=/m ls /m\n",
    )
    .unwrap();
    let (out, _) = f.build(&ctx, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("node_modules"), "{stderr}");
    assert!(stderr.contains(".dockerignore"), "{stderr}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn copy_parents_with_wildcards_copies_only_the_matches_under_their_pivot() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "parents",
        &[
            (
                "Dockerfile",
                "FROM busybox:local\nCOPY --parents src/*/x.txt /p/\nCOPY --parents ./src/./a/*.txt /q/\n",
            ),
            ("src/a/x.txt", "ax\n"),
            ("src/a/y.txt", "ay\n"),
            ("src/b/x.txt", "bx\n"),
            ("src/c/z.txt", "cz\n"),
        ],
    );
    let out_dir = f.dir.path().join("out");
    let dest = format!("type=local,dest={}", out_dir.display());
    f.build_ok(&ctx, &["-o", &dest]);
    let listing = |dir: &str| {
        let mut found = Vec::new();
        let mut stack = vec![out_dir.join(dir)];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e.path().strip_prefix(&out_dir).unwrap().to_owned();
                    found.push(rel.display().to_string());
                }
            }
        }
        found.sort();
        found
    };
    assert_eq!(listing("p"), ["p/src/a/x.txt", "p/src/b/x.txt"]);
    assert_eq!(listing("q"), ["q/a/x.txt", "q/a/y.txt"]);
}

/// Makes `levels` nested directories `d` under `dir`, with a file at the bottom; returns the
/// bottom file's path relative to `dir`.
fn nest(dir: &std::path::Path, levels: usize) -> String {
    let rel = vec!["d"; levels].join("/");
    // Created one level at a time, relative to the previous one, as a path this long may be
    // more than the kernel takes in one call.
    let mut at = std::fs::File::open(dir).unwrap();
    for _ in 0..levels {
        use std::os::fd::AsFd;
        let _ = rustix::fs::mkdirat(at.as_fd(), "d", rustix::fs::Mode::from_raw_mode(0o755));
        let fd = rustix::fs::openat(
            at.as_fd(),
            "d",
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        at = std::fs::File::from(fd);
    }
    use std::os::fd::AsFd;
    let fd = rustix::fs::openat(
        at.as_fd(),
        "f",
        rustix::fs::OFlags::WRONLY | rustix::fs::OFlags::CREATE,
        rustix::fs::Mode::from_raw_mode(0o644),
    )
    .unwrap();
    std::io::Write::write_all(&mut std::fs::File::from(fd), b"bottom").unwrap();
    format!("{rel}/f")
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_deep_context_is_copied_or_refused_with_its_path_never_a_crash() {
    // A context 600 levels deep overflowed the stacks of the layer writer and of the context
    // walk, and one 2,000 deep (about as deep as a path can be) took minutes, each entry
    // resolved again from the root; one deeper than a path can be is refused, naming it.
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context("deep", &[("Dockerfile", "FROM scratch\nCOPY . /x/\n")]);
    let bottom = nest(&ctx, 2000);
    let out_dir = f.dir.path().join("out");
    let dest = format!("type=local,dest={}", out_dir.display());
    f.build_ok(&ctx, &["-o", &dest]);
    let copied = out_dir.join("x").join(&bottom);
    assert_eq!(std::fs::read_to_string(copied).unwrap(), "bottom");

    let too_deep = f.context("too-deep", &[("Dockerfile", "FROM scratch\nCOPY . /x/\n")]);
    nest(&too_deep, 2100);
    let (out, _) = f.build(&too_deep, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("d/d/d/d/") && stderr.contains("is longer than 4095 bytes"),
        "{stderr}"
    );
}
