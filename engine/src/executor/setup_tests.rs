//! The order and arguments of the kernel calls that set up a sandbox, checked without root
//! through the recording [`Kernel`](super::kernel::Kernel): the helper's part (namespaces, id
//! maps, the state tmpfs, the overlays, fork, wait, unmount) and the step's pid 1's part (its
//! mount namespace, the root's mounts, `pivot_root`, signals, capabilities, credentials,
//! `no_new_privs`, seccomp, `execve`). The file work around the calls (mount points, the state
//! directory, `/etc/passwd` and `PATH` in the root) runs for real in a temporary directory.

use super::container::{self, ChildContext};
use super::error::ExecError;
use super::helper;
use super::kernel::recording::RecordingKernel;
use super::kernel::ProcessIds;
use super::mount_stubs::StubReport;
use super::protocol::{recv, send, HelperMessage, HelperRequest, RunnerReply};
use super::spec::{
    Action, ExecSpec, MountKind, Network, OverlayMount, SandboxSpec, StepUser, UpperDir,
};
use rustix::fd::OwnedFd;
use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

/// What the helper's part ends with: the step's exit code and signal.
type HelperResult = Result<(i32, Option<i32>), ExecError>;

/// A step over two layers in a temporary directory (`$T` in the expected lines).
struct Sandbox {
    _dir: tempfile::TempDir,
    base: PathBuf,
    request: HelperRequest,
}

impl Sandbox {
    /// `sh -c true` in `/src` as `user`, with the name-resolution files of `network`.
    fn new(network: Network, user: &str) -> Sandbox {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        for d in [
            "layers/base",
            "layers/top",
            "step/diff",
            "step/work",
            "step/rootfs/bin",
            "step/rootfs/etc",
            "state",
        ] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let rootfs = base.join("step/rootfs");
        std::fs::write(
            rootfs.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            rootfs.join("etc/group"),
            "root:x:0:\nwheel:x:10:app\napp:x:1000:\n",
        )
        .unwrap();
        std::fs::write(rootfs.join("bin/sh"), "").unwrap();
        std::fs::set_permissions(rootfs.join("bin/sh"), PermissionsExt::from_mode(0o755)).unwrap();
        // The files are written for real: owned by whoever runs the test.
        let mut mounts = super::network_files(network, "buildsandbox");
        for mount in &mut mounts {
            if let MountKind::File { uid, gid, .. } = &mut mount.kind {
                *uid = rustix::process::getuid().as_raw();
                *gid = rustix::process::getgid().as_raw();
            }
        }
        let spec = SandboxSpec {
            overlays: vec![OverlayMount {
                lower: vec![base.join("layers/base"), base.join("layers/top")],
                upper: Some(UpperDir {
                    upper: base.join("step/diff"),
                    work: base.join("step/work"),
                }),
                target: rootfs.clone(),
            }],
            mounts,
            network,
            hostname: "buildsandbox".into(),
            action: Action::Exec(ExecSpec {
                rootfs,
                args: vec!["sh".into(), "-c".into(), "true".into()],
                env: vec!["PATH=/usr/bin:/bin".into()],
                cwd: "/src".into(),
                user: StepUser::Named(user.into()),
                insecure: false,
                shm_size_bytes: None,
                rlimits: Vec::new(),
            }),
        };
        Sandbox {
            _dir: dir,
            request: HelperRequest {
                spec,
                state_dir: base.join("state"),
                console_fd: None,
            },
            base,
        }
    }

    /// Runs the helper's part with the runner's `replies` queued: its result, and the messages
    /// it sent to the runner.
    fn helper(
        &self,
        k: &mut RecordingKernel,
        replies: &[RunnerReply],
    ) -> (HelperResult, Vec<String>) {
        let (ours, runner) = UnixStream::pair().unwrap();
        send(&runner, &self.request).unwrap();
        for reply in replies {
            send(&runner, reply).unwrap();
        }
        let ctl = File::from(OwnedFd::from(ours));
        let mut reader = BufReader::new(ctl.try_clone().unwrap());
        let result = helper::run(k, &ctl, &mut reader);
        drop((ctl, reader));
        let mut from_helper = BufReader::new(runner);
        let mut sent = Vec::new();
        while let Some(message) = recv::<HelperMessage>(&mut from_helper).unwrap() {
            sent.push(format!("{message:?}"));
        }
        (result, sent)
    }

