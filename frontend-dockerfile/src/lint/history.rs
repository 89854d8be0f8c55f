//! Build records as lint reads them: for each past build of a Dockerfile, which steps hit the
//! cache and how long each took. The cache writes these; lint ranks lines by how often they missed
//! and by what the misses cost in the steps below them.
//!
//! File format (JSON):
//! ```json
//! { "builds": [ { "steps": [ { "line": 3, "cached": false, "duration_ms": 1200,
//!     "name": "[2/4] RUN make", "reason": { "kind": "arg_changed", "name": "VERSION" } } ] } ] }
//! ```
//! A bare array of builds is accepted too; `name` and `reason` (the solver's
//! [`MissReason`], as the cache's build records hold it) are optional.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Finding;
use crate::parser::ast::{Dockerfile, Span};
pub use engine::solver::reason::MissReason;

/// One step of one recorded build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    /// 1-based first line of the step's instruction.
    pub line: usize,
    /// True when the step was a cache hit.
    pub cached: bool,
    /// Wall time of the step (0 for a hit).
    pub duration_ms: u64,
    /// The step's name as progress showed it (`[build 2/4] RUN make`): what a
    /// [`MissReason::ParentMissed`] names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Why the step missed, when the build recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<MissReason>,
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

/// What made a step miss, as far as lint tells causes apart (file names and ARG names kept, the
/// old and new values dropped).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cause {
    Arg(String),
    Files,
    Instruction,
    BaseImage,
    /// The step on this line (or of this name, when no recorded step has it) missed first.
    Parent(Result<usize, String>),
    NoCache,
    Evicted,
    Definition,
    /// New step, or no earlier build to compare with: nothing to fix.
    New,
}

/// How often one cause made one line miss, with the files it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CauseCount {
    pub cause: Cause,
    pub builds: usize,
    /// For [`Cause::Files`]: the changed paths, first seen first.
    pub paths: Vec<String>,
}

/// What an ARG changing between builds cost: in how many builds a step missed because of it, and
/// the time of the steps that re-ran from the first of them down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArgChangeCost {
    pub builds: usize,
    pub of_builds: usize,
    pub ms: u64,
}

impl History {
    /// The recorded causes of `line`'s misses, most frequent first.
    pub fn causes(&self, line: usize) -> Vec<CauseCount> {
        let mut out: Vec<CauseCount> = Vec::new();
        for build in &self.builds {
            let Some(step) = build.steps.iter().find(|s| s.line == line && !s.cached) else {
                continue;
            };
            let Some(reason) = &step.reason else { continue };
            let (cause, path) = match reason {
                MissReason::ArgChanged { name, .. } => (Cause::Arg(name.clone()), None),
                MissReason::FileChanged { path, .. } => (Cause::Files, Some(path.clone())),
                MissReason::InstructionChanged { .. } => (Cause::Instruction, None),
                MissReason::BaseImageChanged { .. } => (Cause::BaseImage, None),
                MissReason::ParentMissed { parent } => {
                    let line = build
                        .steps
                        .iter()
                        .find(|s| s.name.as_deref() == Some(parent.as_str()))
                        .map(|s| s.line)
                        .filter(|l| *l > 0);
                    (Cause::Parent(line.ok_or_else(|| parent.clone())), None)
                }
                MissReason::NoCache => (Cause::NoCache, None),
                MissReason::Evicted => (Cause::Evicted, None),
                MissReason::DefinitionChanged => (Cause::Definition, None),
                MissReason::NewStep | MissReason::NoPreviousRecord => (Cause::New, None),
            };
            let entry = match out.iter_mut().position(|c| c.cause == cause) {
                Some(i) => &mut out[i],
                None => {
                    out.push(CauseCount {
                        cause,
                        builds: 0,
                        paths: Vec::new(),
                    });
                    out.last_mut().expect("just pushed")
                }
            };
            entry.builds += 1;
            if let Some(p) = path.filter(|p| !entry.paths.contains(p)) {
                entry.paths.push(p);
            }
        }
        out.sort_by(|a, b| b.builds.cmp(&a.builds).then(a.cause.cmp(&b.cause)));
        out
    }

    /// What changing `ARG name` cost over the recorded builds: the builds in which a step missed
    /// because it changed, and the time of every step that re-ran from the first such step down.
    pub fn arg_change_cost(&self, name: &str) -> ArgChangeCost {
        let mut cost = ArgChangeCost {
            of_builds: self.builds.len(),
            ..Default::default()
        };
        for build in &self.builds {
            let first = build
                .steps
                .iter()
                .filter(|s| {
                    !s.cached
                        && matches!(&s.reason, Some(MissReason::ArgChanged { name: n, .. }) if n == name)
                })
                .map(|s| s.line)
                .min();
            let Some(first) = first else { continue };
            cost.builds += 1;
            cost.ms += build
                .steps
                .iter()
                .filter(|s| !s.cached && s.line >= first)
                .map(|s| s.duration_ms)
                .sum::<u64>();
        }
        cost
    }
}

