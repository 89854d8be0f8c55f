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
