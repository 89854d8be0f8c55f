//! A build by a plain user: `builder --root <the user's dir> build` of the hello example, run
//! as a user with subordinate ids (not root), gives an image whose files belong to root (0:0)
//! as in any image, and where `USER app` runs as uid 1000 and owns what it writes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{base_archive, builder_bin, examples_dir, Need};

const USER: &str = "buildertest";

fn ids(flag: &str) -> Option<u32> {
    let out = Command::new("id").arg(flag).arg(USER).output().ok()?;
    String::from_utf8_lossy(&out.stdout).trim().parse().ok()
}

/// Creates the plain user with 65536 subordinate uids and gids, if missing; returns its ids.
fn ensure_user() -> Result<(u32, u32), String> {
    if ids("-u").is_none() {
        let status = Command::new("useradd")
            .args(["-m", USER])
            .status()
            .map_err(|e| format!("useradd: {e}"))?;
        if !status.success() {
            return Err(format!("useradd {USER}: {status}"));
        }
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let mut content = std::fs::read_to_string(file).unwrap_or_default();
        if !content.lines().any(|l| l.starts_with(&format!("{USER}:"))) {
            content.push_str(&format!("{USER}:300000:65536\n"));
            std::fs::write(file, content).map_err(|e| format!("{file}: {e}"))?;
        }
    }
    match (ids("-u"), ids("-g")) {
        (Some(u), Some(g)) => Ok((u, g)),
        _ => Err(format!("{USER} missing after useradd")),
    }
}

/// Runs `builder ARGS` as the plain user.
fn as_user(uid: u32, gid: u32, home: &Path, builder: &Path, args: &[&str]) -> Output {
    Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--init-groups", "--reset-env"])
        .arg("env")
        .arg(format!("HOME={}", home.display()))
        .arg(format!("TMPDIR={}", home.display()))
        .arg(builder)
        .args(args)
        .output()
        .expect("setpriv")
}

fn ok(out: Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} as {USER} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// (path, uid, gid, content) of the files of a rootfs tar.
fn entries(tar_path: &Path) -> Vec<(String, u64, u64, Vec<u8>)> {
    use std::io::Read;
    let data = std::fs::read(tar_path).unwrap();
    let mut a = tar::Archive::new(&data[..]);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let p = e.path().unwrap().to_string_lossy().into_owned();
            let h = e.header().clone();
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            (
                format!("/{}", p.trim_start_matches("./").trim_end_matches('/')),
                h.uid().unwrap(),
                h.gid().unwrap(),
                content,
            )
        })
        .collect()
}

