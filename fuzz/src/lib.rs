//! What the archive targets check after each input: nothing outside the directory being
//! extracted into changed, metadata included (an escape that only sets a time or a mode, or adds
//! a hardlink, counts as a write).

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What is recorded of one entry: kind and mode, owner, link count, size, mtime, the contents of
/// a file or the target of a symlink, and its xattrs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryState {
    pub mode: u32,
    pub owner: (u32, u32),
    pub nlink: u64,
    pub size: u64,
    /// `None` for directories whose listing is allowed to change (the destination's parent).
    pub mtime: Option<(i64, i64)>,
    pub content: Vec<u8>,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Every entry below `top` (itself included), skipping the subtree at `skip` and the paths in
/// `ignore`; `unstamped` directories are recorded without their mtime.
pub fn tree_state(
    top: &Path,
    skip: &Path,
    ignore: &[PathBuf],
    unstamped: &[PathBuf],
) -> BTreeMap<PathBuf, EntryState> {
    let mut out = BTreeMap::new();
    let walk = walkdir::WalkDir::new(top)
        .follow_links(false)
        .into_iter()
        .filter_entry(|e| !e.path().starts_with(skip));
    for entry in walk {
        let entry = entry.expect("walking the work directory");
        let p = entry.path();
        if ignore.iter().any(|i| i == p) {
            continue;
        }
        let m = std::fs::symlink_metadata(p).expect("stat");
        let content = if m.file_type().is_symlink() {
            std::fs::read_link(p)
                .expect("readlink")
                .into_os_string()
                .into_encoded_bytes()
        } else if m.is_file() {
            std::fs::read(p).expect("read")
        } else {
            Vec::new()
        };
        let mut xattrs: Vec<(Vec<u8>, Vec<u8>)> = xattr::list(p)
            .map(|names| {
                names
                    .map(|n| {
                        let v = xattr::get(p, &n).ok().flatten().unwrap_or_default();
                        (n.into_encoded_bytes(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        let stamped = !(m.is_dir() && unstamped.iter().any(|u| u == p));
        out.insert(
            p.to_path_buf(),
            EntryState {
                mode: m.mode(),
                owner: (m.uid(), m.gid()),
                nlink: if m.is_dir() { 0 } else { m.nlink() },
                size: if m.is_dir() { 0 } else { m.size() },
                mtime: stamped.then(|| (m.mtime(), m.mtime_nsec())),
                content,
                xattrs,
            },
        );
    }
    out
}

/// Panics with the first difference between two states.
pub fn assert_unchanged(
    before: &BTreeMap<PathBuf, EntryState>,
    after: &BTreeMap<PathBuf, EntryState>,
) {
    for (p, a) in after {
        match before.get(p) {
            None => panic!("written outside the destination: {p:?} appeared"),
            Some(b) if b != a => {
                panic!("written outside the destination: {p:?} changed from {b:?} to {a:?}")
            }
            Some(_) => {}
        }
    }
    for p in before.keys() {
        assert!(
            after.contains_key(p),
            "written outside the destination: {p:?} was removed"
        );
    }
}

/// A directory for this process's work, with canaries around where each input is extracted:
/// `<base>/canary` (a file), `<base>/sibling/{keep,x/}` next to the destinations. The base is
/// `$BUILDER_FUZZ_TMP` when set, else the system temporary directory.
pub fn work_base() -> tempfile::TempDir {
    let parent = std::env::var_os("BUILDER_FUZZ_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&parent).unwrap();
    let base = tempfile::Builder::new()
        .prefix("builder-fuzz-")
        .tempdir_in(parent)
        .unwrap();
    std::fs::write(base.path().join("canary"), b"canary").unwrap();
    std::fs::create_dir_all(base.path().join("sibling/x")).unwrap();
    std::fs::write(base.path().join("sibling/keep"), b"keep").unwrap();
    base
}
