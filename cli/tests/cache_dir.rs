//! End-to-end behaviour of the persistent cache root: builds killed at random points leave it
//! consistent, concurrent builds share it, `prune` and `du` account for it, and cache export and
//! import carry it to another root.

mod common;

use common::{run_ok, step, steps, Fixture};
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn digest(meta: &serde_json::Value) -> String {
    meta["containerimage.digest"]
        .as_str()
        .unwrap_or_else(|| panic!("no digest in {meta:#}"))
        .to_string()
}

/// `builder cache check --json` must report no problem.
fn assert_check_clean(f: &Fixture) -> serde_json::Value {
    let out = f.cmd().args(["cache", "check", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check output is not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success() && report["problems"].as_array().is_some_and(|p| p.is_empty()),
        "cache check found problems: {report:#}"
    );
    report
}

fn du_sb(path: &Path) -> u64 {
    let out = Command::new("du").arg("-sb").arg(path).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn builder_du(f: &Fixture) -> serde_json::Value {
    serde_json::from_str(&run_ok(f.cmd().args(["du", "--json"]))).unwrap()
}

/// `builder du` total against `du -sb`, within 1%.
fn assert_du_matches(f: &Fixture) -> (u64, u64) {
    let ours = builder_du(f)["total"].as_u64().unwrap();
    let theirs = du_sb(&f.root());
    let diff = ours.abs_diff(theirs) as f64 / theirs as f64;
    assert!(diff <= 0.01, "builder du says {ours}, du -sb says {theirs}");
    eprintln!("du: builder {ours} vs du -sb {theirs}");
    (ours, theirs)
}

/// A small xorshift generator: the kill points only need to vary, and the seed is printed so a
/// failing run can be replayed with `CACHE_KILL_SEED`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Waits until no process of group `pgid` is left (orphaned sandbox helpers finish their RUN),
/// then kills whatever remains after `limit`.
fn reap_group(pgid: i32, limit: Duration) {
    let start = Instant::now();
    // SAFETY: kill with signal 0 only checks for existence.
    while unsafe { libc::kill(-pgid, 0) } == 0 {
        if start.elapsed() > limit {
            // SAFETY: signalling a process group this test created.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill_dockerfile(i: usize) -> String {
    format!(
        "FROM busybox:local\n\
         COPY data.txt /data.txt\n\
         RUN head -c 3000000 /dev/urandom > /big{} && cat /data.txt > /copy.txt\n\
         RUN --mount=type=cache,target=/cache echo {i} >> /cache/log && ls -l /cache > /list\n\
         COPY more/ /more/\n\
         RUN echo step {i} > /last && head -c 1000000 /dev/zero > /zeros\n",
        i % 5
    )
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn builds_killed_at_random_points_leave_a_consistent_root() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "killed",
        &[
            ("Dockerfile", &kill_dockerfile(0)),
            ("data.txt", "0\n"),
            ("more/a.txt", "a\n"),
        ],
    );
    // One uninterrupted build measures how long a build takes here.
    let started = Instant::now();
    f.build_ok(&ctx, &[]);
    let full = started.elapsed();
    let seed = std::env::var("CACHE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("kill test seed {seed}, an uninterrupted build takes {full:?}");
    let mut rng = Rng(seed);
    let (mut killed, mut finished, mut orphaned) = (0, 0, 0);
    for i in 1..=30 {
        std::fs::write(ctx.join("Dockerfile"), kill_dockerfile(i)).unwrap();
        std::fs::write(ctx.join("data.txt"), format!("{i}\n")).unwrap();
        std::fs::write(ctx.join(format!("more/{i}.txt")), vec![b'x'; 100_000]).unwrap();
        let mut child = f
            .cmd()
            .args(["build", "--progress", "plain"])
            .arg(&ctx)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = child.id() as i32;
        let delay = rng.next() % (full.as_millis() as u64 * 6 / 5 + 1);
        std::thread::sleep(Duration::from_millis(delay));
        if child.try_wait().unwrap().is_some() {
            finished += 1;
        } else if i % 2 == 0 {
            // SIGKILL the build process only; its sandbox helper may be left running, as after
            // an OOM kill.
            child.kill().unwrap();
            killed += 1;
        } else {
            // SIGKILL the whole process tree, as a killed session or cgroup does.
            // SAFETY: signalling the process group this test created.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
            killed += 1;
        }
        child.wait().unwrap();
        // SAFETY: signal 0 only checks whether the group still has members.
        if unsafe { libc::kill(-pgid, 0) } == 0 {
            orphaned += 1;
        }
        reap_group(pgid, Duration::from_secs(20));
    }
    eprintln!(
        "kill test: {killed} builds killed, {finished} finished before their kill point, \
         {orphaned} left sandbox processes running"
    );
    assert!(
        killed >= 5,
        "the kill points missed the builds ({killed} killed)"
    );

    let report = assert_check_clean(&f);
    eprintln!(
        "after kills: {} leftovers, {} blobs, {} records",
        report["leftovers"].as_array().map_or(0, |l| l.len()),
        report["blobs"],
        report["records"]
    );
    let meta = f.build_ok(&ctx, &[]);
    let again = f.build_ok(&ctx, &[]);
    assert!(steps(&again).iter().all(|s| s.1), "{:#?}", steps(&again));
    assert_eq!(digest(&meta), digest(&again));
    assert_check_clean(&f);
    run_ok(f.cmd().args(["prune", "-f"]));
    let after = assert_check_clean(&f);
    assert_eq!(after["leftovers"].as_array().map(|l| l.len()), Some(0));
    assert!(
        std::fs::read_dir(f.root().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "prune empties tmp/"
    );
    let pruned = f.build_ok(&ctx, &[]);
    assert!(steps(&pruned).iter().all(|s| s.1));
    assert_eq!(digest(&meta), digest(&pruned));
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn four_concurrent_builds_on_one_root_agree() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "concurrent",
        &[
            (
                "Dockerfile",
                "FROM busybox:local\n\
                 COPY src/ /src/\n\
                 RUN head -c 2000000 /dev/zero > /zeros && ls /src > /list\n\
                 RUN --mount=type=cache,target=/cache echo run >> /cache/log && cat /list\n",
            ),
            ("src/a.txt", "a\n"),
            ("src/b.txt", "b\n"),
        ],
    );
    let children: Vec<_> = (0..4)
        .map(|n| {
            let meta = f.dir.path().join(format!("meta-{n}.json"));
            let child = f
                .cmd()
                .args(["build", "--progress", "plain", "--metadata-file"])
                .arg(&meta)
                .arg(&ctx)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            (child, meta)
        })
        .collect();
    let mut digests = Vec::new();
    for (child, meta) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "concurrent build failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let meta: serde_json::Value =
            serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
        digests.push(digest(&meta));
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "{digests:?}");
    assert_check_clean(&f);
    let again = f.build_ok(&ctx, &[]);
    assert!(steps(&again).iter().all(|s| s.1));
    assert_eq!(digest(&again), digests[0]);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn prune_keeps_images_and_keep_storage_removes_least_recently_used() {
    common::require_build();
    let f = Fixture::new();
    let a = f.context(
        "a",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN head -c 3000000 /dev/urandom > /a\nRUN echo a > /a.txt\n",
        )],
    );
    let b = f.context(
        "b",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN head -c 3000000 /dev/urandom > /b\nRUN echo b > /b.txt\n",
        )],
    );
    let meta_a = f.build_ok(&a, &["-t", "app-a"]);
    assert_du_matches(&f);
    // Every record so far is A's: make them look unused for a day.
    let day_ago = filetime::FileTime::from_unix_time(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
            - 86_400,
        0,
    );
    for e in walk_files(&f.root().join("keys-v1")) {
        filetime::set_file_mtime(e, day_ago).unwrap();
    }
    let meta_b = f.build_ok(&b, &["-t", "app-b"]);
    let (total, _) = assert_du_matches(&f);

    // `--filter until=1h` removes exactly A's records.
    let filtered = f.dir.path().join("filtered");
    copy_tree(&f.root(), &filtered);
    let out = run_ok(
        Command::new(common::builder_bin())
            .arg("--root")
            .arg(&filtered)
            .args(["prune", "-f", "--json", "--filter", "until=1h"]),
    );
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["removed_records"].as_array().unwrap().len(), 2);

    // `--keep-storage` below the total removes the least recently used records (A's) first.
    let limit = total - 1_000_000;
    let out = run_ok(
        f.cmd()
            .args(["prune", "-f", "--keep-storage", &limit.to_string()]),
    );
    assert!(out.contains("Total reclaimed space: "), "{out}");
    let (after, _) = assert_du_matches(&f);
    assert!(after <= limit, "{after} > {limit}");
    let b_again = f.build_ok(&b, &[]);
    assert!(steps(&b_again).iter().all(|s| s.1), "B stays cached");
    let a_again = f.build_ok(&a, &[]);
    assert!(
        !step(&a_again, "urandom")["cached"].as_bool().unwrap(),
        "A was least recently used"
    );
    assert_check_clean(&f);

    // `--all`: no records left, images still there and still export, builds still work.
    let out = run_ok(f.cmd().args(["prune", "--all", "-f"]));
    assert!(out.contains("Deleted build cache objects:"), "{out}");
    assert!(out.contains("Total reclaimed space: "), "{out}");
    assert!(walk_files(&f.root().join("keys-v1")).is_empty());
    let usage = builder_du(&f);
    assert_eq!(usage["records"].as_array().unwrap().len(), 0);
    assert_eq!(usage["snapshot_count"], 0);
    assert_check_clean(&f);
    let images = run_ok(f.cmd().args(["images"]));
    assert!(
        images.contains("app-a") && images.contains("app-b"),
        "{images}"
    );
    let archive = f.dir.path().join("app-b.tar");
    run_ok(f.cmd().args(["save", "-o"]).arg(&archive).arg("app-b"));
    assert!(std::fs::metadata(&archive).unwrap().len() > 3_000_000);
    let rebuilt = f.build_ok(&b, &["-t", "app-b"]);
    assert!(steps(&rebuilt).iter().all(|s| !s.1), "records are gone");
    assert_ne!(
        digest(&rebuilt),
        digest(&meta_b),
        "RUN of urandom ran again"
    );
    let _ = meta_a;
    assert_du_matches(&f);
    assert_check_clean(&f);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn automatic_collection_keeps_the_root_under_cache_max_size() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "auto",
        &[(
            "Dockerfile",
            "FROM busybox:local\nARG N\nRUN head -c 2000000 /dev/urandom > /r$N\n",
        )],
    );
    let base = du_sb(&f.root());
    // Each build adds a 2MB image layer (kept: the image needs it) and its 2MB snapshot and
    // record (cache); five builds take ~20MB without collection.
    let limit = base + 14_000_000;
    for n in 0..5 {
        f.build_ok(
            &ctx,
            &[
                "--build-arg",
                &format!("N={n}"),
                "--cache-max-size",
                &limit.to_string(),
            ],
        );
    }
    let total = du_sb(&f.root());
    assert!(total <= limit, "{total} > {limit}");
    assert_check_clean(&f);
}

