//! Dockerfile lint: advice on cache-friendly layer order, BuildKit's build checks and hadolint's
//! common `DL` rules, over the same AST `builder build` uses.
//!
//! Entry points: [`lint`] (everything, given the build context and build history when known) and
//! [`build_checks`] (the rules that need only the Dockerfile, for `builder build` to print).
//! Findings carry a stable rule id ([`rules::RuleInfo`]), a severity, a 1-based line and column,
//! and for layer-order rules a suggested reordering. Suppression (`# hadolint ignore=`,
//! `# builder-lint ignore=`, `# check=skip=`) and configuration ([`config::LintConfig`]) are applied
//! by [`lint`] before findings are returned; [`output`] renders them.
//!
//! Invariant: lint never fails on a Dockerfile that parsed; rules that cannot decide stay silent.

mod build_errors;
mod buildkit;
pub mod config;
pub mod context;
mod hadolint;
pub mod history;
mod layer_order;
mod model;
pub mod output;
mod reorder;
pub mod rules;
pub mod script;
mod suppress;
mod vars;

use serde::{Deserialize, Serialize};

use crate::parser::ast::{Dockerfile, Span};
pub use config::LintConfig;
pub use context::ContextInfo;
pub use history::History;
pub use rules::{RuleInfo, RuleSource};

/// How bad a finding is; ordered so that `Error > Warning > Info > Style`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Style,
    Info,
    Warning,
    Error,
}

impl Severity {
    /// The lowercase name (`warning`).
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Style => "style",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl std::str::FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "style" => Ok(Severity::Style),
            "info" => Ok(Severity::Info),
            "warning" | "warn" => Ok(Severity::Warning),
            "error" => Ok(Severity::Error),
            other => Err(format!(
                "unknown severity `{other}` (expected error, warning, info or style)"
            )),
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One piece of advice about one place in the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable rule id: `DL3008`, `StageNameCasing`, `BL1001`.
    pub rule: String,
    pub severity: Severity,
    pub message: String,
    /// 1-based line of the place the finding points at.
    pub line: usize,
    /// 1-based column of that place.
    pub column: usize,
    /// The byte range the finding underlines (may be empty: then the caret marks `column`).
    #[serde(skip)]
    pub span: Span,
    /// Other lines involved (the install step a broad COPY precedes, ...).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related_lines: Vec<usize>,
    /// A one-line hint on how to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The suggested lines (a snippet or a diff), when a rule can write them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suggestion: Option<String>,
    /// The rule that reports the same fact under another name, when this finding is one of such
    /// a pair (a build error that BuildKit's or hadolint's rules also describe).
    #[serde(skip)]
    pub(crate) same_as: Option<&'static str>,
}

impl Finding {
    /// A finding for `rule` at `span`, with the rule's default severity.
    pub(crate) fn new(rule: &str, span: Span, message: impl Into<String>) -> Self {
        let severity = rules::find(rule)
            .map(|r| r.severity)
            .unwrap_or(Severity::Warning);
        Finding {
            rule: rule.to_string(),
            severity,
            message: message.into(),
            line: span.line.max(1),
            column: span.column.max(1),
            span,
            related_lines: Vec::new(),
            help: None,
            suggestion: None,
            same_as: None,
        }
    }

    pub(crate) fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub(crate) fn suggestion(mut self, text: impl Into<String>) -> Self {
        self.suggestion = Some(text.into());
        self
    }

    pub(crate) fn related(mut self, lines: impl IntoIterator<Item = usize>) -> Self {
        self.related_lines.extend(lines);
        self
    }
}

/// What lint may know besides the Dockerfile.
#[derive(Debug, Default, Clone)]
pub struct LintInput<'a> {
    /// The Dockerfile source (for code frames; rules read the AST).
    pub source: &'a str,
    /// The build context, when one was given.
    pub context: Option<&'a ContextInfo>,
    /// Past builds of this Dockerfile, when the cache holds any.
    pub history: Option<&'a History>,
    /// `--build-arg` values, for the errors the build would stop at with them.
    pub build_args: std::collections::BTreeMap<String, String>,
    /// The stage the build would build (`None` = the last one).
    pub target: Option<String>,
}

