//! `builder lint` end to end: exit codes, formats, ignores, config files and build history
//! (from a JSON file and from the cache's own build records), and the advice being right: build
//! errors found by the build's own code, reorders that build the same image, help taken from the
//! recorded miss reasons.

mod common;

use common::Fixture;
use std::path::Path;
use std::process::Command;

fn builder(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_builder"))
        .current_dir(dir)
        .env_remove("BUILDER_ROOT")
        .env("NO_COLOR", "1")
        .args(args)
        .output()
        .expect("runs builder");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const DOCKERFILE: &str =
    "FROM node:22\nWORKDIR /app\nCOPY . .\nRUN npm ci\nCMD [\"node\", \"index.js\"]\n";

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Dockerfile"), DOCKERFILE).unwrap();
    std::fs::write(dir.path().join("package.json"), "{}").unwrap();
    std::fs::write(dir.path().join("package-lock.json"), "{}").unwrap();
    dir
}

#[test]
fn exit_codes_follow_the_failure_threshold() {
    let dir = project();
    let (code, out, _) = builder(dir.path(), &["lint", "--root", "none-here"]);
    assert_eq!(
        code, 1,
        "a warning fails at the default threshold (info):\n{out}"
    );
    assert!(
        out.contains("warning[BL1001/BroadCopyBeforeDependencyInstall]"),
        "{out}"
    );
    assert!(
        out.contains("+COPY package.json package-lock.json ./"),
        "{out}"
    );
    let (code, _, _) = builder(dir.path(), &["lint", "--failure-threshold", "error"]);
    assert_eq!(code, 0);
    let (code, _, _) = builder(dir.path(), &["lint", "--failure-threshold", "none"]);
    assert_eq!(code, 0);
    std::fs::write(dir.path().join("Empty"), "# nothing\n").unwrap();
    let (code, _, err) = builder(dir.path(), &["lint", "-f", "Empty", "."]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("Empty:"), "the error names the file: {err}");
}

