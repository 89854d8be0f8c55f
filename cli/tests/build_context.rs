//! The build context as a build sees it: `.dockerignore`d files are absent from COPY, and a
//! symlink in the context is copied as a link, never followed out of the context.

mod common;

use common::{can_build, Fixture};

#[test]
fn ignored_files_are_not_copied_and_cannot_be_named() {
    if !can_build() {
        return;
    }
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
fn context_symlink_to_a_host_file_is_never_followed_out_of_the_context() {
    if !can_build() {
        return;
    }
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
