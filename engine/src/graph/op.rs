//! What a vertex does: the operation kinds of the build graph.
//!
//! Every type here is plain data with a canonical serde form (no hash maps, fields in a fixed
//! order), so that a vertex digest computed over it is stable across runs and machines.
//!
//! Inputs are referred to by [`InputIndex`]: a position in the owning vertex's `inputs` list.

use serde::{Deserialize, Serialize};

use super::Platform;

/// A position in a vertex's `inputs` list.
pub type InputIndex = u32;

/// One operation of the build graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Op {
    /// Produces a filesystem from outside the graph (an image, the build context, a URL ...).
    Source(SourceOp),
    /// Runs a command on input 0 (the root filesystem), with extra mounts.
    Exec(ExecOp),
    /// Copies, creates or removes files on a base filesystem.
    File(FileOp),
    /// Stacks its inputs' filesystems, later inputs on top (`COPY --link`).
    Merge(MergeOp),
    /// Changes only image metadata; the filesystem is input 0's, unchanged.
    Config(ConfigChange),
}

impl Op {
    /// The op as its digest and cache key see it: without what does not change a step's
    /// result, as BuildKit leaves it out of its cache key (proxy variables, `--add-host`
    /// addresses).
    pub fn identity(&self) -> std::borrow::Cow<'_, Op> {
        match self {
            Op::Exec(e) if !e.proxy_env.is_empty() || !e.extra_hosts.is_empty() => {
                let mut e = e.clone();
                e.proxy_env.clear();
                for h in &mut e.extra_hosts {
                    h.ip.clear();
                }
                std::borrow::Cow::Owned(Op::Exec(e))
            }
            _ => std::borrow::Cow::Borrowed(self),
        }
    }

    /// A short lowercase name of the operation kind, for labels and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Source(_) => "source",
            Op::Exec(_) => "exec",
            Op::File(_) => "file",
            Op::Merge(_) => "merge",
            Op::Config(_) => "config",
        }
    }
}

/// Where a source filesystem comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceOp {
    /// A container image; its root filesystem is the output.
    Image {
        /// Normalised reference (`docker.io/library/alpine:3.19`, or with `@sha256:...`).
        reference: String,
        /// The platform to select from a multi-platform index.
        platform: Platform,
    },
    /// The empty filesystem.
    Scratch,
    /// Files of a local build context (the directory given on the command line, or a named one).
    Context {
        /// The context's name: `context` for the main one.
        name: String,
        /// Paths or patterns (relative to the context root) this vertex reads; empty = everything.
        includes: Vec<String>,
        /// `.dockerignore` patterns (moby patternmatcher semantics), in file order.
        excludes: Vec<String>,
    },
    /// One file downloaded over HTTP(S) (`ADD https://...`).
    Http {
        url: String,
        /// Expected `sha256:...` digest of the body, when pinned with `ADD --checksum`.
        checksum: Option<String>,
        /// The file name the body is stored under in the output filesystem.
        filename: String,
    },
    /// A git repository checkout (`ADD https://github.com/x/y.git#ref:subdir`).
    Git {
        /// The remote URL, without the `#fragment`.
        remote: String,
        /// Branch, tag or commit to check out; `None` for the default branch.
        reference: Option<String>,
        /// Sub-directory of the checkout to output.
        subdir: Option<String>,
        /// Keep the `.git` directory in the output.
        keep_git_dir: bool,
        /// Expected commit checksum (`ADD --checksum` on a git source).
        checksum: Option<String>,
    },
}

/// Network access of a running step (`RUN --network`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The builder's default: sandboxed network.
    #[default]
    Default,
    /// No network at all (only loopback).
    None,
    /// The host's network namespace.
    Host,
}

/// Privilege of a running step (`RUN --security`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityMode {
    /// Default capabilities, seccomp, no_new_privs.
    #[default]
    Sandbox,
    /// All capabilities (needs the `security.insecure` entitlement).
    Insecure,
}