    /// Runs the step's pid 1's part up to `execve`: its result and the stubs it reported.
    fn pid1(&self, k: &mut RecordingKernel, rootless: bool) -> (ExecError, StubReport) {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).unwrap();
        let context = ChildContext {
            ctl: -1,
            stub_pipe: write,
            last_cap: k.last_cap,
            rootless,
        };
        let error = container::run(k, &self.request, context)
            .expect_err("the recorded execve never replaces the process");
        let mut bytes = Vec::new();
        File::from(read).read_to_end(&mut bytes).unwrap();
        (error, serde_json::from_slice(&bytes).unwrap_or_default())
    }

    /// The recorded lines with the temporary directory shown as `$T`.
    fn lines(&self, k: &RecordingKernel) -> Vec<String> {
        let base = self.base.display().to_string();
        k.log.iter().map(|l| l.replace(&base, "$T")).collect()
    }
}

fn owned(lines: &[&str]) -> Vec<String> {
    lines.iter().map(|l| l.to_string()).collect()
}

/// A rootless helper: uid and gid 1000 outside.
fn rootless_kernel() -> RecordingKernel {
    RecordingKernel {
        ids: ProcessIds {
            euid: 1000,
            uid: 1000,
            gid: 1000,
            pid: 100,
        },
        ..RecordingKernel::default()
    }
}

const OVERLAY_ROOT: &str = "new overlay $T/step/rootfs [lowerdir+=$T/layers/top \
    lowerdir+=$T/layers/base upperdir=$T/step/diff workdir=$T/step/work volatile \
    redirect_dir=off metacopy=off index=off] MountAttrFlags(MOUNT_ATTR_NODEV)";

const OVERLAY_ROOTLESS: &str = "new overlay $T/step/rootfs [lowerdir+=$T/layers/top \
    lowerdir+=$T/layers/base upperdir=$T/step/diff workdir=$T/step/work volatile \
    redirect_dir=nofollow metacopy=off index=off userxattr] MountAttrFlags(MOUNT_ATTR_NODEV)";

/// The helper's calls from the state tmpfs to the end of a step that exits 0.
fn helper_mounts_to_end(overlay: &str) -> Vec<String> {
    owned(&[
        "new tmpfs $T/state [mode=700] MountAttrFlags(MOUNT_ATTR_NODEV)",
        "attach tmpfs at $T/state",
        overlay,
        "attach overlay at $T/step/rootfs",
        "fork",
        "sigaction SIGTERM -> kill 101",
        "waitpid 101",
        "umount2 $T/step/rootfs MNT_DETACH",
    ])
}

/// Pid 1's calls from its mount namespace to `pivot_root`, `sysfs` as given.
fn pid1_root_mounts(sysfs: &[&str]) -> Vec<String> {
    let mut lines = owned(&[
        "prctl PR_SET_PDEATHSIG SIGKILL",
        "unshare UnshareFlags(NEWNS)",
        "clone $T/step/rootfs for $T/step/rootfs MountAttrFlags(MOUNT_ATTR_NODEV)",
        "attach bind at $T/step/rootfs",
        "new proc /proc [] MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)",
        "attach proc at /proc",
        "new tmpfs /dev [mode=755 size=65536k] MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_STRICTATIME)",
        "attach tmpfs at /dev",
    ]);
    for dev in ["null", "zero", "full", "random", "urandom", "tty"] {
        lines.push(format!(
            "clone /dev/{dev} for /dev/{dev} MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)"
        ));
        lines.push(format!("attach /dev/{dev} at /dev/{dev}"));
    }
    lines.extend(owned(&[
        "new devpts /dev/pts [newinstance ptmxmode=0666 mode=0620 gid=5] MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)",
        "attach devpts at /dev/pts",
        "new tmpfs /dev/shm [mode=1777 size=65536k] MountAttrFlags(MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)",
        "attach tmpfs at /dev/shm",
    ]));
    lines.extend(owned(sysfs));
    lines.extend(owned(&[
        "clone $T/state/file-0 for /etc/hosts MountAttrFlags(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV)",
        "attach file at /etc/hosts",
        "clone $T/state/file-1 for /etc/resolv.conf MountAttrFlags(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV)",
        "attach file at /etc/resolv.conf",
        "pivot_root $T/step/rootfs",
    ]));
    lines
}

const SYSFS: &[&str] = &[
    "new sysfs /sys [] MountAttrFlags(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)",
    "attach sysfs at /sys",
];

