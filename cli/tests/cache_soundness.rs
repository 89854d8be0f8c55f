//! The cache's one promise, checked by generated cases: after any edit of the build context (or
//! of a build argument), a build that reuses the cache gives the image a clean build gives, and
//! a step that ran again had a reason visible in its output.
//!
//! Each round: generate a context (nested and empty directories, symlinks to files and
//! directories, hardlinks, `user.*` xattrs, names with spaces, unicode, `[`, `^`, `!`, `*`, `?`),
//! a `.dockerignore` with `**` and `!`, and a `FROM scratch` Dockerfile of COPY/ADD with
//! wildcards, several sources, `--exclude`, `--parents`, `--chmod`, `--chown`, `--link`,
//! `--from` and ARG-expanded sources; then apply several random edits, and after each build
//! incrementally (one persistent root) and clean (a fresh root), and compare the two images
//! layer by layer, entry by entry (path, type, mode, owner, content, link target, hardlinks,
//! xattrs; not mtimes, which the cache key never covers, as in BuildKit). Two builds that both
//! fail agree. A final-stage step that missed for a reason of its own (not a parent's miss)
//! while producing the same layer as the previous incremental build is over-invalidation; an
//! `ADD`ed archive is keyed by its bytes (as BuildKit keys it), so a change of them is a reason;
//! so is a change of a file whose place depends on what the base holds at the destination
//! (the reason says "placed by the base").
//!
//! `BUILDER_SOUNDNESS_ROUNDS` (edits, default 60) and `BUILDER_SOUNDNESS_SEED` (default 1)
//! choose the run; `BUILDER_SOUNDNESS_SECONDS` ends it early; `BUILDER_SOUNDNESS_KEEP_GOING=1`
//! reports every failure instead of stopping at the first; `BUILDER_SOUNDNESS_FROM_CONTEXT=N`
//! replays a reported failure quickly (contexts before the N-th are generated but not built). A long run (release build):
//! `BUILDER_SOUNDNESS_ROUNDS=20000 BUILDER_SOUNDNESS_SEED=$RANDOM cargo test --release -p cli
//! --test cache_soundness -- --nocapture`.
//!
//! The generator is a hand-written splitmix64 so that a seed reproduces a case whatever the
//! version of a random-number crate.

mod common;

use common::builder_bin;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn text(&mut self, len: usize) -> String {
        (0..len)
            .map(|_| (b'a' + self.below(26) as u8) as char)
            .collect()
    }
}

const NAMES: &[&str] = &[
    "a", "b.txt", "c", "d d", "é.md", "[x]", "^y", "!z", "s*", "q?", "e.tmp", "sub", "keep.md",
    "k", "cd", "a.txt",
];

/// The kinds of entries the generator knows about, by relative path.
#[derive(Default)]
struct Tree {
    files: Vec<String>,
    dirs: Vec<String>,
    links: Vec<String>,
}

fn scan(ctx: &Path) -> Tree {
    let mut t = Tree::default();
    fn go(root: &Path, rel: &str, t: &mut Tree) {
        let dir = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(rel)
        };
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut names: Vec<String> = rd
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for n in names {
            let r = if rel.is_empty() {
                n.clone()
            } else {
                format!("{rel}/{n}")
            };
            let Ok(m) = std::fs::symlink_metadata(root.join(&r)) else {
                continue;
            };
            if m.file_type().is_symlink() {
                t.links.push(r);
            } else if m.is_dir() {
                t.dirs.push(r.clone());
                go(root, &r, t);
            } else {
                t.files.push(r);
            }
        }
    }
    go(ctx, "", &mut t);
    t.files.retain(|f| f != ".dockerignore");
    t
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a buffer of the given length.
    unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        );
    }
}

fn write_file(rng: &mut Rng, path: &Path) {
    let len = rng.below(40);
    let _ = std::fs::write(path, rng.text(len));
    if rng.chance(30) {
        let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755));
    }
    if rng.chance(15) {
        set_xattr(path, "user.k", rng.text(3).as_bytes());
    }
}

