//! Reading files of a root filesystem that exists only as a stack of snapshot directories.
//!
//! Resolving `USER app` needs `/etc/passwd` before any overlay is mounted. This reads a path the
//! way overlayfs would present it: the topmost layer holding it wins, a whiteout (a 0:0 character
//! device) hides it, and an opaque directory hides everything below it.

use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

fn is_whiteout(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .map(|m| m.file_type().is_char_device() && std::os::unix::fs::MetadataExt::rdev(&m) == 0)
        .unwrap_or(false)
}

fn is_opaque(dir: &Path) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| matches!(xattr::get(dir, name), Ok(Some(v)) if v == b"y"))
}

/// Reads `path` (absolute, inside the container) from `lowers` (bottom first).
/// `Ok(None)` when no layer provides it. Symlinks are not followed (files such as
/// `/etc/passwd` are regular files in practice).
pub fn read_layered(lowers: &[PathBuf], path: &str) -> io::Result<Option<Vec<u8>>> {
    let rel: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if rel.contains(&"..") {
        return Ok(None);
    }
    'layers: for layer in lowers.iter().rev() {
        let mut cur = layer.clone();
        for (i, comp) in rel.iter().enumerate() {
            cur.push(comp);
            if is_whiteout(&cur) {
                return Ok(None);
            }
            let last = i + 1 == rel.len();
            if !last {
                match std::fs::symlink_metadata(&cur) {
                    Ok(m) if m.is_dir() => {
                        if is_opaque(&cur) {
                            // Nothing below this layer shows through this directory.
                            return read_file(&cur.join(rel[i + 1..].join("/")));
                        }
                    }
                    _ => continue 'layers,
                }
            }
        }
        if let Some(bytes) = read_file(&cur)? {
            return Ok(Some(bytes));
        }
    }
    Ok(None)
}

fn read_file(path: &Path) -> io::Result<Option<Vec<u8>>> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_file() => std::fs::read(path).map(Some),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_layer_wins_and_whiteouts_hide() {
        let base = tempfile::tempdir().unwrap();
        let top = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(base.path().join("etc")).unwrap();
        std::fs::write(base.path().join("etc/passwd"), "base").unwrap();
        std::fs::write(base.path().join("etc/group"), "g").unwrap();
        std::fs::create_dir_all(top.path().join("etc")).unwrap();
        std::fs::write(top.path().join("etc/passwd"), "top").unwrap();
        let lowers = vec![base.path().to_path_buf(), top.path().to_path_buf()];
        assert_eq!(
            read_layered(&lowers, "/etc/passwd").unwrap().unwrap(),
            b"top"
        );
        assert_eq!(read_layered(&lowers, "/etc/group").unwrap().unwrap(), b"g");
        assert!(read_layered(&lowers, "/etc/shadow").unwrap().is_none());
        if nix::unistd::geteuid().is_root() {
            nix::sys::stat::mknod(
                &top.path().join("etc/group"),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .unwrap();
            assert!(read_layered(&lowers, "/etc/group").unwrap().is_none());
        }
    }
}
