//! RUN steps that attack the machine they run on: opening host devices they `mknod`, planting
//! symlinks for the mount-stub clean-up to follow, writing to the user's terminal, reaching
//! services on the host's loopback, calling system calls Docker's profile denies, and reading
//! the store's host paths from `/proc/self/mountinfo`. Each attack is built by the test; each
//! must fail or be contained, and the root must stay sound afterwards (`builder cache check`
//! clean, a normal build still works).
//!
//! These tests need root, overlayfs, /usr/bin/busybox, and (for the network) slirp4netns; they
//! say why and stop without one, and fail instead when `CI` is set.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::{Fixture, Need};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The root is still sound after an attack: `cache check` finds nothing, and a normal build
/// with a RUN step works on it.
fn assert_root_intact(f: &Fixture) {
    let out = f.cmd().args(["cache", "check"]).output().unwrap();
    assert!(out.status.success(), "cache check: {}", text(&out));
    let ctx = f.context(
        "normal",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN echo fine > /fine && cat /fine\n",
        )],
    );
    f.build_ok(&ctx, &["--no-cache"]);
}

/// `major:minor` of the block device holding the host's root filesystem, or of the first disk
/// when the root is not on one (an overlay, a tmpfs).
fn root_disk() -> (u32, u32) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let from_mountinfo = info.lines().find_map(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        (f.get(4) == Some(&"/")).then(|| f[2].to_string())
    });
    let from_sys = || {
        let mut disks: Vec<String> = std::fs::read_dir("/sys/block")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                !n.starts_with("loop") && !n.starts_with("ram")
            })
            .filter_map(|e| std::fs::read_to_string(e.path().join("dev")).ok())
            .map(|s| s.trim().to_string())
            .collect();
        disks.sort();
        disks.into_iter().next()
    };
    let dev = from_mountinfo
        .filter(|d| !d.starts_with("0:"))
        .or_else(from_sys)
        .unwrap_or_else(|| "8:0".to_string());
    let (major, minor) = dev.split_once(':').unwrap();
    (major.parse().unwrap(), minor.parse().unwrap())
}

/// Docker's device allow-list: a step may `mknod` (it has CAP_MKNOD) but the node does not
/// open, wherever it is made, while the bound /dev/null and friends still work. (Words the
/// test looks for in the output are spelled apart in the commands, which the log also shows.)
#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox"
)]
fn run_cannot_open_host_devices_it_mknods() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns]);
    let f = Fixture::new();
    let (major, minor) = root_disk();
    let dockerfile = format!(
        "FROM busybox:local\n\
         RUN for node in /tmp/disk /dev/disk /disk; do \
               mknod $node b {major} {minor} || exit 9; \
               if head -c 512 $node > /dev/null; then echo OPEN\"ED\" $node; fi; \
               rm $node; \
             done; \
             mknod /tmp/mem c 1 1 && if head -c 1 /tmp/mem > /dev/null; then echo OPEN\"ED\" mem; fi; \
             rm /tmp/mem; \
             echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c\n"
    );
    let ctx = f.context("devices", &[("Dockerfile", &dockerfile)]);
    let (out, _) = f.build(&ctx, &["--no-cache"]);
    let log = text(&out);
    assert!(out.status.success(), "build failed: {log}");
    assert!(!log.contains("OPENED"), "a device node opened: {log}");
    assert_eq!(
        log.matches("Permission denied").count(),
        4,
        "each open must fail with EACCES: {log}"
    );
    assert_eq!(
        log.matches(" 4\n").count(),
        2,
        "/dev/zero and /dev/urandom: {log}"
    );
    assert_root_intact(&f);
}

