//! The COPY/ADD engine and the small file actions, on top of [`Root`].

use super::archive::{self, ExtractOptions, WhiteoutMode};
use super::chmod::Chmod;
use super::pattern::{has_wildcard, match_component, ExcludeMatcher};
use super::root::{lexical_clean, open_nofollow, Root, RootError};
use super::{CopyAction, FileOpError, MkdirAction, MkfileAction, RmAction, SourceRoots, CONTEXT};
use crate::userdb::UserDb;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

type Op = &'static str;

pub(super) fn io_err<'a>(
    op: Op,
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> FileOpError + 'a {
    move |source| FileOpError::Io {
        op,
        what,
        path: path.to_path_buf(),
        source,
    }
}

fn root_err(op: Op) -> impl FnOnce(RootError) -> FileOpError {
    move |source| FileOpError::Root { op, source }
}

/// Joins `dest` onto `workdir` as Docker does and cleans it; the result is relative to `/`.
pub(super) fn dest_path(workdir: &str, dest: &str) -> PathBuf {
    let joined = if dest.starts_with('/') {
        PathBuf::from(dest)
    } else {
        Path::new("/").join(workdir).join(dest)
    };
    lexical_clean(&joined)
}

fn resolve_owner(
    op: Op,
    root: &Root,
    spec: Option<&str>,
) -> Result<Option<(u32, u32)>, FileOpError> {
    let Some(spec) = spec else { return Ok(None) };
    let chown_err = |source| FileOpError::Chown {
        op,
        spec: spec.to_string(),
        source,
    };
    let db = UserDb::load(root).map_err(chown_err)?;
    db.resolve_chown(spec).map(Some).map_err(chown_err)
}

/// `mkdir -p` inside `root`, creating each missing directory 0755 owned by `owner`.
pub(super) fn mkdir_all(
    op: Op,
    root: &Root,
    rel: &Path,
    owner: (u32, u32),
) -> Result<(), FileOpError> {
    let mut prefix = PathBuf::new();
    for comp in rel.components() {
        prefix.push(comp);
        let host = root.resolve(&prefix).map_err(root_err(op))?;
        match std::fs::metadata(&host) {
            Ok(m) if m.is_dir() => continue,
            Ok(_) => {
                return Err(FileOpError::Io {
                    op,
                    what: "creating directory",
                    path: Path::new("/").join(&prefix),
                    source: io::Error::from_raw_os_error(libc::ENOTDIR),
                })
            }
            Err(_) => {
                // A symlink may have re-rooted this prefix somewhere whose parents are missing.
                if let Some(parent) = host.parent().filter(|p| !p.exists()) {
                    let parent_rel = parent
                        .strip_prefix(root.host_path())
                        .unwrap_or(Path::new(""));
                    mkdir_all(op, root, parent_rel, owner)?;
                }
                std::fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&host)
                    .map_err(io_err(op, "creating directory", &host))?;
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o755))
                    .map_err(io_err(op, "setting mode of", &host))?;
                std::os::unix::fs::lchown(&host, Some(owner.0), Some(owner.1)).map_err(io_err(
                    op,
                    "changing owner of",
                    &host,
                ))?;
            }
        }
    }
    Ok(())
}

fn place(source_root: &str) -> String {
    if source_root == CONTEXT {
        "build context".to_string()
    } else {
        format!("{source_root:?}")
    }
}

/// A source path selected by a COPY/ADD argument.
struct Selected {
    /// Path inside the source root (clean, relative).
    rel: PathBuf,
    /// The part kept under the destination with `--parents`.
    kept: PathBuf,
}

