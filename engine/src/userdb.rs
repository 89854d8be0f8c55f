//! Users and groups of a rootfs: `/etc/passwd` and `/etc/group` read through a [`Root`] (or
//! parsed from their text, as the sandbox does from inside the container), and `user[:group]`
//! resolved the way Docker does.
//!
//! Two resolutions exist because Docker has two:
//! - [`UserDb::resolve_exec_user`] for `USER`/RUN (runc's `GetExecUser`): a numeric user that is
//!   not in `/etc/passwd` runs with gid 0; a named user must exist; without an explicit group the
//!   supplementary groups are those of `/etc/group` listing the user; the primary group is
//!   always among the supplementary ones, as BuildKit gives them to runc.
//! - [`UserDb::resolve_chown`] for `COPY --chown` (BuildKit's file operation): the value splits
//!   at its first `:` into user and group; `root`, ids and an empty side are ids (so `:gid` is
//!   `0:gid`); a numeric user without a group gets gid = uid; a named user gets its uid and
//!   primary gid from `/etc/passwd`, or 0:0 when it has no entry; a named group replaces the gid
//!   when `/etc/group` has it and leaves it alone otherwise. No value is an error, as in
//!   BuildKit (a name on the empty filesystem of `FROM scratch`, where BuildKit has nothing to
//!   read, is refused earlier, by the Dockerfile frontend).
//!
//! Numeric ids never need the files; for USER, names must exist in them.

use crate::fileops::root::Root;

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home directory (becomes `HOME` for RUN).
    pub home: String,
    /// Login shell.
    pub shell: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// Group name.
    pub name: String,
    /// Group id.
    pub gid: u32,
    /// User names listed as members.
    pub members: Vec<String>,
}

/// The identity a RUN step executes as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary group ids (`setgroups`).
    pub additional_gids: Vec<u32>,
    /// Home directory, `/` when the user has no passwd entry.
    pub home: String,
}

/// Why a user or group could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum UserDbError {
    /// A named user is not in `/etc/passwd`.
    #[error("unable to find user {name}: no matching entries in passwd file")]
    UnknownUser { name: String },
    /// A named group is not in `/etc/group`.
    #[error("unable to find group {name}: no matching entries in group file")]
    UnknownGroup { name: String },
    /// A file exists but could not be read.
    #[error("reading {path:?}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// The path could not be resolved inside the root.
    #[error(transparent)]
    Root(#[from] crate::fileops::root::RootError),
}

/// The parsed user and group databases of one rootfs (empty when the files are absent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDb {
    /// Entries of `/etc/passwd` in file order.
    pub users: Vec<PasswdEntry>,
    /// Entries of `/etc/group` in file order.
    pub groups: Vec<GroupEntry>,
}

impl UserDb {
    /// Reads `/etc/passwd` and `/etc/group` inside `root` (symlinks resolved in the root).
    pub fn load(root: &Root) -> Result<UserDb, UserDbError> {
        let passwd = read_optional(root, "/etc/passwd")?;
        let group = read_optional(root, "/etc/group")?;
        Ok(UserDb {
            users: parse_passwd(&passwd),
            groups: parse_group(&group),
        })
    }

    /// Looks a user up by name, or by id when `spec` is numeric.
    pub fn find_user(&self, spec: &str) -> Option<&PasswdEntry> {
        let id = spec.parse::<u32>().ok();
        self.users
            .iter()
            .find(|u| u.name == spec || Some(u.uid) == id)
    }

    /// Looks a group up by name, or by id when `spec` is numeric.
    pub fn find_group(&self, spec: &str) -> Option<&GroupEntry> {
        let id = spec.parse::<u32>().ok();
        self.groups
            .iter()
            .find(|g| g.name == spec || Some(g.gid) == id)
    }