/// The rule: the clean-up of mount stubs never follows a symlink the step planted. The step
/// moves the stubs' parent away and puts a link to a host directory in its place, a directory
/// holding an empty file and an empty directory named like the stubs, and a canary.
#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox"
)]
fn stub_cleanup_never_follows_symlinks_the_step_planted() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns]);
    let f = Fixture::new();
    let host = f.dir.path().join("host-dir");
    std::fs::create_dir_all(host.join("a/b")).unwrap();
    std::fs::write(host.join("a/f.txt"), b"").unwrap();
    std::fs::write(host.join("a/canary"), b"keep me").unwrap();
    let dockerfile = format!(
        "FROM busybox:local\n\
         RUN --mount=type=bind,source=f.txt,target=/mnt/a/f.txt \
             --mount=type=tmpfs,target=/mnt/a/b \
             mv /mnt /mnt.old && ln -s {} /mnt && ls -l /mnt\n",
        host.display()
    );
    let ctx = f.context("stubs", &[("Dockerfile", &dockerfile), ("f.txt", "")]);
    let (out, _) = f.build(&ctx, &["--no-cache"]);
    assert!(out.status.success(), "build failed: {}", text(&out));
    assert!(
        host.join("a/f.txt").is_file(),
        "the host's a/f.txt was removed"
    );
    assert!(host.join("a/b").is_dir(), "the host's a/b was removed");
    assert_eq!(std::fs::read(host.join("a/canary")).unwrap(), b"keep me");
    assert_root_intact(&f);
}

/// The step has no controlling terminal: run under a pseudo-terminal (`script`), a RUN that
/// writes to /dev/tty does not reach it, and no fd of the step is a terminal (TIOCSTI needs
/// one). The kernel's view (`tty_nr` in /proc/self/stat) says the same.
#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns, missing_script),
    ignore = "needs root, /usr/bin/busybox, script"
)]
fn run_has_no_controlling_terminal_of_the_host() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns, Need::Script]);
    let f = Fixture::new();
    let dockerfile = "FROM busybox:local\n\
         RUN echo \"$(echo TTY)-WRITTEN\" > /dev/tty; \
             for fd in 0 1 2; do if [ -t $fd ]; then echo \"IS-A-$(echo TTY) $fd\"; fi; done; \
             echo \"tty_nr=$(cut -d' ' -f7 /proc/self/stat)\"\n";
    let ctx = f.context("tty", &[("Dockerfile", dockerfile)]);
    let command = format!(
        "{} --root {} build --progress plain --no-cache {}",
        common::builder_bin(),
        f.root().display(),
        ctx.display()
    );
    let typescript = f.dir.path().join("typescript");
    let out = Command::new("script")
        .args(["-q", "-e", "-c", &command])
        .arg(&typescript)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let log = text(&out);
    assert!(out.status.success(), "build under a pty failed: {log}");
    assert!(
        log.contains("/dev/tty: No such device or address"),
        "opening /dev/tty must fail with ENXIO: {log}"
    );
    assert!(
        !log.contains("TTY-WRITTEN"),
        "the step wrote to the terminal: {log}"
    );
    assert!(
        !log.contains("IS-A-TTY"),
        "the step holds a terminal fd: {log}"
    );
    assert!(
        log.contains("tty_nr=0"),
        "the step has a controlling terminal: {log}"
    );
    assert_root_intact(&f);
}

/// A tiny HTTP server on the host's 127.0.0.1 answering every connection with `token`.
fn loopback_server(token: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
            let mut buf = [0u8; 512];
            let _ = conn.read(&mut buf);
            let _ = write!(conn, "HTTP/1.0 200 OK\r\n\r\n{token}\n");
        }
    });
    port
}