/// A small tar archive (which ADD extracts), with a file and a directory in it.
fn write_archive(rng: &mut Rng, path: &Path) {
    let mut b = tar::Builder::new(Vec::new());
    let len = rng.below(20);
    let body = rng.text(len);
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(*rng.pick(&[0o644, 0o600]));
    h.set_uid(rng.below(3) as u64 * 500);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, "in/x", body.as_bytes()).unwrap();
    let _ = std::fs::write(path, b.into_inner().unwrap());
}

fn fill(rng: &mut Rng, root: &Path, rel: &str, depth: usize) {
    let n = rng.below(4) + if depth == 0 { 3 } else { 0 };
    for _ in 0..n {
        let name = *rng.pick(NAMES);
        let r = if rel.is_empty() {
            name.to_string()
        } else {
            format!("{rel}/{name}")
        };
        let p = root.join(&r);
        if std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        match rng.below(11) {
            0..=5 => write_file(rng, &p),
            10 => write_archive(rng, &p),
            6 | 7 if depth < 3 => {
                std::fs::create_dir_all(&p).unwrap();
                fill(rng, root, &r, depth + 1);
            }
            _ => std::fs::create_dir_all(&p).unwrap(),
        }
    }
}

/// Adds a symlink or hardlink somewhere, to something that exists or not.
fn add_link(rng: &mut Rng, root: &Path) {
    let t = scan(root);
    let parent = if t.dirs.is_empty() || rng.chance(50) {
        String::new()
    } else {
        rng.pick(&t.dirs).clone()
    };
    let name = format!("l{}", rng.below(5));
    let path = if parent.is_empty() {
        root.join(&name)
    } else {
        root.join(&parent).join(&name)
    };
    if std::fs::symlink_metadata(&path).is_ok() {
        return;
    }
    if rng.chance(30) && !t.files.is_empty() {
        let _ = std::fs::hard_link(root.join(rng.pick(&t.files)), &path);
        return;
    }
    let mut targets: Vec<String> = t.files.iter().chain(&t.dirs).cloned().collect();
    targets.push("missing".into());
    let target = rng.pick(&targets).clone();
    let text = if rng.chance(50) {
        format!("/{target}")
    } else {
        let up = parent.split('/').filter(|c| !c.is_empty()).count();
        format!("{}{target}", "../".repeat(up))
    };
    let _ = std::os::unix::fs::symlink(text, &path);
}

fn dockerignore(rng: &mut Rng, root: &Path) {
    let t = scan(root);
    let mut lines = Vec::new();
    for _ in 0..rng.below(4) {
        let dir = t.dirs.first().cloned().unwrap_or_else(|| "sub".into());
        let any = t.files.first().cloned().unwrap_or_else(|| "a".into());
        let line = match rng.below(9) {
            0 => "**/*.tmp".to_string(),
            1 => dir.clone(),
            2 => format!("!{dir}/*d"),
            3 => "**/k".to_string(),
            4 => format!("!{}", any),
            5 => any,
            6 => "c*".to_string(),
            7 => "!**/keep*".to_string(),
            _ => format!("{dir}/**"),
        };
        lines.push(line);
    }
    if lines.is_empty() {
        let _ = std::fs::remove_file(root.join(".dockerignore"));
    } else {
        std::fs::write(root.join(".dockerignore"), lines.join("\n") + "\n").unwrap();
    }
}

fn quote_sources(flags: &str, srcs: &[String], dest: &str, cmd: &str) -> String {
    if srcs.iter().any(|s| s.contains(' ')) {
        let list: Vec<String> = srcs
            .iter()
            .chain(std::iter::once(&dest.to_string()))
            .map(|s| serde_json::to_string(s).unwrap())
            .collect();
        format!("{cmd} {flags}[{}]\n", list.join(", "))
    } else {
        format!("{cmd} {flags}{} {dest}\n", srcs.join(" "))
    }
}

fn source(rng: &mut Rng, t: &Tree) -> String {
    let any: Vec<&String> = t.files.iter().chain(&t.dirs).chain(&t.links).collect();
    match rng.below(12) {
        0 => ".".into(),
        1 => "*".into(),
        2 => "*.txt".into(),
        3 => "[^a]*".into(),
        4 => "?".into(),
        5 => "\\[x]".into(),
        6 if !t.dirs.is_empty() => format!("{}/*", rng.pick(&t.dirs)),
        7 => "*/*d*".into(),
        8 => "$A".into(),
        _ if !any.is_empty() => (*rng.pick(&any)).clone(),
        _ => "a".into(),
    }
}