    /// Resolves a `USER` value for RUN (see the module doc).
    pub fn resolve_exec_user(&self, spec: &str) -> Result<ExecUser, UserDbError> {
        // runc reads `user:` as no group at all.
        let (user_spec, group_spec) = match spec.split_once(':') {
            Some((u, "")) => (u, None),
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let mut out = ExecUser {
            uid: 0,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/".into(),
        };
        let mut user_name: Option<String> = None;
        if !user_spec.is_empty() {
            match self.find_user(user_spec) {
                Some(u) => {
                    out.uid = u.uid;
                    out.gid = u.gid;
                    out.home = u.home.clone();
                    user_name = Some(u.name.clone());
                }
                None => match user_spec.parse::<u32>() {
                    Ok(uid) => out.uid = uid,
                    Err(_) => {
                        return Err(UserDbError::UnknownUser {
                            name: user_spec.into(),
                        })
                    }
                },
            }
        }
        match group_spec {
            Some(g) => out.gid = self.resolve_group(g)?,
            None => {
                if let Some(name) = user_name {
                    for g in self.groups.iter().filter(|g| g.members.contains(&name)) {
                        if !out.additional_gids.contains(&g.gid) {
                            out.additional_gids.push(g.gid);
                        }
                    }
                }
            }
        }
        // BuildKit always lists the primary group among the supplementary ones.
        if !out.additional_gids.contains(&out.gid) {
            out.additional_gids.insert(0, out.gid);
        }
        Ok(out)
    }

    /// Resolves a `COPY --chown`/`ADD --chown` value to `(uid, gid)` with BuildKit's rule
    /// (see the module doc). Every value resolves: BuildKit never rejects one.
    pub fn resolve_chown(&self, spec: &str) -> (u32, u32) {
        let (user, group) = match spec.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (spec, None),
        };
        let (uid, mut gid) = match chown_id(user) {
            Some(uid) => (uid, uid),
            None => self
                .users
                .iter()
                .find(|u| u.name == user)
                .map_or((0, 0), |u| (u.uid, u.gid)),
        };
        if let Some(group) = group {
            match chown_id(group) {
                Some(id) => gid = id,
                None => {
                    if let Some(g) = self.groups.iter().find(|g| g.name == group) {
                        gid = g.gid;
                    }
                }
            }
        }
        (uid, gid)
    }

    /// The home directory of the process running as `uid`, as runc sets `HOME` for it: the first
    /// `/etc/passwd` entry named or numbered `uid`, else `/`.
    pub fn home_of_uid(&self, uid: u32) -> String {
        let name = uid.to_string();
        self.users
            .iter()
            .find(|u| u.uid == uid || u.name == name)
            .map(|u| u.home.clone())
            .unwrap_or_else(|| "/".into())
    }

    fn resolve_group(&self, spec: &str) -> Result<u32, UserDbError> {
        if let Ok(gid) = spec.parse::<u32>() {
            return Ok(gid);
        }
        self.groups
            .iter()
            .find(|g| g.name == spec)
            .map(|g| g.gid)
            .ok_or_else(|| UserDbError::UnknownGroup { name: spec.into() })
    }
}

/// One side of a `--chown` value as an id, as BuildKit's LLB client reads it: `root` is 0, an
/// empty side is 0 (an empty name is sent as id 0), a 32-bit signed decimal is that id (a
/// negative one wraps, as BuildKit's conversion does); anything else is a name.
fn chown_id(side: &str) -> Option<u32> {
    match side {
        "" | "root" => Some(0),
        _ => side.parse::<i32>().ok().map(|id| id as u32),
    }
}

fn read_optional(root: &Root, path: &str) -> Result<String, UserDbError> {
    let bytes = root.read_in_root(path)?.unwrap_or_default();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Parses `/etc/passwd` text; malformed lines are skipped, as libc does.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 4 {
                return None;
            }
            Some(PasswdEntry {
                name: f[0].to_string(),
                uid: f[2].trim().parse().ok()?,
                gid: f[3].trim().parse().ok()?,
                home: f.get(5).unwrap_or(&"").to_string(),
                shell: f.get(6).unwrap_or(&"").to_string(),
            })
        })
        .collect()
}