/// The default network: the host's loopback services are out of reach (directly and through
/// slirp's gateway address), `--network=host` still reaches them, and the outside is reachable
/// by name when the host reaches it.
#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox, slirp4netns"
)]
fn default_run_cannot_reach_the_host_loopback_but_reaches_out() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns]);
    let f = Fixture::new();
    // Built at run time so that the Dockerfile text (echoed in the log) does not contain it.
    let token: &'static str = Box::leak(format!("served-{}", std::process::id()).into_boxed_str());
    let port = loopback_server(token);
    let get = |host: &str| {
        format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 {host} {port} | sed 's/^/got: /'")
    };
    let outside = ("deb.debian.org", 80);
    let host_reaches_outside = outside
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .map(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)).is_ok())
        .unwrap_or(false);
    let dockerfile = format!(
        "FROM busybox:local\n\
         RUN {}; {}; echo \"loopback-$(echo done)\"\n\
         RUN --network=host {} | tr a-z A-Z\n\
         RUN for try in 1 2 3; do \
               ip=$(nslookup {name} | awk '/^Address: / {{ print $2; exit }}'); echo \"resolved=$ip\"; \
               line=$(printf 'HEAD / HTTP/1.0\\r\\nHost: {name}\\r\\n\\r\\n' | nc -w 10 $ip {oport} | head -1); \
               [ -n \"$line\" ] && break; \
             done; echo \"outside: $line\"\n",
        get("127.0.0.1"),
        get("10.0.2.2"),
        get("127.0.0.1"),
        name = outside.0,
        oport = outside.1,
    );
    let ctx = f.context("net", &[("Dockerfile", &dockerfile)]);
    let (out, _) = f.build(&ctx, &["--no-cache", "--allow", "network.host"]);
    let log = text(&out);
    assert!(out.status.success(), "build failed: {log}");
    assert!(log.contains("loopback-done"), "{log}");
    assert!(
        !log.contains(&format!("got: {token}")),
        "a default RUN reached the host's loopback: {log}"
    );
    assert!(
        log.contains(&format!("GOT: {}", token.to_uppercase())),
        "--network=host must reach the host's loopback: {log}"
    );
    if host_reaches_outside {
        assert!(
            log.contains("outside: HTTP/"),
            "the host reaches {}:{} but a default RUN does not: {log}",
            outside.0,
            outside.1
        );
    } else {
        eprintln!("note: this machine does not reach {outside:?}; outbound sub-check not run");
    }
    assert_root_intact(&f);
}

/// Docker's seccomp profile: `unshare` (which root may call without any capability for a user
/// namespace) fails with EPERM; `--security=insecure` needs the entitlement, and with it the
/// same call works.
#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox"
)]
fn seccomp_denies_what_dockers_profile_denies() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns]);
    let f = Fixture::new();
    let ctx = f.context(
        "seccomp",
        &[(
            "Dockerfile",
            "FROM busybox:local\n\
             RUN unshare -U true; echo \"unshare=$?\"; linux32 true && echo \"personality-$(echo ok)\"\n",
        )],
    );
    let (out, _) = f.build(&ctx, &["--no-cache"]);
    let log = text(&out);
    assert!(out.status.success(), "build failed: {log}");
    assert!(
        log.contains("Operation not permitted") && log.contains("unshare=1"),
        "unshare must fail with EPERM: {log}"
    );
    assert!(
        log.contains("personality-ok"),
        "an allowed personality: {log}"
    );

    let insecure = f.context(
        "insecure",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN --security=insecure unshare -U true && echo \"unshare-$(echo ok)\"\n",
        )],
    );
    let (out, _) = f.build(&insecure, &["--no-cache"]);
    let log = text(&out);
    assert!(
        !out.status.success(),
        "insecure without the entitlement: {log}"
    );
    assert!(
        log.contains("security.insecure entitlement") && log.contains("--allow security.insecure"),
        "the error must name the entitlement and the flag: {log}"
    );
    let (out, _) = f.build(&insecure, &["--no-cache", "--allow", "security.insecure"]);
    let log = text(&out);
    assert!(out.status.success(), "insecure with the entitlement: {log}");
    assert!(log.contains("unshare-ok"), "{log}");
    assert_root_intact(&f);
}

/// The overlay's layers, upper and work directories are given to the kernel by fd: a step's
/// mountinfo holds no path of the builder's root (nor of the test's directory).
#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox"
)]
fn mountinfo_in_a_run_shows_no_host_path_of_the_store() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns]);
    let f = Fixture::new();
    let ctx = f.context(
        "mountinfo",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN echo x > /x\nRUN sed 's/^/mountinfo: /' /proc/self/mountinfo\n",
        )],
    );
    let (out, _) = f.build(&ctx, &["--no-cache"]);
    let log = text(&out);
    assert!(out.status.success(), "build failed: {log}");
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("mountinfo: ")).collect();
    assert!(
        lines.iter().any(|l| l.contains("overlay")),
        "no overlay in mountinfo: {log}"
    );
    let root = std::fs::canonicalize(f.root()).unwrap();
    for needle in [root.as_path(), f.dir.path(), Path::new("/tmp/")] {
        let needle = needle.display().to_string();
        assert!(
            !lines.iter().any(|l| l.contains(&needle)),
            "mountinfo shows {needle}: {lines:#?}"
        );
    }
    assert_root_intact(&f);
}
