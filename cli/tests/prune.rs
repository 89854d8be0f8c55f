//! `builder prune -f` removes dangling cache, as `docker builder prune` does: records no stored
//! image and no target's latest build needs; it says what it kept and why, and frees what `du`
//! calls reclaimable.

mod common;

use common::{run_ok, step, steps, Fixture};
use std::process::{Command, Stdio};

fn du(f: &Fixture) -> serde_json::Value {
    serde_json::from_str(&run_ok(f.cmd().args(["du", "--json"]))).unwrap()
}

const DOCKERFILE: &str = "FROM busybox:local AS build\n\
    ARG FLAVOR=plain\n\
    RUN head -c 300000 /dev/urandom > /big && echo $FLAVOR > /flavor\n\
    FROM busybox:local\n\
    COPY --from=build /flavor /flavor\n";

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn prune_removes_dangling_cache_and_keeps_what_images_and_the_latest_build_need() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context("app", &[("Dockerfile", DOCKERFILE)]);
    f.build_ok(&ctx, &["-t", "app"]);
    // A second flavour: the first build's RUN (its 300 kB layer) is now in no image (the final
    // stage copies one small file) and not in the latest build of this target.
    f.build_ok(&ctx, &["-t", "app", "--build-arg", "FLAVOR=spicy"]);

    let before = du(&f);
    let reclaimable = before["reclaimable"].as_u64().unwrap();
    assert!(
        reclaimable > 300_000,
        "the old RUN layer is reclaimable: {before:#}"
    );
    assert!(before["reclaimable_all"].as_u64().unwrap() > reclaimable);

    let out = run_ok(f.cmd().args(["prune", "-f", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        report["removed_records"].as_array().unwrap().len(),
        1,
        "only the old flavour's RUN is dangling: {report:#}"
    );
    assert!(report["kept_for_recent_builds"].as_u64().unwrap() >= 1);
    let reclaimed = report["reclaimed"].as_u64().unwrap();
    // The collection also removes empty fan-out directories the estimate does not count.
    assert!(
        reclaimed >= reclaimable && reclaimed - reclaimable < 64 * 1024,
        "du said {reclaimable} reclaimable, prune freed {reclaimed}"
    );

    // What the latest build used is still cached; so is the old flavour's final COPY, whose
    // layer the first (now untagged) image holds: its RUN need not run again.
    let again = f.build_ok(&ctx, &["-t", "app", "--build-arg", "FLAVOR=spicy"]);
    assert!(steps(&again).iter().all(|s| s.1), "{again:#}");
    let old = f.build_ok(&ctx, &["-t", "app"]);
    assert!(step(&old, "COPY --from=build")["cached"].as_bool().unwrap());

    // The human output says what it kept and why.
    let text = run_ok(f.cmd().args(["prune", "-f"]));
    assert!(text.contains("Kept "), "{text}");
    assert!(text.contains("latest build"), "{text}");
}

#[test]
fn prune_without_force_and_without_a_terminal_refuses_instead_of_waiting() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(common::builder_bin())
        .arg("--root")
        .arg(dir.path().join("root"))
        .arg("prune")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("-f"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