#[test]
fn json_format_and_ignores() {
    let dir = project();
    let (_, out, _) = builder(dir.path(), &["lint", "--format", "json", "."]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let all = v.as_array().unwrap();
    let bl = all
        .iter()
        .find(|f| f["rule"] == "BL1001")
        .expect("BL1001 in JSON");
    assert_eq!(bl["file"], "./Dockerfile");
    assert_eq!(bl["line"], 3);
    assert_eq!(bl["column"], 1);
    assert_eq!(bl["severity"], "warning");
    let (code, out, _) = builder(
        dir.path(),
        &["lint", "--format", "json", "--ignore", "BL1001", "."],
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(v.as_array().unwrap().iter().all(|f| f["rule"] != "BL1001"));
    assert_eq!(code, 0, "{out}");
    std::fs::write(
        dir.path().join(".builder-lint.toml"),
        "[severity]\nBL1001 = \"error\"\n",
    )
    .unwrap();
    let (code, out, _) = builder(
        dir.path(),
        &[
            "lint",
            "--format",
            "github",
            "--failure-threshold",
            "error",
            ".",
        ],
    );
    assert_eq!(code, 1);
    assert!(
        out.contains("::error file=./Dockerfile,line=3,col=1,title=BL1001::"),
        "{out}"
    );
    std::fs::write(
        dir.path().join(".builder-lint.toml"),
        "ignore = [\"BroadCopyBeforeDependencyInstall\"]\n",
    )
    .unwrap();
    let (_, out, _) = builder(dir.path(), &["lint", "."]);
    assert!(!out.contains("BL1001"), "{out}");
}

#[test]
fn sarif_format_is_a_sarif_log() {
    let dir = project();
    let (_, out, _) = builder(dir.path(), &["lint", "--format", "sarif", "."]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["version"], "2.1.0");
    assert_eq!(
        v["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "Dockerfile"
    );
}

#[test]
fn history_from_a_file_and_from_the_cache() {
    let dir = project();
    let history = r#"[{"steps":[{"line":3,"cached":false,"duration_ms":5},{"line":4,"cached":false,"duration_ms":40000}]},
                      {"steps":[{"line":3,"cached":false,"duration_ms":6},{"line":4,"cached":false,"duration_ms":41000}]}]"#;
    std::fs::write(dir.path().join("h.json"), history).unwrap();
    let (_, out, _) = builder(dir.path(), &["lint", "--history", "h.json", "."]);
    assert!(out.contains("info[BL2001/FrequentCacheMiss]"), "{out}");
    assert!(
        out.contains("missed in 2 of 2 builds; 11 ms here and 81000 ms re-running the steps below"),
        "{out}"
    );

    // The same records written by the cache's record store are found by Dockerfile and target.
    let root = tempfile::tempdir().unwrap();
    let store = cache::records::RecordStore::open(root.path()).unwrap();
    let dockerfile = dir.path().join("Dockerfile");
    for (i, ms) in [40000u64, 41000].iter().enumerate() {
        let step = |line: usize, duration_ms: u64| cache::records::StepReport {
            name: format!("step {line}"),
            stage: String::new(),
            line,
            end_line: line,
            cached: false,
            reason: serde_json::Value::Null,
            duration_ms,
            key: format!("{line}"),
            inputs: Default::default(),
            history: None,
        };
        store
            .write(&cache::records::BuildRecord {
                target_id: cache::records::target_id(&dockerfile, ""),
                dockerfile: dockerfile.display().to_string(),
                target: String::new(),
                started_ms: 1_000 + i as u64,
                duration_ms: ms + 5,
                success: true,
                steps: vec![step(3, 5), step(4, *ms)],
                image: None,
            })
            .unwrap();
    }
    let root_arg = root.path().to_str().unwrap();
    let (_, out, _) = builder(
        dir.path(),
        &[
            "lint",
            "--root",
            root_arg,
            "-f",
            dockerfile.to_str().unwrap(),
            ".",
        ],
    );
    assert!(out.contains("BL2001"), "{out}");
    assert!(out.contains("81000 ms re-running"), "{out}");
    let (_, out, _) = builder(
        dir.path(),
        &["lint", "--root", root_arg, "--target", "other", "."],
    );
    assert!(
        !out.contains("BL2001"),
        "records of another target are not used: {out}"
    );
}

#[test]
fn lists_rules() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = builder(dir.path(), &["lint", "--list-rules"]);
    assert_eq!(code, 0);
    assert!(
        out.lines()
            .any(|l| l.starts_with("BL1001 ") && l.contains("BroadCopyBeforeDependencyInstall")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("DL3008 ") && l.contains("hadolint")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("StageNameCasing ") && l.contains("buildkit")),
        "{out}"
    );
}

#[test]
fn deeply_nested_substitutions_neither_overflow_nor_print_the_whole_expression() {
    // 200,000 levels of `${a:-...}`, spread over continuation lines of 1,000 characters.
    let levels = 200_000;
    let word = format!("{}x{}", "${a:-".repeat(levels), "}".repeat(levels));
    let lines: Vec<String> = word
        .as_bytes()
        .chunks(1000)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        format!("FROM scratch\nARG a\nENV b={}\n", lines.join("\\\n")),
    )
    .unwrap();
    let (code, out, err) = builder(dir.path(), &["lint", "--root", "none-here", "."]);
    assert!(
        code == 0 || code == 1,
        "lint crashed ({code}): {}",
        &err[..err.len().min(2000)]
    );
    assert!(
        out.len() + err.len() < 20_000,
        "lint printed the whole expression"
    );
    let root = dir.path().join("root");
    let (code, out, err) = builder(
        dir.path(),
        &["--root", &root.to_string_lossy(), "build", "."],
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("nested more than 128 levels deep") && err.contains("more characters"),
        "{}",
        &err[..err.len().min(2000)]
    );
    assert!(
        out.len() + err.len() < 20_000,
        "build printed {} bytes",
        out.len() + err.len()
    );
}