fn dockerfile(rng: &mut Rng, t: &Tree) -> String {
    let mut out = String::from("FROM scratch AS s0\nARG A\n");
    let s0 = source(rng, t);
    out += &quote_sources("", &[s0], "/s0/", "COPY");
    out += "FROM scratch AS final\nARG A\n";
    let steps = 1 + rng.below(3);
    for i in 0..steps {
        let mut flags = String::new();
        if rng.chance(20) {
            flags += *rng.pick(&["--chmod=644 ", "--chmod=755 ", "--chmod=u+x,go-w "]);
        }
        if rng.chance(20) {
            flags += "--chown=1000:1000 ";
        }
        if rng.chance(15) {
            flags += *rng.pick(&["--exclude=*.md ", "--exclude=**/k ", "--exclude=sub "]);
        }
        if rng.chance(15) {
            flags += "--link ";
        }
        let from = rng.chance(15);
        let parents = !from && rng.chance(15);
        if parents {
            flags += "--parents ";
        }
        let mut srcs = Vec::new();
        if from {
            flags += "--from=s0 ";
            srcs.push(rng.pick(&["/s0/", "/s0/*", "/s0/*/"]).to_string());
        } else if parents && !t.dirs.is_empty() && rng.chance(50) {
            let d = rng.pick(&t.dirs).clone();
            srcs.push(format!("{d}/./*"));
        } else {
            for _ in 0..1 + rng.below(2) {
                srcs.push(source(rng, t));
            }
        }
        let cmd = if !from && rng.chance(20) {
            "ADD"
        } else {
            "COPY"
        };
        let dest = if srcs.len() == 1 && rng.chance(20) {
            format!("/f{i}")
        } else {
            format!("/d{i}/")
        };
        out += &quote_sources(&flags, &srcs, &dest, cmd);
    }
    out
}

/// One random edit of the context or the build arguments; returns what it did.
fn edit(rng: &mut Rng, ctx: &Path, args: &mut String) -> String {
    let t = scan(ctx);
    let mut all: Vec<String> = t
        .files
        .iter()
        .chain(&t.dirs)
        .chain(&t.links)
        .cloned()
        .collect();
    if all.is_empty() {
        all.push("a".into());
    }
    let file = t.files.get(rng.below(t.files.len())).cloned();
    let target = rng.pick(&all).clone();
    let p = ctx.join(&target);
    match (rng.below(15), file) {
        (0, Some(f)) => {
            write_file(rng, &ctx.join(&f));
            format!("content of {f}")
        }
        (1, Some(f)) => {
            let fp = ctx.join(&f);
            let meta = std::fs::metadata(&fp).unwrap();
            let mtime = filetime::FileTime::from_last_modification_time(&meta);
            let len = meta.len() as usize;
            std::fs::write(&fp, rng.text(len)).unwrap();
            filetime::set_file_mtime(&fp, mtime).unwrap();
            format!("same-size content of {f}, mtime restored")
        }
        (2, Some(f)) => {
            use std::io::Write;
            let mut h = std::fs::OpenOptions::new()
                .append(true)
                .open(ctx.join(&f))
                .unwrap();
            h.write_all(b"+").unwrap();
            format!("append to {f}")
        }
        (3, _) => {
            let mode = *rng.pick(&[0o644, 0o755, 0o600, 0o700, 0o444, 0o711]);
            let _ = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode));
            format!("chmod {mode:o} {target}")
        }
        (4, _) => {
            let id = *rng.pick(&[0u32, 1000, 1234]);
            let _ = std::os::unix::fs::lchown(&p, Some(id), Some(id));
            format!("chown {id} {target}")
        }
        (5, _) => {
            set_xattr(&p, "user.k", rng.text(2).as_bytes());
            format!("xattr on {target}")
        }
        (6, _) if !t.links.is_empty() => {
            let l = rng.pick(&t.links).clone();
            let _ = std::fs::remove_file(ctx.join(&l));
            let new = rng.pick(&all).clone();
            let _ = std::os::unix::fs::symlink(format!("/{new}"), ctx.join(&l));
            format!("retarget {l} to /{new}")
        }
        (7, _) => {
            fill(rng, ctx, "", 1);
            "add entries".into()
        }
        (8, _) => {
            add_link(rng, ctx);
            "add a link".into()
        }
        (9, _) => {
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
                let _ = std::fs::remove_dir_all(&p);
            } else {
                let _ = std::fs::remove_file(&p);
            }
            format!("delete {target}")
        }
        (10, _) => {
            let new = format!("{}{}", target, rng.pick(&["x", ".txt", "d"]));
            let _ = std::fs::rename(&p, ctx.join(&new));
            format!("rename {target} to {new}")
        }
        (11, _) => {
            let now = filetime::FileTime::from_unix_time(1_700_000_000 + rng.below(1000) as i64, 0);
            let _ = filetime::set_symlink_file_times(&p, now, now);
            format!("touch {target}")
        }
        (12, _) => {
            dockerignore(rng, ctx);
            format!(
                "new .dockerignore: {:?}",
                std::fs::read_to_string(ctx.join(".dockerignore")).unwrap_or_default()
            )
        }
        (13, _) => {
            *args = rng.pick(&all).clone();
            format!("build arg A={args}")
        }
        _ => {
            let mode = *rng.pick(&[0o755, 0o700, 0o750]);
            if let Some(d) = t.dirs.first() {
                let _ =
                    std::fs::set_permissions(ctx.join(d), std::fs::Permissions::from_mode(mode));
                format!("chmod {mode:o} dir {d}")
            } else {
                "nothing".into()
            }
        }
    }
}

