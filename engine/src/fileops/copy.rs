//! The COPY/ADD engine and the small file actions, on top of [`Root`].

use super::archive::{self, ExtractOptions, Ownership, WhiteoutMode};
use super::chmod::Chmod;
use super::plan::{self, FsTree, PlanMatch};
use super::root::{lexical_clean, open_nofollow, Root, RootError, Walk};
use super::{CopyAction, FileOpError, MkdirAction, MkfileAction, RmAction, SourceRoots};
use crate::source::context::{ContextEntry, EntryKind};
use crate::userdb::UserDb;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

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
    Ok(Some(db.resolve_chown(spec)))
}

/// `mkdir -p` inside `root`, creating each missing directory with `mode` owned by `owner`.
///
/// Path-based for now ([`Root::resolve`]): a prefix a symlink re-roots may need its own
/// missing parents made first, each with this owner and mode, which
/// [`Root::create_dir_all`] (one mode, no owner) does not do.
pub(super) fn mkdir_all(
    op: Op,
    root: &Root,
    rel: &Path,
    owner: (u32, u32),
    mode: u32,
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
                    mkdir_all(op, root, parent_rel, owner, mode)?;
                }
                std::fs::DirBuilder::new()
                    .mode(mode)
                    .create(&host)
                    .map_err(io_err(op, "creating directory", &host))?;
                std::fs::set_permissions(&host, std::fs::Permissions::from_mode(mode))
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

/// Writes the matches of a copy plan.
///
/// Path-based for now ([`Root::resolve_parent`] then `std::fs` on the host path): hardlinked
/// sources pair host paths across entries, directory metadata is set after their contents by
/// host path, and xattrs are copied from the source by path. Contents are read through
/// [`Root::open_read`]; archives are extracted descriptor-relative ([`archive::extract_tar`]).
struct Copier<'a> {
    op: Op,
    dest: &'a Root,
    /// `--chown`, resolved.
    owner: Option<(u32, u32)>,
    /// The owner of copied (not extracted) files without `--chown` (`CopyAction::source_owner`).
    source_owner: Option<(u32, u32)>,
    chmod: Option<Chmod>,
    drop_xattrs: bool,
    /// First destination written for each (dev, ino) of a multiply-linked source file, in the
    /// match being copied.
    links: HashMap<(u64, u64), PathBuf>,
    /// Host paths of the directories this match made or found (destination-relative path →
    /// host path): an entry below one is that path and its name, not resolved again from the
    /// root (which made a deep tree quadratic in its depth).
    dir_hosts: std::cell::RefCell<HashMap<PathBuf, PathBuf>>,
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
    let dest_rel = dest_path(&a.workdir, &a.dest);

    let is_url = |s: &str| op == "ADD" && (s.starts_with("http://") || s.starts_with("https://"));
    let urls: Vec<&str> = a
        .sources
        .iter()
        .map(String::as_str)
        .filter(|s| is_url(s))
        .collect();

    let tree = if urls.len() < a.sources.len() {
        let path = sources
            .get(&a.source_root)
            .ok_or_else(|| FileOpError::UnknownSourceRoot {
                op,
                name: a.source_root.clone(),
            })?;
        let root = Root::new(path).map_err(root_err(op))?;
        Some(FsTree::new(root, &a.hidden, op))
    } else {
        None
    };
    let plan = match &tree {
        Some(t) => plan::resolve(t, a, op)?,
        None => plan::CopyPlan::default(),
    };
    let count = plan.matches.len() + urls.len();
    if count == 0 {
        // Only wildcards matching nothing: nothing to copy, as BuildKit.
        return Ok(());
    }

    // Each match is copied in turn, as BuildKit does: a file lands on a destination that is not
    // a directory (so a later match overwrites an earlier one), or under its name in one that
    // is, an earlier match's directory included.
    let into_dir = super::plan::into_dir(a);
    // Each match makes the directories it needs on its way, in order, as BuildKit's copies
    // do: the first one decides their mode (an extracted archive makes them 0755).
    let parent_owner = owner.unwrap_or((0, 0));
    let parent_mode = created_dir_mode(chmod.as_ref());

    let mut copier = Copier {
        op,
        dest: &droot,
        owner,
        source_owner: a.source_owner,
        chmod,
        drop_xattrs: a.drop_xattrs,
        links: HashMap::new(),
        dir_hosts: Default::default(),
    };
    if let Some(tree) = &tree {
        for m in &plan.matches {
            copier.copy_match(tree.root(), m, &dest_rel, into_dir, a.parents)?;
        }
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
            parent_mode,
        )?;
    }
    Ok(())
}