fn chown_tree(dir: &Path, uid: u32, gid: u32) {
    let status = Command::new("chown")
        .arg("-R")
        .arg(format!("{uid}:{gid}"))
        .arg(dir)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns, missing_uidmap),
    ignore = "needs root, /usr/bin/busybox and newuidmap"
)]
fn a_plain_user_builds_the_hello_example_with_root_owned_files() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns, Need::Uidmap]);
    let (uid, gid) = ensure_user().unwrap_or_else(|e| panic!("cannot create {USER}: {e}"));
    let base = base_archive().to_path_buf();
    let dir = tempfile::Builder::new()
        .prefix("builder-rootless-")
        .tempdir_in("/tmp")
        .unwrap();
    let home = dir.path().to_path_buf();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The user's copies: the base archive, the context, and the binary if it is out of reach.
    std::fs::copy(&base, home.join("base.tar")).unwrap();
    let ctx = home.join("hello");
    std::fs::create_dir_all(&ctx).unwrap();
    for f in ["Dockerfile", "greeting.txt"] {
        std::fs::copy(examples_dir().join("hello").join(f), ctx.join(f)).unwrap();
    }
    let app_ctx = home.join("app");
    std::fs::create_dir_all(&app_ctx).unwrap();
    std::fs::write(
        app_ctx.join("Dockerfile"),
        "FROM hello:rootless\n\
         COPY --chown=app:app note.txt /tmp/note.txt\n\
         RUN id -u > /tmp/uid.txt && id -g >> /tmp/uid.txt && touch /tmp/by-app\n\
         RUN --mount=type=bind,target=/ctx ls -A /ctx /ctx/sub > /tmp/ctx.txt\n",
    )
    .unwrap();
    std::fs::write(app_ctx.join("note.txt"), "note\n").unwrap();
    // Ignored files are hidden from the bind mount by a layer of whiteouts the user makes.
    std::fs::write(app_ctx.join(".dockerignore"), "secret.txt\nsub/gen\n").unwrap();
    std::fs::write(app_ctx.join("secret.txt"), "secret\n").unwrap();
    std::fs::create_dir_all(app_ctx.join("sub/gen")).unwrap();
    std::fs::write(app_ctx.join("sub/kept.txt"), "kept\n").unwrap();
    let reachable = Command::new("setpriv")
        .arg(format!("--reuid={uid}"))
        .arg(format!("--regid={gid}"))
        .args(["--init-groups", "test", "-x", builder_bin()])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let builder: PathBuf = if reachable {
        PathBuf::from(builder_bin())
    } else {
        let copy = home.join("builder");
        std::fs::copy(builder_bin(), &copy).unwrap();
        copy
    };
    chown_tree(&home, uid, gid);

    let root = home.join("root");
    let root_arg = root.to_str().unwrap();
    let base_tar = home.join("base.tar");
    ok(
        as_user(
            uid,
            gid,
            &home,
            &builder,
            &["--root", root_arg, "load", "-i", base_tar.to_str().unwrap()],
        ),
        "load",
    );
    let hello_tar = home.join("hello.rootfs.tar");
    let out = format!("type=tar,dest={}", hello_tar.display());
    ok(
        as_user(
            uid,
            gid,
            &home,
            &builder,
            &[
                "--root",
                root_arg,
                "build",
                "--progress",
                "plain",
                "-t",
                "hello:rootless",
                "-o",
                &out,
                ctx.to_str().unwrap(),
            ],
        ),
        "build of examples/hello",
    );
    let files = entries(&hello_tar);
    assert!(files.iter().any(|f| f.0 == "/app/greeting.txt"));
    assert!(files.iter().any(|f| f.0 == "/bin/busybox"));
    for (path, u, g, _) in &files {
        assert_eq!((*u, *g), (0, 0), "{path} is owned by {u}:{g}, not root");
    }
    let words = files.iter().find(|f| f.0 == "/app/words.txt").unwrap();
    assert_eq!(String::from_utf8_lossy(&words.3), "5 greeting.txt\n");

    // USER app (from the hello image) runs as 1000:1000 and owns what it writes.
    let app_tar = home.join("app.rootfs.tar");
    let out = format!("type=tar,dest={}", app_tar.display());
    ok(
        as_user(
            uid,
            gid,
            &home,
            &builder,
            &[
                "--root",
                root_arg,
                "build",
                "--progress",
                "plain",
                "-o",
                &out,
                app_ctx.to_str().unwrap(),
            ],
        ),
        "build as USER app",
    );
    let files = entries(&app_tar);
    let find = |p: &str| {
        files
            .iter()
            .find(|f| f.0 == p)
            .unwrap_or_else(|| panic!("{p} missing from the image"))
    };
    assert_eq!(
        String::from_utf8_lossy(&find("/tmp/uid.txt").3),
        "1000\n1000\n"
    );
    assert_eq!((find("/tmp/by-app").1, find("/tmp/by-app").2), (1000, 1000));
    assert_eq!(
        (find("/tmp/note.txt").1, find("/tmp/note.txt").2),
        (1000, 1000)
    );
    assert_eq!((find("/app/greeting.txt").1, find("/etc/passwd").2), (0, 0));
    assert_eq!(
        String::from_utf8_lossy(&find("/tmp/ctx.txt").3),
        "/ctx:\n.dockerignore\nDockerfile\nnote.txt\nsub\n\n/ctx/sub:\nkept.txt\n"
    );

    // The plain user runs the image too: its CMD as USER app, writes in a layer of the run's own.
    let out = as_user(
        uid,
        gid,
        &home,
        &builder,
        &["--root", root_arg, "run", "--rm", "hello:rootless"],
    );
    ok(out.clone(), "run of hello:rootless");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(printed.ends_with("words: 5 greeting.txt\n"), "{printed}");
    let out = as_user(
        uid,
        gid,
        &home,
        &builder,
        &[
            "--root",
            root_arg,
            "run",
            "hello:rootless",
            "sh",
            "-c",
            "id -u; touch /tmp/mine && stat -c %u /tmp/mine; exit 9",
        ],
    );
    assert_eq!(out.status.code(), Some(9), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "1000\n1000\n");
}
