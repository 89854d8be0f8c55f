//! COPY/ADD and the other file operations of a build, applied to a destination rootfs.
//!
//! Every path goes through [`root::Root`]: sources are resolved inside their source root
//! (build context, another stage's rootfs), destinations inside the destination root, so no
//! symlink in either can make an operation read or write outside them.
//!
//! A [`FileAction`] is plain serde data because it is sent as a payload to the sandbox helper
//! process that applies it on an overlay-mounted rootfs; [`apply`] is the whole entry point.
//! It is synchronous (and `ADD <url>` uses a blocking HTTP client): call it from a blocking
//! thread, not from inside an async task.
//!
//! Semantics follow Docker/BuildKit; see [`CopyAction`] for the rules.

pub mod archive;
pub mod chmod;
mod copy;
mod http;
pub mod pattern;
pub mod plan;
pub mod root;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The name under which the build context is registered in [`SourceRoots`]. Errors about it
/// say "build context"; other roots are named as registered (e.g. a stage name).
pub const CONTEXT: &str = "context";

/// Named source directories a COPY/ADD may read from (context, stage rootfs, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceRoots {
    roots: BTreeMap<String, PathBuf>,
}

impl SourceRoots {
    /// No roots.
    pub fn new() -> SourceRoots {
        SourceRoots::default()
    }

    /// Registers `path` under `name`, replacing an earlier one.
    pub fn insert(&mut self, name: impl Into<String>, path: impl Into<PathBuf>) {
        self.roots.insert(name.into(), path.into());
    }

    /// Builder form of [`SourceRoots::insert`].
    pub fn with(mut self, name: impl Into<String>, path: impl Into<PathBuf>) -> SourceRoots {
        self.insert(name, path);
        self
    }

    /// The directory registered as `name`.
    pub fn get(&self, name: &str) -> Option<&Path> {
        self.roots.get(name).map(PathBuf::as_path)
    }
}

fn default_workdir() -> String {
    "/".to_string()
}

/// One file operation of a build step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FileAction {
    /// `COPY`.
    Copy(CopyAction),
    /// `ADD`: like COPY, plus local tar archives (plain, gzip, bzip2, xz, zstd; detected by
    /// content) extracted into the destination, and `http(s)://` sources downloaded.
    Add(CopyAction),
    /// Create a file with given content (`COPY <<EOF /dest` heredocs).
    Mkfile(MkfileAction),
    /// `mkdir [-p]`.
    Mkdir(MkdirAction),
    /// Remove a path.
    Rm(RmAction),
}

/// COPY/ADD. Rules, as Docker/BuildKit (what is read is decided by [`plan::resolve`], which the
/// cache key uses too):
/// - `sources` are relative to the source root (leading `/` and `..` cannot leave it) and may
///   use `filepath.Match` wildcards in any component (`\` escapes one; a source without an
///   unescaped wildcard names a path literally). A literal source must exist; a wildcard may
///   match nothing, and then copies nothing. A symlink named as a source is copied as a
///   symlink unless `follow_symlinks`; symlinks met while copying a directory always are (a
///   context link to `/etc/passwd` copies the link).
/// - `dest` is relative to `workdir` unless absolute. It names a directory when it ends in `/`
///   (or is `.`), when it already exists as a directory, or with `parents`. Several sources,
///   and the several matches of a wildcard, are copied in turn as BuildKit does: to a
///   destination that is not a directory each file is written over the one before, and a
///   directory's contents make it one for the matches after it.
/// - A directory source copies its contents (not the directory itself) into `dest`.
/// - Missing parents of the destination are created 0755, owned by the `chown` target or root.
/// - Modes and mtimes are preserved, xattrs unless `drop_xattrs`; ownership too unless `chown`
///   or `source_owner` replaces it (the build context's files are root's, as with BuildKit). `chmod` (octal or
///   symbolic) applies to every copied file and directory. Files hardlinked to each other stay
///   linked within one matched path.
/// - `hidden` paths do not exist; an excluded directory holding a re-included path is copied
///   with only that path.
/// - `exclude` patterns are matched against paths inside a copied directory (relative to that
///   directory); a named source or a wildcard's match is copied whatever they say.
/// - `parents` keeps each source's path under `dest`; a `/./` in a source marks where the kept
///   part starts.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CopyAction {
    /// Key in [`SourceRoots`] (e.g. [`CONTEXT`] or a stage name). Unused by URL sources.
    pub source_root: String,
    /// Source paths or patterns (ADD: also `http://`/`https://` URLs).
    pub sources: Vec<String>,
    /// Destination path as written in the instruction.
    pub dest: String,
    /// The stage's WORKDIR, against which a relative `dest` is resolved.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// `--chown` value (`user[:group]`, names looked up in the destination's `/etc/passwd`).
    /// It applies to everything written, files extracted from an archive by ADD included.
    #[serde(default)]
    pub chown: Option<String>,
    /// Without `--chown`: the owner of the copied source files, `None` to keep theirs. The
    /// build context's files belong to root (BuildKit's client sends them as 0:0); files
    /// extracted from an archive keep the owners stored in the archive either way.
    #[serde(default)]
    pub source_owner: Option<(u32, u32)>,
    /// `--chmod` value.
    #[serde(default)]
    pub chmod: Option<String>,
    /// `--exclude` patterns.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// `--parents`.
    #[serde(default)]
    pub parents: bool,
    /// `ADD --checksum=sha256:<hex>` for URL sources.
    #[serde(default)]
    pub checksum: Option<String>,
    /// Paths relative to the source root that do not exist for this copy, each with everything
    /// below it: the build context's `.dockerignore`d files. Naming one as a source is "not
    /// found", as in Docker.
    #[serde(default)]
    pub hidden: Vec<String>,
    /// Follow a symlink named as a source (resolved inside the source root, as BuildKit's
    /// `FollowSymlinks`) and copy what it points at. Off by default: the link itself is copied.
    /// Symlinks met inside a copied directory are always copied as links.
    #[serde(default)]
    pub follow_symlinks: bool,
    /// Leave extended attributes behind: a build context's files reach the layer without
    /// their xattrs, as with BuildKit (its layers do not carry a context file's `user.*`
    /// attributes). Files from a stage or image keep theirs.
    #[serde(default)]
    pub drop_xattrs: bool,
}