/// Parses `/etc/group` text; malformed lines are skipped.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            if f.len() < 3 {
                return None;
            }
            Some(GroupEntry {
                name: f[0].to_string(),
                gid: f[2].trim().parse().ok()?,
                members: f
                    .get(3)
                    .unwrap_or(&"")
                    .split(',')
                    .map(str::trim)
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> UserDb {
        UserDb {
            users: parse_passwd(
                "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\nbad line\n",
            ),
            groups: parse_group(
                "root:x:0:\nappgrp:x:1001:\nstaff:x:50:app,other\nwheel:x:10:app\n",
            ),
        }
    }

    #[test]
    fn exec_user_resolution_matches_docker() {
        let db = db();
        let u = db.resolve_exec_user("app").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (1000, 1001, "/home/app"));
        assert_eq!(u.additional_gids, vec![1001, 50, 10]);
        let u = db.resolve_exec_user("app:staff").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 50));
        assert_eq!(u.additional_gids, vec![50], "only the primary group");
        let u = db.resolve_exec_user("4242").unwrap();
        assert_eq!((u.uid, u.gid, u.home.as_str()), (4242, 0, "/"));
        let u = db.resolve_exec_user("4242:77").unwrap();
        assert_eq!((u.uid, u.gid), (4242, 77));
        assert!(matches!(
            db.resolve_exec_user("nobody"),
            Err(UserDbError::UnknownUser { .. })
        ));
        assert!(matches!(
            db.resolve_exec_user("app:nogroup"),
            Err(UserDbError::UnknownGroup { .. })
        ));
        assert_eq!(db.resolve_exec_user("").unwrap().uid, 0);
        let u = db.resolve_exec_user("app:").unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1001), "an empty group is no group");
        assert_eq!(u.additional_gids, vec![1001, 50, 10]);
    }

    #[test]
    fn home_is_the_passwd_entry_of_the_uid_else_root_dir() {
        let db = db();
        assert_eq!(db.home_of_uid(0), "/root");
        assert_eq!(db.home_of_uid(1000), "/home/app");
        assert_eq!(db.home_of_uid(4242), "/");
        assert_eq!(UserDb::default().home_of_uid(0), "/");
    }

    #[test]
    fn chown_resolution_matches_buildkit() {
        let db = db();
        assert_eq!(db.resolve_chown("10"), (10, 10));
        assert_eq!(db.resolve_chown("10:20"), (10, 20));
        assert_eq!(db.resolve_chown("app"), (1000, 1001));
        assert_eq!(db.resolve_chown("app:staff"), (1000, 50));
        assert_eq!(db.resolve_chown("1000:appgrp"), (1000, 1001));
        assert_eq!(db.resolve_chown("root:staff"), (0, 50));
        assert_eq!(
            UserDb::default().resolve_chown("5:6"),
            (5, 6),
            "ids need no files"
        );
    }

    #[test]
    fn chown_group_only_is_root_with_that_group() {
        let db = db();
        assert_eq!(db.resolve_chown(":1234"), (0, 1234));
        assert_eq!(db.resolve_chown(":staff"), (0, 50));
        assert_eq!(db.resolve_chown(":"), (0, 0));
    }

    #[test]
    fn chown_names_without_entries_fall_back_as_buildkit_does() {
        let db = db();
        assert_eq!(db.resolve_chown("ghost"), (0, 0));
        assert_eq!(
            db.resolve_chown("app:"),
            (1000, 0),
            "an empty group is gid 0"
        );
        assert_eq!(db.resolve_chown("app:nogroup"), (1000, 1001));
        assert_eq!(
            db.resolve_chown("1:2:3"),
            (1, 1),
            "the group `2:3` is a name"
        );
        assert_eq!(db.resolve_chown("99999999999"), (0, 0), "not a 32-bit id");
    }
}
