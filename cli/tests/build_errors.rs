//! How a failed build points at the Dockerfile: a failing step and a base image that cannot be
//! resolved are shown as one diagnostic (file, line and column, the instruction's lines, a caret),
//! after the step's last output lines.

mod common;

use common::Fixture;

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_failing_step_is_located_with_all_its_lines_and_its_output() {
    common::require_build();
    let f = Fixture::new();
    let ctx = f.context(
        "failing-run",
        &[(
            "Dockerfile",
            "FROM busybox:local\n\n  RUN echo from-the-step && \\\n    exit 3\nRUN true\n",
        )],
    );
    let (out, _) = f.build(&ctx, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    let located = err
        .find("Dockerfile:3:3: [2/3] RUN echo from-the-step")
        .unwrap_or_else(|| panic!("no location in:\n{err}"));
    assert!(err.contains("exit code: 3"), "{err}");
    let tail = &err[located..];
    assert!(
        tail.contains(" 3 |   RUN echo from-the-step && \\\n   |   ^"),
        "{err}"
    );
    assert!(tail.contains(" 4 |     exit 3"), "{err}");
    // The step's output comes first, between BuildKit's rulers.
    let output = err.find("------\nfrom-the-step\n------").expect(&err);
    assert!(output < located, "{err}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn a_base_image_that_cannot_be_resolved_points_at_its_from() {
    common::require_build();
    let f = Fixture::new();
    // Nothing listens on port 1: the pull fails quickly, and the error must name the FROM line.
    let ctx = f.context(
        "bad-from",
        &[(
            "Dockerfile",
            "FROM busybox:local AS first\nRUN true\nFROM 127.0.0.1:1/missing:tag\nCOPY --from=first /bin/busybox /bb\n",
        )],
    );
    let (out, _) = f.build(&ctx, &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("Dockerfile:3:1: failed to resolve image 127.0.0.1:1/missing:tag"),
        "{err}"
    );
    assert!(
        err.contains(" 3 | FROM 127.0.0.1:1/missing:tag\n   | ^^^^"),
        "{err}"
    );
}

/// A Dockerfile whose ARGs double a value per line (`ARG A1=$A0$A0`, ...), and one that copies a
/// 1 MiB value into hundreds of ENVs: a few lines that would ask for terabytes or gigabytes.
fn expansion_bombs() -> Vec<(&'static str, String, &'static str, &'static str)> {
    let mut doubling = String::from("FROM scratch\nARG A0=xxxxxxxxxxxxxxxx\n");
    for i in 1..40 {
        doubling.push_str(&format!("ARG A{i}=${{A{}}}${{A{}}}\n", i - 1, i - 1));
    }
    doubling.push_str("ENV X=$A39\n");
    let mut copies = String::from("FROM scratch\nARG A0=xxxxxxxxxxxxxxxx\n");
    for i in 1..=16 {
        copies.push_str(&format!("ARG A{i}=${{A{}}}${{A{}}}\n", i - 1, i - 1));
    }
    for i in 0..600 {
        copies.push_str(&format!("ENV V{i}=$A16\n"));
    }
    vec![
        (
            "doubling",
            doubling,
            "Dockerfile:19:5",
            "cannot expand `${A16}${A16}`: the expanded word would be longer than",
        ),
        (
            "copies",
            copies,
            "Dockerfile:272:10",
            "cannot expand `$A16`: the Dockerfile's expansions would produce more than",
        ),
    ]
}

/// Runs `builder` with its address space capped at 2 GiB, so that an expansion that allocates
/// instead of refusing aborts the process and fails the test.
fn run_capped(f: &Fixture, args: &[&str], ctx: &std::path::Path) -> std::process::Output {
    use std::os::unix::process::CommandExt;
    let mut cmd = f.cmd();
    cmd.args(args).arg(ctx);
    unsafe {
        cmd.pre_exec(|| {
            let cap = rustix::process::Rlimit {
                current: Some(2 << 30),
                maximum: Some(2 << 30),
            };
            rustix::process::setrlimit(rustix::process::Resource::As, cap)?;
            Ok(())
        });
    }
    cmd.output().unwrap()
}

#[test]
fn variable_expansion_is_bounded_per_word_and_per_dockerfile() {
    let f = Fixture::empty();
    for (name, dockerfile, place, message) in expansion_bombs() {
        let ctx = f.context(name, &[("Dockerfile", &dockerfile)]);
        for args in [&["graph"][..], &["lint"], &["build", "--progress", "plain"]] {
            let out = run_capped(&f, args, &ctx);
            let err = stderr(&out) + &String::from_utf8_lossy(&out.stdout);
            assert!(!out.status.success(), "{name} {args:?} succeeded");
            assert!(
                err.contains(place) && err.contains(message),
                "{name} {args:?}: no clear error at {place} in:\n{err}"
            );
        }
    }
}
