//! `cargo test --test conformance`: checks the frontend against the external conformance data.
//!
//! The data lives in `$BUILDER_CONFORMANCE_DIR` when set, else `../shared/conformance/` relative to
//! the workspace root. Each data set prints one line `name: passed/total`; a data set missing from
//! the folder is skipped with a message; the whole folder missing skips everything. Any mismatch
//! that is not a documented exception (see `exceptions`) fails the run.

mod parser;
mod patternmatcher;
mod realworld;
mod shell;

use std::path::{Path, PathBuf};

/// The outcome of one data set.
pub struct SetResult {
    pub name: &'static str,
    pub passed: usize,
    pub total: usize,
    /// Human-readable descriptions of each failure (printed, and they fail the run).
    pub failures: Vec<String>,
    /// Documented, explained exceptions (printed, but they do not fail the run).
    pub exceptions: Vec<String>,
}

impl SetResult {
    pub fn new(name: &'static str) -> Self {
        SetResult {
            name,
            passed: 0,
            total: 0,
            failures: Vec::new(),
            exceptions: Vec::new(),
        }
    }
    /// Records one case: `Ok(())` passes, `Err(why)` fails.
    pub fn check(&mut self, case: &str, outcome: Result<(), String>) {
        self.total += 1;
        match outcome {
            Ok(()) => self.passed += 1,
            Err(why) => self.failures.push(format!("{case}: {why}")),
        }
    }
}

/// Where the conformance data lives, if anywhere.
fn conformance_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BUILDER_CONFORMANCE_DIR") {
        return Some(PathBuf::from(dir));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = workspace.join("../shared/conformance");
    dir.is_dir().then_some(dir)
}

/// A data set runner: `None` when its data is missing from the folder.
type Runner = fn(&Path) -> Option<SetResult>;

fn main() {
    let Some(dir) = conformance_dir().filter(|d| d.is_dir()) else {
        println!("conformance: data folder not found (set BUILDER_CONFORMANCE_DIR or provide ../shared/conformance); skipping");
        return;
    };
    println!("conformance data: {}", dir.display());
    let sets: &[(&str, Runner)] = &[
        ("buildkit-parser/testfiles", parser::testfiles),
        ("buildkit-parser/testfiles-negative", parser::negative),
        ("buildkit-parser/testfile-line", parser::line_numbers),
        ("buildkit-parser/heredoc", parser::heredoc),
        ("shell/envVarTest", shell::env_var_test),
        ("shell/wordsTest", shell::words_test),
        ("patternmatcher/cases.json", patternmatcher::cases),
        ("real-world", realworld::goldens),
    ];
    let mut failed = false;
    for (path, run) in sets {
        match run(&dir) {
            None => println!("{path}: SKIPPED (data set not found in {})", dir.display()),
            Some(result) => {
                println!("{}: {}/{}", result.name, result.passed, result.total);
                for e in &result.exceptions {
                    println!("  exception (documented): {e}");
                }
                for f in &result.failures {
                    println!("  FAIL {f}");
                }
                failed |= !result.failures.is_empty();
            }
        }
    }
    if failed {
        std::process::exit(1);
    }
}
