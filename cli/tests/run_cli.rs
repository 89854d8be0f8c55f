//! `builder run` end to end: an image's command in the sandbox on a throw-away layer, its flags,
//! its exit code, its terminal, signals, and the lease that keeps `rmi` off a running image.

mod common;

use common::{Fixture, Need};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `builder run ARGS` on `f`'s root.
fn run(f: &Fixture, args: &[&str]) -> Output {
    f.cmd().arg("run").args(args).output().unwrap()
}

/// `builder run ARGS`, failing the test unless it exits 0; returns its stdout.
fn run_ok(f: &Fixture, args: &[&str]) -> String {
    let out = run(f, args);
    assert!(out.status.success(), "run {args:?} failed: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Builds `dockerfile` as `tag` on `f`'s root.
fn image(f: &Fixture, tag: &str, dockerfile: &str) {
    let ctx = f.context(
        &format!("ctx-{}", tag.replace(':', "-")),
        &[("Dockerfile", dockerfile)],
    );
    f.build_ok(&ctx, &["-t", tag]);
}

/// A `builder run` in the background, killed when the test ends, failed or not.
struct Background(std::process::Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits (up to a minute) until a container runs on `root`: its lease appears.
fn wait_for_lease(root: &Path) {
    let dir = root.join("locks-v1/containers");
    let start = Instant::now();
    loop {
        let leased = std::fs::read_dir(&dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        });
        if leased {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no container started"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn run_prints_what_cmd_says_and_returns_its_exit_code() {
    common::require_build();
    let f = Fixture::new();
    image(
        &f,
        "cmd:test",
        "FROM busybox:local\nCMD [\"sh\", \"-c\", \"echo from-cmd; echo to-stderr >&2; exit 3\"]\n",
    );
    let out = run(&f, &["--rm", "cmd:test"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "from-cmd\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "to-stderr\n");
    // Arguments replace CMD; options after the image belong to the command.
    assert_eq!(run_ok(&f, &["cmd:test", "echo", "-n", "given"]), "given");
    // A command that is not there: 127, as docker run.
    let out = run(&f, &["cmd:test", "no-such-program"]);
    assert_eq!(out.status.code(), Some(127), "{}", text(&out));
    assert!(
        text(&out).contains("executable file not found"),
        "{}",
        text(&out)
    );
    // -i passes standard input on; without it the container reads an empty one.
    let piped = |args: &[&str]| {
        use std::io::Write;
        let mut child = f
            .cmd()
            .arg("run")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"piped-in\n")
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = piped(&["-i", "cmd:test", "cat"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "piped-in\n");
    let out = piped(&["cmd:test", "cat"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
    // An image that is not there (and not to be pulled).
    let out = run(&f, &["--pull", "never", "no-such:image"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(text(&out).contains("No such image"), "{}", text(&out));
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn env_workdir_user_entrypoint_and_hostname_reach_the_process() {
    common::require_build();
    let f = Fixture::new();
    image(
        &f,
        "conf:test",
        "FROM busybox:local\nENV FROM_IMAGE=image KEPT=kept\nWORKDIR /srv\nUSER app\n\
         ENTRYPOINT [\"/bin/echo\", \"entry\"]\nCMD [\"default\"]\n",
    );
    assert_eq!(run_ok(&f, &["conf:test"]), "entry default\n");
    assert_eq!(run_ok(&f, &["conf:test", "given"]), "entry given\n");
    // The image's settings, as docker run gives them.
    let shown = run_ok(
        &f,
        &[
            "--entrypoint",
            "/bin/sh",
            "conf:test",
            "-c",
            "echo $FROM_IMAGE $KEPT; pwd; id -un; echo $HOME",
        ],
    );
    assert_eq!(shown, "image kept\n/srv\napp\n/home/app\n");
    // And each flag over them.
    std::env::set_var("BUILDER_RUN_TEST_PASSED", "from-host");
    let shown = run_ok(
        &f,
        &[
            "-e",
            "FROM_IMAGE=flag",
            "--env=NEW=a=b",
            "-e",
            "BUILDER_RUN_TEST_PASSED",
            "-w",
            "/made/by/run",
            "-u",
            "nobody",
            "--hostname",
            "box",
            "--entrypoint",
            "",
            "conf:test",
            "sh",
            "-c",
            "echo $FROM_IMAGE $KEPT $NEW $BUILDER_RUN_TEST_PASSED; pwd; id -u; hostname; \
             cat /etc/hostname",
        ],
    );
    assert_eq!(
        shown,
        "flag kept a=b from-host\n/made/by/run\n65534\nbox\nbox\n"
    );
    // A user the image does not know.
    let out = run(&f, &["-u", "ghost", "conf:test"]);
    assert_eq!(out.status.code(), Some(125), "{}", text(&out));
    assert!(text(&out).contains("ghost"), "{}", text(&out));
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn volumes_bind_host_paths_and_writes_stay_in_their_run() {
    common::require_build();
    let f = Fixture::new();
    let host = f.dir.path().join("shared");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("in.txt"), "from the host\n").unwrap();
    let ro = format!("{}:/data:ro", host.display());
    let rw = format!("{}:/data", host.display());

    // Read-only: readable, writes fail.
    let out = run(
        &f,
        &[
            "-v",
            &ro,
            "busybox:local",
            "sh",
            "-c",
            "cat /data/in.txt; echo x > /data/new",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("from the host"), "{}", text(&out));
    assert!(
        text(&out).contains("Read-only file system"),
        "{}",
        text(&out)
    );
    assert!(!host.join("new").exists());

    // A single file, read-only.
    let file = format!("{}:/etc/motd:ro", host.join("in.txt").display());
    assert_eq!(
        run_ok(&f, &["-v", &file, "busybox:local", "cat", "/etc/motd"]),
        "from the host\n"
    );

    // Read-write: the write reaches the host; writes elsewhere land in the run's own layer.
    run_ok(
        &f,
        &[
            "-v",
            &rw,
            "busybox:local",
            "sh",
            "-c",
            "echo written > /data/new; echo mine > /etc/scribble; rm /bin/ls; \
             test -f /etc/scribble && ! test -e /bin/ls",
        ],
    );
    assert_eq!(
        std::fs::read_to_string(host.join("new")).unwrap(),
        "written\n"
    );
    // A second run sees none of the first one's writes, and neither does the image.
    run_ok(
        &f,
        &[
            "busybox:local",
            "sh",
            "-c",
            "! test -e /etc/scribble && test -e /bin/ls",
        ],
    );
    let ctx = f.context(
        "after-runs",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN ! test -e /etc/scribble && test -e /bin/ls\n",
        )],
    );
    f.build_ok(&ctx, &["--no-cache"]);
    // Two runs at once do not see each other's writes either.
    let first = f
        .cmd()
        .args([
            "run",
            "busybox:local",
            "sh",
            "-c",
            "echo first > /marker; sleep 3; cat /marker",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lease(&f.root());
    assert_eq!(
        run_ok(
            &f,
            &[
                "busybox:local",
                "sh",
                "-c",
                "echo second > /marker; cat /marker"
            ]
        ),
        "second\n"
    );
    let out = first.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\n");
    // A bad volume is refused before anything runs.
    let out = run(&f, &["-v", "named:/data", "busybox:local", "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("named volumes are not supported"),
        "{}",
        text(&out)
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn network_none_has_only_loopback_and_the_default_has_a_way_out() {
    common::require_build();
    let f = Fixture::new();
    let none = run_ok(
        &f,
        &["--network", "none", "busybox:local", "ls", "/sys/class/net"],
    );
    assert_eq!(none, "lo\n");
    let default = run_ok(&f, &["busybox:local", "ls", "/sys/class/net"]);
    assert!(default.lines().any(|l| l != "lo"), "{default}");
    let host = run_ok(
        &f,
        &["--network=host", "busybox:local", "ls", "/sys/class/net"],
    );
    let expected: Vec<String> = std::fs::read_dir("/sys/class/net")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for name in expected {
        assert!(host.lines().any(|l| l == name), "{name} missing in {host}");
    }
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn rmi_refuses_an_image_a_running_container_uses_unless_forced() {
    common::require_build();
    let f = Fixture::new();
    image(&f, "busy:test", "FROM busybox:local\nLABEL x=y\n");
    let mut sleeper = Background(
        f.cmd()
            .args(["run", "busy:test", "sleep", "600"])
            .spawn()
            .unwrap(),
    );
    wait_for_lease(&f.root());
    let out = f.cmd().args(["rmi", "busy:test"]).output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("(must force) - container"),
        "{}",
        text(&out)
    );
    let id = String::from_utf8(
        f.cmd()
            .args(["images", "-q", "busy"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let out = f.cmd().args(["rmi", id.trim()]).output().unwrap();
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("image is being used by running container"),
        "{}",
        text(&out)
    );
    // Other images are not held.
    let out = f
        .cmd()
        .args(["tag", "busybox:local", "other:test"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    common::run_ok(f.cmd().args(["rmi", "other:test"]));
    // -f removes it from under the container, which runs on.
    let out = f.cmd().args(["rmi", "-f", "busy:test"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        sleeper.0.try_wait().unwrap().is_none(),
        "the container stopped"
    );
    drop(sleeper);
    // A killed run leaves a stale lease, which holds nothing.
    image(&f, "busy:test", "FROM busybox:local\nLABEL x=y\n");
    common::run_ok(f.cmd().args(["rmi", "busy:test"]));
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns, missing_script),
    ignore = "needs root, /usr/bin/busybox, slirp4netns and script"
)]
fn it_gives_the_container_a_terminal_of_its_own() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns, Need::Script]);
    let f = Fixture::new();
    let under_pty = |args: &str| {
        let command = format!(
            "{} --root {} run {args}",
            common::builder_bin(),
            f.root().display()
        );
        Command::new("script")
            .args(["-q", "-e", "-f", "-c", &command, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = under_pty(
        "-it busybox:local sh -c 'tty; test -t 0 && test -t 1 && echo all-terminals; \
         echo TERM=$TERM; exit 5'",
    );
    let log = text(&out);
    assert_eq!(out.status.code(), Some(5), "{log}");
    assert!(log.contains("/dev/pts/0"), "{log}");
    assert!(log.contains("all-terminals"), "{log}");
    assert!(log.contains("TERM=xterm"), "{log}");
    // It has the size of builder's terminal.
    let command = format!(
        "stty cols 77 rows 11; {} --root {} run -t busybox:local stty size",
        common::builder_bin(),
        f.root().display()
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-f", "-c", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(text(&out).contains("11 77"), "{}", text(&out));
    // A resize of builder's terminal (SIGWINCH) reaches the container's terminal, whose
    // kernel signals the container.
    let shared = f.dir.path().join("winch");
    std::fs::create_dir_all(&shared).unwrap();
    let command = format!(
        "stty cols 80 rows 24; \
         {} --root {} run -t -v {dir}:/shared busybox:local \
           sh -c 'trap \"stty size; exit 0\" WINCH; touch /shared/ready; \
                  for i in $(seq 120); do sleep 1 & wait; done; echo no-winch' & \
         while [ ! -e {dir}/ready ]; do sleep 0.1; done; \
         stty cols 50 rows 5; kill -WINCH $!; wait $!",
        common::builder_bin(),
        f.root().display(),
        dir = shared.display()
    );
    let out = Command::new("script")
        .args(["-q", "-e", "-f", "-c", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("5 50"), "{}", text(&out));
    // The terminal is the container's controlling terminal.
    let out = under_pty("-t busybox:local sh -c 'echo ctty > /dev/tty'");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("ctty"), "{}", text(&out));
    // Without -t, no terminal, even when builder has one.
    let out = under_pty("busybox:local tty");
    assert!(text(&out).contains("not a tty"), "{}", text(&out));
    // What is typed reaches the container.
    let command = format!(
        "{} --root {} run -i -t busybox:local sh -c 'read line; echo got-$line'",
        common::builder_bin(),
        f.root().display()
    );
    let mut child = Command::new("script")
        .args(["-q", "-e", "-f", "-c", &command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"typed\r").unwrap();
        let out = child.stdout.take().unwrap();
        let mut seen = String::new();
        for line in BufReader::new(out).lines() {
            let line = line.unwrap();
            seen.push_str(&line);
            if line.contains("got-typed") {
                break;
            }
        }
        assert!(seen.contains("got-typed"), "{seen}");
    }
    assert!(child.wait().unwrap().success());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_signal_to_builder_run_reaches_the_process() {
    common::require_build();
    let f = Fixture::new();
    let mut child = f
        .cmd()
        .args([
            "run",
            "busybox:local",
            "sh",
            "-c",
            "trap 'echo got-TERM; exit 42' TERM; trap 'echo got-USR1' USR1; echo ready; \
             for i in $(seq 120); do sleep 1 & wait; done; echo no-signal",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    let pid = child.id() as i32;
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGUSR1) };
    assert_eq!(lines.next().unwrap().unwrap(), "got-USR1");
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    assert_eq!(lines.next().unwrap().unwrap(), "got-TERM");
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(42));
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns, missing_registry),
    ignore = "needs root, /usr/bin/busybox, slirp4netns and docker-registry"
)]
fn an_image_the_store_lacks_is_pulled_first() {
    common::require(&[Need::Root, Need::Busybox, Need::Slirp4netns, Need::Registry]);
    let f = Fixture::new();
    let registry = test_support::registry::RegistryProcess::start(None);
    let name = format!("{}/run/busybox:pulled", registry.address());
    let config = f.dir.path().join("docker-config");
    std::fs::create_dir_all(&config).unwrap();
    let builder = |args: &[&str]| {
        let mut c = f.cmd();
        c.env("DOCKER_CONFIG", &config).args(args);
        c
    };
    common::run_ok(&mut builder(&["tag", "busybox:local", &name]));
    common::run_ok(&mut builder(&["push", &name]));
    common::run_ok(&mut builder(&["rmi", &name]));
    let out = builder(&["run", &name, "echo", "ran"]).output().unwrap();
    assert!(out.status.success(), "{}: {}", out.status, text(&out));
    // The container's output alone on stdout; the pull is reported on stderr.
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("Unable to find image '{name}' locally")),
        "{stderr}"
    );
    // The blobs are still there under busybox:local; the name is what was missing.
    assert!(
        stderr.contains(&format!("Status: Image is up to date for {name}")),
        "{stderr}"
    );
    // Now stored: no pull.
    let out = builder(&["run", &name, "true"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}
