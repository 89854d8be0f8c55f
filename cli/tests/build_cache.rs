//! End-to-end cache behaviour of `builder build`, judged from `--metadata-file`: what hits, what
//! misses and why.

mod common;

use common::{step, steps, Fixture};

const DOCKERFILE: &str = "\
FROM busybox:local AS deps
ARG LEVEL=1
COPY manifest.txt /app/
RUN cat /app/manifest.txt > /app/deps.txt
FROM busybox:local AS other
RUN echo other > /other.txt
FROM deps
ARG FLAVOR=plain
COPY src/ /app/src/
RUN echo $FLAVOR > /app/flavor.txt && ls /app/src > /app/list.txt
COPY --from=other /other.txt /app/
";

fn project(f: &Fixture) -> std::path::PathBuf {
    f.context(
        "project",
        &[
            ("Dockerfile", DOCKERFILE),
            ("manifest.txt", "deps v1\n"),
            ("src/a.txt", "a\n"),
            ("src/b.txt", "b\n"),
            ("unread.txt", "never copied\n"),
        ],
    )
}

fn digest(meta: &serde_json::Value) -> String {
    meta["containerimage.digest"].as_str().unwrap().to_string()
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn unchanged_rebuild_and_mtime_touch_hit_every_step_with_the_same_digest() {
    common::require_build();
    let f = Fixture::new();
    let ctx = project(&f);
    let first = f.build_ok(&ctx, &["-t", "app"]);
    assert!(
        steps(&first).iter().all(|s| !s.1),
        "cold build runs everything"
    );
    assert!(steps(&first).iter().all(|s| s.2 == "no_previous_record"));
    let (out, second) = f.build(&ctx, &["-t", "app"]);
    assert!(out.status.success());
    assert!(steps(&second).iter().all(|s| s.1), "{:#?}", steps(&second));
    // Plain progress: each step's line, then CACHED on the next, base images included.
    let progress = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = progress.lines().collect();
    for name in steps(&second)
        .iter()
        .map(|s| s.0.as_str())
        .chain(["[deps 1/3] FROM docker.io/library/busybox:local"])
    {
        let at = lines
            .iter()
            .position(|l| l.split_once(' ').is_some_and(|(_, rest)| rest == name))
            .unwrap_or_else(|| panic!("no line for {name:?} in\n{progress}"));
        let number = lines[at].split(' ').next().unwrap();
        assert_eq!(lines[at + 1], format!("{number} CACHED"), "{progress}");
    }
    assert_eq!(digest(&first), digest(&second));
    filetime::set_file_mtime(
        ctx.join("src/a.txt"),
        filetime::FileTime::from_unix_time(1000, 0),
    )
    .unwrap();
    let third = f.build_ok(&ctx, &["-t", "app"]);
    assert!(steps(&third).iter().all(|s| s.1), "mtime must not matter");
    assert_eq!(digest(&first), digest(&third));
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn editing_a_copied_file_misses_from_its_line_down_only() {
    common::require_build();
    let f = Fixture::new();
    let ctx = project(&f);
    f.build_ok(&ctx, &[]);
    // The context load line says how much was read: a file no step reads is never hashed,
    // an edited file that one reads is hashed once.
    let context_line = |out: &std::process::Output| -> String {
        let progress = String::from_utf8_lossy(&out.stderr).into_owned();
        let lines: Vec<&str> = progress.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.ends_with(" [internal] load build context"))
            .unwrap_or_else(|| panic!("no context line in\n{progress}"));
        lines[at + 1].split_once(' ').unwrap().1.to_string()
    };
    std::fs::write(ctx.join("unread.txt"), "changed\n").unwrap();
    let (out, meta) = f.build(&ctx, &[]);
    assert!(
        steps(&meta).iter().all(|s| s.1),
        "a file never read does not matter"
    );
    let line = context_line(&out);
    assert!(
        line.starts_with("5 files, ") && line.ends_with(", 0 hashed"),
        "{line}"
    );

    std::fs::write(ctx.join("src/a.txt"), "a changed\n").unwrap();
    let (out, meta) = f.build(&ctx, &[]);
    let line = context_line(&out);
    assert!(
        line.starts_with("5 files, ") && line.ends_with(", 1 hashed"),
        "{line}"
    );
    let copy = step(&meta, "COPY src/");
    assert_eq!(copy["cached"], false);
    assert_eq!(copy["reason"]["kind"], "file_changed");
    assert_eq!(copy["reason"]["path"], "src/a.txt");
    assert_eq!(copy["line"], 9);
    let run = step(&meta, "flavor.txt");
    assert_eq!(run["reason"]["kind"], "parent_missed");
    assert_eq!(step(&meta, "COPY --from=other")["cached"], false);
    // Above the change, and in the unrelated stage: cached.
    assert_eq!(step(&meta, "COPY manifest.txt")["cached"], true);
    assert_eq!(step(&meta, "RUN cat /app/manifest.txt")["cached"], true);
    assert_eq!(step(&meta, "RUN echo other")["cached"], true);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn build_args_miss_only_where_visible() {
    common::require_build();
    let f = Fixture::new();
    let ctx = project(&f);
    f.build_ok(&ctx, &[]);
    let meta = f.build_ok(&ctx, &["--build-arg", "FLAVOR=spicy"]);
    let run = step(&meta, "flavor.txt");
    assert_eq!(run["cached"], false);
    assert_eq!(run["reason"]["kind"], "arg_changed");
    assert_eq!(run["reason"]["name"], "FLAVOR");
    assert_eq!(run["reason"]["old"], "plain");
    assert_eq!(run["reason"]["new"], "spicy");
    assert_eq!(step(&meta, "COPY src/")["cached"], true);
    assert_eq!(step(&meta, "RUN cat /app/manifest.txt")["cached"], true);

    let meta = f.build_ok(
        &ctx,
        &["--build-arg", "FLAVOR=spicy", "--build-arg", "LEVEL=2"],
    );
    let deps_run = step(&meta, "RUN cat /app/manifest.txt");
    assert_eq!(deps_run["reason"]["kind"], "arg_changed");
    assert_eq!(deps_run["reason"]["name"], "LEVEL");
    assert_eq!(
        step(&meta, "RUN echo other")["cached"],
        true,
        "LEVEL is not visible there"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_new_base_digest_misses_its_stage() {
    common::require_build();
    let f = Fixture::new();
    let ctx = project(&f);
    f.build_ok(&ctx, &[]);
    let base2 = f.context(
        "base2",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN echo v2 > /base-version\n",
        )],
    );
    f.build_ok(&base2, &["-t", "busybox:local"]);
    let meta = f.build_ok(&ctx, &[]);
    let first = step(&meta, "COPY manifest.txt");
    assert_eq!(first["cached"], false);
    assert_eq!(first["reason"]["kind"], "base_image_changed");
    assert_eq!(
        step(&meta, "RUN echo other")["reason"]["kind"],
        "base_image_changed"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn the_same_step_in_two_dockerfiles_shares_the_cache() {
    common::require_build();
    let f = Fixture::new();
    let a = f.context(
        "a",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN echo shared > /shared.txt\n",
        )],
    );
    let b = f.context(
        "b",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN echo shared > /shared.txt\nRUN echo only-b > /b.txt\n",
        )],
    );
    f.build_ok(&a, &["-t", "a"]);
    let meta = f.build_ok(&b, &["-t", "b"]);
    assert_eq!(step(&meta, "RUN echo shared")["cached"], true);
    assert_eq!(step(&meta, "RUN echo only-b")["cached"], false);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_failed_step_caches_nothing_and_keeps_earlier_steps() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "fail",
        &[(
            "Dockerfile",
            "FROM busybox:local\nRUN echo first > /first.txt\nRUN echo boom && exit 3\n",
        )],
    );
    let (out, _) = f.build(&ctx, &[]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("exit code: 3"), "{stderr}");
    assert!(
        stderr.contains("boom"),
        "the step's output is shown: {stderr}"
    );
    assert!(stderr.contains(":3"), "the failing line is named: {stderr}");
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox:local\nRUN echo first > /first.txt\nRUN echo fixed\n",
    )
    .unwrap();
    let meta = f.build_ok(&ctx, &[]);
    assert_eq!(step(&meta, "RUN echo first")["cached"], true);
    assert_eq!(step(&meta, "RUN echo fixed")["cached"], false);
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn no_cache_and_no_cache_filter() {
    common::require_build();
    let f = Fixture::new();
    let ctx = project(&f);
    f.build_ok(&ctx, &[]);
    let meta = f.build_ok(&ctx, &["--no-cache-filter", "other"]);
    assert_eq!(step(&meta, "RUN echo other")["reason"]["kind"], "no_cache");
    assert_eq!(step(&meta, "RUN cat /app/manifest.txt")["cached"], true);
    let meta = f.build_ok(&ctx, &["--no-cache"]);
    assert!(steps(&meta).iter().all(|s| s.2 == "no_cache"));
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn history_shows_how_each_step_of_the_last_build_went() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "history",
        &[
            (
                "Dockerfile",
                "FROM busybox:local\nARG VERSION=1\nCOPY app.txt /app/\nRUN echo $VERSION > /v\n",
            ),
            ("app.txt", "app\n"),
        ],
    );
    f.build_ok(&ctx, &["-t", "app", "--build-arg", "VERSION=1"]);
    f.build_ok(&ctx, &["-t", "app", "--build-arg", "VERSION=2"]);
    let rows = common::run_ok(f.cmd().args([
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}};;{{.Cache}};;{{.Duration}}",
        "app",
    ]));
    let rows: Vec<Vec<&str>> = rows.lines().map(|l| l.split(";;").collect()).collect();
    let row = |start: &str| {
        rows.iter()
            .find(|r| r[0].starts_with(start))
            .unwrap_or_else(|| panic!("no {start:?} row in {rows:?}"))
    };
    let run = row("RUN |1 VERSION=2 /bin/sh -c echo $VERSION > /v");
    assert_eq!(run[1], "ARG VERSION changed (1 → 2)", "{rows:?}");
    assert!(
        run[2].ends_with('s') && run[2].trim_end_matches('s').parse::<f64>().is_ok(),
        "{rows:?}"
    );
    assert_eq!(row("COPY app.txt /app/")[1..], ["CACHED", "-"], "{rows:?}");
    // The base image's entries and the ARG's (with the value it took, as BuildKit writes it)
    // are no step of this build.
    assert_eq!(row("ARG VERSION=2")[1..], ["", ""], "{rows:?}");
    assert_eq!(row("COPY busybox")[1..], ["", ""], "{rows:?}");

    let table = common::run_ok(f.cmd().args(["history", "app"]));
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["IMAGE", "CREATED", "CREATED", "BY", "SIZE", "CACHE", "DURATION", "COMMENT"],
        "{table}"
    );
    // An image no build here stored keeps Docker's columns.
    let table = common::run_ok(f.cmd().args(["history", "busybox:local"]));
    assert!(!table.lines().next().unwrap().contains("CACHE"), "{table}");
}