/// The mode of the directories a COPY creates on the way to its destination: a numeric
/// `--chmod` (its permission bits), else 0755, as BuildKit's copy creates them. A symbolic
/// `--chmod` only applies to what is copied.
fn created_dir_mode(chmod: Option<&Chmod>) -> u32 {
    match chmod {
        Some(Chmod::Octal(mode)) => mode & 0o777,
        _ => 0o755,
    }
}

impl Copier<'_> {
    /// `mkdir -p` of a directory on the way to a copied path (see [`created_dir_mode`]).
    fn mkdir_all(&self, rel: &Path) -> Result<(), FileOpError> {
        mkdir_all(
            self.op,
            self.dest,
            rel,
            self.owner.unwrap_or((0, 0)),
            created_dir_mode(self.chmod.as_ref()),
        )
    }

    /// Writes what one match of the plan copies.
    fn copy_match(
        &mut self,
        src_root: &Root,
        m: &PlanMatch<'_>,
        dest_rel: &Path,
        into_dir: bool,
        parents: bool,
    ) -> Result<(), FileOpError> {
        let op = self.op;
        // As BuildKit's copy: files hardlinked to each other stay linked within one copied
        // path (a directory), not across the separate paths a wildcard matched.
        self.links.clear();
        self.dir_hosts.borrow_mut().clear();
        let top = m.top();
        let is_dir = top.kind == EntryKind::Dir;
        if m.archive {
            let host = src_root.host_path().join(&top.rel);
            return self.extract(&host, &m.logical, dest_rel);
        }
        let target = if parents {
            dest_rel.join(&m.kept)
        } else if is_dir {
            dest_rel.to_path_buf()
        } else {
            let dest_host = self.dest.resolve(dest_rel).map_err(root_err(op))?;
            let dest_dir = std::fs::metadata(&dest_host)
                .map(|m| m.is_dir())
                .unwrap_or(false);
            if (into_dir || dest_dir) && !m.name().is_empty() {
                dest_rel.join(m.name())
            } else {
                dest_rel.to_path_buf()
            }
        };
        // The destination path itself resolves inside the root, a final symlink included, as
        // in BuildKit: a COPY onto an existing link writes through it (to its target, which
        // may not exist yet).
        let target = if !parents && target == dest_rel {
            self.dest.resolve_rel(&target).map_err(root_err(op))?
        } else {
            target
        };
        if is_dir && !parents {
            let host = self.dest.resolve(&target).map_err(root_err(op))?;
            if let Ok(meta) = std::fs::metadata(&host) {
                if !meta.is_dir() {
                    return Err(FileOpError::DirOntoFile {
                        op,
                        src: m.logical.clone(),
                        dest: Path::new("/").join(&target).display().to_string(),
                    });
                }
            }
        }
        if let Some(parent) = target.parent() {
            self.mkdir_all(parent)?;
        }
        // Directories get their metadata after their contents are written (times).
        let mut dirs: Vec<(&ContextEntry, PathBuf)> = Vec::new();
        for pe in &m.entries {
            let dst = if pe.out.is_empty() {
                target.clone()
            } else {
                target.join(&pe.out)
            };
            let entry = pe.entry.as_ref();
            // A name overlay whiteouts use cannot be stored in a layer as itself (it would
            // delete what it names when the layer is applied).
            if dst
                .file_name()
                .is_some_and(|n| archive::is_reserved_name(n.as_bytes()))
            {
                return Err(FileOpError::ReservedName { op, path: dst });
            }
            if entry.kind == EntryKind::Dir {
                if let Some(host) = self.make_dir_entry(&dst, pe.out.is_empty() && !parents)? {
                    dirs.push((entry, host));
                }
            } else {
                self.write_entry(src_root, entry, &dst)?;
            }
        }
        for (entry, host) in dirs.into_iter().rev() {
            self.set_meta(src_root, entry, &host)?;
        }
        Ok(())
    }

    fn extract(
        &mut self,
        src_host: &Path,
        logical: &str,
        dest_rel: &Path,
    ) -> Result<(), FileOpError> {
        let op = self.op;
        // BuildKit's unpack makes the destination 0755 whatever --chmod says (--chmod does not
        // apply to what an archive holds either).
        mkdir_all(op, self.dest, dest_rel, self.owner.unwrap_or((0, 0)), 0o755)?;
        let host = self.dest.resolve(dest_rel).map_err(root_err(op))?;
        let extract_root = Root::new(&host).map_err(root_err(op))?;
        let file = open_nofollow(src_host).map_err(io_err(op, "opening", src_host))?;
        let (_, reader) = crate::compression::decompress(io::BufReader::new(file))
            .map_err(io_err(op, "reading", src_host))?;
        let archive_err = |source| FileOpError::Archive {
            op,
            path: logical.to_string(),
            source,
        };
        let limit = archive::expansion_limit(&host).map_err(archive_err)?;
        let opts = ExtractOptions {
            whiteouts: WhiteoutMode::Reject,
            ownership: match self.owner {
                Some((uid, gid)) => Ownership::Fixed(uid, gid),
                None => Ownership::Headers,
            },
            parents: Walk::InRoot,
            limit,
        };
        let reader = archive::LimitedReader::new(reader, limit);
        archive::extract_tar(reader, &extract_root, &opts).map_err(archive_err)
    }

    /// Makes the directory `dst`; returns its host path when its metadata is to be set from the
    /// source. The top of a copied directory never takes the source's metadata, as BuildKit:
    /// `COPY . /app` leaves an existing `/app` as it was, and a destination COPY creates for
    /// it is made like the directories on the way (0755 or the numeric `--chmod`, owned by
    /// `--chown` or root), BuildKit creating it first and copying into it.
    fn make_dir_entry(&self, dst: &Path, top: bool) -> Result<Option<PathBuf>, FileOpError> {
        let op = self.op;
        // Below a directory of this match, the path is its host path and the name, unless the
        // name is a link (the base's), which only the root's resolution may follow.
        let host = match self.known_parent(dst) {
            Some(h) if !std::fs::symlink_metadata(&h).is_ok_and(|m| m.is_symlink()) => h,
            _ => self.dest.resolve(dst).map_err(root_err(op))?,
        };
        let made = self.make_dir_at(dst, &host, top)?;
        // The match's top directory is there now too, made or kept.
        let known = made.clone().unwrap_or(host);
        self.dir_hosts.borrow_mut().insert(dst.to_path_buf(), known);
        Ok(made)
    }

    /// The host path of `dst` when its parent is a directory this match made or found.
    fn known_parent(&self, dst: &Path) -> Option<PathBuf> {
        let (parent, name) = (dst.parent()?, dst.file_name()?);
        self.dir_hosts
            .borrow()
            .get(parent)
            .map(|host| host.join(name))
    }

    fn make_dir_at(
        &self,
        dst: &Path,
        host: &Path,
        top: bool,
    ) -> Result<Option<PathBuf>, FileOpError> {
        let op = self.op;
        let host = host.to_path_buf();
        match std::fs::symlink_metadata(&host) {
            Ok(m) if m.is_dir() => {
                if top {
                    return Ok(None);
                }
            }
            Ok(_) => {
                remove(op, &host)?;
                self.make_dir(&host)?;
            }
            Err(_) if top => {
                self.mkdir_all(dst)?;
                return Ok(None);
            }
            Err(_) => {
                if let Some(parent) = host.parent().filter(|p| !p.is_dir()) {
                    let rel = parent
                        .strip_prefix(self.dest.host_path())
                        .unwrap_or(Path::new(""));
                    self.mkdir_all(rel)?;
                }
                self.make_dir(&host)?
            }
        }
        Ok(Some(host))
    }

    /// Writes one non-directory entry at `dst` (inside the destination root), replacing what
    /// is there.
    fn write_entry(
        &mut self,
        src_root: &Root,
        entry: &ContextEntry,
        dst: &Path,
    ) -> Result<(), FileOpError> {
        let op = self.op;
        let host = match self.known_parent(dst) {
            Some(h) => h,
            None => self.dest.resolve_parent(dst).map_err(root_err(op))?,
        };
        if let Some(parent) = host.parent() {
            if !parent.is_dir() {
                let parent_rel = dst.parent().unwrap_or(Path::new(""));
                self.mkdir_all(parent_rel)?;
            }
        }
        if std::fs::symlink_metadata(&host).is_ok() {
            remove(op, &host)?;
        }
        if entry.nlink > 1 {
            let key = (entry.dev, entry.ino);
            if let Some(first) = self.links.get(&key) {
                return std::fs::hard_link(first, &host).map_err(io_err(
                    op,
                    "creating hardlink",
                    &host,
                ));
            }
            self.links.insert(key, host.clone());
        }
        match entry.kind {
            EntryKind::File => {
                // Contents are read through openat2(RESOLVE_IN_ROOT) where the kernel has it, so
                // even a source tree changed under us cannot make this read leave its root.
                let mut input = src_root.open_read(&entry.rel).map_err(root_err(op))?;
                let mut output = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                    .open(&host)
                    .map_err(io_err(op, "creating", &host))?;
                io::copy(&mut input, &mut output).map_err(io_err(op, "copying to", &host))?;
            }
            EntryKind::Symlink => {
                // The target the plan recorded: what the cache key covers is what is written.
                let target = entry.link_target.clone().unwrap_or_default();
                std::os::unix::fs::symlink(&target, &host).map_err(io_err(
                    op,
                    "creating symlink",
                    &host,
                ))?;
            }
            EntryKind::Other => {
                let src = src_root.host_path().join(&entry.rel);
                let meta =
                    std::fs::symlink_metadata(&src).map_err(io_err(op, "inspecting", &src))?;
                let ft = meta.file_type();
                let fmt = if ft.is_fifo() {
                    libc::S_IFIFO
                } else if ft.is_char_device() {
                    libc::S_IFCHR
                } else if ft.is_block_device() {
                    libc::S_IFBLK
                } else {
                    return Ok(()); // sockets are not copied (Docker skips them too)
                };
                archive::mknod(&host, fmt, meta.rdev()).map_err(|e| FileOpError::Io {
                    op,
                    what: "creating node",
                    path: host.clone(),
                    source: io::Error::other(e.to_string()),
                })?;
            }
            EntryKind::Dir => unreachable!("directories are made by make_dir_entry"),
        }
        self.set_meta(src_root, entry, &host)
    }

    fn make_dir(&self, host: &Path) -> Result<(), FileOpError> {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(host)
            .map_err(io_err(self.op, "creating directory", host))
    }

    fn set_meta(
        &self,
        src_root: &Root,
        entry: &ContextEntry,
        dst: &Path,
    ) -> Result<(), FileOpError> {
        let op = self.op;
        let (uid, gid) = self
            .owner
            .or(self.source_owner)
            .unwrap_or((entry.uid, entry.gid));
        std::os::unix::fs::lchown(dst, Some(uid), Some(gid)).map_err(io_err(
            op,
            "changing owner of",
            dst,
        ))?;
        if !self.drop_xattrs {
            let src = src_root.host_path().join(&entry.rel);
            if let Ok(names) = xattr::list(&src) {
                for name in names {
                    if name == OsStr::new("security.selinux") {
                        continue;
                    }
                    if let Ok(Some(value)) = xattr::get(&src, &name) {
                        // Best effort, as BuildKit: some filesystems refuse some namespaces.
                        let _ = xattr::set(dst, &name, &value);
                    }
                }
            }
        }
        let is_dir = entry.kind == EntryKind::Dir;
        if entry.kind != EntryKind::Symlink {
            let mode = match &self.chmod {
                Some(c) => c.apply(entry.mode, is_dir),
                None => entry.mode & 0o7777,
            };
            std::fs::set_permissions(dst, std::fs::Permissions::from_mode(mode))
                .map_err(io_err(op, "setting mode of", dst))?;
        }
        let mtime = filetime::FileTime::from_unix_time(
            entry.mtime_ns.div_euclid(1_000_000_000),
            entry.mtime_ns.rem_euclid(1_000_000_000) as u32,
        );
        filetime::set_symlink_file_times(dst, mtime, mtime).map_err(io_err(
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
    mkdir_all(op, &root, parent, owner, 0o755)?;
    // The parent held open, the file replaced and written through descriptors: a link at the
    // path is replaced, never written through.
    let shown = Path::new("/").join(&rel);
    let at =
        root.parent(&rel, Walk::InRoot)
            .map_err(io_err(op, "opening the directory of", &shown))?;
    at.remove_all().map_err(io_err(op, "replacing", &shown))?;
    let fd = rustix::fs::openat(
        &at.dir,
        &at.name,
        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| io_err(op, "creating", &shown)(e.into()))?;
    let mut file = std::fs::File::from(fd);
    io::Write::write_all(&mut file, a.data.as_bytes()).map_err(io_err(op, "writing", &shown))?;
    std::os::unix::fs::fchown(&file, Some(owner.0), Some(owner.1)).map_err(io_err(
        op,
        "changing owner of",
        &shown,
    ))?;
    file.set_permissions(std::fs::Permissions::from_mode(
        a.mode.unwrap_or(0o644) & 0o7777,
    ))
    .map_err(io_err(op, "setting mode of", &shown))?;
    if let Some(t) = a.mtime {
        let t = filetime::FileTime::from_unix_time(t, 0);
        filetime::set_file_handle_times(&file, Some(t), Some(t)).map_err(io_err(
            op,
            "setting times of",
            &shown,
        ))?;
    }
    Ok(())
}

/// `MKDIR`. Path-based for now: a final dangling symlink names the directory to create (at
/// its target, inside the root), which [`Root::resolve`] gives and [`Root::parent`] does not.
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
        Some(parent) if a.parents => {
            mkdir_all(op, &root, parent, owner, a.mode.unwrap_or(0o755) & 0o777)?
        }
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
    // The final component is removed, never followed: `rm` of a link removes the link.
    let shown = Path::new("/").join(&rel);
    let found = match root.parent(&rel, Walk::InRoot) {
        Ok(at) => at
            .lstat()
            .map_err(io_err(op, "inspecting", &shown))?
            .map(|_| at),
        Err(e)
            if matches!(
                rustix::io::Errno::from_io_error(&e),
                Some(rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR)
            ) =>
        {
            None
        }
        Err(e) => return Err(io_err(op, "opening the directory of", &shown)(e)),
    };
    let Some(at) = found else {
        if a.allow_not_found {
            return Ok(());
        }
        return Err(FileOpError::NotFound {
            op,
            place: "destination".into(),
            path: a.path.clone(),
        });
    };
    at.remove_all().map_err(|e| FileOpError::Io {
        op,
        what: "replacing",
        path: shown,
        source: io::Error::other(e.to_string()),
    })
}
