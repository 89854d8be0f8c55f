//! Compares our `DL` findings with hadolint's on the real-world corpus
//! (`shared/conformance/real-world/`, or `$BUILDER_CONFORMANCE_DIR/real-world/`).
//!
//! Prints per-rule precision and recall, fails when any rule we implement has a recall below 90%,
//! and fails when a disagreement is not explained in `tests/lint-disagreements.md` (each entry a
//! line `- RULE dir/file.Dockerfile:LINE ...`). Files hadolint could not parse (DL1000) are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use frontend_dockerfile::lint::{self, LintConfig, LintInput, RuleSource};

fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("BUILDER_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d).join("real-world"),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance/real-world"),
    };
    let dir = if dir.is_dir() {
        dir
    } else {
        PathBuf::from("/work/shared/conformance/real-world")
    };
    dir.is_dir().then_some(dir)
}

#[derive(Default)]
struct Counts {
    tp: usize,
    fp: usize,
    fn_: usize,
    /// Misses listed in the disagreements file as deliberate (hadolint is wrong there).
    fn_explained: usize,
}

fn main() {
    let Some(dir) = corpus_dir() else {
        println!(
            "lint_hadolint: real-world corpus not found; set BUILDER_CONFORMANCE_DIR. Skipped."
        );
        return;
    };
    let explained =
        read_explained(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/lint-disagreements.md"));
    let implemented: BTreeSet<&str> = lint::rules::RULES
        .iter()
        .filter(|r| r.source == RuleSource::Hadolint)
        .map(|r| r.id)
        .collect();
    let mut files: Vec<PathBuf> = Vec::new();
    for repo in std::fs::read_dir(&dir).expect("read corpus").flatten() {
        if repo.path().is_dir() {
            for f in std::fs::read_dir(repo.path()).expect("read repo").flatten() {
                let p = f.path();
                if p.to_string_lossy().ends_with(".Dockerfile") {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    let mut counts: BTreeMap<String, Counts> = BTreeMap::new();
    let mut unexplained: Vec<String> = Vec::new();
    let mut seen_explained: BTreeSet<String> = BTreeSet::new();
    let (mut checked, mut skipped) = (0, 0);
    for path in &files {
        let golden_path = PathBuf::from(
            path.to_string_lossy()
                .replace(".Dockerfile", ".hadolint.json"),
        );
        let Ok(golden_text) = std::fs::read_to_string(&golden_path) else {
            continue;
        };
        let golden: Vec<serde_json::Value> =
            serde_json::from_str(&golden_text).expect("hadolint json");
        let source = std::fs::read_to_string(path).expect("read Dockerfile");
        if golden.iter().any(|g| g["code"] == "DL1000") {
            // hadolint could not parse it: nothing to compare, but we must still lint it.
            if let Ok(df) = frontend_dockerfile::parser::parse(&source) {
                lint::lint(
                    &df,
                    &LintInput {
                        source: &source,
                        ..Default::default()
                    },
                    &LintConfig::default(),
                );
            }
            skipped += 1;
            continue;
        }
        let df = match frontend_dockerfile::parser::parse(&source) {
            Ok(df) => df,
            Err(e) => panic!("{}: parse failed: {e}", path.display()),
        };
        checked += 1;
        let findings = lint::lint(
            &df,
            &LintInput {
                source: &source,
                ..Default::default()
            },
            &LintConfig::default(),
        );
        // A fact reported once under BuildKit's name counts for hadolint's rule too.
        let ours: BTreeSet<(String, usize)> = findings
            .iter()
            .flat_map(|f| {
                std::iter::once(f.rule.clone())
                    .chain(lint::rules::same_fact(&f.rule).map(String::from))
                    .map(move |r| (r, f.line))
            })
            .filter(|(r, _)| r.starts_with("DL"))
            .collect();
        let theirs: BTreeSet<(String, usize)> = golden
            .iter()
            .filter_map(|g| {
                Some((
                    g["code"].as_str()?.to_string(),
                    g["line"].as_u64()? as usize,
                ))
            })
            .filter(|(c, _)| c.starts_with("DL"))
            .collect();
        let rel = format!(
            "{}/{}",
            path.parent()
                .and_then(|p| p.file_name())
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path.file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        for item in ours.union(&theirs) {
            let c = counts.entry(item.0.clone()).or_default();
            let (in_ours, in_theirs) = (ours.contains(item), theirs.contains(item));
            match (in_ours, in_theirs) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, true) => c.fn_ += 1,
                _ => {}
            }
            if in_ours != in_theirs {
                let key = format!("{} {}:{}", item.0, rel, item.1);
                let side = if in_ours {
                    "only ours"
                } else {
                    "only hadolint"
                };
                if explained.contains(&key) {
                    if in_theirs {
                        c.fn_explained += 1;
                    }
                    seen_explained.insert(key);
                } else if implemented.contains(item.0.as_str()) || in_ours {
                    unexplained.push(format!("{key} ({side})"));
                }
            }
        }
    }
    println!("lint_hadolint: {checked} files compared, {skipped} skipped (hadolint DL1000)");
    println!("recall* leaves out hadolint findings listed as deliberate disagreements; the gate is recall* >= 90%");
    println!(
        "{:<8} {:>5} {:>5} {:>5} {:>10} {:>8} {:>8}  implemented",
        "rule", "tp", "fp", "fn", "precision", "recall", "recall*"
    );
    let mut failures = Vec::new();
    for (rule, c) in &counts {
        let precision = if c.tp + c.fp == 0 {
            1.0
        } else {
            c.tp as f64 / (c.tp + c.fp) as f64
        };
        let recall = if c.tp + c.fn_ == 0 {
            1.0
        } else {
            c.tp as f64 / (c.tp + c.fn_) as f64
        };
        let unexplained_fn = c.fn_ - c.fn_explained;
        let adjusted = if c.tp + unexplained_fn == 0 {
            1.0
        } else {
            c.tp as f64 / (c.tp + unexplained_fn) as f64
        };
        let imp = implemented.contains(rule.as_str());
        println!(
            "{:<8} {:>5} {:>5} {:>5} {:>9.1}% {:>7.1}% {:>7.1}%  {}",
            rule,
            c.tp,
            c.fp,
            c.fn_,
            precision * 100.0,
            recall * 100.0,
            adjusted * 100.0,
            if imp { "yes" } else { "no" }
        );
        if imp && adjusted < 0.9 {
            failures.push(format!("{rule}: recall {:.1}% < 90%", adjusted * 100.0));
        }
    }
    for stale in explained.difference(&seen_explained) {
        println!("note: listed disagreement no longer occurs: {stale}");
    }
    if !unexplained.is_empty() {
        println!("unexplained disagreements ({}):", unexplained.len());
        for u in &unexplained {
            println!("  {u}");
        }
        failures.push(format!(
            "{} disagreements not listed in tests/lint-disagreements.md",
            unexplained.len()
        ));
    }
    if !failures.is_empty() {
        eprintln!("lint_hadolint FAILED:\n  {}", failures.join("\n  "));
        std::process::exit(1);
    }
    println!("lint_hadolint: ok");
}

/// The `RULE dir/file:LINE` keys of the explained-disagreements list.
fn read_explained(path: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.strip_prefix("- "))
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            let rule = words.next()?.trim_matches('`');
            let loc = words.next()?.trim_matches('`');
            (rule.starts_with("DL") && loc.contains(':')).then(|| format!("{rule} {loc}"))
        })
        .collect()
}