/// Expands one source argument (with wildcards) into existing paths, in sorted order.
fn expand(op: Op, root: &Root, pattern: &str) -> Result<Vec<PathBuf>, FileOpError> {
    let clean = lexical_clean(Path::new(pattern));
    let mut found: Vec<PathBuf> = vec![PathBuf::new()];
    for comp in clean.components() {
        let comp_str = comp.as_os_str().to_string_lossy();
        let mut next = Vec::new();
        for base in &found {
            if has_wildcard(&comp_str) {
                let dir = root.resolve(base).map_err(root_err(op))?;
                let Ok(entries) = std::fs::read_dir(&dir) else {
                    continue;
                };
                let mut names: Vec<_> = entries
                    .filter_map(|e| e.ok().map(|e| e.file_name()))
                    .collect();
                names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                for name in names {
                    let ok = match_component(&comp_str, &name.to_string_lossy())
                        .map_err(|source| FileOpError::Pattern { op, source })?;
                    if ok {
                        next.push(base.join(&name));
                    }
                }
            } else {
                next.push(base.join(comp));
            }
        }
        found = next;
    }
    Ok(found
        .into_iter()
        .filter(|p| {
            root.resolve_parent(p)
                .map(|h| std::fs::symlink_metadata(h).is_ok())
                .unwrap_or(false)
        })
        .collect())
}

/// Number of leading components before a `/./` pivot in a `--parents` source, if any.
fn pivot_components(source: &str) -> usize {
    let trimmed = source.trim_start_matches("./");
    match trimmed.rfind("/./") {
        Some(i) => lexical_clean(Path::new(&trimmed[..i])).components().count(),
        None => 0,
    }
}

struct Copier<'a> {
    op: Op,
    dest: &'a Root,
    owner: Option<(u32, u32)>,
    chmod: Option<Chmod>,
    exclude: ExcludeMatcher,
    /// Host path of the source root and the paths hidden below it (see `CopyAction::hidden`).
    hidden: Option<(PathBuf, std::collections::HashSet<PathBuf>)>,
    links: HashMap<(u64, u64), PathBuf>,
    src_root: Option<Root>,
    /// How errors name the source root ("build context" or the root's name).
    place: String,
}

/// Whether `rel` (relative to a source root) is one of `hidden` or below one.
fn is_hidden(hidden: &std::collections::HashSet<PathBuf>, rel: &Path) -> bool {
    rel.ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .any(|a| hidden.contains(a))
}

pub(super) fn copy(
    dest_root: &Path,
    sources: &SourceRoots,
    a: &CopyAction,
    op: Op,
) -> Result<(), FileOpError> {
    if a.sources.is_empty() {
        return Err(FileOpError::NoSources { op });
    }
    let droot = Root::new(dest_root).map_err(root_err(op))?;
    let owner = resolve_owner(op, &droot, a.chown.as_deref())?;
    let chmod = a
        .chmod
        .as_deref()
        .map(Chmod::parse)
        .transpose()
        .map_err(|source| FileOpError::Chmod { op, source })?;
    let exclude =
        ExcludeMatcher::new(&a.exclude).map_err(|source| FileOpError::Pattern { op, source })?;
    let dest_rel = dest_path(&a.workdir, &a.dest);
    let trailing_dir =
        a.dest.is_empty() || a.dest == "." || a.dest.ends_with('/') || a.dest.ends_with("/.");
    if a.sources.len() > 1 && !trailing_dir {
        return Err(FileOpError::DestNotDir {
            op,
            dest: a.dest.clone(),
        });
    }
    let is_url = |s: &str| op == "ADD" && (s.starts_with("http://") || s.starts_with("https://"));

    let hidden_set: std::collections::HashSet<PathBuf> =
        a.hidden.iter().map(PathBuf::from).collect();
    let mut selected: Vec<Selected> = Vec::new();
    let mut urls: Vec<&str> = Vec::new();
    let mut src_root: Option<Root> = None;
    for source in &a.sources {
        if is_url(source) {
            urls.push(source);
            continue;
        }
        let root = match &src_root {
            Some(r) => r,
            None => {
                let path =
                    sources
                        .get(&a.source_root)
                        .ok_or_else(|| FileOpError::UnknownSourceRoot {
                            op,
                            name: a.source_root.clone(),
                        })?;
                src_root.insert(Root::new(path).map_err(root_err(op))?)
            }
        };
        let wild = has_wildcard(source);
        let mut matches = expand(op, root, source)?;
        if wild {
            matches.retain(|m| !exclude.is_excluded(&m.to_string_lossy()));
        }
        if !hidden_set.is_empty() {
            matches.retain(|m| !is_hidden(&hidden_set, m));
        }
        if matches.is_empty() {
            return Err(FileOpError::NotFound {
                op,
                place: place(&a.source_root),
                path: source.clone(),
            });
        }
        let pivot = pivot_components(source);
        for rel in matches {
            let kept = rel.components().skip(pivot).collect();
            selected.push(Selected { rel, kept });
        }
    }

    let dest_host = droot.resolve(&dest_rel).map_err(root_err(op))?;
    let dest_is_dir = std::fs::metadata(&dest_host)
        .map(|m| m.is_dir())
        .unwrap_or(false);
    if selected.len() + urls.len() > 1 && !trailing_dir && !dest_is_dir {
        return Err(FileOpError::DestNotDir {
            op,
            dest: a.dest.clone(),
        });
    }
    let into_dir = trailing_dir || a.parents || selected.len() + urls.len() > 1;
    let parent_owner = owner.unwrap_or((0, 0));
    if into_dir {
        mkdir_all(op, &droot, &dest_rel, parent_owner)?;
    } else if let Some(parent) = dest_rel.parent() {
        mkdir_all(op, &droot, parent, parent_owner)?;
    }

    let hidden = match (&src_root, hidden_set.is_empty()) {
        (Some(root), false) => Some((root.host_path().to_path_buf(), hidden_set)),
        _ => None,
    };
    let mut copier = Copier {
        op,
        dest: &droot,
        owner,
        chmod,
        exclude,
        hidden,
        links: HashMap::new(),
        src_root: src_root.clone(),
        place: place(&a.source_root),
    };
    for sel in &selected {
        let root = src_root.as_ref().ok_or(FileOpError::NoSources { op })?;
        copier.copy_selected(root, sel, &dest_rel, into_dir, a.parents, a.follow_symlinks)?;
    }
    for url in urls {
        super::http::download(
            op,
            &droot,
            url,
            a.checksum.as_deref(),
            &dest_rel,
            into_dir,
            parent_owner,
        )?;
    }
    Ok(())
}