/// The findings of `builder lint --format json` on `dockerfile` in `context`.
fn lint_json(dir: &Path, extra: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let mut args = vec!["lint", "--format", "json"];
    args.extend_from_slice(extra);
    let (code, out, err) = builder(dir, &args);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    (code, v.as_array().unwrap().clone())
}

fn with_rule<'a>(findings: &'a [serde_json::Value], rule: &str) -> Vec<&'a serde_json::Value> {
    findings.iter().filter(|f| f["rule"] == rule).collect()
}

#[test]
fn parse_keeps_an_unknown_instruction_as_buildkit_does() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox\nRUNN --foo=bar echo hi \\\n  there\nfoo [\"a\", \"b\"]\nONBUILD RUNX make\nCOPPY --from=x a  b\n",
    )
    .unwrap();
    let (code, out, err) = builder(dir.path(), &["parse", "Dockerfile"]);
    assert_eq!(code, 0, "{err}");
    // BuildKit's `Node.Dump()` of the same file (moby/buildkit v0.32 parser): flags kept, the
    // arguments left out of the AST (`parseIgnore`), the line kept whole in `Original`.
    assert_eq!(
        out,
        "(from \"busybox\")\n(runn [\"--foo=bar\"] \"\")\n(foo \"\")\n(onbuild (runx \"\"))\n(coppy [\"--from=x\"] \"\")\n"
    );
    let (_, out, _) = builder(dir.path(), &["parse", "--format", "json", "Dockerfile"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[1]["cmd"], "RUNN");
    assert_eq!(v[1]["original"], "RUNN --foo=bar echo hi   there");
    assert_eq!(v[1]["flags"][0], "--foo=bar");
}