/// Findings for the lines whose misses cost most (at most five), ranked, each saying what made
/// the step miss in the records and what would keep it cached.
pub fn advice(dockerfile: &Dockerfile, history: &History) -> Vec<Finding> {
    let ranking = history.ranking();
    ranking
        .iter()
        .filter(|c| c.builds >= 2 && (c.misses as f64) / (c.builds as f64) >= MISS_SHARE)
        .take(5)
        .enumerate()
        .map(|(rank, c)| {
            let node = dockerfile.children.iter().find(|n| n.start_line == c.line);
            let span = node
                .map(|n| n.keyword_span)
                .unwrap_or(Span { line: c.line, column: 1, ..Default::default() });
            let causes = history.causes(c.line);
            let mut message = format!(
                "#{} costliest cache miss: this step missed in {} of {} builds; {} ms here and {} ms re-running the steps below",
                rank + 1,
                c.misses,
                c.builds,
                c.own_ms,
                c.below_ms
            );
            if !causes.is_empty() {
                message.push_str(&format!(
                    "; it missed because {}",
                    causes.iter().map(describe).collect::<Vec<_>>().join(", ")
                ));
            }
            let help = match causes.first() {
                Some(top) => remedy(top, node, dockerfile),
                None => "move what changes often (source COPY, per-build ARGs) below this step, or what this step reads above fewer changing inputs".to_string(),
            };
            let mut f = Finding::new("BL2001", span, message).help(help);
            if let Some(Cause::Parent(Ok(line))) = causes.first().map(|k| &k.cause) {
                f = f.related([*line]);
            }
            f
        })
        .collect()
}

/// The cause as the message says it: `ARG VERSION changed (3 builds)`.
fn describe(k: &CauseCount) -> String {
    let what = match &k.cause {
        Cause::Arg(name) => format!("ARG {name} changed"),
        Cause::Files => format!("files it reads changed ({})", shorten(&k.paths)),
        Cause::Instruction => "the instruction was edited".to_string(),
        Cause::BaseImage => "the base image moved to a new digest".to_string(),
        Cause::Parent(Ok(line)) => format!("the step on line {line} missed first"),
        Cause::Parent(Err(name)) => format!("the step `{name}` missed first"),
        Cause::NoCache => "the cache was disabled (--no-cache)".to_string(),
        Cause::Evicted => "its cache entry had been removed".to_string(),
        Cause::Definition => "its environment, user, mounts or platform changed".to_string(),
        Cause::New => "it was new".to_string(),
    };
    let times = if k.builds == 1 { "build" } else { "builds" };
    format!("{what} ({} {times})", k.builds)
}

fn shorten(paths: &[String]) -> String {
    const SHOWN: usize = 3;
    let mut s = paths
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if paths.len() > SHOWN {
        s.push_str(&format!(" and {} more", paths.len() - SHOWN));
    }
    s
}

/// What would have kept the step cached, for its most frequent cause.
fn remedy(
    k: &CauseCount,
    node: Option<&crate::parser::ast::Node>,
    dockerfile: &Dockerfile,
) -> String {
    match &k.cause {
        Cause::Arg(name) => {
            let uses = node.is_some_and(|n| {
                super::vars::references(&n.original, dockerfile.escape)
                    .iter()
                    .any(|(r, _)| r == name)
            });
            if uses {
                format!("this step uses ${name}, so every new value re-runs it: keep it as low as possible and move the steps that do not use {name} above `ARG {name}`")
            } else {
                format!("this step does not use ${name}: declare `ARG {name}` below it (just above the first step that uses it), or keep its value the same from build to build")
            }
        }
        Cause::Files => {
            let is_copy = node.is_some_and(|n| matches!(n.value.as_str(), "copy" | "add"));
            if is_copy {
                format!("copy first only what the next steps need (the dependency manifests) and the rest after them, and list in .dockerignore what should never trigger a rebuild ({})", shorten(&k.paths))
            } else {
                format!("mount or copy only the files this step needs, and list in .dockerignore what should never trigger a rebuild ({})", shorten(&k.paths))
            }
        }
        Cause::Instruction => "the instruction text itself changed between builds: if it is generated (a version or date written into it), pass that value as an ARG declared below this step instead".to_string(),
        Cause::BaseImage => "pin the base image by digest (`FROM image@sha256:...`) so that it moves only when you update it".to_string(),
        Cause::Parent(Ok(line)) => format!("it re-ran only because line {line} above it missed: make that step hit the cache (see its finding), or move this step above it if it does not need its result"),
        Cause::Parent(Err(name)) => format!("it re-ran only because `{name}` missed: make that step hit the cache"),
        Cause::NoCache => "the builds ran with --no-cache or --no-cache-filter: drop the flag to reuse this step".to_string(),
        Cause::Evicted => "its result had been pruned from the cache: keep more cache (a larger prune limit) or prune less often".to_string(),
        Cause::Definition => "something above it that it sees changed (ENV, USER, WORKDIR, mounts or platform): keep those stable, or declare the changing ones below this step".to_string(),
        Cause::New => "the step was new in these builds: it should hit the cache from the next build on".to_string(),
    }
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
