//! `builder graph` end to end: the real binary on the repository's examples, its DOT output
//! rendered by the real graphviz `dot`, and its errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn builder() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_builder"));
    c.env("RUST_BACKTRACE", "0");
    c
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

#[test]
fn dot_output_is_accepted_by_graphviz() {
    let out = builder()
        .arg("graph")
        .arg(example("multistage"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dot_text = String::from_utf8(out.stdout).unwrap();
    assert!(dot_text.contains("subgraph cluster_"));
    assert!(dot_text.contains("[left 1/1] RUN sleep 1"));
    let mut dot = Command::new("dot")
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graphviz `dot` is installed");
    dot.stdin
        .take()
        .unwrap()
        .write_all(dot_text.as_bytes())
        .unwrap();
    let svg = dot.wait_with_output().unwrap();
    assert!(
        svg.status.success(),
        "{}",
        String::from_utf8_lossy(&svg.stderr)
    );
    assert!(String::from_utf8_lossy(&svg.stdout).contains("<svg"));
}

#[test]
fn json_output_with_target_and_build_args() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("Dockerfile"),
        "ARG BASE=alpine\nFROM $BASE AS build\nARG V=1\nRUN echo $V\nFROM build AS unused\nRUN false\n",
    )
    .unwrap();
    let out = builder()
        .args([
            "graph",
            "--format",
            "json",
            "--target",
            "build",
            "--build-arg",
            "V=2",
            "--build-arg",
            "BASE=busybox",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["target_stage"]["name"], "build");
    let vertices = json["vertices"].as_array().unwrap();
    assert!(vertices
        .iter()
        .any(|v| v["op"]["reference"] == "docker.io/library/busybox:latest"));
    let exec = vertices.iter().find(|v| v["op"]["kind"] == "exec").unwrap();
    assert_eq!(exec["op"]["env"][0], serde_json::json!(["V", "2"]));
    assert!(!vertices
        .iter()
        .any(|v| v["name"].as_str().unwrap_or("").contains("false")));
}

#[test]
fn errors_point_at_the_line_with_a_caret() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.Dockerfile");
    std::fs::write(&file, "FROM alpine\nCOPY --chwon=1 . .\n").unwrap();
    let out = builder()
        .arg("graph")
        .arg("-f")
        .arg(&file)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("app.Dockerfile:2:6: unknown flag `--chwon` for COPY"),
        "{err}"
    );
    assert!(
        err.contains(" 2 | COPY --chwon=1 . .\n   |      ^^^^^^^^^"),
        "{err}"
    );
    assert!(err.contains("did you mean `--chown`?"), "{err}");
}