#[test]
fn lint_reports_the_errors_build_stops_at() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("present.txt"), "hi\n").unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox:local\nRUNN echo hi\nCOPY --chwon=1 present.txt /x\n",
    )
    .unwrap();
    let (code, findings) = lint_json(dir.path(), &["--root", "none-here", "."]);
    assert_eq!(code, 1);
    let errors = with_rule(&findings, "BL0001");
    assert_eq!(errors.len(), 2, "{findings:?}");
    assert_eq!(
        (errors[0]["line"].as_u64(), errors[0]["column"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(errors[0]["severity"], "error");
    assert_eq!(errors[0]["message"], "unknown instruction `RUNN`");
    assert_eq!(errors[0]["help"], "did you mean `RUN`?");
    assert_eq!(
        (errors[1]["line"].as_u64(), errors[1]["column"].as_u64()),
        (Some(3), Some(6))
    );
    assert_eq!(errors[1]["message"], "unknown flag `--chwon` for COPY");

    // A source the context lacks (a pattern that matches nothing is no error, as in the build);
    // a source .dockerignore hides is missing too.
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox:local\nCOPY present.txt missing.txt /y/\nCOPY nothing-*.txt /z/\nCOPY hidden.txt /h\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("hidden.txt"), "h\n").unwrap();
    std::fs::write(dir.path().join(".dockerignore"), "hidden.txt\n").unwrap();
    let (_, findings) = lint_json(dir.path(), &["--root", "none-here", "."]);
    let errors = with_rule(&findings, "BL0001");
    let at: Vec<(u64, u64)> = errors
        .iter()
        .map(|f| (f["line"].as_u64().unwrap(), f["column"].as_u64().unwrap()))
        .collect();
    assert_eq!(at, vec![(2, 18), (4, 6)], "{findings:?}");
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap()
            .contains("file not found in build context: \"/missing.txt\""),
        "{:?}",
        errors[0]
    );
    // Lowering errors: a stage used before it is defined, an ARG the FROM needs.
    std::fs::write(
        dir.path().join("Dockerfile"),
        "ARG BASE\nFROM $BASE\nRUN true\n",
    )
    .unwrap();
    let (_, findings) = lint_json(dir.path(), &["--root", "none-here", "."]);
    assert_eq!(with_rule(&findings, "BL0001").len(), 1, "{findings:?}");
    assert!(
        with_rule(&findings, "InvalidDefaultArgInFrom").is_empty(),
        "the build error is that fact: {findings:?}"
    );
    let (_, findings) = lint_json(
        dir.path(),
        &[
            "--root",
            "none-here",
            "--build-arg",
            "BASE=busybox:local",
            ".",
        ],
    );
    assert!(with_rule(&findings, "BL0001").is_empty(), "{findings:?}");
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn lint_errors_are_the_errors_build_stops_with() {
    common::require_build();
    let f = Fixture::new();
    for (name, dockerfile) in [
        ("unknown", "FROM busybox:local\nRUN true\nRUNN echo hi\n"),
        ("flag", "FROM busybox:local\nCOPY --chwon=1 a.txt /x\n"),
        (
            "missing",
            "FROM busybox:local\nRUN true\nCOPY a.txt b.txt /y/\n",
        ),
    ] {
        let ctx = f.context(name, &[("Dockerfile", dockerfile), ("a.txt", "a\n")]);
        let (code, findings) = lint_json(&ctx, &["--root", "none-here", "."]);
        assert_eq!(code, 1, "{name}");
        let errors = with_rule(&findings, "BL0001");
        assert_eq!(errors.len(), 1, "{name}: {findings:?}");
        let message = errors[0]["message"].as_str().unwrap();
        let (out, _) = f.build(&ctx, &[]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: the build succeeded");
        assert!(
            stderr.contains(message),
            "{name}: build said\n{stderr}\nlint said {message}"
        );
    }
}

#[test]
fn lint_never_moves_a_run_above_files_it_may_read() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("certs")).unwrap();
    std::fs::write(dir.path().join("certs/corp.crt"), "cert\n").unwrap();
    let lint_file = |text: &str| {
        std::fs::write(dir.path().join("Dockerfile"), text).unwrap();
        let (_, findings) = lint_json(dir.path(), &["--root", "none-here", "."]);
        with_rule(&findings, "BL1007")
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    // Installing ca-certificates reads the certificates copied above: no advice to move it.
    let f = lint_file("FROM debian:12\nCOPY certs/*.crt /usr/local/share/ca-certificates/\nRUN apt-get update && apt-get install -y --no-install-recommends ca-certificates\n");
    assert!(f.is_empty(), "{f:?}");
    let f = lint_file("FROM debian:12\nCOPY certs/*.crt /usr/local/share/ca-certificates/\nRUN update-ca-certificates\nRUN useradd app\n");
    assert!(f.is_empty(), "{f:?}");
    // A package install may read files put where system tools look: the move is conditional.
    let f = lint_file("FROM debian:12\nCOPY certs/*.crt /usr/local/share/ca-certificates/\nRUN apt-get update && apt-get install -y --no-install-recommends curl\n");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        f[0]["help"],
        "if this step does not read the files of line 2, move it above line 2"
    );
    assert!(f[0].get("suggestion").is_none(), "{:?}", f[0]);
    // The application's own directory: the move is the fix.
    let f = lint_file("FROM debian:12\nWORKDIR /app\nCOPY . .\nRUN apt-get update && apt-get install -y --no-install-recommends curl\n");
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(f[0]["help"], "move it above line 3");
    assert!(f[0]["suggestion"]
        .as_str()
        .unwrap()
        .contains("+RUN apt-get update"));
    // A step that names the destination reads it.
    let f = lint_file("FROM debian:12\nCOPY . /app\nRUN apt-get update && apt-get install -y --no-install-recommends curl && ls /app\n");
    assert!(f.is_empty(), "{f:?}");
}

