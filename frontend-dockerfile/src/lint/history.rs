//! Build records as lint reads them: for each past build of a Dockerfile, which steps hit the
//! cache and how long each took. The cache writes these; lint ranks lines by how often they missed
//! and by what the misses cost in the steps below them.
//!
//! File format (JSON):
//! ```json
//! { "builds": [ { "steps": [ { "line": 3, "cached": false, "duration_ms": 1200 } ] } ] }
//! ```
//! A bare array of builds is accepted too.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Finding;
use crate::parser::ast::{Dockerfile, Span};

/// One step of one recorded build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based first line of the step's instruction.
    pub line: usize,
    /// True when the step was a cache hit.
    pub cached: bool,
    /// Wall time of the step (0 for a hit).
    pub duration_ms: u64,
}

/// One recorded build.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BuildRecord {
    pub steps: Vec<StepRecord>,
}

/// Every recorded build of one Dockerfile, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct History {
    pub builds: Vec<BuildRecord>,
}

/// Why build records could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
}

impl History {
    /// Loads build records from a JSON file.
    pub fn load(path: &Path) -> Result<Self, HistoryError> {
        let text = std::fs::read_to_string(path).map_err(|source| HistoryError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|e| HistoryError::Json {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    /// Parses build records from JSON text (an object with `builds`, or a bare array of builds).
    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        if text.trim_start().starts_with('[') {
            Ok(History {
                builds: serde_json::from_str(text)?,
            })
        } else {
            serde_json::from_str(text)
        }
    }

    /// Per line: how often the step missed and the time spent, in that step and below it, in the
    /// builds where it missed. Sorted by total cost, highest first.
    pub fn ranking(&self) -> Vec<LineCost> {
        let mut by_line: BTreeMap<usize, LineCost> = BTreeMap::new();
        for build in &self.builds {
            let mut steps = build.steps.clone();
            steps.sort_by_key(|s| s.line);
            for (i, step) in steps.iter().enumerate() {
                let entry = by_line.entry(step.line).or_insert(LineCost {
                    line: step.line,
                    ..Default::default()
                });
                entry.builds += 1;
                if !step.cached {
                    entry.misses += 1;
                    entry.own_ms += step.duration_ms;
                    // A miss invalidates the steps below it: what they cost in this build is the
                    // price of this miss (the first miss of a build takes the blame).
                    let first_miss = steps[..i].iter().all(|s| s.cached);
                    if first_miss {
                        entry.below_ms += steps[i + 1..]
                            .iter()
                            .filter(|s| !s.cached)
                            .map(|s| s.duration_ms)
                            .sum::<u64>();
                    }
                }
            }
        }
        let mut out: Vec<LineCost> = by_line.into_values().filter(|c| c.misses > 0).collect();
        out.sort_by(|a, b| {
            (b.own_ms + b.below_ms)
                .cmp(&(a.own_ms + a.below_ms))
                .then(a.line.cmp(&b.line))
        });
        out
    }
}

/// How much one line's cache misses cost over the recorded builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct LineCost {
    pub line: usize,
    /// Builds that ran this step.
    pub builds: usize,
    /// Builds in which it missed.
    pub misses: usize,
    /// Time spent running it when it missed.
    pub own_ms: u64,
    /// Time spent re-running the steps below it in builds where it was the first miss.
    pub below_ms: u64,
}

/// A step is worth a remark when it missed in at least this share of builds.
const MISS_SHARE: f64 = 0.5;

/// Findings for the lines whose misses cost most (at most five), ranked.
pub fn advice(dockerfile: &Dockerfile, history: &History) -> Vec<Finding> {
    let ranking = history.ranking();
    ranking
        .iter()
        .filter(|c| c.builds >= 2 && (c.misses as f64) / (c.builds as f64) >= MISS_SHARE)
        .take(5)
        .enumerate()
        .map(|(rank, c)| {
            let span = dockerfile
                .children
                .iter()
                .find(|n| n.start_line == c.line)
                .map(|n| n.keyword_span)
                .unwrap_or(Span { line: c.line, column: 1, ..Default::default() });
            Finding::new(
                "BL2001",
                span,
                format!(
                    "#{} costliest cache miss: this step missed in {} of {} builds; {} ms here and {} ms re-running the steps below",
                    rank + 1,
                    c.misses,
                    c.builds,
                    c.own_ms,
                    c.below_ms
                ),
            )
            .help("move what changes often (source COPY, per-build ARGs) below this step, or what this step reads above fewer changing inputs")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_by_cost_of_misses() {
        let h = History::from_json(
            r#"[
              {"steps":[{"line":1,"cached":true,"duration_ms":0},{"line":3,"cached":false,"duration_ms":100},{"line":5,"cached":false,"duration_ms":9000}]},
              {"steps":[{"line":1,"cached":true,"duration_ms":0},{"line":3,"cached":false,"duration_ms":120},{"line":5,"cached":false,"duration_ms":8000}]},
              {"steps":[{"line":1,"cached":false,"duration_ms":50},{"line":3,"cached":true,"duration_ms":0},{"line":5,"cached":true,"duration_ms":0}]}
            ]"#,
        )
        .unwrap();
        let r = h.ranking();
        assert_eq!(r[0].line, 3);
        assert_eq!(
            (r[0].misses, r[0].builds, r[0].own_ms, r[0].below_ms),
            (2, 3, 220, 17000)
        );
        assert_eq!(r[1].line, 5);
        assert_eq!(
            r[1].below_ms, 0,
            "a miss after an earlier miss is not blamed for the steps below"
        );
        assert!(History::from_json("{\"builds\": 3}").is_err());
    }
}