/// Runs every rule, applies inline suppressions, `# check=` and `config`, and returns the findings
/// sorted by line, column and rule.
pub fn lint(dockerfile: &Dockerfile, input: &LintInput<'_>, config: &LintConfig) -> Vec<Finding> {
    let model = model::Model::new(dockerfile);
    let mut findings = Vec::new();
    build_errors::check(dockerfile, input, &mut findings);
    buildkit::check(&model, input.context, &mut findings);
    hadolint::check(&model, &mut findings);
    layer_order::check(
        &model,
        input.context,
        input.history,
        input.source,
        &mut findings,
    );
    if let Some(history) = input.history {
        findings.extend(history::advice(dockerfile, history));
    }
    finish(dockerfile, findings, config)
}

/// BuildKit's build checks that need only the Dockerfile (no context, no base image), with
/// `# check=skip=` and inline ignores honoured: what `builder build` prints as warnings.
pub fn build_checks(dockerfile: &Dockerfile) -> Vec<Finding> {
    let model = model::Model::new(dockerfile);
    let mut findings = Vec::new();
    buildkit::check(&model, None, &mut findings);
    finish(dockerfile, findings, &LintConfig::default())
}

/// True when `# check=error=true` asks the build to fail on any build-check warning.
pub fn build_checks_are_errors(dockerfile: &Dockerfile) -> bool {
    suppress::CheckDirective::from_dockerfile(dockerfile).error
}

fn finish(
    dockerfile: &Dockerfile,
    mut findings: Vec<Finding>,
    config: &LintConfig,
) -> Vec<Finding> {
    let suppressions = suppress::Suppressions::new(dockerfile);
    // Ignoring a rule ignores the fact it reports, under whichever name.
    findings.retain(|f| {
        !suppressions.is_suppressed(f)
            && !config.is_ignored(&f.rule)
            && !f.same_as.is_some_and(|a| config.is_ignored(a))
            && !rules::same_fact(&f.rule).any(|a| config.is_ignored(a))
    });
    for f in &mut findings {
        if let Some(sev) = config.severity_of(&f.rule) {
            f.severity = sev;
        }
    }
    findings.sort_by(|a, b| (a.line, a.column, &a.rule).cmp(&(b.line, b.column, &b.rule)));
    findings.dedup_by(|a, b| a.line == b.line && a.rule == b.rule && a.message == b.message);
    drop_same_fact(&mut findings);
    findings
}

/// The group and rank of a finding among [`rules::SAME_FACT`]; build errors rank first in theirs.
fn fact_group(f: &Finding) -> Option<(usize, usize)> {
    let (rule, boost) = match f.same_as {
        Some(alias) => (alias, 0),
        None => (f.rule.as_str(), 1),
    };
    rules::SAME_FACT.iter().enumerate().find_map(|(g, rules)| {
        rules
            .iter()
            .position(|r| *r == rule)
            .map(|rank| (g, rank + boost))
    })
}

/// Keeps one finding per fact and line: the same CMD is not reported as both
/// `JSONArgsRecommended` and `DL3025`.
fn drop_same_fact(findings: &mut Vec<Finding>) {
    let keep: Vec<bool> = findings
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let Some((group, rank)) = fact_group(f) else {
                return true;
            };
            !findings.iter().enumerate().any(|(j, other)| {
                j != i
                    && other.line == f.line
                    && fact_group(other).is_some_and(|(g, r)| g == group && (r, j) < (rank, i))
            })
        })
        .collect();
    let mut it = keep.iter();
    findings.retain(|_| *it.next().unwrap_or(&true));
}

/// The highest severity among `findings`, if any.
pub fn max_severity(findings: &[Finding]) -> Option<Severity> {
    findings.iter().map(|f| f.severity).max()
}
