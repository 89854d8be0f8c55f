//! COPY/ADD from the build context: the cache key covers exactly what the copy reads and
//! writes (one resolution for both), and the copy follows current BuildKit's rules. Each test is
//! named after the rule it guards; several came from `cache_soundness` findings.

mod common;

use common::{builder_bin, step};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

struct Env {
    dir: tempfile::TempDir,
    builds: std::cell::Cell<usize>,
}

impl Env {
    fn new() -> Env {
        common::require_build();
        let dir = tempfile::Builder::new()
            .prefix("builder-copy-cache-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("ctx")).unwrap();
        Env {
            dir,
            builds: std::cell::Cell::new(0),
        }
    }

    fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.ctx().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// Builds `dockerfile` on the context with the persistent root (`root`) and `args`;
    /// returns success, stderr, the metadata and the exported root filesystem.
    fn build_in(
        &self,
        root: &str,
        dockerfile: &str,
        args: &[&str],
    ) -> (bool, String, serde_json::Value, PathBuf) {
        let n = self.builds.get() + 1;
        self.builds.set(n);
        let df = self.dir.path().join("Dockerfile");
        std::fs::write(&df, dockerfile).unwrap();
        let out = self.dir.path().join(format!("out-{n}"));
        let meta = self.dir.path().join(format!("meta-{n}.json"));
        let o = Command::new(builder_bin())
            .current_dir(self.dir.path())
            .arg("--root")
            .arg(root)
            .args(["build", "--progress", "plain", "-f"])
            .arg(&df)
            .arg("--metadata-file")
            .arg(&meta)
            .arg("-o")
            .arg(format!("type=local,dest={}", out.display()))
            .args(args)
            .arg(self.ctx())
            .output()
            .unwrap();
        let meta = std::fs::read(&meta)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null);
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            meta,
            out,
        )
    }

    /// Builds `dockerfile` in a fresh root: what the incremental build must equal.
    fn build_clean(&self, dockerfile: &str) -> Vec<(String, String)> {
        let n = self.builds.get();
        let root = self.dir.path().join(format!("clean-root-{n}"));
        let (ok, stderr, _, out) = self.build_in(root.to_str().unwrap(), dockerfile, &[]);
        assert!(ok, "clean build failed:\n{stderr}");
        listing(&out)
    }

    fn build(&self, dockerfile: &str) -> (serde_json::Value, PathBuf) {
        let root = self.dir.path().join("root");
        let (ok, stderr, meta, out) = self.build_in(root.to_str().unwrap(), dockerfile, &[]);
        assert!(ok, "build failed:\n{stderr}");
        (meta, out)
    }
}

fn cached(meta: &serde_json::Value, needle: &str) -> bool {
    step(meta, needle)["cached"].as_bool().unwrap()
}

/// Every path below `out` with its content (`<dir>` for directories), sorted.
fn listing(out: &Path) -> Vec<(String, String)> {
    let mut all = Vec::new();
    let mut stack = vec![out.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(out).unwrap().display().to_string();
            if e.file_type().unwrap().is_dir() {
                all.push((rel, "<dir>".to_string()));
                stack.push(p);
            } else {
                all.push((rel, std::fs::read_to_string(&p).unwrap_or_default()));
            }
        }
    }
    all.sort();
    all
}

