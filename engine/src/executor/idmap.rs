//! User namespace id maps for rootless builds: the user becomes root in the sandbox and the
//! user's subordinate ids (`/etc/subuid`, `/etc/subgid`) become 1..N, written with the setuid
//! `newuidmap`/`newgidmap` tools.

use super::error::ExecError;
use std::path::Path;
use std::process::Command;

/// One `name:start:count` range of a subordinate id file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SubRange {
    pub start: u64,
    pub count: u64,
}

/// The ranges in `content` (an `/etc/subuid`-format file) that belong to `name` or `id`.
pub(crate) fn parse_subid(content: &str, name: Option<&str>, id: u32) -> Vec<SubRange> {
    content
        .lines()
        .filter_map(|line| {
            let mut fields = line.trim().split(':');
            let owner = fields.next()?;
            let start = fields.next()?.parse().ok()?;
            let count = fields.next()?.parse().ok()?;
            let ours = Some(owner) == name || owner.parse::<u32>().ok() == Some(id);
            (ours && count > 0).then_some(SubRange { start, count })
        })
        .collect()
}

/// The argument list after the pid: `0 <own> 1 1 <start> <count> ...`.
pub(crate) fn map_args(own: u32, ranges: &[SubRange]) -> Vec<String> {
    let mut args = vec!["0".to_string(), own.to_string(), "1".to_string()];
    let mut next = 1u64;
    for r in ranges {
        args.extend([next.to_string(), r.start.to_string(), r.count.to_string()]);
        next += r.count;
    }
    args
}

/// The subordinate ranges of the current user in `file`.
fn own_ranges(file: &Path, id: u32) -> Vec<SubRange> {
    let name = user_name(rustix::process::getuid().as_raw());
    std::fs::read_to_string(file)
        .map(|content| parse_subid(&content, name.as_deref(), id))
        .unwrap_or_default()
}

/// The login name of `uid`, from the system's user database (files, LDAP, ... as NSS is
/// configured), as `newuidmap` itself looks it up.
fn user_name(uid: u32) -> Option<String> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: a zeroed passwd is valid, and getpwuid_r writes only into it and `buf`.
        let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        // libc: rustix does not read the user database (NSS lives in the C library).
        // SAFETY: every pointer is valid for the length given.
        let rc =
            unsafe { libc::getpwuid_r(uid, &mut entry, buf.as_mut_ptr(), buf.len(), &mut found) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        if rc != 0 || found.is_null() || entry.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success `pw_name` points at a NUL-terminated string inside `buf`.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.pw_name) };
        return Some(name.to_string_lossy().into_owned());
    }
}

/// Writes the maps of `pid`'s user namespace. Returns `false` when the user has no
/// subordinate ids (the helper then maps only itself).
pub(crate) fn write_maps(pid: i32) -> Result<bool, ExecError> {
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let uids = own_ranges(Path::new("/etc/subuid"), uid);
    let gids = own_ranges(Path::new("/etc/subgid"), uid);
    if uids.is_empty() || gids.is_empty() {
        return Ok(false);
    }
    for (tool, own, ranges) in [("newuidmap", uid, &uids), ("newgidmap", gid, &gids)] {
        let output = Command::new(tool)
            .arg(pid.to_string())
            .args(map_args(own, ranges))
            .output()
            .map_err(|e| ExecError::IdMap(format!("run {tool}: {e}")))?;
        if !output.status.success() {
            return Err(ExecError::IdMap(format!(
                "{tool} {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
    }
    Ok(true)
}

/// The id map a rootless sandbox uses, as the layer writer needs it to turn host ids found in an
/// upper directory back into container ids: container 0 is the user, 1.. the subordinate ranges.
pub fn layer_id_map() -> crate::layer::IdMap {
    fn mappings(own: u32, ranges: &[SubRange]) -> Vec<crate::layer::IdMapping> {
        let mut out = vec![crate::layer::IdMapping {
            container_id: 0,
            host_id: own,
            size: 1,
        }];
        let mut next = 1u64;
        for r in ranges {
            out.push(crate::layer::IdMapping {
                container_id: next as u32,
                host_id: r.start as u32,
                size: r.count as u32,
            });
            next += r.count;
        }
        out
    }
    let uid = rustix::process::getuid().as_raw();
    let gid = rustix::process::getgid().as_raw();
    let mut uids = own_ranges(Path::new("/etc/subuid"), uid);
    let mut gids = own_ranges(Path::new("/etc/subgid"), uid);
    // As in `write_maps`: without both ranges, only the user itself is mapped.
    if uids.is_empty() || gids.is_empty() {
        uids.clear();
        gids.clear();
    }
    crate::layer::IdMap {
        uids: mappings(uid, &uids),
        gids: mappings(gid, &gids),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_by_name_or_id_and_builds_args() {
        let file = "alice:100000:65536\nbob:200000:10\n1001:300000:5\nbad line\n";
        let alice = parse_subid(file, Some("alice"), 1000);
        assert_eq!(
            alice,
            vec![SubRange {
                start: 100000,
                count: 65536
            }]
        );
        let by_id = parse_subid(file, Some("carol"), 1001);
        assert_eq!(
            by_id,
            vec![SubRange {
                start: 300000,
                count: 5
            }]
        );
        assert_eq!(
            map_args(
                1000,
                &[
                    SubRange {
                        start: 100000,
                        count: 10
                    },
                    SubRange { start: 5, count: 2 }
                ]
            ),
            ["0", "1000", "1", "1", "100000", "10", "11", "5", "2"]
        );
    }
}
