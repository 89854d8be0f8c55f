//! The sandbox against the real kernel: a busybox rootfs as the lower layer of an overlay.
//! These tests need root (they are skipped with a message otherwise, and fail when `CI` is set);
//! the rootless tests create a plain user and run the sandbox as that user.

use engine::executor::{
    Action, BindAccess, CancelToken, ExecError, ExecOutcome, ExecSpec, ExecUser, MountKind,
    MountSpec, Network, OverlayMount, Runner, SandboxSpec, StepUser, Stream, UpperDir,
};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use test_support::Need;

const HELPER: &str = env!("CARGO_BIN_EXE_sandbox-test-helper");
const APPLETS: &[&str] = &[
    "sh", "echo", "cat", "ls", "true", "false", "id", "hostname", "pwd", "rm", "grep", "env",
    "touch", "mkdir", "sleep", "head", "tr",
];

/// What every test here needs; each also carries
/// `#[cfg_attr(any(missing_root, missing_busybox), ignore = ...)]` (see `test_support`).
fn require_sandbox() {
    test_support::require(&[Need::Root, Need::Busybox]);
}

/// A busybox rootfs (lower), and fresh upper/work/mount directories.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let lower = dir.path().join("lower");
        std::fs::create_dir_all(lower.join("bin")).unwrap();
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        std::fs::copy("/usr/bin/busybox", lower.join("bin/busybox")).unwrap();
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", lower.join("bin").join(applet)).unwrap();
        }
        std::fs::write(lower.join("etc/data.txt"), "lower\n").unwrap();
        Fixture { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn upper(&self) -> PathBuf {
        self.path("upper")
    }

    fn spec(&self, args: &[&str]) -> SandboxSpec {
        SandboxSpec {
            overlays: vec![OverlayMount {
                lower: vec![self.path("lower")],
                upper: Some(UpperDir {
                    upper: self.upper(),
                    work: self.path("work"),
                }),
                target: self.path("root"),
            }],
            mounts: vec![],
            network: Network::Host,
            hostname: "sandbox".to_string(),
            action: Action::Exec(ExecSpec {
                rootfs: self.path("root"),
                args: args.iter().map(|s| s.to_string()).collect(),
                env: vec!["PATH=/bin".to_string()],
                cwd: PathBuf::from("/"),
                user: ExecUser::default().into(),
                insecure: false,
                shm_size_bytes: None,
                rlimits: Vec::new(),
            }),
        }
    }

    /// Every path in the upper directory, relative, sorted.
    fn upper_entries(&self) -> Vec<String> {
        let mut out: Vec<String> = walkdir::WalkDir::new(self.upper())
            .min_depth(1)
            .into_iter()
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(self.upper())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        out.sort();
        out
    }
}

fn run(spec: &SandboxSpec) -> Result<(ExecOutcome, Vec<String>), ExecError> {
    let mut lines = Vec::new();
    let outcome = Runner::with_helper(HELPER).run(spec, &mut |l| lines.push(l.text.clone()))?;
    Ok((outcome, lines))
}

/// The stdout lines kept in an outcome's tail.
fn stdout_of(outcome: &ExecOutcome) -> Vec<&str> {
    outcome
        .tail
        .iter()
        .filter(|l| l.stream == Stream::Stdout)
        .map(|l| l.text.as_str())
        .collect()
}