/// Pid 1's calls after `pivot_root` up to the credentials: signals, session, fds, working
/// directory, and the bounding set cut to Docker's 14 default capabilities (of 41).
fn pid1_before_credentials() -> Vec<String> {
    let mut lines = owned(&[
        "reset signals",
        "setsid",
        "close_range 3.. CLOEXEC",
        "mkdir -p /src",
    ]);
    // Kept: chown 0, dac_override 1, fowner 3, fsetid 4, kill 5, setgid 6, setuid 7, setpcap 8,
    // net_bind_service 10, net_raw 13, sys_chroot 18, mknod 27, audit_write 29, setfcap 31.
    let dropped = [
        2, 9, 11, 12, 14, 15, 16, 17, 19, 20, 21, 22, 23, 24, 25, 26, 28, 30,
    ]
    .into_iter()
    .chain(32..=40);
    lines.extend(dropped.map(|cap| format!("capbset drop {cap}")));
    lines
}

/// Docker's default capabilities as a bit set (the bits kept above).
const DOCKER_CAPS: &str = "capset 0xa80425fb";

/// Pid 1's last calls: `no_new_privs`, the parent-death signal again, the working directory,
/// seccomp, `execve` of `sh` found in the root's `PATH`.
fn pid1_exec() -> Vec<String> {
    let filters = super::seccomp::default_filters().unwrap().len();
    vec![
        "prctl PR_SET_NO_NEW_PRIVS".to_string(),
        "prctl PR_SET_PDEATHSIG SIGKILL".to_string(),
        "chdir /src".to_string(),
        format!("seccomp {filters} filters"),
        r#"execve "/bin/sh" ["sh", "-c", "true"] ["PATH=/usr/bin:/bin"]"#.to_string(),
    ]
}

fn concat(parts: &[Vec<String>]) -> Vec<String> {
    parts.concat()
}

#[test]
fn root_sandbox_with_the_nat_network() {
    let sandbox = Sandbox::new(Network::Nat, "app");
    let mut k = RecordingKernel::default();
    let (result, sent) = sandbox.helper(&mut k, &[RunnerReply::NetworkReady]);
    assert_eq!(result, Ok((0, None)));
    assert_eq!(sent, ["NeedNetwork { pid: 100 }"]);
    let expected = concat(&[
        owned(&[
            "prctl PR_SET_PDEATHSIG SIGKILL",
            "unshare UnshareFlags(NEWIPC | NEWNET | NEWNS | NEWPID | NEWUTS)",
            "mount / MS_REC|MS_PRIVATE",
            "sethostname buildsandbox",
            "lo up",
        ]),
        helper_mounts_to_end(OVERLAY_ROOT),
    ]);
    assert_eq!(sandbox.lines(&k), expected);
    // The helper removed the overlay's work directory after the step.
    assert!(!sandbox.base.join("step/work").exists());

    let mut k = RecordingKernel::default();
    let (error, report) = sandbox.pid1(&mut k, false);
    assert_eq!(error.to_string(), "exec: \"sh\": recorded, not executed");
    let expected = concat(&[
        pid1_root_mounts(SYSFS),
        pid1_before_credentials(),
        // `app` is also in `wheel`; not root, so no capabilities are set.
        owned(&["setgroups [1000, 10]", "setresgid 1000", "setresuid 1000"]),
        pid1_exec(),
    ]);
    assert_eq!(sandbox.lines(&k), expected);
    let created: Vec<String> = report
        .created
        .iter()
        .map(|c| c.path.display().to_string())
        .collect();
    assert_eq!(
        created,
        ["proc", "dev", "sys", "etc/hosts", "etc/resolv.conf"]
    );
}

#[test]
fn rootless_sandbox_maps_itself_and_denies_setgroups() {
    let sandbox = Sandbox::new(Network::Nat, "root");
    let mut k = rootless_kernel();
    let (result, sent) = sandbox.helper(&mut k, &[RunnerReply::MapSelf, RunnerReply::NetworkReady]);
    assert_eq!(result, Ok((0, None)));
    assert_eq!(sent, ["NeedIdMap { pid: 100 }", "NeedNetwork { pid: 100 }"]);
    let expected = concat(&[
        owned(&[
            "prctl PR_SET_PDEATHSIG SIGKILL",
            "unshare UnshareFlags(NEWUSER)",
            "write /proc/self/setgroups \"deny\"",
            "write /proc/self/uid_map \"0 1000 1\\n\"",
            "write /proc/self/gid_map \"0 1000 1\\n\"",
            "unshare UnshareFlags(NEWIPC | NEWNET | NEWNS | NEWPID | NEWUTS)",
            "mount / MS_REC|MS_PRIVATE",
            "sethostname buildsandbox",
            "lo up",
        ]),
        helper_mounts_to_end(OVERLAY_ROOTLESS),
    ]);
    assert_eq!(sandbox.lines(&k), expected);

    // In the namespace: root, and `setgroups` denied.
    let mut k = RecordingKernel {
        setgroups_denied: true,
        ..RecordingKernel::default()
    };
    let (error, _) = sandbox.pid1(&mut k, true);
    assert!(matches!(error, ExecError::Exec { .. }), "{error}");
    let expected = concat(&[
        pid1_root_mounts(SYSFS),
        pid1_before_credentials(),
        // No `setgroups` (denied, and root has no other group); root keeps Docker's set.
        owned(&["setresgid 0", "setresuid 0", DOCKER_CAPS]),
        pid1_exec(),
    ]);
    assert_eq!(sandbox.lines(&k), expected);
}