/// Runs a command (a RUN step).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecOp {
    /// argv; for shell form already wrapped in the shell (`["/bin/sh", "-c", "make"]`).
    pub args: Vec<String>,
    /// Environment, in order, as `(name, value)`. When the base image's config was not resolved
    /// at lowering time (see `StageInfo::base_config_resolved`), these entries are overrides to
    /// apply on top of the base image's `Env`, and the executor adds BuildKit's default
    /// `PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin` when neither sets one.
    pub env: Vec<(String, String)>,
    /// Proxy variables (`HTTP_PROXY`, ...) given as build args: passed to the process but, as in
    /// BuildKit, left out of the vertex digest so that changing a proxy does not bust the cache.
    pub proxy_env: Vec<(String, String)>,
    /// Working directory. Absolute, or relative to the base image's `WorkingDir` when that was not
    /// resolved at lowering time; empty = the base image's `WorkingDir` (or `/`).
    pub cwd: String,
    /// User as written (`name`, `uid`, `uid:gid`, `name:group`), unresolved: the executor looks it
    /// up in the root filesystem's `/etc/passwd`. Empty = the base image's `User` (or root).
    pub user: String,
    pub network: NetworkMode,
    pub security: SecurityMode,
    /// Mounts besides the root filesystem (input 0), in the order given.
    pub mounts: Vec<MountSpec>,
    /// Entries added to the step's `/etc/hosts` (`--add-host`); the image's file is unchanged.
    /// As in BuildKit only the names are part of the vertex digest: a new address alone keeps
    /// the cache.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_hosts: Vec<ExtraHost>,
    /// Size of the step's `/dev/shm` in bytes (`--shm-size`); 0 = the default, 64 MiB.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shm_size: u64,
    /// Resource limits of the step's process (`--ulimit`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ulimits: Vec<Ulimit>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One `--add-host NAME:IP` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtraHost {
    pub name: String,
    pub ip: String,
}

/// One `--ulimit NAME=SOFT[:HARD]` limit; `-1` is unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ulimit {
    /// Docker's name of the resource (`nofile`, `nproc`, `core`, ...).
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// One extra mount of a running step (`RUN --mount=...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountSpec {
    /// The vertex input whose filesystem backs this mount (bind mounts, and cache mounts seeded
    /// `from=` something); `None` when it has no backing filesystem.
    pub input: Option<InputIndex>,
    /// Absolute mount point inside the step's root. For secret/ssh mounts without a target it is
    /// the default (`/run/secrets/<id>`, `/run/buildkit/ssh_agent.<n>`), empty for env-only secrets.
    pub target: String,
    pub kind: MountKind,
}

/// How a cache mount may be shared between concurrent steps (`sharing=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CacheSharing {
    /// Many writers at once.
    #[default]
    Shared,
    /// A writer gets its own copy when the cache is in use.
    Private,
    /// Writers wait for each other.
    Locked,
}

/// The kind of a mount, with its options.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MountKind {
    /// A directory of the input filesystem, at `source` (relative to its root).
    Bind { source: String, readonly: bool },
    /// A persistent cache directory kept across builds, keyed by `id`.
    Cache {
        id: String,
        sharing: CacheSharing,
        readonly: bool,
        /// Path in the input filesystem to seed the cache from, when `input` is set.
        source: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A fresh tmpfs; `size` in bytes, 0 = unlimited.
    Tmpfs { size: u64 },
    /// A secret given to the build, as a file at `target` and/or an env variable.
    Secret {
        id: String,
        /// Environment variable to expose the secret in, when `env=` was given.
        env: Option<String>,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A socket forwarding an SSH agent given to the build.
    Ssh {
        id: String,
        required: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
}

/// A file operation: actions applied in order on a base filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileOp {
    /// The input the actions start from; `None` = an empty filesystem.
    pub base: Option<InputIndex>,
    pub actions: Vec<FileAction>,
}

/// A file mode given to COPY/ADD `--chmod`: octal bits or a symbolic expression (`u+x`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileMode {
    Octal(u32),
    Symbolic(String),
}

/// One step of a [`FileOp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FileAction {
    /// Copy from another input (COPY/ADD).
    Copy(CopySpec),
    /// Create a file with the given bytes (heredocs).
    Mkfile {
        path: String,
        mode: u32,
        data: String,
        /// Owner as written (`user[:group]`), unresolved; `None` = root.
        owner: Option<String>,
    },
    /// Create a directory (WORKDIR).
    Mkdir {
        path: String,
        mode: u32,
        make_parents: bool,
        owner: Option<String>,
    },
    /// Remove a path.
    Rm {
        path: String,
        allow_not_found: bool,
        allow_wildcard: bool,
    },
}