const EXPORT_DOCKERFILE: &str = "\
FROM busybox:local AS other
RUN echo other > /other.txt
FROM busybox:local
COPY app.txt /app.txt
RUN cat /app.txt > /copy.txt && head -c 500000 /dev/zero > /z
RUN --mount=type=cache,target=/cache echo x >> /cache/log
COPY --from=other /other.txt /o.txt
";

fn blob_inodes(dir: &Path) -> BTreeMap<String, (u64, i64)> {
    std::fs::read_dir(dir.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| {
            let m = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (m.ino(), m.mtime_nsec()),
            )
        })
        .collect()
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn exported_cache_makes_a_fresh_root_hit_every_step() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "export",
        &[("Dockerfile", EXPORT_DOCKERFILE), ("app.txt", "app\n")],
    );
    let max = f.dir.path().join("cache-max");
    let min = f.dir.path().join("cache-min");
    let to_max = format!("type=local,dest={},mode=max,mounts=true", max.display());
    let to_min = format!("type=local,dest={}", min.display());
    let first = f.build_ok(&ctx, &["--cache-to", &to_max, "--cache-to", &to_min]);
    assert!(max.join("index.json").is_file() && max.join("oci-layout").is_file());
    let before = blob_inodes(&max);
    let (out, second) = f.build(&ctx, &["--cache-to", &to_max]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(", 0 new blobs"), "{stderr}");
    assert_eq!(blob_inodes(&max), before, "no blob written twice");
    assert_eq!(digest(&first), digest(&second));

    // mode=max: every step of a fresh root hits, with the same digest.
    let fresh = Fixture::new();
    let from = format!("type=local,src={},mounts=true", max.display());
    let ctx2 = fresh.context(
        "export",
        &[("Dockerfile", EXPORT_DOCKERFILE), ("app.txt", "app\n")],
    );
    let imported = fresh.build_ok(&ctx2, &["--cache-from", &from]);
    assert!(
        steps(&imported).iter().all(|s| s.1),
        "{:#?}",
        steps(&imported)
    );
    assert_eq!(digest(&imported), digest(&first));
    let log = walk_files(&fresh.root().join("mounts-v1"))
        .into_iter()
        .find(|p| p.ends_with("log"))
        .expect("cache mount restored");
    assert_eq!(std::fs::read_to_string(log).unwrap(), "x\n");
    assert_check_clean(&fresh);

    // mode=min: only the final image's steps (not the other stage's RUN); enough to hit.
    assert_eq!(exported_keys(&max), 5);
    assert_eq!(exported_keys(&min), 4);
    let fresh_min = Fixture::new();
    let ctx3 = fresh_min.context(
        "export",
        &[("Dockerfile", EXPORT_DOCKERFILE), ("app.txt", "app\n")],
    );
    let from_min = format!("type=local,src={}", min.display());
    let meta = fresh_min.build_ok(&ctx3, &["--cache-from", &from_min]);
    assert!(step(&meta, "cat /app.txt")["cached"].as_bool().unwrap());
    assert!(steps(&meta).iter().all(|s| s.1), "{:#?}", steps(&meta));
    assert_eq!(digest(&meta), digest(&first));

    // A registry cache needs a reference (the backend itself is tested in registry_build.rs).
    let (out, _) = f.build(&ctx, &["--cache-to", "type=registry"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("type=registry needs ref="));
}

/// Number of keys in an exported cache manifest.
fn exported_keys(dir: &Path) -> usize {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let digest = index["manifests"][0]["digest"].as_str().unwrap();
    let hex = digest.strip_prefix("sha256:").unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("blobs/sha256").join(hex)).unwrap())
            .unwrap();
    manifest["keys"].as_object().unwrap().len()
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if e.file_type().unwrap().is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn copy_tree(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}