#[test]
fn rootless_sandbox_with_subordinate_ids_leaves_the_maps_to_the_runner() {
    let sandbox = Sandbox::new(Network::Nat, "app");
    let mut k = rootless_kernel();
    let (result, _) = sandbox.helper(&mut k, &[RunnerReply::Mapped, RunnerReply::NetworkReady]);
    assert_eq!(result, Ok((0, None)));
    assert_eq!(
        sandbox.lines(&k)[..3],
        [
            "prctl PR_SET_PDEATHSIG SIGKILL",
            "unshare UnshareFlags(NEWUSER)",
            "unshare UnshareFlags(NEWIPC | NEWNET | NEWNS | NEWPID | NEWUTS)",
        ]
    );

    // newgidmap allows setgroups: `app`'s supplementary group is set.
    let mut k = RecordingKernel::default();
    sandbox.pid1(&mut k, true);
    let lines = sandbox.lines(&k);
    let at = lines
        .iter()
        .position(|l| l == "setgroups [1000, 10]")
        .unwrap();
    assert_eq!(lines[at + 1..at + 3], ["setresgid 1000", "setresuid 1000"]);
}

#[test]
fn host_network_keeps_the_network_namespace() {
    let sandbox = Sandbox::new(Network::Host, "app");
    let mut k = RecordingKernel::default();
    let (result, sent) = sandbox.helper(&mut k, &[]);
    assert_eq!(result, Ok((0, None)));
    assert!(sent.is_empty(), "{sent:?}");
    let expected = concat(&[
        owned(&[
            "prctl PR_SET_PDEATHSIG SIGKILL",
            "unshare UnshareFlags(NEWIPC | NEWNS | NEWPID | NEWUTS)",
            "mount / MS_REC|MS_PRIVATE",
            "sethostname buildsandbox",
        ]),
        helper_mounts_to_end(OVERLAY_ROOT),
    ]);
    assert_eq!(sandbox.lines(&k), expected);
}

#[test]
fn rootless_host_network_binds_the_hosts_sys_when_sysfs_is_refused() {
    let sandbox = Sandbox::new(Network::Host, "root");
    // A user namespace that does not own the network namespace may not mount sysfs.
    let mut k = RecordingKernel {
        setgroups_denied: true,
        ..RecordingKernel::failing_at("new sysfs")
    };
    sandbox.pid1(&mut k, true);
    let sysfs = [
        "new sysfs /sys [] MountAttrFlags(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC) -> EPERM",
        "clone /sys for /sys MountAttrFlags(MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)",
        "attach sysfs at /sys",
    ];
    let expected = concat(&[
        pid1_root_mounts(&sysfs),
        pid1_before_credentials(),
        owned(&["setresgid 0", "setresuid 0", DOCKER_CAPS]),
        pid1_exec(),
    ]);
    assert_eq!(sandbox.lines(&k), expected);
}

#[test]
fn no_network_has_only_a_loopback() {
    let sandbox = Sandbox::new(Network::None, "app");
    let mut k = RecordingKernel::default();
    let (result, sent) = sandbox.helper(&mut k, &[]);
    assert_eq!(result, Ok((0, None)));
    // No slirp4netns: the runner is never asked to connect the namespace.
    assert!(sent.is_empty(), "{sent:?}");
    let expected = concat(&[
        owned(&[
            "prctl PR_SET_PDEATHSIG SIGKILL",
            "unshare UnshareFlags(NEWIPC | NEWNET | NEWNS | NEWPID | NEWUTS)",
            "mount / MS_REC|MS_PRIVATE",
            "sethostname buildsandbox",
            "lo up",
        ]),
        helper_mounts_to_end(OVERLAY_ROOT),
    ]);
    assert_eq!(sandbox.lines(&k), expected);
}

