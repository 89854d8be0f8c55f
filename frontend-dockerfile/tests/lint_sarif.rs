//! `--format sarif` output validated against the official SARIF 2.1.0 schema (shipped in
//! `tests/data/`), over small Dockerfiles and the whole real-world corpus when present.
//!
//! When `SARIF_MULTITOOL` names the SARIF SDK's `Sarif.Multitool` binary (npm package
//! `@microsoft/sarif-multitool-linux`), its `validate` command must also accept the log.

use std::path::{Path, PathBuf};

use frontend_dockerfile::lint::output::{self, Format, Report};
use frontend_dockerfile::lint::{self, LintConfig, LintInput};
use frontend_dockerfile::parser;

fn validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sarif-2.1.0.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    jsonschema::draft202012::new(&schema).expect("the SARIF schema compiles")
}

fn sarif_for(files: &[(String, String)]) -> serde_json::Value {
    let linted: Vec<(String, String, Vec<lint::Finding>)> = files
        .iter()
        .map(|(name, src)| {
            let df = parser::parse(src).expect("parses");
            let f = lint::lint(
                &df,
                &LintInput {
                    source: src,
                    ..Default::default()
                },
                &LintConfig::default(),
            );
            (name.clone(), src.clone(), f)
        })
        .collect();
    let reports: Vec<Report<'_>> = linted
        .iter()
        .map(|(n, s, f)| Report {
            file: n,
            source: s,
            findings: f,
        })
        .collect();
    serde_json::from_str(&output::render(Format::Sarif, &reports, false)).expect("SARIF is JSON")
}

fn assert_valid(log: &serde_json::Value) {
    let v = validator();
    let errors: Vec<String> = v
        .iter_errors(log)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .take(10)
        .collect();
    assert!(
        errors.is_empty(),
        "SARIF log does not match the schema:\n{}",
        errors.join("\n")
    );
}

#[test]
fn small_logs_match_the_schema() {
    let src = "FROM node:22\nARG BUILD_DATE\nWORKDIR /app\nCOPY . .\nRUN apt-get update\nRUN npm ci\ncmd node x.js\n";
    let log = sarif_for(&[
        ("Dockerfile".into(), src.into()),
        ("/abs/path with space/Dockerfile".into(), src.into()),
    ]);
    assert_valid(&log);
    let run = &log["runs"][0];
    assert_eq!(log["version"], "2.1.0");
    let results = run["results"].as_array().unwrap();
    assert!(!results.is_empty());
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    for r in results {
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(
            rules[idx]["id"], r["ruleId"],
            "ruleIndex points at the rule"
        );
    }
    let uris: Vec<&str> = results
        .iter()
        .map(|r| {
            r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert!(uris.contains(&"Dockerfile"));
    assert!(
        uris.contains(&"file:///abs/path%20with%20space/Dockerfile"),
        "{uris:?}"
    );
    // A rule whose name equals its id carries no name (SARIF 3.49.7).
    assert!(rules.iter().all(|r| r.get("name") != Some(&r["id"])));
    // The validator does reject a broken log.
    let mut broken = log.clone();
    broken["runs"][0]["results"][0]["level"] = serde_json::json!("severe");
    assert!(!validator().is_valid(&broken));
    // The empty log is valid too.
    assert_valid(&sarif_for(&[(
        "Dockerfile".into(),
        "FROM scratch\n".into(),
    )]));
}

fn corpus() -> Vec<PathBuf> {
    let dir = match std::env::var_os("BUILDER_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d).join("real-world"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/real-world"),
    };
    let dir = if dir.is_dir() {
        dir
    } else {
        PathBuf::from("/work/shared/conformance/real-world")
    };
    let mut out = Vec::new();
    for repo in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(repo.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if f.path().to_string_lossy().ends_with(".Dockerfile") {
                out.push(f.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn corpus_log_matches_the_schema() {
    let files = corpus();
    if files.is_empty() {
        eprintln!("real-world corpus not found; set BUILDER_CONFORMANCE_DIR. Skipped.");
        return;
    }
    let inputs: Vec<(String, String)> = files
        .iter()
        .filter_map(|p| {
            let src = std::fs::read_to_string(p).ok()?;
            parser::parse(&src).ok()?;
            Some((p.file_name()?.to_string_lossy().into_owned(), src))
        })
        .collect();
    let log = sarif_for(&inputs);
    assert_valid(&log);
    if let Some(tool) = std::env::var_os("SARIF_MULTITOOL") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lint.sarif");
        std::fs::write(&path, serde_json::to_string_pretty(&log).unwrap()).unwrap();
        let out = std::process::Command::new(tool)
            .arg("validate")
            .arg(&path)
            .output()
            .expect("runs Sarif.Multitool");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(
            !text.contains(": error "),
            "Sarif.Multitool reports errors:\n{text}"
        );
    }
}