fn read(out: &Path, rel: &str) -> String {
    std::fs::read_to_string(out.join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    xattr_call(path, name, value);
}

fn xattr_call(path: &Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of the given length.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(rc, 0, "setxattr {}", path.display());
}

fn has_xattr(path: &Path, name: &str) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: a null buffer of size 0 asks for the value's size only.
    unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) >= 0 }
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn wildcard_keys_match_with_go_rules_like_the_copy() {
    let e = Env::new();
    e.write("a", "a");
    e.write("b", "b1");
    let df = "FROM scratch\nCOPY [^a]* /d/\n";
    let (_, out) = e.build(df);
    assert_eq!(read(&out, "d/b"), "b1");
    assert!(!out.join("d/a").exists(), "[^a] is a negated class");
    e.write("b", "b2");
    let (meta, out) = e.build(df);
    assert!(!cached(&meta, "COPY"), "an edit of a matched file misses");
    assert_eq!(read(&out, "d/b"), "b2");
    e.write("a", "changed");
    let (meta, _) = e.build(df);
    assert!(
        cached(&meta, "COPY"),
        "a file the pattern excludes is not an input"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn edits_through_a_symlinked_directory_miss() {
    let e = Env::new();
    e.write("real/f", "1");
    std::os::unix::fs::symlink("real", e.ctx().join("link")).unwrap();
    let df = "FROM scratch\nCOPY link/f /d/\n";
    e.build(df);
    e.write("real/f", "2");
    let (meta, out) = e.build(df);
    assert!(!cached(&meta, "COPY"));
    assert_eq!(read(&out, "d/f"), "2");
    std::fs::set_permissions(
        e.ctx().join("real/f"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let (meta, out) = e.build(df);
    assert!(!cached(&meta, "COPY"));
    assert_eq!(
        step(&meta, "COPY")["reason"]["kind"],
        "file_changed",
        "{meta:#}"
    );
    assert_eq!(
        std::fs::metadata(out.join("d/f")).unwrap().mode() & 0o7777,
        0o700
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_followed_source_symlink_keys_its_target_not_its_path() {
    let e = Env::new();
    e.write("t/x", "x");
    std::os::unix::fs::symlink("t/x", e.ctx().join("l")).unwrap();
    let df = "FROM scratch\nCOPY l /d/\n";
    e.build(df);
    // The same file by another path: the layer is the same, so is the key.
    std::fs::remove_file(e.ctx().join("l")).unwrap();
    std::os::unix::fs::symlink("/t/./x", e.ctx().join("l")).unwrap();
    let (meta, _) = e.build(df);
    assert!(cached(&meta, "COPY"), "{meta:#}");
    e.write("t/x", "y");
    let (meta, out) = e.build(df);
    assert!(!cached(&meta, "COPY"));
    assert_eq!(read(&out, "d/l"), "y");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_copied_symlinks_target_is_in_the_key() {
    let e = Env::new();
    e.write("dir/a", "a");
    std::os::unix::fs::symlink("a", e.ctx().join("dir/l")).unwrap();
    let df = "FROM scratch\nCOPY dir /d/\n";
    e.build(df);
    std::fs::remove_file(e.ctx().join("dir/l")).unwrap();
    std::os::unix::fs::symlink("b", e.ctx().join("dir/l")).unwrap();
    let (meta, out) = e.build(df);
    assert!(!cached(&meta, "COPY"));
    assert!(
        step(&meta, "COPY")["reason"]["new"]
            .as_str()
            .unwrap()
            .contains("link=b"),
        "{meta:#}"
    );
    assert_eq!(std::fs::read_link(out.join("d/l")).unwrap(), Path::new("b"));
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn context_xattrs_reach_neither_the_layer_nor_the_key() {
    let e = Env::new();
    e.write("f", "f");
    let df = "FROM scratch\nCOPY f /d/\n";
    e.build(df);
    set_xattr(&e.ctx().join("f"), "user.k", b"line1\nline2");
    let (meta, out) = e.build(df);
    assert!(
        cached(&meta, "COPY"),
        "BuildKit's layers carry no context xattrs"
    );
    let root = e.dir.path().join("fresh-root");
    let (ok, stderr, _, out2) = e.build_in(root.to_str().unwrap(), df, &[]);
    assert!(ok, "{stderr}");
    for o in [out, out2] {
        assert!(!has_xattr(&o.join("d/f"), "user.k"));
    }
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn dockerignore_exceptions_are_in_the_key_and_only_their_parents_are_sent() {
    let e = Env::new();
    e.write("c/xd", "1");
    e.write("c/y", "y");
    e.write("c/e/z", "z");
    e.write("keep", "k");
    e.write(".dockerignore", "c\n!c/*d\n");
    let df = "FROM scratch\nCOPY . /d/\n";
    let (_, out) = e.build(df);
    assert_eq!(read(&out, "d/c/xd"), "1");
    assert!(!out.join("d/c/y").exists());
    assert!(
        !out.join("d/c/e").exists(),
        "an excluded directory without re-included files is not sent"
    );
    e.write("c/xd", "2");
    let (meta, out) = e.build(df);
    assert!(!cached(&meta, "COPY"), "a re-included file is an input");
    assert_eq!(read(&out, "d/c/xd"), "2");
    std::fs::set_permissions(e.ctx().join("c"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (meta, out) = e.build(df);
    assert!(
        !cached(&meta, "COPY"),
        "the parent of a re-included file is sent as it is"
    );
    assert_eq!(
        std::fs::metadata(out.join("d/c")).unwrap().mode() & 0o7777,
        0o700
    );
    e.write("c/y", "excluded edit");
    let (meta, _) = e.build(df);
    assert!(cached(&meta, "COPY"));
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_symlink_to_an_ignored_file_is_an_error_naming_it() {
    let e = Env::new();
    e.write("secret", "s");
    e.write(".dockerignore", "secret\n");
    std::os::unix::fs::symlink("secret", e.ctx().join("l")).unwrap();
    let root = e.dir.path().join("root");
    let (ok, stderr, _, _) = e.build_in(root.to_str().unwrap(), "FROM scratch\nCOPY l /d/\n", &[]);
    assert!(!ok);
    assert!(
        stderr.contains("\"l\" is a symlink to \"secret\""),
        "{stderr}"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_same_size_edit_with_the_mtime_restored_misses() {
    let e = Env::new();
    e.write("f", "aaaa");
    let df = "FROM scratch\nCOPY f /d/\n";
    e.build(df);
    let p = e.ctx().join("f");
    let mtime = filetime::FileTime::from_last_modification_time(&std::fs::metadata(&p).unwrap());
    std::fs::write(&p, "bbbb").unwrap();
    filetime::set_file_mtime(&p, mtime).unwrap();
    let (meta, out) = e.build(df);
    assert!(!cached(&meta, "COPY"));
    assert_eq!(read(&out, "d/f"), "bbbb");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn what_the_layer_cannot_show_misses_nothing() {
    let e = Env::new();
    e.write("f", "f");
    e.write("x.md", "x");
    e.write("sub/a", "a");
    let df = "FROM scratch\nCOPY --exclude=*.md --exclude=sub . /d/\nCOPY --chmod=644 sub /s/\n";
    e.build(df);
    // Owner: context files belong to root in the layer.
    std::os::unix::fs::lchown(e.ctx().join("f"), Some(1234), Some(1234)).unwrap();
    // An excluded file.
    e.write("x.md", "edited");
    // A mode --chmod replaces.
    std::fs::set_permissions(
        e.ctx().join("sub/a"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let (meta, out) = e.build(df);
    assert!(cached(&meta, "COPY --exclude"), "{meta:#}");
    assert!(cached(&meta, "COPY --chmod"), "{meta:#}");
    assert_eq!(std::fs::metadata(out.join("d/f")).unwrap().uid(), 0);
    assert!(!out.join("d/x.md").exists());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_mode_change_is_reported_as_a_mode_change() {
    let e = Env::new();
    e.write("f", "f");
    let df = "FROM scratch\nCOPY f /d/\n";
    e.build(df);
    std::fs::set_permissions(e.ctx().join("f"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let (meta, _) = e.build(df);
    let reason = &step(&meta, "COPY")["reason"];
    assert_eq!(reason["kind"], "file_changed");
    let progress_line = format!(
        "{} → {}",
        reason["old"].as_str().unwrap(),
        reason["new"].as_str().unwrap()
    );
    assert!(progress_line.contains("mode=644"), "{progress_line}");
    assert!(progress_line.contains("mode=755"), "{progress_line}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn parents_without_a_pivot_keep_the_whole_path() {
    let e = Env::new();
    e.write("a/b.txt", "b");
    e.write("a/other", "o");
    e.write("top", "t");
    let (_, out) = e.build("FROM scratch\nCOPY --parents a/b.txt /d/\n");
    assert_eq!(read(&out, "d/a/b.txt"), "b");
    assert!(!out.join("d/a/other").exists());
    assert!(!out.join("d/top").exists());
    let (_, out) = e.build("FROM scratch\nCOPY --parents ./a/./b.txt /p/\n");
    assert_eq!(read(&out, "p/b.txt"), "b");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn copy_from_a_stage_without_filesystem_steps_copies_an_empty_tree() {
    let e = Env::new();
    e.write("f", "f");
    let (_, out) =
        e.build("FROM scratch AS empty\nFROM scratch\nCOPY --from=empty / /e/\nCOPY f /f\n");
    assert!(out.join("e").is_dir());
    assert_eq!(std::fs::read_dir(out.join("e")).unwrap().count(), 0);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_relative_root_works_with_copy_from() {
    let e = Env::new();
    e.write("f", "f");
    let (ok, stderr, _, out) = e.build_in(
        "relative-root",
        "FROM scratch AS one\nCOPY f /f\nFROM scratch\nCOPY --from=one /f /g\n",
        &[],
    );
    assert!(ok, "{stderr}");
    assert_eq!(read(&out, "g"), "f");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn escaped_wildcards_are_go_escapes() {
    let e = Env::new();
    e.write("[x]", "x");
    e.write("ax", "a");
    // `\\[` in the Dockerfile is `\[` in the source: a literal `[` in a pattern.
    let (_, out) = e.build("FROM scratch\nCOPY *\\\\[x] /d/\n");
    assert_eq!(read(&out, "d/[x]"), "x");
    assert!(!out.join("d/ax").exists());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn hardlinked_files_stay_hardlinked_within_a_copied_directory() {
    let e = Env::new();
    e.write("dir/h1", "h");
    std::fs::hard_link(e.ctx().join("dir/h1"), e.ctx().join("dir/h2")).unwrap();
    let df = "FROM scratch\nCOPY dir /d/\n";
    let (_, out) = e.build(df);
    let (a, b) = (
        std::fs::metadata(out.join("d/h1")).unwrap(),
        std::fs::metadata(out.join("d/h2")).unwrap(),
    );
    assert_eq!(a.ino(), b.ino(), "one inode, as BuildKit's copy keeps them");
    // Unlinking them is a change the layer shows.
    std::fs::remove_file(e.ctx().join("dir/h2")).unwrap();
    std::fs::write(e.ctx().join("dir/h2"), "h").unwrap();
    let (meta, out) = e.build(df);
    assert!(!cached(&meta, "COPY"));
    assert_ne!(
        std::fs::metadata(out.join("d/h1")).unwrap().ino(),
        std::fs::metadata(out.join("d/h2")).unwrap().ino()
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_wildcard_matching_nothing_copies_nothing_and_others_still_copy() {
    let e = Env::new();
    e.write("a.txt", "a");
    let (_, out) = e.build("FROM scratch\nCOPY nomatch* a.txt /d/\nCOPY none* /n/\n");
    assert_eq!(read(&out, "d/a.txt"), "a");
    assert!(
        !out.join("n").exists(),
        "as current BuildKit: nothing, not even /n"
    );
    let root = e.dir.path().join("root");
    let (ok, stderr, _, _) = e.build_in(
        root.to_str().unwrap(),
        "FROM scratch\nCOPY missing a.txt /d/\n",
        &[],
    );
    assert!(!ok);
    assert!(
        stderr.contains("file not found in build context: \"/missing\""),
        "{stderr}"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_hardlink_to_a_copied_file_from_outside_the_copy_misses_nothing() {
    let e = Env::new();
    e.write("f", "f");
    let df = "FROM scratch\nCOPY --parents f /d/\n";
    e.build(df);
    std::fs::hard_link(e.ctx().join("f"), e.ctx().join("other")).unwrap();
    let (meta, _) = e.build(df);
    assert!(
        cached(&meta, "COPY"),
        "a link the copy does not write is no input: {meta:#}"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn an_empty_directory_matched_into_the_destination_misses_nothing() {
    let e = Env::new();
    e.write("a", "a");
    let df = "FROM scratch\nCOPY * /d/\n";
    e.build(df);
    // A matched directory's contents go into /d/, which keeps its own metadata: an empty one
    // writes nothing.
    std::fs::create_dir(e.ctx().join("empty")).unwrap();
    let (meta, _) = e.build(df);
    assert!(cached(&meta, "COPY"), "{meta:#}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_step_below_a_miss_names_its_parent_not_an_entry_it_does_not_write() {
    let e = Env::new();
    std::fs::create_dir(e.ctx().join("z")).unwrap();
    e.write("a", "a");
    let df = "FROM scratch\nCOPY . /d0/\nCOPY z* /d1/\n";
    e.build(df);
    std::fs::set_permissions(e.ctx().join("z"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let (meta, _) = e.build(df);
    assert_eq!(step(&meta, "COPY . /d0/")["reason"]["kind"], "file_changed");
    assert_eq!(
        step(&meta, "COPY z* /d1/")["reason"]["kind"],
        "parent_missed",
        "{meta:#}"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn an_added_archives_own_mode_and_name_are_no_input() {
    let e = Env::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "in/x", &b"x"[..]).unwrap();
    std::fs::write(e.ctx().join("a.tar"), b.into_inner().unwrap()).unwrap();
    std::os::unix::fs::symlink("a.tar", e.ctx().join("l")).unwrap();
    let df = "FROM scratch\nADD l /d/\n";
    let (_, out) = e.build(df);
    assert_eq!(read(&out, "d/in/x"), "x");
    // Extraction writes what the archive holds: its own mode does not reach the layer.
    std::fs::set_permissions(
        e.ctx().join("a.tar"),
        std::fs::Permissions::from_mode(0o700),
    )
    .unwrap();
    let (meta, _) = e.build(df);
    assert!(cached(&meta, "ADD"), "{meta:#}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_wildcard_that_starts_matching_an_empty_directory_misses() {
    let e = Env::new();
    e.write("a", "a");
    let df = "FROM scratch\nCOPY a /a\nCOPY *.txt /d/\n";
    let (_, out) = e.build(df);
    assert!(!out.join("d").exists(), "nothing matched, nothing made");
    // Now the wildcard matches an empty directory: the copy makes /d/ and nothing in it.
    std::fs::create_dir(e.ctx().join("b.txt")).unwrap();
    let (meta, out) = e.build(df);
    assert!(!cached(&meta, "COPY *.txt"), "{meta:#}");
    assert!(out.join("d").is_dir());
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn overlapping_sources_are_keyed_by_what_remains() {
    let e = Env::new();
    e.write("a", "a");
    std::fs::create_dir(e.ctx().join("e")).unwrap();
    std::os::unix::fs::symlink("/a", e.ctx().join("e/l")).unwrap();
    // `*` copies e's contents (the link l) into /d/; `.` then writes e/ and the rest.
    let df = "FROM scratch\nCOPY * . /d/\n";
    e.build(df);
    // A new top-level l: `*` follows it (a file /d/l), then `.` writes it as the link again,
    // which is what /d/l already was.
    std::os::unix::fs::symlink("/a", e.ctx().join("l")).unwrap();
    let (meta, out) = e.build(df);
    assert!(cached(&meta, "COPY"), "{meta:#}");
    assert_eq!(
        std::fs::read_link(out.join("d/l")).unwrap(),
        Path::new("/a")
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn an_added_archive_is_keyed_by_its_bytes_and_says_so() {
    // Found by the soundness run (seed 20261206, rounds 2941 and 6424): bytes appended after an
    // archive's end, which extraction ignores, rebuild the ADD. That is the rule, as BuildKit
    // keys an archive by its content; the reason names the archive so the rebuild is explained.
    let e = Env::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "x", &b"x"[..]).unwrap();
    std::fs::write(e.ctx().join("a.tar"), b.into_inner().unwrap()).unwrap();
    let df = "FROM scratch\nADD a.tar /d/\n";
    let (_, first) = e.build(df);
    assert_eq!(read(&first, "d/x"), "x");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(e.ctx().join("a.tar"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"+").unwrap();
    let (meta, second) = e.build(df);
    assert!(!cached(&meta, "ADD"), "{meta:#}");
    let text = meta.to_string();
    assert!(text.contains("archive content="), "{meta:#}");
    assert_eq!(read(&second, "d/x"), "x");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_file_copied_over_a_copied_directory_keys_what_remains() {
    // Found by the soundness run (seed 20261206, round 11724): the second source replaces the
    // directory the first one copied, with all it held, so what was below it is no input.
    let e = Env::new();
    e.write("a/a", "file that replaces its directory");
    std::fs::create_dir_all(e.ctx().join("a/sub")).unwrap();
    e.write("a/sub/gone", "x");
    let df = "FROM scratch\nCOPY . a/a /d/\n";
    let (_, first) = e.build(df);
    assert_eq!(read(&first, "d/a"), "file that replaces its directory");
    std::fs::remove_dir_all(e.ctx().join("a/sub")).unwrap();
    let (meta, second) = e.build(df);
    assert!(cached(&meta, "COPY"), "{meta:#}");
    assert_eq!(read(&second, "d/a"), "file that replaces its directory");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn several_matches_for_a_file_destination_are_copied_in_turn_and_keyed_so() {
    // Found by the soundness run (seed 77, round 5737) when several matches were an error: an
    // empty directory that starts matching beside another must give what a clean build gives.
    // As BuildKit, the matches are copied in turn: directories merge into the destination,
    // and files to a path that is not a directory are written over each other.
    let e = Env::new();
    std::fs::create_dir_all(e.ctx().join("a.txt")).unwrap();
    e.write("b.txt/x", "x");
    e.write(".dockerignore", "a.txt\n");
    let df = "FROM scratch\nCOPY *.txt /f0\n";
    let (_, out) = e.build(df);
    assert_eq!(read(&out, "f0/x"), "x");
    e.write(".dockerignore", "");
    let (_, incremental) = e.build(df);
    assert_eq!(read(&incremental, "f0/x"), "x");
    assert_eq!(
        listing(&incremental),
        e.build_clean(df),
        "incremental differs from clean"
    );

    // Two files: the last one (in name order) is the destination; editing either misses only
    // when it shows.
    e.write("f.txt", "first");
    e.write("g.txt", "second");
    let df = "FROM scratch\nCOPY [fg].txt /d\n";
    let (_, out) = e.build(df);
    assert_eq!(read(&out, "d"), "second");
    e.write("g.txt", "edited");
    let (meta, out) = e.build(df);
    assert!(!cached(&meta, "COPY"), "{meta:#}");
    assert_eq!(read(&out, "d"), "edited");
    std::fs::remove_file(e.ctx().join("g.txt")).unwrap();
    let (_, out) = e.build(df);
    assert_eq!(read(&out, "d"), "first");
    assert_eq!(
        listing(&out),
        e.build_clean(df),
        "incremental differs from clean"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_file_copied_to_a_file_destination_on_an_empty_base_is_keyed_without_its_name() {
    // Found by the soundness run (seed 78, round 5738): on FROM scratch (or with --link) nothing
    // can make the destination a directory, so renaming the one matched file writes the same.
    let e = Env::new();
    e.write("a/one", "same bytes");
    let df = "FROM scratch\nCOPY a/* /f0\n";
    let (_, first) = e.build(df);
    assert_eq!(read(&first, "f0"), "same bytes");
    std::fs::rename(e.ctx().join("a/one"), e.ctx().join("a/two")).unwrap();
    let (meta, second) = e.build(df);
    assert!(cached(&meta, "COPY"), "{meta:#}");
    assert_eq!(read(&second, "f0"), "same bytes");
    // On a base that may hold a directory there, the name is still an input.
    let df = "FROM scratch AS base\nCOPY a/ /f0/\nFROM base\nCOPY a/* /f0\n";
    e.build(df);
    std::fs::rename(e.ctx().join("a/two"), e.ctx().join("a/three")).unwrap();
    let (meta, _) = e.build(df);
    assert!(!cached(&meta, "[stage-1 1/1] COPY"), "{meta:#}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn archives_extracted_in_another_order_are_another_key() {
    // Found by the soundness run (seed 79, round 19465): a symlink retargeted from one archive to
    // another left the same set of archives, but in another order, so another file won.
    let e = Env::new();
    let tar_of = |content: &[u8]| {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, "in/x", content).unwrap();
        b.into_inner().unwrap()
    };
    std::fs::write(e.ctx().join("a.tar"), tar_of(b"A")).unwrap();
    std::fs::write(e.ctx().join("b.tar"), tar_of(b"B")).unwrap();
    std::os::unix::fs::symlink("a.tar", e.ctx().join("l")).unwrap();
    let df = "FROM scratch\nADD * /d/\n";
    let (_, first) = e.build(df);
    assert_eq!(read(&first, "d/in/x"), "A");
    std::fs::remove_file(e.ctx().join("l")).unwrap();
    std::os::unix::fs::symlink("b.tar", e.ctx().join("l")).unwrap();
    let (_, second) = e.build(df);
    assert_eq!(read(&second, "d/in/x"), "B", "a stale ADD");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_file_placed_by_what_the_base_holds_is_keyed_in_both_places_and_says_so() {
    // Found by the soundness run (seed 82, round 1218): `COPY s* /f1` over a base that could
    // hold a directory at /f1 copies each match in turn; with no directory there the last one
    // wins, with one each lands under its name. The key is computed before the base exists,
    // so it covers both: editing the overwritten match rebuilds, and the reason says why.
    let e = Env::new();
    e.write("s*", "first match");
    e.write("sub", "second match");
    e.write("c", "c");
    let df = "FROM scratch\nCOPY c /d0/\nCOPY s* /f1\n";
    let (_, first) = e.build(df);
    assert_eq!(read(&first, "f1"), "second match");
    e.write("s*", "first match, edited");
    let (meta, second) = e.build(df);
    assert!(!cached(&meta, "COPY s*"), "{meta:#}");
    assert!(
        meta.to_string().contains("(placed by the base)"),
        "{meta:#}"
    );
    assert_eq!(read(&second, "f1"), "second match");
    assert_eq!(listing(&second), e.build_clean(df));
    // Over a base holding a directory there, every match shows.
    let df = "FROM scratch\nCOPY c /f1/\nCOPY s* /f1\n";
    let (_, out) = e.build(df);
    assert_eq!(read(&out, "f1/s*"), "first match, edited");
    assert_eq!(read(&out, "f1/sub"), "second match");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_hardlink_whose_partner_a_later_source_replaces_links_nothing() {
    // Found by the soundness run (seed 83, round 1871): `COPY . a /d0/` after `l4` became a
    // hardlink of `a/l4`: `.` writes both names linked, then `a` writes /d0/l4 again as a file
    // of its own, so the layer holds no link and is what it was; the key must say the same.
    let e = Env::new();
    e.write("a/l4", "same bytes");
    let df = "FROM scratch\nCOPY . a /d0/\n";
    let (_, first) = e.build(df);
    assert_eq!(read(&first, "d0/l4"), "same bytes");
    std::fs::hard_link(e.ctx().join("a/l4"), e.ctx().join("l4")).unwrap();
    let (meta, second) = e.build(df);
    assert!(cached(&meta, "COPY"), "{meta:#}");
    assert_eq!(listing(&second), e.build_clean(df));
    // Where both names remain, the link is part of what is written.
    let df = "FROM scratch\nCOPY . /d1/\n";
    e.build(df);
    std::fs::remove_file(e.ctx().join("l4")).unwrap();
    std::fs::write(e.ctx().join("l4"), "same bytes").unwrap();
    let (meta, _) = e.build(df);
    assert!(!cached(&meta, "COPY"), "{meta:#}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_source_added_as_a_symlink_is_named_in_the_miss_reason() {
    // Found by the soundness run (seed 83, round 5118): `ADD * /d0/` after a symlink `l1 ->
    // sub` was added copies sub's content as /d0/l1; the miss said "step definition changed"
    // because the files were listed by the link's target. They are listed by the name used.
    let e = Env::new();
    e.write("sub", "sub");
    let df = "FROM scratch\nADD * /d0/\n";
    e.build(df);
    std::os::unix::fs::symlink("sub", e.ctx().join("l1")).unwrap();
    let (meta, out) = e.build(df);
    let s = step(&meta, "ADD");
    assert_eq!(s["cached"], false, "{meta:#}");
    assert_eq!(s["reason"]["kind"], "file_changed", "{meta:#}");
    assert_eq!(s["reason"]["path"], "l1", "{meta:#}");
    assert_eq!(read(&out, "d0/l1"), "sub");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_path_two_sources_read_is_described_by_both_in_the_miss_reason() {
    // Found by the soundness run (seed 84, round 7897): `ADD a.txt/* *.txt /d1/` reads
    // `a.txt/l3` twice, as a link followed to an archive it extracts, and as a link inside the
    // copied directory. Bytes appended after the archive's end rebuild it (an archive is keyed
    // by its bytes); the reason said "step definition changed" because the second reading hid
    // the first. It names the archive now.
    let e = Env::new();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(1);
    h.set_mode(0o644);
    b.append_data(&mut h, "x", &b"x"[..]).unwrap();
    std::fs::write(e.ctx().join("a"), b.into_inner().unwrap()).unwrap();
    e.write("a.txt/inner", "inner");
    std::os::unix::fs::symlink("../a", e.ctx().join("a.txt/l3")).unwrap();
    let df = "FROM scratch\nADD a.txt/* *.txt /d1/\n";
    let (_, first) = e.build(df);
    assert_eq!(read(&first, "d1/x"), "x");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(e.ctx().join("a"))
        .unwrap();
    std::io::Write::write_all(&mut f, b"+").unwrap();
    let (meta, second) = e.build(df);
    let s = step(&meta, "ADD");
    assert_eq!(s["cached"], false, "{meta:#}");
    assert_eq!(s["reason"]["path"], "a.txt/l3", "{meta:#}");
    assert!(
        s["reason"]["new"]
            .as_str()
            .unwrap()
            .contains("archive content="),
        "{meta:#}"
    );
    assert_eq!(listing(&second), e.build_clean(df));
}