#[test]
fn one_fact_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "FROM busybox:1.36\nMAINTAINER me\nWORKDIR app\nCMD echo hi\n",
    )
    .unwrap();
    let (_, findings) = lint_json(dir.path(), &["--root", "none-here", "."]);
    let rules: Vec<(&str, u64)> = findings
        .iter()
        .map(|f| (f["rule"].as_str().unwrap(), f["line"].as_u64().unwrap()))
        .collect();
    for (kept, dropped, line) in [
        ("MaintainerDeprecated", "DL4000", 2),
        ("WorkdirRelativePath", "DL3000", 3),
        ("JSONArgsRecommended", "DL3025", 4),
    ] {
        assert!(rules.contains(&(kept, line)), "{rules:?}");
        assert!(!rules.contains(&(dropped, line)), "{rules:?}");
    }
    // Ignoring either name ignores the fact.
    let (_, findings) = lint_json(
        dir.path(),
        &["--root", "none-here", "--ignore", "DL3025", "."],
    );
    assert!(findings.iter().all(|f| f["line"] != 4), "{findings:?}");
}

/// Applies a hunk-only unified diff to `file` with `patch`.
fn apply(file: &Path, diff: &str) {
    let patch_file = file.with_extension("diff");
    std::fs::write(&patch_file, format!("--- a\n+++ b\n{diff}")).unwrap();
    let out = Command::new("patch")
        .arg(file)
        .arg(&patch_file)
        .output()
        .expect("runs patch");
    assert!(
        out.status.success(),
        "patch failed:\n{}{}\n{diff}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn inspect(f: &Fixture, image: &str) -> serde_json::Value {
    let out = f.cmd().args(["inspect", image]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    match v {
        serde_json::Value::Array(mut items) => items.remove(0),
        other => other,
    }
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn suggested_reorder_builds_the_same_image() {
    common::require_build();
    let f = Fixture::new();
    let original = "\
FROM busybox:local
# the release being built
ARG VERSION
LABEL org.opencontainers.image.version=$VERSION \\
      org.opencontainers.image.title=demo
ENV APP_VERSION=${VERSION}
RUN mkdir -p /opt/app \\
 && echo built > /opt/app/built
RUN echo more > /opt/app/more
CMD [\"sh\"]
";
    let ctx = f.context("reorder", &[("Dockerfile", original)]);
    let (_, findings) = lint_json(&ctx, &["--root", "none-here", "."]);
    let moves = with_rule(&findings, "BL1002");
    assert_eq!(
        moves.len(),
        1,
        "one finding for the ARG and what expands it: {findings:?}"
    );
    assert_eq!(moves[0]["line"], 3);
    let related: Vec<u64> = moves[0]["related_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_u64().unwrap())
        .collect();
    assert_eq!(
        related,
        vec![7, 9, 4, 6],
        "the RUNs passed, then the lines taken along"
    );
    let diff = moves[0]["suggestion"].as_str().unwrap();
    let suggested = f.context("reorder-suggested", &[("Dockerfile", original)]);
    apply(&suggested.join("Dockerfile"), diff);
    let text = std::fs::read_to_string(suggested.join("Dockerfile")).unwrap();
    assert_eq!(
        text,
        "\
FROM busybox:local
RUN mkdir -p /opt/app \\
 && echo built > /opt/app/built
RUN echo more > /opt/app/more
# the release being built
ARG VERSION
LABEL org.opencontainers.image.version=$VERSION \\
      org.opencontainers.image.title=demo
ENV APP_VERSION=${VERSION}
CMD [\"sh\"]
",
        "continuations and the comment kept, the LABEL and ENV moved along"
    );
    let (_, after) = lint_json(&suggested, &["--root", "none-here", "."]);
    assert!(with_rule(&after, "BL1002").is_empty(), "{after:?}");

    // Timestamps clamped, so that the RUN layers can be compared byte for byte.
    for (dir, tag) in [(&ctx, "original"), (&suggested, "suggested")] {
        let out = f
            .cmd()
            .env("SOURCE_DATE_EPOCH", "0")
            .args(["build", "--progress", "plain", "-t", tag])
            .args(["--build-arg", "VERSION=7"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{tag}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (a, b) = (inspect(&f, "original"), inspect(&f, "suggested"));
    // The same filesystem and the same runtime config; only the history's text of the RUNs
    // (which no longer see VERSION) differs.
    assert_eq!(a["RootFS"], b["RootFS"], "rootfs diff_ids");
    assert!(
        a["RootFS"]["Layers"]
            .as_array()
            .is_some_and(|l| l.len() >= 2),
        "{a}"
    );
    assert_eq!(a["Config"], b["Config"], "runtime config");
    assert_eq!(
        a["Config"]["Labels"]["org.opencontainers.image.version"],
        "7"
    );
}

fn records_lint(f: &Fixture, ctx: &Path) -> Vec<serde_json::Value> {
    let root = f.root();
    let dockerfile = ctx.join("Dockerfile");
    let (_, findings) = lint_json(
        ctx,
        &[
            "--root",
            root.to_str().unwrap(),
            "-f",
            dockerfile.to_str().unwrap(),
            ".",
        ],
    );
    findings
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn arg_with_a_default_bumped_per_build_is_flagged_with_its_measured_cost() {
    common::require_build();
    let f = Fixture::new();
    let dockerfile = "FROM busybox:local\nARG VERSION=1.0\nRUN echo compiling > /compiled\nRUN echo $VERSION > /version\n";
    let ctx = f.context("bumped", &[("Dockerfile", dockerfile)]);
    // With a default, the name alone says nothing: no records, no finding.
    let before = records_lint(&f, &ctx);
    assert!(with_rule(&before, "BL1002").is_empty(), "{before:?}");
    for v in ["1.0", "1.1", "1.2"] {
        f.build_ok(&ctx, &["--build-arg", &format!("VERSION={v}")]);
    }
    let after = records_lint(&f, &ctx);
    let flagged = with_rule(&after, "BL1002");
    assert_eq!(flagged.len(), 1, "{after:?}");
    assert_eq!(flagged[0]["line"], 2);
    let message = flagged[0]["message"].as_str().unwrap();
    assert!(
        message.contains("`ARG VERSION changed` in 2 of 3 recorded builds, re-running ")
            && message.contains(" ms of steps"),
        "{message}"
    );
    assert!(message.contains("(lines 3)"), "{message}");
    assert_eq!(
        flagged[0]["help"],
        "declare it just above line 4, the first instruction that uses it"
    );
}

#[test]
#[cfg_attr(
    any(missing_root, missing_busybox, missing_slirp4netns),
    ignore = "needs root, /usr/bin/busybox and slirp4netns"
)]
fn costliest_miss_help_comes_from_the_recorded_reasons() {
    common::require_build();
    let f = Fixture::new();
    let dockerfile = "FROM busybox:local\nCOPY a.txt /a.txt\nRUN cat /a.txt > /x\nARG VERSION=1\nRUN echo $VERSION > /v\n";
    let ctx = f.context("reasons", &[("Dockerfile", dockerfile), ("a.txt", "0\n")]);
    for i in 1..=3 {
        std::fs::write(ctx.join("a.txt"), format!("{i}\n")).unwrap();
        f.build_ok(&ctx, &["--build-arg", &format!("VERSION={i}")]);
    }
    let findings = records_lint(&f, &ctx);
    let misses = with_rule(&findings, "BL2001");
    let at = |line: u64| {
        misses
            .iter()
            .find(|m| m["line"] == line)
            .unwrap_or_else(|| panic!("no BL2001 on line {line}: {findings:?}"))
    };
    let copy = at(2);
    let copy_message = copy["message"].as_str().unwrap();
    assert!(
        copy_message.contains("it missed because files it reads changed (a.txt) (2 builds)"),
        "{copy_message}"
    );
    let copy_help = copy["help"].as_str().unwrap();
    assert!(copy_help.contains(".dockerignore"), "{copy_help}");
    let run = at(5);
    let run_message = run["message"].as_str().unwrap();
    assert!(
        run_message.contains("ARG VERSION changed (2 builds)"),
        "{run_message}"
    );
    let run_help = run["help"].as_str().unwrap();
    assert!(
        run_help.starts_with("this step uses $VERSION"),
        "{run_help}"
    );
    assert_ne!(copy_help, run_help);
}