/// What a layer entry puts in the image, but its mtime.
type LayerPrint = BTreeMap<String, String>;

struct Outcome {
    ok: bool,
    stderr: String,
    layers: Vec<LayerPrint>,
    meta: serde_json::Value,
}

fn build(root: &Path, ctx: &Path, dockerfile: &Path, arg: &str, work: &Path) -> Outcome {
    let out_tar = work.join("out.tar");
    let meta = work.join("meta.json");
    let _ = std::fs::remove_file(&out_tar);
    let _ = std::fs::remove_file(&meta);
    let out = Command::new(builder_bin())
        .arg("--root")
        .arg(root)
        .args([
            "build",
            "--progress",
            "plain",
            "--compression",
            "uncompressed",
        ])
        .arg("-f")
        .arg(dockerfile)
        .arg("--metadata-file")
        .arg(&meta)
        .arg("--build-arg")
        .arg(format!("A={arg}"))
        .arg("-o")
        .arg(format!("type=oci,dest={}", out_tar.display()))
        .arg(ctx)
        .output()
        .unwrap();
    let ok = out.status.success();
    Outcome {
        ok,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        layers: if ok {
            layer_prints(&out_tar)
        } else {
            Vec::new()
        },
        meta: std::fs::read(&meta)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null),
    }
}

fn layer_prints(oci: &Path) -> Vec<LayerPrint> {
    let mut blobs: HashMap<String, Vec<u8>> = HashMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(oci).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let path = e.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        blobs.insert(path.trim_start_matches("./").to_string(), data);
    }
    let blob = |d: &str| blobs[&format!("blobs/{}", d.replace(':', "/"))].clone();
    let index: serde_json::Value = serde_json::from_slice(&blobs["index.json"]).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    let mut prints = Vec::new();
    for l in manifest["layers"].as_array().unwrap() {
        let raw = blob(l["digest"].as_str().unwrap());
        let data = if raw.starts_with(&[0x1f, 0x8b]) {
            let mut d = Vec::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_end(&mut d)
                .unwrap();
            d
        } else if raw.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            zstd::decode_all(&raw[..]).unwrap()
        } else {
            raw
        };
        let mut print = LayerPrint::new();
        let mut ar = tar::Archive::new(&data[..]);
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let h = e.header().clone();
            let mut xattrs = Vec::new();
            if let Ok(Some(pax)) = e.pax_extensions() {
                for ext in pax.flatten() {
                    if ext.key().is_ok_and(|k| k.starts_with("SCHILY.xattr.")) {
                        xattrs.push(format!(
                            "{}={}",
                            ext.key().unwrap(),
                            String::from_utf8_lossy(ext.value_bytes())
                        ));
                    }
                }
            }
            let mut content = Vec::new();
            e.read_to_end(&mut content).unwrap();
            use sha2::Digest;
            let sum = sha2::Sha256::digest(&content);
            let link = h
                .link_name()
                .ok()
                .flatten()
                .map(|l| l.to_string_lossy().into_owned())
                .unwrap_or_default();
            print.insert(
                path,
                format!(
                    "{:?} mode={:o} owner={}:{} size={} sum={:x} link={link} xattrs={xattrs:?}",
                    h.entry_type(),
                    h.mode().unwrap_or(0),
                    h.uid().unwrap_or(0),
                    h.gid().unwrap_or(0),
                    content.len(),
                    sum
                ),
            );
        }
        prints.push(print);
    }
    prints
}