impl Copier<'_> {
    fn src_root_host(&self) -> &Path {
        self.src_root
            .as_ref()
            .map_or(Path::new("/nonexistent"), |r| r.host_path())
    }

    fn copy_selected(
        &mut self,
        src_root: &Root,
        sel: &Selected,
        dest_rel: &Path,
        into_dir: bool,
        parents: bool,
        follow: bool,
    ) -> Result<(), FileOpError> {
        let op = self.op;
        let mut src_host = src_root.resolve_parent(&sel.rel).map_err(root_err(op))?;
        let mut meta =
            std::fs::symlink_metadata(&src_host).map_err(io_err(op, "inspecting", &src_host))?;
        if follow && meta.file_type().is_symlink() {
            src_host = src_root.resolve(&sel.rel).map_err(root_err(op))?;
            meta = std::fs::symlink_metadata(&src_host).map_err(|_| FileOpError::NotFound {
                op,
                place: self.place.clone(),
                path: sel.rel.display().to_string(),
            })?;
        }

        if op == "ADD" && meta.is_file() && archive::is_archive(&src_host).unwrap_or(false) {
            return self.extract(&src_host, sel, dest_rel);
        }

        let target = if parents {
            dest_rel.join(&sel.kept)
        } else if meta.is_dir() {
            dest_rel.to_path_buf()
        } else {
            let dest_host = self.dest.resolve(dest_rel).map_err(root_err(op))?;
            let is_dir = std::fs::metadata(&dest_host)
                .map(|m| m.is_dir())
                .unwrap_or(false);
            match sel.rel.file_name() {
                Some(name) if into_dir || is_dir => dest_rel.join(name),
                _ => dest_rel.to_path_buf(),
            }
        };
        if meta.is_dir() && !parents {
            let host = self.dest.resolve(&target).map_err(root_err(op))?;
            if let Ok(m) = std::fs::metadata(&host) {
                if !m.is_dir() {
                    return Err(FileOpError::DirOntoFile {
                        op,
                        src: sel.rel.display().to_string(),
                        dest: Path::new("/").join(&target).display().to_string(),
                    });
                }
            }
        }
        if let Some(parent) = target.parent() {
            mkdir_all(op, self.dest, parent, self.owner.unwrap_or((0, 0)))?;
        }
        // Exclusion inside a directory is relative to that directory.
        self.copy_tree(
            &src_host,
            &target,
            if meta.is_dir() {
                Some(PathBuf::new())
            } else {
                None
            },
        )
    }

    fn extract(
        &mut self,
        src_host: &Path,
        sel: &Selected,
        dest_rel: &Path,
    ) -> Result<(), FileOpError> {
        let op = self.op;
        mkdir_all(op, self.dest, dest_rel, self.owner.unwrap_or((0, 0)))?;
        let host = self.dest.resolve(dest_rel).map_err(root_err(op))?;
        let extract_root = Root::new(&host).map_err(root_err(op))?;
        let file = open_nofollow(src_host).map_err(io_err(op, "opening", src_host))?;
        let (_, reader) = archive::decompress(io::BufReader::new(file))
            .map_err(io_err(op, "reading", src_host))?;
        let archive_err = |source| FileOpError::Archive {
            op,
            path: sel.rel.display().to_string(),
            source,
        };
        let limit = archive::expansion_limit(&host).map_err(archive_err)?;
        let opts = ExtractOptions {
            whiteouts: WhiteoutMode::Reject,
            chown: self.owner,
            limit,
        };
        let reader = archive::LimitedReader::new(reader, limit);
        archive::extract_tar(reader, &extract_root, &opts).map_err(archive_err)
    }

    /// Copies `src` (not following it) to `dst` (inside the destination root). `rel` is the
    /// path used for `--exclude` matching, `None` for a top-level file that was never excluded.
    fn copy_tree(
        &mut self,
        src: &Path,
        dst: &Path,
        rel: Option<PathBuf>,
    ) -> Result<(), FileOpError> {
        let op = self.op;
        if let Some((root, hidden)) = &self.hidden {
            if src.strip_prefix(root).is_ok_and(|r| is_hidden(hidden, r)) {
                return Ok(());
            }
        }
        let meta = std::fs::symlink_metadata(src).map_err(io_err(op, "inspecting", src))?;
        let excluded = rel.as_ref().is_some_and(|r| {
            !r.as_os_str().is_empty() && self.exclude.is_excluded(&r.to_string_lossy())
        });
        if excluded && !(meta.is_dir() && self.exclude.has_negations()) {
            return Ok(());
        }
        let ft = meta.file_type();
        if !excluded
            && dst
                .file_name()
                .is_some_and(|n| archive::is_reserved_name(n.as_bytes()))
        {
            return Err(FileOpError::ReservedName {
                op,
                path: dst.to_path_buf(),
            });
        }
        if ft.is_dir() {
            let host = self.dest.resolve(dst).map_err(root_err(op))?;
            // As BuildKit: a destination directory that already existed keeps its own
            // metadata when a directory's contents are copied into it (`COPY . /app`);
            // directories below it take the source's.
            let top = rel.as_ref().is_some_and(|r| r.as_os_str().is_empty());
            let mut keep_meta = false;
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.is_dir() => keep_meta = top,
                Ok(_) => {
                    remove(op, &host)?;
                    self.make_dir(&host)?;
                }
                Err(_) if !excluded => self.make_dir(&host)?,
                Err(_) => {}
            }
            let mut names: Vec<_> = std::fs::read_dir(src)
                .map_err(io_err(op, "reading directory", src))?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()
                .map_err(io_err(op, "reading directory", src))?;
            names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            for name in names {
                let child_rel = rel.as_ref().map(|r| r.join(&name));
                self.copy_tree(
                    &src.join(&name),
                    &dst.join(&name),
                    child_rel.or(Some(PathBuf::from(&name))),
                )?;
            }
            if !keep_meta
                && std::fs::symlink_metadata(&host)
                    .map(|m| m.is_dir())
                    .unwrap_or(false)
            {
                self.set_meta(src, &host, &meta)?;
            }
            return Ok(());
        }

        let host = self.dest.resolve_parent(dst).map_err(root_err(op))?;
        if let Some(parent) = host.parent() {
            if !parent.is_dir() {
                // Only reached below an excluded directory re-included by a `!` pattern.
                let parent_rel = dst.parent().unwrap_or(Path::new(""));
                mkdir_all(op, self.dest, parent_rel, self.owner.unwrap_or((0, 0)))?;
            }
        }
        if std::fs::symlink_metadata(&host).is_ok() {
            remove(op, &host)?;
        }
        if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                return std::fs::hard_link(first, &host).map_err(io_err(
                    op,
                    "creating hardlink",
                    &host,
                ));
            }
            self.links.insert(key, host.clone());
        }
        if ft.is_file() {
            // Contents are read through openat2(RESOLVE_IN_ROOT) where the kernel has it, so
            // even a source tree changed under us cannot make this read leave its root.
            let mut input = match (&self.src_root, src.strip_prefix(self.src_root_host())) {
                (Some(root), Ok(rel)) => root.open_read(rel).map_err(root_err(op))?,
                _ => open_nofollow(src).map_err(io_err(op, "opening", src))?,
            };
            let mut output = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&host)
                .map_err(io_err(op, "creating", &host))?;
            io::copy(&mut input, &mut output).map_err(io_err(op, "copying to", &host))?;
        } else if ft.is_symlink() {
            let target = std::fs::read_link(src).map_err(io_err(op, "reading link", src))?;
            std::os::unix::fs::symlink(&target, &host).map_err(io_err(
                op,
                "creating symlink",
                &host,
            ))?;
        } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
            let fmt = if ft.is_fifo() {
                libc::S_IFIFO
            } else if ft.is_char_device() {
                libc::S_IFCHR
            } else {
                libc::S_IFBLK
            };
            archive::mknod(&host, fmt, meta.rdev()).map_err(|e| FileOpError::Io {
                op,
                what: "creating node",
                path: host.clone(),
                source: io::Error::other(e.to_string()),
            })?;
        } else {
            return Ok(()); // sockets are not copied (Docker skips them too)
        }
        self.set_meta(src, &host, &meta)
    }

    fn make_dir(&self, host: &Path) -> Result<(), FileOpError> {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(host)
            .map_err(io_err(self.op, "creating directory", host))
    }

    fn set_meta(&self, src: &Path, dst: &Path, meta: &Metadata) -> Result<(), FileOpError> {
        let op = self.op;
        let (uid, gid) = self.owner.unwrap_or((meta.uid(), meta.gid()));
        std::os::unix::fs::lchown(dst, Some(uid), Some(gid)).map_err(io_err(
            op,
            "changing owner of",
            dst,
        ))?;
        if let Ok(names) = xattr::list(src) {
            for name in names {
                if name == OsStr::new("security.selinux") {
                    continue;
                }
                if let Ok(Some(value)) = xattr::get(src, &name) {
                    // Best effort, as BuildKit: some filesystems refuse some namespaces.
                    let _ = xattr::set(dst, &name, &value);
                }
            }
        }
        let is_link = meta.file_type().is_symlink();
        if !is_link {
            let mode = match &self.chmod {
                Some(c) => c.apply(meta.mode(), meta.is_dir()),
                None => meta.mode() & 0o7777,
            };
            std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode))
                .map_err(io_err(op, "setting mode of", dst))?;
        }
        let atime = filetime::FileTime::from_last_access_time(meta);
        let mtime = filetime::FileTime::from_last_modification_time(meta);
        filetime::set_symlink_file_times(dst, atime, mtime).map_err(io_err(
            op,
            "setting times of",
            dst,
        ))
    }
}

