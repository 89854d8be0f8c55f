//! What one sandboxed step is: the mounts to set up, the namespaces to make and the action to run.
//!
//! A [`SandboxSpec`] is plain data (serde): the runner serialises it to the helper process, which
//! does the privileged work. Paths named "host path" are seen from the machine running the build;
//! paths named "container path" are absolute paths inside the step's root filesystem.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Everything the sandbox helper needs to run one step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SandboxSpec {
    /// Overlay filesystems mounted (in this order) before the action runs, each at a host path.
    pub overlays: Vec<OverlayMount>,
    /// Extra mounts placed inside the root filesystem of an [`Action::Exec`] (ignored for
    /// [`Action::InProcess`]), applied in order after `/dev`, `/proc` and `/sys`.
    pub mounts: Vec<MountSpec>,
    /// Which network the step sees.
    pub network: Network,
    /// Host name inside the step's UTS namespace.
    pub hostname: String,
    /// What runs once the mounts are in place.
    pub action: Action,
}

/// One overlayfs mount.
///
/// `lower` lists read-only directories **bottom to top**: `lower[0]` is the base image's first
/// layer and the last entry wins on conflicts, the order of an image manifest's layer list.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OverlayMount {
    /// Read-only layers, bottom (first) to top (last). May be empty (`FROM scratch`).
    pub lower: Vec<PathBuf>,
    /// The writable layer; `None` mounts the overlay read-only.
    pub upper: Option<UpperDir>,
    /// Host path the overlay is mounted at (created if missing). Only the helper's private mount
    /// namespace sees the mount.
    pub target: PathBuf,
}

/// The writable half of an overlay: after the step, `upper` holds exactly the step's changes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpperDir {
    /// Host directory receiving the changes (created if missing).
    pub upper: PathBuf,
    /// Overlay work directory on the same filesystem as `upper`. It must be missing or empty;
    /// the runner creates it and the helper deletes it after the step.
    pub work: PathBuf,
}

/// A mount inside the step's root filesystem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MountSpec {
    /// Absolute container path. Symlinks are resolved inside the root filesystem, never outside.
    /// A missing target is created for the duration of the step and removed from the upper
    /// directory afterwards.
    pub target: PathBuf,
    /// What is mounted there.
    pub kind: MountKind,
}

/// The kinds of mounts a step may ask for.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum MountKind {
    /// A host file or directory bound into the root filesystem.
    Bind {
        /// Host path of the source.
        source: PathBuf,
        /// What happens to writes.
        access: BindAccess,
    },
    /// A stack of layer directories, or a path inside it: another stage's result
    /// (`RUN --mount=type=bind,from=stage,source=/dir`).
    Layers {
        /// Read-only layers, bottom (first) to top (last), as in [`OverlayMount::lower`].
        lower: Vec<PathBuf>,
        /// The path inside the stacked layers to mount (`/` for all of it); symlinks resolve
        /// inside the layers.
        subpath: PathBuf,
        /// [`BindAccess::ReadOnly`] or [`BindAccess::Discard`]; [`BindAccess::ReadWrite`] is
        /// refused, as a stack of layers has nowhere to keep writes.
        access: BindAccess,
    },
    /// An empty tmpfs.
    Tmpfs {
        /// Size limit in bytes (`None`: the kernel default, half of RAM).
        size_bytes: Option<u64>,
    },
    /// A read-only file with the given bytes, such as a secret, `/etc/hosts` or
    /// `/etc/resolv.conf`. The bytes live in a private tmpfs and never reach the upper directory.
    File {
        /// File content.
        contents: Vec<u8>,
        /// Permission bits.
        mode: u32,
        /// Owner inside the container.
        uid: u32,
        /// Group inside the container.
        gid: u32,
    },
}

/// How a bind mount treats writes.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum BindAccess {
    /// Writes fail with `EROFS`.
    ReadOnly,
    /// Writes go through to the host (cache mounts).
    ReadWrite,
    /// Writes succeed inside the step and are thrown away after it (a private overlay for a
    /// directory, a private copy for a file).
    Discard,
}

/// The network a step sees.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
pub enum Network {
    /// The host's network namespace (`RUN --network=host`).
    #[default]
    Host,
    /// A network namespace of its own whose only way out is user-mode NAT (`slirp4netns
    /// --disable-host-loopback`): the outside is reachable, the host's loopback services are
    /// not (the `RUN` default, as in rootless BuildKit).
    Nat,
    /// A fresh network namespace with only the loopback interface, brought up.
    None,
}

/// What the sandbox runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Action {
    /// A program run as pid 1 of a new pid namespace, with `rootfs` as its root.
    Exec(ExecSpec),
    /// A handler registered with [`crate::executor::register_in_process`], called in the
    /// helper's private mount namespace (and user namespace when rootless) after the overlays
    /// are mounted, without changing root. Used for file operations on an overlay rootfs.
    InProcess {
        /// Registered handler name.
        kind: String,
        /// Opaque input for the handler.
        payload: Vec<u8>,
    },
}

/// A program to run inside the root filesystem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecSpec {
    /// Host path that becomes `/`: usually the `target` of one of the overlays.
    pub rootfs: PathBuf,
    /// `argv`; `args[0]` is looked up in the `PATH` of `env` when it has no `/`.
    pub args: Vec<String>,
    /// The complete environment as `KEY=value` entries (nothing is inherited).
    pub env: Vec<String>,
    /// Working directory (container path), created if missing as `runc` does.
    pub cwd: PathBuf,
    /// Who the process runs as.
    pub user: StepUser,
    /// Runs without the seccomp filter and with every capability (`RUN --security=insecure`,
    /// granted by the `security.insecure` entitlement). Normally `false`: Docker's default
    /// seccomp profile and capability set.
    #[serde(default)]
    pub insecure: bool,
    /// Size of the step's `/dev/shm` tmpfs in bytes (`--shm-size`); `None`: 64 MiB, as Docker.
    #[serde(default)]
    pub shm_size_bytes: Option<u64>,
    /// Resource limits set on the step's process before it starts (`--ulimit`).
    #[serde(default)]
    pub rlimits: Vec<Rlimit>,
}

/// One resource limit of a step's process; `None` is unlimited.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Rlimit {
    /// The resource by Docker's name, one of [`RLIMIT_NAMES`].
    pub name: String,
    /// The soft limit.
    pub soft: Option<u64>,
    /// The hard limit.
    pub hard: Option<u64>,
}

/// The resource names `--ulimit` takes, as Docker spells them.
pub const RLIMIT_NAMES: &[&str] = &[
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// The user of a step: numeric ids, or a `USER` value resolved inside the sandbox.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum StepUser {
    /// Ids already resolved (for instance with [`crate::executor::user::resolve`]).
    Ids(ExecUser),
    /// A `USER` value (`name`, `uid`, `name:group`, `uid:gid`), resolved against the step's
    /// own root filesystem (`/etc/passwd`, `/etc/group`) after its mounts are in place, as
    /// BuildKit does.
    Named(String),
}

impl Default for StepUser {
    /// Root.
    fn default() -> Self {
        StepUser::Ids(ExecUser::default())
    }
}

impl From<ExecUser> for StepUser {
    fn from(ids: ExecUser) -> Self {
        StepUser::Ids(ids)
    }
}

/// Numeric credentials of a step's process, inside the container.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub additional_gids: Vec<u32>,
}