impl CopyAction {
    /// Whether copied files keep their source's owner (neither `--chown` nor the source's own
    /// rule replaces it): the copy and the cache key both ask this.
    pub fn keeps_source_owner(&self) -> bool {
        self.chown.is_none() && self.source_owner.is_none()
    }

    /// The copy a graph [`crate::graph::CopySpec`] asks for, reading from the source root
    /// `source_root`. The worker runs it and the solver keys it: one translation for both.
    /// `from_context` applies the build context's rules (root ownership unless `--chown`, no
    /// xattrs); `hidden` are the context's ignored paths.
    pub fn from_spec(
        spec: &crate::graph::CopySpec,
        source_root: String,
        from_context: bool,
        hidden: Vec<String>,
    ) -> CopyAction {
        // `--parents`: the frontend sends the part before a `/./` pivot as the source and the
        // rest as an include pattern; the copy takes the pattern back under its pivot
        // (`src/./a/*.txt`, or `src/*/x.txt` when there is no pivot).
        let source = match (spec.preserve_parents, spec.include_patterns.as_slice()) {
            (true, [pattern]) => {
                let base = spec.src.trim_matches('/');
                if base.is_empty() {
                    pattern.clone()
                } else {
                    format!("{base}/./{pattern}")
                }
            }
            _ => spec.src.clone(),
        };
        CopyAction {
            source_root,
            sources: vec![source],
            dest: spec.dest.clone(),
            workdir: "/".to_string(),
            chown: spec.owner.clone(),
            // Files from the build context belong to root, as BuildKit's client sends them;
            // files from a stage or image keep their owners.
            source_owner: from_context.then_some((0, 0)),
            chmod: spec.mode.as_ref().map(|m| match m {
                crate::graph::FileMode::Octal(bits) => format!("{bits:o}"),
                crate::graph::FileMode::Symbolic(s) => s.clone(),
            }),
            exclude: spec.exclude_patterns.clone(),
            parents: spec.preserve_parents,
            checksum: None,
            hidden,
            follow_symlinks: spec.follow_symlinks,
            drop_xattrs: from_context,
        }
    }
}

/// Creates (or replaces) one file with the given content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MkfileAction {
    /// Path of the file; relative paths are resolved against `workdir`.
    pub path: String,
    /// The stage's WORKDIR.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// File content.
    pub data: String,
    /// Permission bits; 0644 when absent.
    #[serde(default)]
    pub mode: Option<u32>,
    /// Owner (`user[:group]`), root when absent.
    #[serde(default)]
    pub chown: Option<String>,
    /// Modification time in seconds since the epoch; now when absent.
    #[serde(default)]
    pub mtime: Option<i64>,
}

/// Creates a directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MkdirAction {
    /// Path of the directory; relative paths are resolved against `workdir`.
    pub path: String,
    /// The stage's WORKDIR.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// Permission bits; 0755 when absent.
    #[serde(default)]
    pub mode: Option<u32>,
    /// Create missing parents and accept an existing directory (`mkdir -p`).
    #[serde(default)]
    pub parents: bool,
    /// Owner (`user[:group]`), root when absent.
    #[serde(default)]
    pub chown: Option<String>,
}

/// Removes a path (recursively for directories).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RmAction {
    /// Path to remove; relative paths are resolved against `workdir`.
    pub path: String,
    /// The stage's WORKDIR.
    #[serde(default = "default_workdir")]
    pub workdir: String,
    /// Succeed when the path does not exist.
    #[serde(default)]
    pub allow_not_found: bool,
}