fn remove(op: Op, host: &Path) -> Result<(), FileOpError> {
    archive::remove_existing(host).map_err(|e| FileOpError::Io {
        op,
        what: "replacing",
        path: host.to_path_buf(),
        source: io::Error::other(e.to_string()),
    })
}

pub(super) fn mkfile(dest_root: &Path, a: &MkfileAction) -> Result<(), FileOpError> {
    let op = "MKFILE";
    let root = Root::new(dest_root).map_err(root_err(op))?;
    let owner = resolve_owner(op, &root, a.chown.as_deref())?.unwrap_or((0, 0));
    let rel = dest_path(&a.workdir, &a.path);
    let Some(parent) = rel.parent().filter(|_| !rel.as_os_str().is_empty()) else {
        return Err(FileOpError::InvalidPath {
            op,
            path: a.path.clone(),
            reason: "not a file path",
        });
    };
    mkdir_all(op, &root, parent, owner)?;
    let host = root.resolve_parent(&rel).map_err(root_err(op))?;
    if std::fs::symlink_metadata(&host).is_ok() {
        remove(op, &host)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&host)
        .map_err(io_err(op, "creating", &host))?;
    io::Write::write_all(&mut file, a.data.as_bytes()).map_err(io_err(op, "writing", &host))?;
    std::os::unix::fs::lchown(&host, Some(owner.0), Some(owner.1)).map_err(io_err(
        op,
        "changing owner of",
        &host,
    ))?;
    std::fs::set_permissions(
        &host,
        std::fs::Permissions::from_mode(a.mode.unwrap_or(0o644) & 0o7777),
    )
    .map_err(io_err(op, "setting mode of", &host))?;
    if let Some(t) = a.mtime {
        let t = filetime::FileTime::from_unix_time(t, 0);
        filetime::set_file_times(&host, t, t).map_err(io_err(op, "setting times of", &host))?;
    }
    Ok(())
}