/// A copy from one input into the base filesystem: every COPY/ADD option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CopySpec {
    /// The input holding the source files.
    pub source_input: InputIndex,
    /// Source path (absolute within the source input), may hold wildcards.
    pub src: String,
    /// Absolute destination; a trailing `/` means "into this directory".
    pub dest: String,
    /// `--chown` as written (`user[:group]`, names or ids), unresolved: ids are looked up in the
    /// destination filesystem's `/etc/passwd` and `/etc/group`.
    pub owner: Option<String>,
    /// `--chmod`.
    pub mode: Option<FileMode>,
    /// Follow a symlink given as the source itself.
    pub follow_symlinks: bool,
    /// When the source is a directory, copy its contents rather than the directory itself.
    pub dir_contents_only: bool,
    /// Only paths under the source matching these patterns (`COPY --parents`).
    pub include_patterns: Vec<String>,
    /// Paths under the source matching these patterns are skipped (`--exclude`).
    pub exclude_patterns: Vec<String>,
    /// Unpack a local tar archive into `dest` (ADD).
    pub attempt_unpack: bool,
    /// Create missing parents of `dest`.
    pub create_dest_path: bool,
    /// Treat `src` as a pattern.
    pub allow_wildcard: bool,
    /// A pattern matching nothing is not an error.
    pub allow_empty_wildcard: bool,
    /// Keep the source's parent directories under `dest` (`COPY --parents`).
    pub preserve_parents: bool,
}

impl CopySpec {
    /// A copy of `src` from input `source_input` to `dest` with COPY's defaults.
    pub fn new(source_input: InputIndex, src: impl Into<String>, dest: impl Into<String>) -> Self {
        CopySpec {
            source_input,
            src: src.into(),
            dest: dest.into(),
            owner: None,
            mode: None,
            follow_symlinks: true,
            dir_contents_only: true,
            include_patterns: Vec::new(),
            exclude_patterns: Vec::new(),
            attempt_unpack: false,
            create_dest_path: true,
            allow_wildcard: true,
            allow_empty_wildcard: true,
            preserve_parents: false,
        }
    }
}

/// Stacks filesystems: the output is input 0 with input 1 on top, then input 2, ...
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeOp {}

/// HEALTHCHECK settings, durations in nanoseconds (0 = inherit the default), as the image config
/// stores them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Healthcheck {
    /// `["NONE"]`, `["CMD", args...]` or `["CMD-SHELL", command]`.
    pub test: Vec<String>,
    pub interval: u64,
    pub timeout: u64,
    pub start_period: u64,
    pub start_interval: u64,
    pub retries: u32,
}

/// A metadata-only change to the image config, applied in order along a stage's chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "set", content = "value", rename_all = "snake_case")]
pub enum ConfigChange {
    /// Set (or replace) environment variables.
    Env(Vec<(String, String)>),
    /// Declare build args; changes no config field, recorded for history only.
    Arg(Vec<(String, Option<String>)>),
    /// Set labels.
    Label(Vec<(String, String)>),
    /// Set the default command.
    Cmd(Vec<String>),
    /// Set the entrypoint; `reset_cmd` clears `Cmd` (no CMD was given in this stage yet).
    Entrypoint {
        args: Vec<String>,
        reset_cmd: bool,
    },
    /// Set the working directory (absolute, or relative to the base image's when unresolved).
    Workdir(String),
    User(String),
    /// Add exposed ports (`80/tcp`).
    Expose(Vec<String>),
    /// Add volumes.
    Volume(Vec<String>),
    StopSignal(String),
    Healthcheck(Healthcheck),
    /// Set the shell used by later shell-form commands.
    Shell(Vec<String>),
    /// Add an ONBUILD trigger (the instruction text after `ONBUILD `).
    Onbuild(String),
    /// Remove every ONBUILD trigger: the base's triggers have run in this stage.
    ClearOnbuild,
    /// Set the image author.
    Maintainer(String),
}

/// One entry of the image's history, as BuildKit writes it for this step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// `RUN /bin/sh -c make # buildkit`, `ENV A=b`, `COPY . . # buildkit`, ...
    pub created_by: String,
    /// True when the step adds no layer.
    pub empty_layer: bool,
}

/// The history comment BuildKit's Dockerfile frontend puts on every entry.
pub const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";
