//! Inline controls: `# hadolint ignore=DL3008,DL3009` and `# builder-lint ignore=RULE` on the
//! comment lines directly above an instruction, `# hadolint global ignore=...` anywhere, and the
//! BuildKit directive `# check=skip=<rules|all>;error=<bool>`.

use super::{rules, Finding};
use crate::parser::ast::Dockerfile;

/// The parsed `# check=` directive.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckDirective {
    pub skip: Vec<String>,
    pub error: bool,
    /// Experimental checks switched on (`experimental=Rule,...|all`).
    pub experimental: Vec<String>,
}

impl CheckDirective {
    pub fn from_dockerfile(dockerfile: &Dockerfile) -> Self {
        let mut out = CheckDirective::default();
        for d in dockerfile
            .directives
            .iter()
            .filter(|d| d.name.eq_ignore_ascii_case("check"))
        {
            for part in d.value.split(';') {
                let Some((key, value)) = part.split_once('=') else {
                    continue;
                };
                match key.trim().to_ascii_lowercase().as_str() {
                    "experimental" => out.experimental.extend(
                        value
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty()),
                    ),
                    "skip" => out.skip.extend(
                        value
                            .split(',')
                            .map(|s| s.trim().to_string())
                            .filter(|s| !s.is_empty()),
                    ),
                    "error" => out.error = value.trim().eq_ignore_ascii_case("true"),
                    _ => {}
                }
            }
        }
        out
    }
}

/// The ignores in force for one Dockerfile.
#[derive(Debug, Default)]
pub struct Suppressions {
    /// (line of the instruction, rule pattern).
    by_line: Vec<(std::ops::RangeInclusive<usize>, String)>,
    global: Vec<String>,
    /// `# check=skip=` applies to BuildKit checks only.
    check_skip: Vec<String>,
}

/// The rule list of a pragma comment such as ` hadolint ignore=DL3008, DL3009`.
fn pragma_rules<'c>(comment: &'c str, tool: &str, global: bool) -> Option<Vec<&'c str>> {
    let mut words = comment
        .trim()
        .trim_start_matches('#')
        .trim()
        .splitn(2, char::is_whitespace);
    if !words.next()?.eq_ignore_ascii_case(tool) {
        return None;
    }
    let mut rest = words.next()?.trim();
    if global {
        rest = rest.strip_prefix("global")?.trim();
    }
    let list = rest
        .strip_prefix("ignore")?
        .trim_start()
        .strip_prefix('=')?;
    Some(
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.split_whitespace().next().unwrap_or(s))
            .collect(),
    )
}

impl Suppressions {
    pub fn new(dockerfile: &Dockerfile) -> Self {
        let mut out = Suppressions::default();
        let mut visit = |node: &crate::parser::ast::Node| {
            for comment in &node.prev_comments {
                for tool in ["hadolint", "builder-lint"] {
                    if let Some(list) = pragma_rules(comment, tool, true) {
                        out.global.extend(list.into_iter().map(String::from));
                    } else if let Some(list) = pragma_rules(comment, tool, false) {
                        for r in list {
                            out.by_line.push((
                                node.start_line..=node.end_line.max(node.start_line),
                                r.to_string(),
                            ));
                        }
                    }
                }
            }
        };
        for node in &dockerfile.children {
            visit(node);
        }
        out.check_skip = CheckDirective::from_dockerfile(dockerfile).skip;
        out
    }

    pub fn is_suppressed(&self, finding: &Finding) -> bool {
        if self.global.iter().any(|p| rules::matches(p, &finding.rule)) {
            return true;
        }
        if self
            .by_line
            .iter()
            .any(|(lines, p)| lines.contains(&finding.line) && rules::matches(p, &finding.rule))
        {
            return true;
        }
        let is_buildkit =
            rules::find(&finding.rule).is_some_and(|r| r.source == rules::RuleSource::BuildKit);
        is_buildkit
            && self
                .check_skip
                .iter()
                .any(|p| rules::matches(p, &finding.rule))
    }
}

#[cfg(test)]
mod tests {
    use super::pragma_rules;

    #[test]
    fn reads_pragmas() {
        assert_eq!(
            pragma_rules(" hadolint ignore=DL3008,DL3009", "hadolint", false),
            Some(vec!["DL3008", "DL3009"])
        );
        assert_eq!(
            pragma_rules("hadolint global ignore=DL3059", "hadolint", true),
            Some(vec!["DL3059"])
        );
        assert_eq!(
            pragma_rules(" builder-lint ignore=BL1001", "builder-lint", false),
            Some(vec!["BL1001"])
        );
        assert_eq!(pragma_rules(" just a comment", "hadolint", false), None);
    }
}