pub(super) fn mkdir(dest_root: &Path, a: &MkdirAction) -> Result<(), FileOpError> {
    let op = "MKDIR";
    let root = Root::new(dest_root).map_err(root_err(op))?;
    let owner = resolve_owner(op, &root, a.chown.as_deref())?.unwrap_or((0, 0));
    let rel = dest_path(&a.workdir, &a.path);
    let host = root.resolve(&rel).map_err(root_err(op))?;
    if let Ok(m) = std::fs::metadata(&host) {
        if m.is_dir() && a.parents {
            return Ok(());
        }
        return Err(FileOpError::Io {
            op,
            what: "creating directory",
            path: Path::new("/").join(&rel),
            source: io::Error::from_raw_os_error(libc::EEXIST),
        });
    }
    match rel.parent() {
        Some(parent) if a.parents => mkdir_all(op, &root, parent, owner)?,
        Some(parent) => {
            let p = root.resolve(parent).map_err(root_err(op))?;
            if !p.is_dir() {
                return Err(FileOpError::Io {
                    op,
                    what: "creating directory",
                    path: Path::new("/").join(&rel),
                    source: io::Error::from_raw_os_error(libc::ENOENT),
                });
            }
        }
        None => {}
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&host)
        .map_err(io_err(op, "creating directory", &host))?;
    std::os::unix::fs::lchown(&host, Some(owner.0), Some(owner.1)).map_err(io_err(
        op,
        "changing owner of",
        &host,
    ))?;
    std::fs::set_permissions(
        &host,
        std::fs::Permissions::from_mode(a.mode.unwrap_or(0o755) & 0o7777),
    )
    .map_err(io_err(op, "setting mode of", &host))
}

pub(super) fn rm(dest_root: &Path, a: &RmAction) -> Result<(), FileOpError> {
    let op = "RM";
    let root = Root::new(dest_root).map_err(root_err(op))?;
    let rel = dest_path(&a.workdir, &a.path);
    if rel.as_os_str().is_empty() {
        return Err(FileOpError::InvalidPath {
            op,
            path: a.path.clone(),
            reason: "refusing to remove the root",
        });
    }
    let host = root.resolve_parent(&rel).map_err(root_err(op))?;
    if std::fs::symlink_metadata(&host).is_err() {
        if a.allow_not_found {
            return Ok(());
        }
        return Err(FileOpError::NotFound {
            op,
            place: "destination".into(),
            path: a.path.clone(),
        });
    }
    remove(op, &host)
}
