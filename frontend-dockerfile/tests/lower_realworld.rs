//! Every real-world Dockerfile of the conformance corpus parses and lowers, for its default
//! target and for every named stage as a target, without a panic and without an error, except
//! the ones listed in `EXPECTED_ERRORS` (each one an error BuildKit reports too).
//!
//! The corpus is found in `$BUILDER_CONFORMANCE_DIR`, else in the first `shared/conformance`
//! folder above the workspace; the test is skipped (with a message) when there is none.

use frontend_dockerfile::lower::{lower, LowerOptions};
use frontend_dockerfile::parser::parse;
use std::path::{Path, PathBuf};

/// Files BuildKit also refuses to lower, with the reason.
const EXPECTED_ERRORS: &[(&str, &str)] = &[];

fn conformance_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BUILDER_CONFORMANCE_DIR") {
        return Some(PathBuf::from(dir));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/conformance"))
        .find(|d| d.is_dir())
}

fn dockerfiles(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            dockerfiles(&p, out);
        } else if p.extension().is_some_and(|x| x == "Dockerfile") {
            out.push(p);
        }
    }
}

#[test]
fn every_real_world_dockerfile_lowers() {
    let Some(dir) = conformance_dir() else {
        eprintln!("conformance corpus not found: skipped");
        return;
    };
    let mut files = Vec::new();
    dockerfiles(&dir.join("real-world"), &mut files);
    files.sort();
    assert!(
        files.len() > 200,
        "corpus looks incomplete: {}",
        files.len()
    );
    let mut failures = Vec::new();
    let mut lowered = 0;
    let mut vertices = 0;
    for path in &files {
        let name = path
            .strip_prefix(&dir)
            .unwrap_or(path)
            .display()
            .to_string();
        let src = std::fs::read_to_string(path).expect("corpus file is readable");
        let df = match parse(&src) {
            Ok(df) => df,
            Err(e) => {
                failures.push(format!("{name}: parse: {e}"));
                continue;
            }
        };
        let mut targets: Vec<Option<String>> = vec![None];
        for node in df.children.iter().filter(|n| n.value == "from") {
            if node.args.len() == 3 {
                targets.push(Some(node.args[2].value.to_ascii_lowercase()));
            }
        }
        for target in targets {
            let opts = LowerOptions {
                file_name: name.clone(),
                source: Some(&src),
                target: target.clone(),
                platform: Some("linux/amd64".parse().unwrap()),
                build_platform: Some("linux/amd64".parse().unwrap()),
                ..LowerOptions::default()
            };
            let outcome =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| lower(&df, &opts)));
            match outcome {
                Err(_) => failures.push(format!("{name} (target {target:?}): PANIC")),
                Ok(Err(d)) => {
                    if !EXPECTED_ERRORS.iter().any(|(f, _)| name.ends_with(f)) {
                        failures.push(format!("{name} (target {target:?}):\n{d}"));
                    }
                }
                Ok(Ok(l)) => {
                    lowered += 1;
                    vertices += l.definition.len();
                    assert!(l.definition.target().is_some());
                    // The DOT and JSON renderings work for every real graph.
                    assert!(l.definition.to_dot().starts_with("digraph"));
                    assert!(l.definition.to_json().is_ok());
                }
            }
        }
    }
    eprintln!(
        "{} files, {lowered} (file, target) pairs lowered, {vertices} vertices",
        files.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