/// Why a file operation failed. Every message starts with the instruction and names the path.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// A source path or pattern matched nothing.
    #[error("{op} failed: file not found in {place}: {path:?}")]
    NotFound {
        op: &'static str,
        place: String,
        path: String,
    },
    /// A symlink named as a source leads to nothing (or to a path the ignore rules hide).
    #[error("{op} failed: file not found in {place}: {path:?} is a symlink to {target:?}, which does not exist (or is excluded by .dockerignore)")]
    DanglingSource {
        op: &'static str,
        place: String,
        path: String,
        target: String,
    },
    /// Resolving a source path met a symlink loop or too long a chain.
    #[error("{op} failed: resolving {path:?}: too many levels of symbolic links")]
    SymlinkLoop { op: &'static str, path: String },
    /// The action names a source root that was not provided.
    #[error("{op} failed: unknown source {name:?}")]
    UnknownSourceRoot { op: &'static str, name: String },
    /// The directory before a source's first wildcard does not exist (BuildKit's `lstat` error).
    #[error("{op} failed: no such directory {dir:?} for the wildcard in {pattern:?}")]
    WildcardDirMissing {
        op: &'static str,
        dir: String,
        pattern: String,
    },
    /// No sources at all.
    #[error("{op} failed: no source files were specified")]
    NoSources { op: &'static str },
    /// A directory would be copied onto a non-directory.
    #[error("{op} failed: cannot copy directory {src:?} to non-directory {dest:?}")]
    DirOntoFile {
        op: &'static str,
        src: String,
        dest: String,
    },
    /// A copied file would be named like a whiteout (`.wh.NAME`): an image layer cannot store
    /// it, it would delete `NAME` when the image is unpacked.
    #[error(
        "{op} failed: {path:?}: names starting with \".wh.\" are reserved for whiteouts; an \
         image layer cannot store such a file"
    )]
    ReservedName { op: &'static str, path: PathBuf },
    /// A filesystem call failed.
    #[error("{op} failed: {what} {path:?}: {source}")]
    Io {
        op: &'static str,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// A path could not be resolved inside its root.
    #[error("{op} failed: {source}")]
    Root {
        op: &'static str,
        source: root::RootError,
    },
    /// A wildcard or `--exclude` pattern is malformed.
    #[error("{op} failed: {source}")]
    Pattern {
        op: &'static str,
        source: pattern::PatternError,
    },
    /// A `--chmod` value is malformed.
    #[error("{op} failed: {source}")]
    Chmod {
        op: &'static str,
        source: chmod::ChmodError,
    },
    /// A `--chown` user or group could not be resolved.
    #[error("{op} failed: --chown {spec}: {source}")]
    Chown {
        op: &'static str,
        spec: String,
        source: crate::userdb::UserDbError,
    },
    /// An archive could not be extracted.
    #[error("{op} failed: extracting {path:?}: {source}")]
    Archive {
        op: &'static str,
        path: String,
        source: archive::ArchiveError,
    },
    /// A URL could not be downloaded.
    #[error("{op} failed: downloading {url}: {message}")]
    Download {
        op: &'static str,
        url: String,
        message: String,
    },
    /// The downloaded content does not match `--checksum`.
    #[error("{op} failed: checksum mismatch for {url}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        op: &'static str,
        url: String,
        expected: String,
        actual: String,
    },
    /// A path in the action is unusable (e.g. removing `/`).
    #[error("{op} failed: invalid path {path:?}: {reason}")]
    InvalidPath {
        op: &'static str,
        path: String,
        reason: &'static str,
    },
}

/// Applies `action` to the rootfs at `dest_root`, reading sources from `sources`.
pub fn apply(
    dest_root: &Path,
    sources: &SourceRoots,
    action: &FileAction,
) -> Result<(), FileOpError> {
    match action {
        FileAction::Copy(a) => copy::copy(dest_root, sources, a, "COPY"),
        FileAction::Add(a) => copy::copy(dest_root, sources, a, "ADD"),
        FileAction::Mkfile(a) => copy::mkfile(dest_root, a),
        FileAction::Mkdir(a) => copy::mkdir(dest_root, a),
        FileAction::Rm(a) => copy::rm(dest_root, a),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_parents_patterns_go_back_under_their_pivot() {
        let action = |spec: &crate::graph::CopySpec| {
            CopyAction::from_spec(spec, CONTEXT.into(), true, Vec::new()).sources[0].clone()
        };
        let mut spec = crate::graph::CopySpec::new(0, "/", "/p/");
        spec.preserve_parents = true;
        spec.include_patterns = vec!["src/*/x.txt".into()];
        assert_eq!(action(&spec), "src/*/x.txt");
        spec.src = "/src".into();
        spec.include_patterns = vec!["a/*.txt".into()];
        assert_eq!(action(&spec), "src/./a/*.txt");
        spec.preserve_parents = false;
        spec.include_patterns.clear();
        assert_eq!(action(&spec), "/src");
    }
}
