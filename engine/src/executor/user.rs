//! `USER name[:group]` → numeric credentials, read from the image's `/etc/passwd` and
//! `/etc/group` the way Docker does:
//!
//! - an empty user is root (0:0);
//! - a numeric user needs no files: a passwd entry with that uid supplies the primary group,
//!   otherwise the group is 0;
//! - a name must be in `/etc/passwd` (first match wins), else the error names it;
//! - an explicit group (numeric, or a name from `/etc/group`) replaces the primary group and
//!   disables supplementary groups; without one, the supplementary groups are the groups that
//!   list the user's name as a member.
//!
//! The rootfs is read through a caller-supplied function, so the same code serves a mounted
//! rootfs ([`rootfs_reader`]), a stack of layer directories, or a test table.

use super::spec::ExecUser;
use rustix::fd::AsFd;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Why a `USER` value could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    /// The user name is not in `/etc/passwd`.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// The group name is not in `/etc/group`.
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    /// Reading a file of the rootfs failed.
    #[error("read {path}: {source}")]
    Read {
        /// Container path.
        path: String,
        /// The error.
        source: io::Error,
    },
}

/// Reads a container path from a rootfs: `Ok(None)` when the file does not exist.
pub type RootfsReader<'a> = dyn Fn(&str) -> io::Result<Option<Vec<u8>>> + 'a;

/// A [`RootfsReader`] for a directory holding a whole root filesystem (a mounted overlay, an
/// unpacked image). Symlinks resolve inside `root`, never outside it.
pub fn rootfs_reader(root: &Path) -> impl Fn(&str) -> io::Result<Option<Vec<u8>>> {
    let root: PathBuf = root.to_path_buf();
    move |path: &str| {
        let dir = rustix::fs::open(
            &root,
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )?;
        let rel = path.trim_start_matches('/');
        let opened = rustix::fs::openat2(
            dir.as_fd(),
            if rel.is_empty() { "." } else { rel },
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
            rustix::fs::ResolveFlags::IN_ROOT | rustix::fs::ResolveFlags::NO_MAGICLINKS,
        );
        match opened {
            Ok(fd) => {
                let mut bytes = Vec::new();
                std::fs::File::from(fd).read_to_end(&mut bytes)?;
                Ok(Some(bytes))
            }
            Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTDIR) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn read_lines(read: &RootfsReader<'_>, path: &str) -> Result<Vec<Vec<String>>, UserError> {
    let bytes = read(path).map_err(|source| UserError::Read {
        path: path.to_string(),
        source,
    })?;
    let text = bytes
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect())
}

fn passwd(read: &RootfsReader<'_>) -> Result<Vec<PasswdEntry>, UserError> {
    Ok(read_lines(read, "/etc/passwd")?
        .into_iter()
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?.clone(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect())
}

fn groups(read: &RootfsReader<'_>) -> Result<Vec<GroupEntry>, UserError> {
    Ok(read_lines(read, "/etc/group")?
        .into_iter()
        .filter_map(|f| {
            Some(GroupEntry {
                name: f.first()?.clone(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .map(str::trim)
                            .filter(|s| !s.is_empty())
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect())
}

/// Resolves a `USER` value (`user`, `uid`, `user:group`, `uid:gid`, ...) against a rootfs.
pub fn resolve(read: &RootfsReader<'_>, spec: &str) -> Result<ExecUser, UserError> {
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let mut out = ExecUser::default();
    let mut user_name = None;
    if !user_part.is_empty() {
        let numeric = user_part.parse::<u32>().ok();
        let entries = passwd(read)?;
        let found = entries.into_iter().find(|e| match numeric {
            Some(uid) => e.uid == uid,
            None => e.name == user_part,
        });
        match (found, numeric) {
            (Some(entry), _) => {
                out.uid = entry.uid;
                out.gid = entry.gid;
                user_name = Some(entry.name);
            }
            (None, Some(uid)) => out.uid = uid,
            (None, None) => return Err(UserError::UnknownUser(user_part.to_string())),
        }
    }
    match group_part {
        Some(group) if !group.is_empty() => {
            if let Ok(gid) = group.parse::<u32>() {
                out.gid = gid;
            } else {
                out.gid = groups(read)?
                    .into_iter()
                    .find(|g| g.name == group)
                    .map(|g| g.gid)
                    .ok_or_else(|| UserError::UnknownGroup(group.to_string()))?;
            }
        }
        _ => {
            if let Some(name) = &user_name {
                for group in groups(read)? {
                    let member = group.members.iter().any(|m| m == name);
                    if member && !out.additional_gids.contains(&group.gid) {
                        out.additional_gids.push(group.gid);
                    }
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(path: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(match path {
            "/etc/passwd" => Some(
                b"root:x:0:0:root:/root:/bin/sh\n# comment\napp:x:1000:1000::/home/app:/bin/sh\nweb:x:33:33::/:/bin/false\n"
                    .to_vec(),
            ),
            "/etc/group" => Some(
                b"root:x:0:\napp:x:1000:\nwheel:x:10:app,web\ndocker:x:999:app\nwww:x:33:\n".to_vec(),
            ),
            _ => None,
        })
    }

    fn empty(_: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(None)
    }

    #[test]
    fn name_gets_primary_and_member_groups() {
        let u = resolve(&table, "app").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.additional_gids, vec![10, 999]);
    }

    #[test]
    fn explicit_group_disables_supplementary() {
        let u = resolve(&table, "app:www").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 33));
        assert!(u.additional_gids.is_empty());
        let u = resolve(&table, "app:7").unwrap();
        assert_eq!(u.gid, 7);
    }

    #[test]
    fn numeric_without_files() {
        let u = resolve(&empty, "1234:5678").unwrap();
        assert_eq!((u.uid, u.gid), (1234, 5678));
        let u = resolve(&empty, "42").unwrap();
        assert_eq!((u.uid, u.gid), (42, 0));
        let u = resolve(&table, "33").unwrap();
        assert_eq!(
            (u.uid, u.gid),
            (33, 33),
            "numeric uid found in passwd takes its gid"
        );
        let u = resolve(&empty, "").unwrap();
        assert_eq!((u.uid, u.gid), (0, 0));
    }

    #[test]
    fn unknown_names_are_named() {
        let e = resolve(&table, "nobody2").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to find user nobody2: no matching entries in passwd file"
        );
        let e = resolve(&table, "app:staff").unwrap_err();
        assert_eq!(
            e.to_string(),
            "unable to find group staff: no matching entries in group file"
        );
        assert!(resolve(&empty, "app").is_err());
    }

    #[test]
    fn reads_a_rootfs_without_escaping_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/passwd"), "svc:x:501:502::/:/bin/sh\n").unwrap();
        // An absolute symlink must resolve inside the rootfs, not on the host.
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("etc/group")).unwrap();
        let read = rootfs_reader(dir.path());
        let u = resolve(&read, "svc").unwrap();
        assert_eq!((u.uid, u.gid), (501, 502));
        assert_eq!(read("/missing/file").unwrap(), None);
    }
}
