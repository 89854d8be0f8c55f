//! What a test needs from the machine, checked the same way at build time (to mark the test
//! ignored) and at run time (to fail it in CI).

use std::path::Path;

/// Something a test needs that not every machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Running as root: overlay mounts, namespaces, ownership.
    Root,
    /// A static busybox at `/usr/bin/busybox`, the base image of the end-to-end tests.
    Busybox,
    /// `skopeo`, a real consumer of our images.
    Skopeo,
    /// `umoci`, a real consumer of our images.
    Umoci,
    /// `dockerd` and its 20.10 client: `docker load`/`docker run` of our images.
    Docker,
    /// The Distribution registry (`docker-registry`).
    Registry,
    /// `newuidmap`/`newgidmap`, for rootless builds.
    Uidmap,
    /// `slirp4netns`, the default RUN network.
    Slirp4netns,
    /// `script` (util-linux), to give a test a terminal.
    Script,
    /// `ssh-agent`, `ssh-add` and `ssh-keygen`, for SSH agent forwarding.
    OpensshClient,
}

impl Need {
    /// Every need, in the order build scripts report them.
    pub const ALL: [Need; 10] = [
        Need::Root,
        Need::Busybox,
        Need::Skopeo,
        Need::Umoci,
        Need::Docker,
        Need::Registry,
        Need::Uidmap,
        Need::Slirp4netns,
        Need::Script,
        Need::OpensshClient,
    ];

    /// The cfg a build script sets when this need is missing (`missing_root`, ...).
    pub fn cfg(self) -> &'static str {
        match self {
            Need::Root => "missing_root",
            Need::Busybox => "missing_busybox",
            Need::Skopeo => "missing_skopeo",
            Need::Umoci => "missing_umoci",
            Need::Docker => "missing_docker",
            Need::Registry => "missing_registry",
            Need::Uidmap => "missing_uidmap",
            Need::Slirp4netns => "missing_slirp4netns",
            Need::Script => "missing_script",
            Need::OpensshClient => "missing_openssh_client",
        }
    }

    /// The files this need is, or nothing for [`Need::Root`].
    fn files(self) -> &'static [&'static str] {
        match self {
            Need::Root => &[],
            Need::Busybox => &["/usr/bin/busybox"],
            Need::Skopeo => &["/usr/bin/skopeo"],
            Need::Umoci => &["/usr/bin/umoci"],
            Need::Docker => &["/usr/sbin/dockerd", "/usr/bin/docker"],
            Need::Registry => &["/usr/bin/docker-registry"],
            Need::Uidmap => &["/usr/bin/newuidmap", "/usr/bin/newgidmap"],
            Need::Slirp4netns => &["/usr/bin/slirp4netns"],
            Need::Script => &["/usr/bin/script"],
            Need::OpensshClient => &[
                "/usr/bin/ssh-agent",
                "/usr/bin/ssh-add",
                "/usr/bin/ssh-keygen",
            ],
        }
    }

    /// How to get it, for the failure message.
    fn hint(self) -> &'static str {
        match self {
            Need::Root => "run the tests as root",
            Need::Busybox => "apt-get install busybox-static",
            Need::Skopeo => "apt-get install skopeo",
            Need::Umoci => "apt-get install umoci",
            Need::Docker => "apt-get install docker.io",
            Need::Registry => "apt-get install docker-registry",
            Need::Uidmap => "apt-get install uidmap",
            Need::Slirp4netns => "apt-get install slirp4netns",
            Need::Script => "apt-get install bsdutils",
            Need::OpensshClient => "apt-get install openssh-client",
        }
    }

    /// Whether this machine has it.
    pub fn is_met(self) -> bool {
        match self {
            Need::Root => rustix::process::geteuid().is_root(),
            other => other.files().iter().all(|f| Path::new(f).exists()),
        }
    }
}

/// Whether the `CI` environment variable is set: then no test may be skipped.
fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty())
}

/// Fails the calling test unless every need is met, naming what is missing and how to get it.
/// A test reaches this with a need missing only in CI (where its build script marked nothing
/// ignored) or when run with `--ignored`.
pub fn require(needs: &[Need]) {
    let missing: Vec<String> = needs
        .iter()
        .filter(|n| !n.is_met())
        .map(|n| format!("{n:?} ({})", n.hint()))
        .collect();
    if missing.is_empty() {
        return;
    }
    let why = if in_ci() {
        "CI is set, so this test may not be skipped"
    } else {
        "this test was run although its build script marked it ignored"
    };
    panic!("this machine lacks {}: {why}", missing.join(", "));
}

/// For a crate's build script: sets `missing_*` cfgs for what this machine lacks (none when `CI`
/// is set), declares them all, and reruns when `CI` changes or a tool is installed.
pub fn emit_cfgs() {
    println!("cargo::rerun-if-env-changed=CI");
    for dir in ["/usr/bin", "/usr/sbin"] {
        if Path::new(dir).is_dir() {
            println!("cargo::rerun-if-changed={dir}");
        }
    }
    let ci = in_ci();
    for need in Need::ALL {
        println!("cargo::rustc-check-cfg=cfg({})", need.cfg());
        if !ci && !need.is_met() {
            println!("cargo::rustc-cfg={}", need.cfg());
        }
    }
}