fn run_ok(spec: &SandboxSpec) -> Vec<String> {
    let (outcome, lines) = run(spec).expect("sandbox runs");
    assert_eq!(outcome.exit_code, 0, "output: {lines:?}");
    lines
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn echo_output_is_captured_and_streamed() {
    require_sandbox();
    let f = Fixture::new();
    let (outcome, lines) = run(&f.spec(&["echo", "hi"])).unwrap();
    assert_eq!(lines, ["hi"]);
    assert!(outcome.success());
    assert_eq!(outcome.tail.len(), 1);
    assert_eq!(outcome.tail[0].text, "hi");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn runs_from_async_code() {
    require_sandbox();
    let f = Fixture::new();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let outcome = runtime
        .block_on(Runner::with_helper(HELPER).run_async(
            f.spec(&["echo", "async"]),
            move |line| tx.send(line.text.clone()).unwrap(),
            CancelToken::new(),
        ))
        .unwrap();
    assert!(outcome.success());
    assert_eq!(rx.try_iter().collect::<Vec<_>>(), ["async"]);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn exit_code_is_an_outcome() {
    require_sandbox();
    let f = Fixture::new();
    let (outcome, _) = run(&f.spec(&["sh", "-c", "echo out; echo err >&2; exit 7"])).unwrap();
    assert_eq!(outcome.exit_code, 7);
    assert!(!outcome.success());
    let texts: Vec<_> = outcome.tail.iter().map(|l| l.text.as_str()).collect();
    assert!(
        texts.contains(&"out") && texts.contains(&"err"),
        "{texts:?}"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn written_file_is_the_only_change_in_upper() {
    require_sandbox();
    let f = Fixture::new();
    run_ok(&f.spec(&["sh", "-c", "echo new > /newfile"]));
    assert_eq!(f.upper_entries(), ["newfile"]);
    assert_eq!(
        std::fs::read_to_string(f.upper().join("newfile")).unwrap(),
        "new\n"
    );
    assert!(
        !f.path("work").exists(),
        "the work directory is removed after the step"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn deleting_a_lower_file_leaves_a_whiteout() {
    require_sandbox();
    let f = Fixture::new();
    run_ok(&f.spec(&["rm", "/etc/data.txt"]));
    let meta = std::fs::symlink_metadata(f.upper().join("etc/data.txt")).unwrap();
    assert!(meta.file_type().is_char_device());
    assert_eq!(meta.rdev(), 0);
    assert_eq!(f.upper_entries(), ["etc", "etc/data.txt"]);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn network_none_has_only_loopback_up() {
    require_sandbox();
    let f = Fixture::new();
    let mut spec = f.spec(&["cat", "/proc/net/dev"]);
    spec.network = Network::None;
    let lines = run_ok(&spec);
    let interfaces: Vec<&str> = lines
        .iter()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(interfaces, ["lo"]);
    let mut spec = f.spec(&[
        "cat",
        "/sys/class/net/lo/operstate",
        "/sys/class/net/lo/flags",
    ]);
    spec.network = Network::None;
    let lines = run_ok(&spec);
    let flags = u32::from_str_radix(lines[1].trim_start_matches("0x"), 16).unwrap();
    assert_eq!(flags & 1, 1, "lo is up: {lines:?}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn step_is_pid_1_with_hostname() {
    require_sandbox();
    let f = Fixture::new();
    let lines = run_ok(&f.spec(&["sh", "-c", "echo $$; hostname"]));
    assert_eq!(lines, ["1", "sandbox"]);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn env_cwd_and_user_are_applied() {
    require_sandbox();
    let f = Fixture::new();
    let mut spec = f.spec(&[
        "sh",
        "-c",
        "echo $FOO; pwd; id -u; id -g; id -G; env | grep -c .",
    ]);
    if let Action::Exec(exec) = &mut spec.action {
        exec.env = vec!["PATH=/bin".to_string(), "FOO=bar".to_string()];
        exec.cwd = PathBuf::from("/work/dir");
        exec.user = ExecUser {
            uid: 1234,
            gid: 2345,
            additional_gids: vec![3456],
        }
        .into();
    }
    let lines = run_ok(&spec);
    // busybox sh adds PWD, SHLVL to the environment it was given.
    assert_eq!(
        lines[..5],
        ["bar", "/work/dir", "1234", "2345", "2345 3456"]
    );
    let env_count: usize = lines[5].parse().unwrap();
    assert!(env_count <= 4, "clean environment: {lines:?}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn named_user_is_resolved_in_the_step_rootfs() {
    require_sandbox();
    let f = Fixture::new();
    std::fs::write(
        f.path("lower/etc/passwd"),
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        f.path("lower/etc/group"),
        "root:x:0:\napp:x:1001:\nextra:x:1500:app\n",
    )
    .unwrap();
    let mut spec = f.spec(&["sh", "-c", "id -u; id -g; id -G"]);
    if let Action::Exec(exec) = &mut spec.action {
        exec.user = StepUser::Named("app".to_string());
    }
    assert_eq!(run_ok(&spec), ["1000", "1001", "1001 1500"]);
    if let Action::Exec(exec) = &mut spec.action {
        exec.user = StepUser::Named("ghost".to_string());
    }
    let err = run(&spec).unwrap_err();
    assert_eq!(
        err.to_string(),
        "unable to find user ghost: no matching entries in passwd file"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn only_stdio_is_inherited_and_kernel_files_are_masked() {
    require_sandbox();
    let f = Fixture::new();
    // fd 3 is the directory `ls` reads.
    assert_eq!(
        run_ok(&f.spec(&["ls", "/proc/self/fd"])),
        ["0", "1", "2", "3"]
    );
    let lines = run_ok(&f.spec(&[
        "sh",
        "-c",
        "cat /proc/timer_list /proc/keys | grep -c . ; echo 1 2>/dev/null > /proc/sys/kernel/domainname || echo ro",
    ]));
    assert_eq!(
        lines[0], "0",
        "/proc/timer_list and /proc/keys are masked: {lines:?}"
    );
    assert!(lines.contains(&"ro".to_string()), "{lines:?}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn root_gets_docker_default_capabilities() {
    require_sandbox();
    let f = Fixture::new();
    let lines = run_ok(&f.spec(&[
        "grep",
        "-E",
        "^Cap(Eff|Bnd)|NoNewPrivs",
        "/proc/self/status",
    ]));
    assert!(
        lines.contains(&"CapEff:\t00000000a80425fb".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"CapBnd:\t00000000a80425fb".to_string()),
        "{lines:?}"
    );
    assert!(lines.contains(&"NoNewPrivs:\t1".to_string()), "{lines:?}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn secret_file_is_visible_and_never_in_upper() {
    require_sandbox();
    let f = Fixture::new();
    let mut spec = f.spec(&[
        "sh",
        "-c",
        "cat /run/secrets/token; cat /etc/resolv.conf; ls /dev",
    ]);
    spec.mounts = vec![
        MountSpec {
            target: PathBuf::from("/run/secrets/token"),
            kind: MountKind::File {
                contents: b"s3cret\n".to_vec(),
                mode: 0o400,
                uid: 0,
                gid: 0,
            },
        },
        MountSpec {
            target: PathBuf::from("/etc/resolv.conf"),
            kind: MountKind::File {
                contents: b"nameserver 192.0.2.1\n".to_vec(),
                mode: 0o644,
                uid: 0,
                gid: 0,
            },
        },
    ];
    let lines = run_ok(&spec);
    assert_eq!(lines[0], "s3cret");
    assert_eq!(lines[1], "nameserver 192.0.2.1");
    for dev in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx",
    ] {
        assert!(
            lines.iter().any(|l| l == dev),
            "/dev/{dev} missing: {lines:?}"
        );
    }
    assert_eq!(f.upper_entries(), Vec::<String>::new());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn network_files_are_mounted_and_not_in_upper() {
    require_sandbox();
    let f = Fixture::new();
    let mut spec = f.spec(&["cat", "/etc/hosts"]);
    spec.mounts = engine::executor::network_files(Network::Host, "sandbox");
    let lines = run_ok(&spec);
    assert_eq!(lines[0], "127.0.0.1\tlocalhost sandbox");
    assert_eq!(f.upper_entries(), Vec::<String>::new());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn dangling_symlink_target_is_created_inside_the_root_and_removed() {
    require_sandbox();
    let f = Fixture::new();
    // As in systemd-based images.
    std::os::unix::fs::symlink(
        "../run/systemd/resolve/stub-resolv.conf",
        f.path("lower/etc/resolv.conf"),
    )
    .unwrap();
    let mut spec = f.spec(&["cat", "/etc/resolv.conf"]);
    spec.mounts = engine::executor::network_files(Network::None, "sandbox");
    let lines = run_ok(&spec);
    assert!(
        lines.iter().any(|l| l.starts_with("nameserver")),
        "{lines:?}"
    );
    assert_eq!(f.upper_entries(), Vec::<String>::new());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn stub_parent_with_real_changes_stays() {
    require_sandbox();
    let f = Fixture::new();
    let mut spec = f.spec(&[
        "sh",
        "-c",
        "echo x > /etc/real; echo y > /run/secrets/other",
    ]);
    spec.mounts = vec![MountSpec {
        target: PathBuf::from("/run/secrets/token"),
        kind: MountKind::File {
            contents: b"s".to_vec(),
            mode: 0o400,
            uid: 0,
            gid: 0,
        },
    }];
    spec.mounts.push(MountSpec {
        target: PathBuf::from("/etc/hosts"),
        kind: MountKind::File {
            contents: b"127.0.0.1 localhost\n".to_vec(),
            mode: 0o644,
            uid: 0,
            gid: 0,
        },
    });
    run_ok(&spec);
    assert_eq!(
        f.upper_entries(),
        ["etc", "etc/real", "run", "run/secrets", "run/secrets/other"]
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn tmpfs_mount_is_private_and_discarded() {
    require_sandbox();
    let f = Fixture::new();
    let mut spec = f.spec(&[
        "sh",
        "-c",
        "echo x > /scratch/f && cat /scratch/f && grep ' /scratch ' /proc/mounts",
    ]);
    spec.mounts = vec![MountSpec {
        target: PathBuf::from("/scratch"),
        kind: MountKind::Tmpfs {
            size_bytes: Some(1 << 20),
        },
    }];
    let lines = run_ok(&spec);
    assert_eq!(lines[0], "x");
    assert!(lines[1].starts_with("tmpfs /scratch tmpfs"), "{lines:?}");
    assert_eq!(f.upper_entries(), Vec::<String>::new());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn binds_read_only_discard_and_read_write() {
    require_sandbox();
    let f = Fixture::new();
    let host = f.path("host-data");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "host\n").unwrap();
    let cache = f.path("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let bind = |target: &str, source: &Path, access| MountSpec {
        target: PathBuf::from(target),
        kind: MountKind::Bind {
            source: source.to_path_buf(),
            access,
        },
    };

    let mut spec = f.spec(&["sh", "-c", "cat /ro/f; echo y > /ro/g"]);
    spec.mounts = vec![bind("/ro", &host, BindAccess::ReadOnly)];
    let (outcome, lines) = run(&spec).unwrap();
    assert_ne!(outcome.exit_code, 0);
    // stdout and stderr are separate pipes: their relative order is not kept.
    assert_eq!(stdout_of(&outcome), ["host"]);
    assert!(
        lines.iter().any(|l| l.contains("Read-only file system")),
        "{lines:?}"
    );
    assert!(!host.join("g").exists());

    let mut spec = f.spec(&[
        "sh",
        "-c",
        "echo y > /scratch/g && echo z > /scratch/f && cat /scratch/f /scratch/g",
    ]);
    spec.mounts = vec![bind("/scratch", &host, BindAccess::Discard)];
    assert_eq!(run_ok(&spec), ["z", "y"]);
    assert!(
        !host.join("g").exists(),
        "discarded writes never reach the host"
    );
    assert_eq!(std::fs::read_to_string(host.join("f")).unwrap(), "host\n");

    let mut spec = f.spec(&["sh", "-c", "echo kept > /cache/entry"]);
    spec.mounts = vec![bind("/cache", &cache, BindAccess::ReadWrite)];
    run_ok(&spec);
    assert_eq!(
        std::fs::read_to_string(cache.join("entry")).unwrap(),
        "kept\n"
    );
    assert_eq!(f.upper_entries(), Vec::<String>::new());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn cancelled_step_is_killed_and_cleaned_up() {
    require_sandbox();
    let f = Fixture::new();
    let spec = f.spec(&["sh", "-c", "echo started; sleep 30"]);
    let cancel = CancelToken::new();
    let started = std::time::Instant::now();
    let canceller = cancel.clone();
    let result = Runner::with_helper(HELPER).run_cancellable(
        &spec,
        &mut |line| {
            if line.text == "started" {
                canceller.cancel();
            }
        },
        &cancel,
    );
    assert_eq!(result.unwrap_err(), ExecError::Cancelled);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(f.upper_entries(), Vec::<String>::new());
    assert!(!f.path("work").exists());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn long_lines_are_split() {
    require_sandbox();
    let f = Fixture::new();
    let lines = run_ok(&f.spec(&[
        "sh",
        "-c",
        "head -c 150000 /dev/zero | tr '\\0' a; echo; echo end",
    ]));
    let lengths: Vec<usize> = lines.iter().map(String::len).collect();
    assert_eq!(lengths, [65536, 65536, 18928, 3]);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn layers_of_another_stage_mount_read_only_or_discarded() {
    require_sandbox();
    let f = Fixture::new();
    let (bottom, top) = (f.path("stage-bottom"), f.path("stage-top"));
    std::fs::create_dir_all(bottom.join("out")).unwrap();
    std::fs::create_dir_all(top.join("out")).unwrap();
    std::fs::write(bottom.join("out/a"), "bottom\n").unwrap();
    std::fs::write(bottom.join("out/b"), "b\n").unwrap();
    std::fs::write(top.join("out/a"), "top\n").unwrap();
    let layers = |access| MountSpec {
        target: PathBuf::from("/src"),
        kind: MountKind::Layers {
            lower: vec![bottom.clone(), top.clone()],
            subpath: PathBuf::from("/out"),
            access,
        },
    };
    let mut spec = f.spec(&["sh", "-c", "cat /src/a /src/b; echo x > /src/c"]);
    spec.mounts = vec![layers(BindAccess::ReadOnly)];
    let (outcome, lines) = run(&spec).unwrap();
    assert_eq!(outcome.exit_code, 1);
    assert_eq!(stdout_of(&outcome), ["top", "b"]);
    assert!(
        lines.iter().any(|l| l.contains("Read-only file system")),
        "{lines:?}"
    );

    let mut spec = f.spec(&["sh", "-c", "echo x > /src/c && rm /src/a && cat /src/c"]);
    spec.mounts = vec![layers(BindAccess::Discard)];
    assert_eq!(run_ok(&spec), ["x"]);
    assert!(top.join("out/a").exists() && !top.join("out/c").exists());
    assert_eq!(f.upper_entries(), Vec::<String>::new());

    spec.mounts = vec![layers(BindAccess::ReadWrite)];
    assert!(matches!(run(&spec), Err(ExecError::InvalidSpec(_))));
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn paths_through_symlinks_and_plain_directory_roots() {
    require_sandbox();
    let f = Fixture::new();
    std::os::unix::fs::symlink(f.dir.path(), f.path("link")).unwrap();
    let via_link = f.path("link");
    let mut spec = f.spec(&["sh", "-c", "echo x > /f"]);
    spec.overlays[0].target = via_link.join("root");
    spec.overlays[0].upper = Some(UpperDir {
        upper: via_link.join("upper"),
        work: via_link.join("work"),
    });
    if let Action::Exec(exec) = &mut spec.action {
        exec.rootfs = via_link.join("root");
    }
    run_ok(&spec);
    assert_eq!(f.upper_entries(), ["f"]);

    // Without an overlay the step writes into the directory; mount points made for it go.
    let plain = f.path("plain");
    std::fs::create_dir_all(plain.join("bin")).unwrap();
    std::fs::copy("/usr/bin/busybox", plain.join("bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", plain.join("bin/sh")).unwrap();
    let mut spec = f.spec(&["sh", "-c", "echo y > /g"]);
    spec.overlays.clear();
    if let Action::Exec(exec) = &mut spec.action {
        exec.rootfs = plain.clone();
    }
    run_ok(&spec);
    let mut names: Vec<String> = std::fs::read_dir(&plain)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["bin", "g"]);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn missing_program_is_a_named_error() {
    require_sandbox();
    let f = Fixture::new();
    let err = run(&f.spec(&["nosuchprog", "x"])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "exec: \"nosuchprog\": executable file not found in $PATH"
    );
    assert_eq!(f.upper_entries(), Vec::<String>::new());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn in_process_action_writes_into_the_overlay() {
    require_sandbox();
    let f = Fixture::new();
    let mut spec = f.spec(&[]);
    spec.action = Action::InProcess {
        kind: "test.write-files".to_string(),
        payload: br#"{"/hello.txt":"hi\n","/etc/data.txt":"changed\n"}"#.to_vec(),
    };
    let (outcome, _) = run(&spec).unwrap();
    assert!(outcome.success());
    assert_eq!(f.upper_entries(), ["etc", "etc/data.txt", "hello.txt"]);
    assert_eq!(
        std::fs::read_to_string(f.upper().join("hello.txt")).unwrap(),
        "hi\n"
    );
    assert_eq!(
        std::fs::read_to_string(f.path("lower/etc/data.txt")).unwrap(),
        "lower\n"
    );

    spec.action = Action::InProcess {
        kind: "no.such.kind".to_string(),
        payload: vec![],
    };
    let err = run(&spec).unwrap_err();
    assert!(matches!(err, ExecError::UnknownInProcess { .. }), "{err}");

    // A handler's error crosses from the helper as its message, under the handler's name.
    spec.action = Action::InProcess {
        kind: "test.write-files".to_string(),
        payload: br#"{"/no/such/dir/f":"x"}"#.to_vec(),
    };
    let err = run(&spec).unwrap_err();
    let ExecError::InProcess { kind, message } = &err else {
        panic!("not a handler error: {err}");
    };
    assert_eq!(kind, "test.write-files");
    assert!(
        message.ends_with("/no/such/dir/f: No such file or directory (os error 2)"),
        "{message}"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn scratch_rootfs_gets_no_stub_dirs_in_upper() {
    require_sandbox();
    let f = Fixture::new();
    // Two lowers, bottom to top: the upper one overrides a file of the bottom one.
    let top = f.path("top");
    std::fs::create_dir_all(top.join("etc")).unwrap();
    std::fs::write(top.join("etc/data.txt"), "top\n").unwrap();
    let mut spec = f.spec(&["cat", "/etc/data.txt"]);
    spec.overlays[0].lower.push(top);
    assert_eq!(run_ok(&spec), ["top"]);
    // The fixture rootfs has no /proc, /dev, /sys: their mount points must not stay in upper.
    assert_eq!(f.upper_entries(), Vec::<String>::new());
}

/// The uid and gid of `name` in `/etc/passwd` (where `useradd` puts the test users).
fn passwd_ids(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    engine::userdb::parse_passwd(&passwd)
        .into_iter()
        .find(|entry| entry.name == name)
        .map(|entry| (entry.uid, entry.gid))
}

/// Creates the `buildertest` user with subordinate ids, if missing.
fn ensure_test_user() -> Result<(u32, u32), String> {
    const NAME: &str = "buildertest";
    if passwd_ids(NAME).is_none() {
        let status = std::process::Command::new("useradd")
            .args(["-m", NAME])
            .status()
            .map_err(|e| format!("useradd: {e}"))?;
        if !status.success() {
            return Err(format!("useradd {NAME}: {status}"));
        }
    }
    for file in ["/etc/subuid", "/etc/subgid"] {
        let content = std::fs::read_to_string(file).unwrap_or_default();
        if !content.lines().any(|l| l.starts_with("buildertest:")) {
            let mut content = content;
            content.push_str("buildertest:300000:65536\n");
            std::fs::write(file, content).map_err(|e| format!("{file}: {e}"))?;
        }
    }
    passwd_ids(NAME).ok_or_else(|| "user missing after useradd".to_string())
}

/// The subordinate uid ranges of `buildertest`, in file order (useradd may have allocated one
/// besides ours); the sandbox maps them all, one after the other from container uid 1.
fn subuid_ranges() -> Vec<(u64, u64)> {
    let content = std::fs::read_to_string("/etc/subuid").unwrap();
    content
        .lines()
        .filter_map(|l| l.strip_prefix("buildertest:"))
        .map(|l| {
            let (start, count) = l.split_once(':').unwrap();
            (start.parse().unwrap(), count.parse().unwrap())
        })
        .collect()
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn rootless_sandbox_runs_as_a_plain_user() {
    require_sandbox();
    let (uid, gid) = ensure_test_user().unwrap_or_else(|e| panic!("rootless test user: {e}"));
    let f = Fixture::new();
    // The plain user must reach the helper binary and own the build directories.
    let helper = f.path("helper");
    std::fs::copy(HELPER, &helper).unwrap();
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in walkdir::WalkDir::new(f.dir.path()) {
        let entry = entry.unwrap();
        std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid)).unwrap();
    }
    let mut spec = f.spec(&[
        "sh",
        "-c",
        "echo $$; id -u; cat /proc/self/uid_map; rm /etc/data.txt; echo x > /newfile; \
         mkdir /owned && chown 1000:1000 /owned && ls -ln / | grep owned; cat /run/secrets/token",
    ]);
    spec.network = Network::None;
    spec.mounts = vec![MountSpec {
        target: PathBuf::from("/run/secrets/token"),
        kind: MountKind::File {
            contents: b"s3cret\n".to_vec(),
            mode: 0o400,
            uid: 0,
            gid: 0,
        },
    }];
    // busybox chown needs the applet.
    std::os::unix::fs::symlink("busybox", f.path("lower/bin/chown")).unwrap();
    std::os::unix::fs::lchown(f.path("lower/bin/chown"), Some(uid), Some(gid)).unwrap();
    let spec_file = f.path("spec.json");
    std::fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    let output = std::process::Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--init-groups".to_string(),
            "--reset-env".to_string(),
        ])
        .arg(&helper)
        .arg("run-spec")
        .arg(&spec_file)
        .env("TMPDIR", f.dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("{e}: {stdout} {}", String::from_utf8_lossy(&output.stderr)));
    assert_eq!(report["exit_code"], 0, "{report}");
    let lines: Vec<String> = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(lines[0], "1");
    assert_eq!(lines[1], "0", "root inside the user namespace");
    let uid_map: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(uid_map, ["0", &uid.to_string(), "1"]);
    let ranges = subuid_ranges();
    let mut inside = 1;
    for (i, (start, count)) in ranges.iter().enumerate() {
        let sub_map: Vec<&str> = lines[3 + i].split_whitespace().collect();
        assert_eq!(
            sub_map,
            [inside.to_string(), start.to_string(), count.to_string()]
        );
        inside += count;
    }
    let sub_start = ranges[0].0;
    let lines = &lines[2 + ranges.len()..];
    assert!(lines[1].contains("1000"), "{lines:?}");
    assert_eq!(lines[2], "s3cret");
    // On the host the upper holds the user's own ids and the subordinate ones.
    let owned = std::fs::symlink_metadata(f.upper().join("owned")).unwrap();
    assert_eq!(u64::from(owned.uid()), sub_start + 999);
    let whiteout = std::fs::symlink_metadata(f.upper().join("etc/data.txt")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(
        f.upper_entries(),
        ["etc", "etc/data.txt", "newfile", "owned"]
    );

    // With the host's network, sysfs cannot be mounted from a user namespace: a read-only bind
    // of the host's stands in.
    let mut spec = f.spec(&["sh", "-c", "ls /sys/class/net | grep -c .; echo x > /sys/x"]);
    spec.overlays[0].upper = Some(UpperDir {
        upper: f.path("upper1"),
        work: f.path("work1"),
    });
    let report = run_as(uid, gid, &helper, &spec, f.dir.path());
    assert_eq!(report["exit_code"], 1, "/sys is read-only: {report}");
    let text = report["lines"].to_string();
    assert!(text.contains("Read-only file system"), "{text}");

    // File operations run in the same user namespace, as root of the container.
    let mut spec = f.spec(&[]);
    spec.overlays[0].upper = Some(UpperDir {
        upper: f.path("upper2"),
        work: f.path("work2"),
    });
    spec.action = Action::InProcess {
        kind: "test.write-files".to_string(),
        payload: br#"{"/copied.txt":"data\n"}"#.to_vec(),
    };
    let report = run_as(uid, gid, &helper, &spec, f.dir.path());
    assert_eq!(report["exit_code"], 0, "{report}");
    let copied = std::fs::symlink_metadata(f.path("upper2/copied.txt")).unwrap();
    assert_eq!(copied.uid(), uid, "container root is the user on the host");
    assert_eq!(
        std::fs::read_to_string(f.path("upper2/copied.txt")).unwrap(),
        "data\n"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn rootless_without_subordinate_ids_maps_only_the_user() {
    require_sandbox();
    const NAME: &str = "buildertest2";
    if passwd_ids(NAME).is_none() {
        let created = std::process::Command::new("useradd")
            .args(["-m", "-K", "SUB_UID_COUNT=0", "-K", "SUB_GID_COUNT=0", NAME])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(created, "cannot create the test user {NAME}");
    }
    let subuids = std::fs::read_to_string("/etc/subuid").unwrap_or_default();
    assert!(
        !subuids.lines().any(|l| l.starts_with("buildertest2:")),
        "{NAME} must have no subordinate ids for this test"
    );
    let (uid, gid) = passwd_ids(NAME).expect("the test user is in /etc/passwd");
    let f = Fixture::new();
    let helper = f.path("helper");
    std::fs::copy(HELPER, &helper).unwrap();
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in walkdir::WalkDir::new(f.dir.path()) {
        std::os::unix::fs::lchown(entry.unwrap().path(), Some(uid), Some(gid)).unwrap();
    }
    let spec = f.spec(&["sh", "-c", "id -u; cat /proc/self/uid_map; echo x > /f"]);
    let report = run_as(uid, gid, &helper, &spec, f.dir.path());
    assert_eq!(report["exit_code"], 0, "{report}");
    let lines = report["lines"].as_array().unwrap();
    assert_eq!(lines[0], "0");
    let map: Vec<&str> = lines[1].as_str().unwrap().split_whitespace().collect();
    assert_eq!(map, ["0", &uid.to_string(), "1"]);
    assert_eq!(f.upper_entries(), ["f"]);

    let mut spec = f.spec(&["true"]);
    spec.overlays[0].upper = Some(UpperDir {
        upper: f.path("upper1"),
        work: f.path("work1"),
    });
    if let Action::Exec(exec) = &mut spec.action {
        exec.user = ExecUser {
            uid: 5,
            gid: 5,
            additional_gids: vec![],
        }
        .into();
    }
    let report = run_as(uid, gid, &helper, &spec, f.dir.path());
    let error = report["error"].as_str().unwrap_or_default();
    assert!(error.contains("group 5 is not mapped"), "{report}");
}

/// Runs `spec` through `helper run-spec` as the given user; returns its JSON report.
fn run_as(uid: u32, gid: u32, helper: &Path, spec: &SandboxSpec, tmp: &Path) -> serde_json::Value {
    let spec_file = tmp.join("spec-run-as.json");
    std::fs::write(&spec_file, serde_json::to_vec(spec).unwrap()).unwrap();
    let output = std::process::Command::new("setpriv")
        .args([
            format!("--reuid={uid}"),
            format!("--regid={gid}"),
            "--init-groups".to_string(),
            "--reset-env".to_string(),
        ])
        .arg(helper)
        .arg("run-spec")
        .arg(&spec_file)
        .env("TMPDIR", tmp)
        .output()
        .unwrap();
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {} {}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// The rule: a step has no controlling terminal of the host. The runner is started under a
/// pseudo-terminal (`script`); the step (the test helper's `tty-probe`, with the host's
/// libraries bound in read-only) cannot open /dev/tty and TIOCSTI fails on each of its fds.
/// Outside the sandbox, the same probe opens the terminal, so the set-up does give one.
#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn step_cannot_reach_the_terminal_of_the_build() {
    require_sandbox();
    if !Path::new("/usr/bin/script").exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs script (util-linux)"
        );
        eprintln!("skipping: script is missing");
        return;
    }
    let f = Fixture::new();
    let under_pty = |command: String| {
        let out = std::process::Command::new("script")
            .args(["-q", "-e", "-c", &command])
            .arg(f.path("typescript"))
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let outside = under_pty(format!("{HELPER} tty-probe"));
    assert!(
        outside.contains("open /dev/tty: ok"),
        "script gives no terminal here: {outside}"
    );

    let mut spec = f.spec(&["/probe", "tty-probe"]);
    let ro = |source: &str, target: &str| MountSpec {
        target: target.into(),
        kind: MountKind::Bind {
            source: source.into(),
            access: BindAccess::ReadOnly,
        },
    };
    spec.mounts = vec![ro(HELPER, "/probe")];
    for dir in ["/lib", "/lib64", "/usr/lib"] {
        if Path::new(dir).is_dir() {
            spec.mounts.push(ro(dir, dir));
        }
    }
    let spec_file = f.path("spec.json");
    std::fs::write(&spec_file, serde_json::to_vec(&spec).unwrap()).unwrap();
    let inside = under_pty(format!("{HELPER} run-spec {}", spec_file.display()));
    let report: serde_json::Value = serde_json::from_str(
        inside
            .lines()
            .find(|l| l.starts_with('{'))
            .unwrap_or_else(|| panic!("no report: {inside}")),
    )
    .unwrap();
    let lines: Vec<&str> = report["lines"]
        .as_array()
        .unwrap_or_else(|| panic!("{report}"))
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    assert_eq!(
        lines,
        [
            "open /dev/tty: No such device or address (os error 6)",
            "TIOCSTI fd 0: Inappropriate ioctl for device (os error 25)",
            "TIOCSTI fd 1: Inappropriate ioctl for device (os error 25)",
            "TIOCSTI fd 2: Inappropriate ioctl for device (os error 25)",
        ],
        "{report}"
    );
}

/// A rootless step on the default network gets its own namespace with slirp4netns's `tap0`
/// (slirp4netns joins the sandbox's user namespace to reach it), or, where the user may not
/// open /dev/net/tun, a clear error.
#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn rootless_step_gets_a_nat_network_of_its_own() {
    require_sandbox();
    if !std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join("slirp4netns").is_file())
    {
        assert!(std::env::var_os("CI").is_none(), "CI needs slirp4netns");
        eprintln!("skipping: slirp4netns is missing");
        return;
    }
    let (uid, gid) = ensure_test_user().expect("test user");
    let f = Fixture::new();
    let helper = f.path("helper");
    std::fs::copy(HELPER, &helper).unwrap();
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for entry in walkdir::WalkDir::new(f.dir.path()) {
        let entry = entry.unwrap();
        std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid)).unwrap();
    }
    let mut spec = f.spec(&[
        "sh",
        "-c",
        "grep -o '^ *[a-z0-9]*:' /proc/net/dev | tr -d ' :'",
    ]);
    spec.network = Network::Nat;
    let report = run_as(uid, gid, &helper, &spec, f.dir.path());
    // slirp4netns needs /dev/net/tun, which some machines keep for root (mode 0600): the step
    // then fails with slirp4netns's reason, not with a network that silently is the host's.
    let tun_open_to_all = std::fs::metadata("/dev/net/tun")
        .map(|m| m.permissions().mode() & 0o006 == 0o006)
        .unwrap_or(false);
    if !tun_open_to_all {
        let error = report["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("slirp4netns") && error.contains("/dev/net/tun"),
            "{report}"
        );
        return;
    }
    assert_eq!(report["exit_code"], 0, "{report}");
    let mut interfaces: Vec<&str> = report["lines"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|l| l.as_str())
        .collect();
    interfaces.sort();
    assert_eq!(interfaces, ["lo", "tap0"], "{report}");
}

/// Docker's seccomp profile holds in a step, with its argument rules: a probe (the test helper
/// with the host's libraries bound in) gets EPERM for a personality outside the allowed five,
/// unshare, keyctl and an AF_VSOCK socket, ENOSYS for clone3, and still starts a thread.
#[test]
#[cfg_attr(
    any(missing_root, missing_busybox),
    ignore = "needs root and /usr/bin/busybox"
)]
fn step_runs_under_dockers_seccomp_profile() {
    require_sandbox();
    let f = Fixture::new();
    let mut spec = f.spec(&["/probe", "seccomp-probe"]);
    let ro = |source: &str, target: &str| MountSpec {
        target: target.into(),
        kind: MountKind::Bind {
            source: source.into(),
            access: BindAccess::ReadOnly,
        },
    };
    spec.mounts = vec![ro(HELPER, "/probe")];
    for dir in ["/lib", "/lib64", "/usr/lib"] {
        if Path::new(dir).is_dir() {
            spec.mounts.push(ro(dir, dir));
        }
    }
    let expected = [
        "personality(query): ok",
        "personality(0x4000000): Operation not permitted (os error 1)",
        "unshare(CLONE_NEWUSER): Operation not permitted (os error 1)",
        "keyctl: Operation not permitted (os error 1)",
        "socket(AF_VSOCK): Operation not permitted (os error 1)",
        "socket(AF_INET): ok",
        "clone3: Function not implemented (os error 38)",
        "thread: ok",
    ];
    assert_eq!(run_ok(&spec), expected);
    // Without the filter (RUN --security=insecure) the same calls get the kernel's own answers.
    if let Action::Exec(exec) = &mut spec.action {
        exec.insecure = true;
    }
    let insecure = run_ok(&spec);
    assert_eq!(insecure[2], "unshare(CLONE_NEWUSER): ok", "{insecure:?}");
    assert_ne!(insecure[6], expected[6], "{insecure:?}");
}