fn diff(a: &[LayerPrint], b: &[LayerPrint]) -> String {
    let mut out = String::new();
    if a.len() != b.len() {
        out += &format!("layer count {} vs {}\n", a.len(), b.len());
    }
    for (i, (la, lb)) in a.iter().zip(b).enumerate() {
        for k in la.keys().chain(lb.keys()) {
            if la.get(k) != lb.get(k) {
                out += &format!(
                    "layer {i} {k}:\n  incremental {:?}\n  clean       {:?}\n",
                    la.get(k),
                    lb.get(k)
                );
            }
        }
    }
    out
}

/// Final-stage steps of a build, in Dockerfile order: (name, cached, reason).
fn final_steps(meta: &serde_json::Value) -> Vec<(String, bool, serde_json::Value, u64)> {
    let mut v: Vec<_> = meta["builder.steps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s["stage"] == "final")
        .map(|s| {
            (
                s["name"].as_str().unwrap_or("").to_string(),
                s["cached"].as_bool().unwrap_or(false),
                s["reason"].clone(),
                s["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    v.sort_by_key(|s| s.3);
    v
}

/// Whether any step of `stage` missed.
fn any_step_missed(meta: &serde_json::Value, stage: &str) -> bool {
    meta["builder.steps"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["stage"] == stage && s["cached"] == false)
}

fn listing(ctx: &Path) -> String {
    let t = scan(ctx);
    let mut s = String::new();
    for f in t.files.iter().chain(&t.dirs).chain(&t.links) {
        let p = ctx.join(f);
        let m = std::fs::symlink_metadata(&p).unwrap();
        let link = std::fs::read_link(&p)
            .map(|l| format!(" -> {}", l.display()))
            .unwrap_or_default();
        s += &format!("  {f:?} mode={:o}{link}\n", m.permissions().mode());
    }
    s
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn incremental_builds_equal_clean_builds() {
    common::require_build();
    let rounds: usize = std::env::var("BUILDER_SOUNDNESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let seed: u64 = std::env::var("BUILDER_SOUNDNESS_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let keep_going = std::env::var_os("BUILDER_SOUNDNESS_KEEP_GOING").is_some();
    // A time budget, for long runs that must end by a given time.
    let budget = std::env::var("BUILDER_SOUNDNESS_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(std::time::Duration::from_secs);
    // Replays a reported failure: contexts before this one are generated and edited (the
    // generator's sequence is the same) but not built.
    let from_context: usize = std::env::var("BUILDER_SOUNDNESS_FROM_CONTEXT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let edits_per_context = 6;
    let mut rng = Rng(seed);
    let mut failures = Vec::new();
    let mut round = 0;
    let mut contexts = 0;
    let started = std::time::Instant::now();
    while round < rounds && budget.is_none_or(|b| started.elapsed() < b) {
        contexts += 1;
        if contexts % 20 == 0 {
            eprintln!(
                "cache soundness: {round} rounds, {} failures, {:.0?}",
                failures.len(),
                started.elapsed()
            );
        }
        let work = tempfile::Builder::new()
            .prefix("builder-soundness-")
            .tempdir()
            .unwrap();
        let ctx = work.path().join("ctx");
        std::fs::create_dir_all(&ctx).unwrap();
        fill(&mut rng, &ctx, "", 0);
        for _ in 0..rng.below(4) {
            add_link(&mut rng, &ctx);
        }
        dockerignore(&mut rng, &ctx);
        let tree = scan(&ctx);
        let df = dockerfile(&mut rng, &tree);
        let df_path = work.path().join("Dockerfile");
        std::fs::write(&df_path, &df).unwrap();
        let mut arg = tree.files.first().cloned().unwrap_or_else(|| "a".into());
        if contexts < from_context {
            for _ in 0..edits_per_context {
                if round < rounds {
                    round += 1;
                    edit(&mut rng, &ctx, &mut arg);
                }
            }
            continue;
        }
        let inc_root = work.path().join("root");
        let mut previous = build(&inc_root, &ctx, &df_path, &arg, work.path());
        for _ in 0..edits_per_context {
            if round >= rounds {
                break;
            }
            round += 1;
            let what = edit(&mut rng, &ctx, &mut arg);
            let inc = build(&inc_root, &ctx, &df_path, &arg, work.path());
            let clean_root = work.path().join("clean");
            let clean = build(&clean_root, &ctx, &df_path, &arg, work.path());
            let _ = std::fs::remove_dir_all(&clean_root);
            let mut problem = String::new();
            if inc.ok != clean.ok {
                problem = format!(
                    "incremental {} but clean {}\nincremental stderr:\n{}\nclean stderr:\n{}",
                    if inc.ok { "succeeded" } else { "failed" },
                    if clean.ok { "succeeded" } else { "failed" },
                    inc.stderr,
                    clean.stderr
                );
            } else if inc.ok {
                let d = diff(&inc.layers, &clean.layers);
                if !d.is_empty() {
                    problem = format!("stale result:\n{d}");
                }
                let steps = final_steps(&inc.meta);
                if previous.ok && steps.len() == inc.layers.len() {
                    // A step is judged alone only while nothing it may depend on missed: the
                    // first stage (for --from) and the final steps before it.
                    let mut upstream_missed = any_step_missed(&inc.meta, "s0");
                    for (i, (name, cached, reason, _)) in steps.iter().enumerate() {
                        // A changed instruction text (an ARG in a source) is a changed input.
                        let kind = reason["kind"].as_str().unwrap_or("");
                        // An ADDed archive is keyed by its bytes, as BuildKit keys it: a change
                        // extraction does not show (bytes after the archive's end, entries
                        // another source overwrites) rebuilds by design.
                        // Likewise a file whose place depends on what the base holds at a
                        // destination without a trailing slash (a directory there or not): the
                        // key covers both places, as BuildKit's covers every match, so a file a
                        // later match overwrites is still an input.
                        let archive = ["old", "new"].iter().any(|side| {
                            reason[side].as_str().is_some_and(|f| {
                                f.contains("archive content=") || f.contains("(placed by the base)")
                            })
                        });
                        let own = !matches!(
                            kind,
                            "parent_missed" | "instruction_changed" | "arg_changed"
                        ) && !archive
                            && !upstream_missed;
                        upstream_missed |= !cached;
                        if !cached && own && previous.layers.get(i) == inc.layers.get(i) {
                            problem += &format!(
                                "over-invalidation: {name} missed ({reason}) but made the same layer\n"
                            );
                        }
                    }
                }
            }
            if !problem.is_empty() {
                let report = format!(
                    "seed {seed} round {round} (context {contexts}), edit: {what}\nDockerfile:\n{df}.dockerignore: {:?}\nbuild arg A={arg}\ncontext:\n{}{problem}",
                    std::fs::read_to_string(ctx.join(".dockerignore")).unwrap_or_default(),
                    listing(&ctx)
                );
                eprintln!("{report}");
                failures.push(report);
                assert!(keep_going, "cache soundness failure (see above)");
            }
            previous = inc;
        }
    }
    eprintln!(
        "cache soundness: seed {seed}, {round} rounds over {contexts} contexts in {:.1?}, {} failures",
        started.elapsed(),
        failures.len()
    );
    assert!(failures.is_empty(), "{} failures", failures.len());
}
