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
//! The rules live in [`crate::userdb`], shared with `COPY --chown`; this module reads the two
//! files through a caller-supplied function, so the same code serves a mounted rootfs
//! ([`rootfs_reader`]) from inside the sandbox, a stack of layer directories, or a test table.

use super::spec::ExecUser;
use crate::fileops::root::Root;
use crate::userdb::{parse_group, parse_passwd, UserDb, UserDbError};
use std::io::{self};
use std::path::Path;

/// Reads a container path from a rootfs: `Ok(None)` when the file does not exist.
pub type RootfsReader<'a> = dyn Fn(&str) -> io::Result<Option<Vec<u8>>> + 'a;

/// A [`RootfsReader`] for a directory holding a whole root filesystem (a mounted overlay, an
/// unpacked image). Symlinks resolve inside `root`, never outside it ([`Root::read_in_root`]).
pub fn rootfs_reader(root: &Path) -> impl Fn(&str) -> io::Result<Option<Vec<u8>>> {
    let root = Root::new(root).map_err(io::Error::other);
    move |path: &str| match &root {
        Ok(root) => root.read_in_root(path).map_err(io::Error::other),
        Err(e) => Err(io::Error::other(e.to_string())),
    }
}

/// Resolves a `USER` value (`user`, `uid`, `user:group`, `uid:gid`, ...) against a rootfs, with
/// the rules of [`UserDb::resolve_exec_user`].
pub fn resolve(read: &RootfsReader<'_>, spec: &str) -> Result<ExecUser, UserDbError> {
    let text = |path: &str| -> Result<String, UserDbError> {
        let bytes = read(path).map_err(|source| UserDbError::Io {
            path: path.to_string(),
            source,
        })?;
        Ok(bytes
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default())
    };
    let db = UserDb {
        users: parse_passwd(&text("/etc/passwd")?),
        groups: parse_group(&text("/etc/group")?),
    };
    let user = db.resolve_exec_user(spec)?;
    Ok(ExecUser {
        uid: user.uid,
        gid: user.gid,
        additional_gids: user.additional_gids,
    })
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
        assert_eq!(u.additional_gids, vec![1000, 10, 999]);
    }

    #[test]
    fn explicit_group_disables_supplementary() {
        let u = resolve(&table, "app:www").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 33));
        assert_eq!(u.additional_gids, vec![33], "the primary group only");
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