#[test]
fn a_refused_unshare_stops_the_helper_before_any_mount() {
    let sandbox = Sandbox::new(Network::Nat, "app");
    let mut k = RecordingKernel::failing_at("unshare UnshareFlags(NEWIPC");
    let (result, sent) = sandbox.helper(&mut k, &[RunnerReply::NetworkReady]);
    let error = result.unwrap_err();
    assert_eq!(
        error.to_string(),
        "unshare UnshareFlags(NEWIPC | NEWNET | NEWNS | NEWPID | NEWUTS): operation not permitted"
    );
    assert!(sent.is_empty(), "{sent:?}");
    assert_eq!(
        sandbox.lines(&k),
        [
            "prctl PR_SET_PDEATHSIG SIGKILL",
            "unshare UnshareFlags(NEWIPC | NEWNET | NEWNS | NEWPID | NEWUTS) -> EPERM",
        ]
    );
}

#[test]
fn a_refused_overlay_stops_the_helper_before_the_step_forks() {
    let sandbox = Sandbox::new(Network::Host, "app");
    let mut k = RecordingKernel::failing_at("attach overlay");
    let (result, _) = sandbox.helper(&mut k, &[]);
    assert_eq!(
        result.unwrap_err().to_string(),
        "attach overlay at $T/step/rootfs: operation not permitted"
            .replace("$T", &sandbox.base.display().to_string())
    );
    let lines = sandbox.lines(&k);
    // Nothing was attached, so nothing is unmounted; no fork.
    assert_eq!(
        lines[lines.len() - 2..],
        [OVERLAY_ROOT, "attach overlay at $T/step/rootfs -> EPERM"]
    );
    // The work directory is still cleaned up.
    assert!(!sandbox.base.join("step/work").exists());
}

#[test]
fn a_refused_pivot_root_stops_pid1_before_its_credentials_change() {
    let sandbox = Sandbox::new(Network::Nat, "app");
    let mut k = RecordingKernel::failing_at("pivot_root");
    let (error, report) = sandbox.pid1(&mut k, false);
    assert_eq!(
        error.to_string(),
        "pivot_root $T/step/rootfs: operation not permitted"
            .replace("$T", &sandbox.base.display().to_string())
    );
    let mut expected = pid1_root_mounts(SYSFS);
    *expected.last_mut().unwrap() += " -> EPERM";
    assert_eq!(sandbox.lines(&k), expected);
    // The stubs made before the failure are still reported, for removal.
    assert_eq!(report.created.len(), 5);
}

#[test]
fn a_refused_setresuid_stops_pid1_before_exec() {
    let sandbox = Sandbox::new(Network::Nat, "app");
    let mut k = RecordingKernel::failing_at("setresuid");
    let (error, _) = sandbox.pid1(&mut k, false);
    assert_eq!(error.to_string(), "setresuid 1000: operation not permitted");
    let lines = sandbox.lines(&k);
    assert_eq!(
        lines[lines.len() - 3..],
        [
            "setgroups [1000, 10]",
            "setresgid 1000",
            "setresuid 1000 -> EPERM"
        ]
    );
}

#[test]
fn a_step_with_a_terminal_gets_its_pty_after_its_session_and_owns_it() {
    let mut sandbox = Sandbox::new(Network::Nat, "app");
    sandbox.request.console_fd = Some(7);
    let mut k = RecordingKernel::default();
    sandbox.pid1(&mut k, false);
    let lines = sandbox.lines(&k);
    let session = lines.iter().position(|l| l == "setsid").unwrap();
    assert_eq!(
        lines[session..session + 3],
        [
            "setsid",
            "attach a new pty via fd 7",
            "close_range 3.. CLOEXEC"
        ]
    );
    let owner = lines.iter().position(|l| l == "fchown 0 1000").unwrap();
    assert_eq!(
        lines[owner - 1..owner + 3],
        [
            "setgroups [1000, 10]",
            "fchown 0 1000",
            "setresgid 1000",
            "setresuid 1000"
        ]
    );
}

#[test]
fn ulimits_are_set_before_capabilities_are_dropped() {
    let mut sandbox = Sandbox::new(Network::Nat, "app");
    if let Action::Exec(exec) = &mut sandbox.request.spec.action {
        exec.rlimits = vec![crate::executor::spec::Rlimit {
            name: "nofile".into(),
            soft: Some(100),
            hard: Some(200),
        }];
    }
    let mut k = RecordingKernel::default();
    sandbox.pid1(&mut k, false);
    let lines = sandbox.lines(&k);
    let limit = lines
        .iter()
        .position(|l| l == "setrlimit nofile Some(100) Some(200)")
        .unwrap_or_else(|| panic!("no setrlimit in {lines:#?}"));
    let first_drop = lines
        .iter()
        .position(|l| l.starts_with("capbset drop"))
        .unwrap_or_else(|| panic!("no capability dropped in {lines:#?}"));
    assert!(limit < first_drop, "{lines:#?}");
}
