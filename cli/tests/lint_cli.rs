//! `builder lint` end to end: exit codes, formats, ignores, config files and build history
//! (from a JSON file and from the cache's own build records).

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
