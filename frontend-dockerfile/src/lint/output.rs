//! Renderers for findings: human code frames, JSON, SARIF 2.1.0 and GitHub workflow annotations.

use serde_json::{json, Value};

use super::{rules, Finding, Severity};

/// The findings of one Dockerfile, with what renderers need to point into it.
#[derive(Debug, Clone, Copy)]
pub struct Report<'a> {
    /// The path shown to the user (and written to JSON/SARIF/annotations).
    pub file: &'a str,
    /// The Dockerfile source, for code frames.
    pub source: &'a str,
    pub findings: &'a [Finding],
}

/// Output formats of `builder lint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Human,
    Json,
    Sarif,
    Github,
}

/// Renders `reports` in `format`; `color` applies to [`Format::Human`] only.
pub fn render(format: Format, reports: &[Report<'_>], color: bool) -> String {
    match format {
        Format::Human => human(reports, color),
        Format::Json => json_array(reports),
        Format::Sarif => serde_json::to_string_pretty(&sarif(reports)).unwrap_or_default() + "\n",
        Format::Github => github(reports),
    }
}

struct Style {
    on: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn severity(&self, s: Severity) -> String {
        let code = match s {
            Severity::Error => "1;31",
            Severity::Warning => "1;33",
            Severity::Info => "1;36",
            Severity::Style => "1;35",
        };
        self.paint(code, s.as_str())
    }
}

/// rustc-like frames: `warning[DL3008]: message`, `--> file:line:col`, the line, a caret, help.
pub fn human(reports: &[Report<'_>], color: bool) -> String {
    let st = Style { on: color };
    let mut s = String::new();
    let mut total = 0;
    for r in reports {
        let lines: Vec<&str> = r.source.lines().collect();
        for f in r.findings {
            total += 1;
            let name = rules::find(&f.rule)
                .map(|i| i.name)
                .filter(|n| *n != f.rule);
            let title = match name {
                Some(n) => format!("{}[{}/{}]", st.severity(f.severity), f.rule, n),
                None => format!("{}[{}]", st.severity(f.severity), f.rule),
            };
            s.push_str(&format!("{title}: {}\n", st.paint("1", &f.message)));
            let width = f
                .line
                .max(f.related_lines.iter().copied().max().unwrap_or(0))
                .to_string()
                .len();
            let pad = " ".repeat(width);
            let bar = st.paint("1;34", "|");
            s.push_str(&format!(
                "{pad}{} {}:{}:{}\n",
                st.paint("1;34", "-->"),
                r.file,
                f.line,
                f.column
            ));
            if let Some(line) = lines.get(f.line.wrapping_sub(1)) {
                // A long line is shown as a window around the finding, never whole.
                let (text, col) = crate::instructions::line_window(line, f.column);
                s.push_str(&format!("{pad} {bar}\n"));
                s.push_str(&format!(
                    "{} {bar} {text}\n",
                    st.paint("1;34", &format!("{:>width$}", f.line))
                ));
                let col = col.max(1);
                let len = if f.span.end > f.span.start && f.span.line == f.line {
                    let line_rest = text.chars().skip(col - 1).count();
                    r.source
                        .get(f.span.start..f.span.end)
                        .map(|t| t.lines().next().unwrap_or("").chars().count())
                        .unwrap_or(1)
                        .clamp(1, line_rest.max(1))
                } else {
                    1
                };
                let indent: String = text
                    .chars()
                    .take(col - 1)
                    .map(|c| if c == '\t' { '\t' } else { ' ' })
                    .collect();
                s.push_str(&format!(
                    "{pad} {bar} {indent}{}\n",
                    st.paint("1;33", &"^".repeat(len))
                ));
            }
            for l in &f.related_lines {
                if let Some(text) = lines.get(l.wrapping_sub(1)) {
                    let text = crate::instructions::excerpt(text);
                    s.push_str(&format!(
                        "{} {bar} {text}\n",
                        st.paint("1;34", &format!("{:>width$}", l))
                    ));
                }
            }
            if let Some(h) = &f.help {
                s.push_str(&format!(
                    "{pad} {} {}: {h}\n",
                    st.paint("1;34", "="),
                    st.paint("1", "help")
                ));
            }
            if let Some(sugg) = &f.suggestion {
                s.push_str(&format!(
                    "{pad} {} suggested order:\n",
                    st.paint("1;34", "=")
                ));
                for l in sugg.lines() {
                    let painted = if l.starts_with('+') {
                        st.paint("32", l)
                    } else if l.starts_with('-') {
                        st.paint("31", l)
                    } else if l.starts_with("@@") {
                        st.paint("36", l)
                    } else {
                        l.to_string()
                    };
                    s.push_str(&format!("{pad}   {painted}\n"));
                }
            }
            s.push('\n');
        }
    }
    if total == 0 {
        s.push_str("no findings\n");
    } else {
        s.push_str(&format!("{total} finding(s)\n"));
    }
    s
}

/// A JSON array of findings, each with `file`, `line`, `column`, `rule`, `severity`, `message`
/// (plus `end_line`, `help`, `suggestion` and `related_lines` when present).
pub fn json_array(reports: &[Report<'_>]) -> String {
    let items: Vec<Value> = reports
        .iter()
        .flat_map(|r| {
            r.findings.iter().map(move |f| {
                let mut v = json!({
                    "file": r.file,
                    "line": f.line,
                    "column": f.column,
                    "rule": f.rule,
                    "severity": f.severity.as_str(),
                    "message": f.message,
                });
                if let Some(h) = &f.help {
                    v["help"] = json!(h);
                }
                if let Some(sg) = &f.suggestion {
                    v["suggestion"] = json!(sg);
                }
                if !f.related_lines.is_empty() {
                    v["related_lines"] = json!(f.related_lines);
                }
                v
            })
        })
        .collect();
    serde_json::to_string_pretty(&Value::Array(items)).unwrap_or_default() + "\n"
}

fn sarif_level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info | Severity::Style => "note",
    }
}

/// The SARIF `uri` of a file: a relative reference for a relative path (`./` dropped), a `file://`
/// URI for an absolute one; characters outside RFC 3986's unreserved set and `/` are
/// percent-encoded.
fn artifact_uri(path: &str) -> String {
    let (prefix, rest) = match path.strip_prefix('/') {
        Some(rest) => ("file:///", rest),
        None => ("", path.trim_start_matches("./")),
    };
    let mut out = String::from(prefix);
    for b in rest.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A SARIF 2.1.0 log with one run; the driver lists the rules that fired.
pub fn sarif(reports: &[Report<'_>]) -> Value {
    let mut rule_ids: Vec<&str> = reports
        .iter()
        .flat_map(|r| r.findings.iter().map(|f| f.rule.as_str()))
        .collect();
    rule_ids.sort();
    rule_ids.dedup();
    let rules_json: Vec<Value> = rule_ids
        .iter()
        .map(|id| {
            let info = rules::find(id);
            let mut v = json!({
                "id": id,
                "shortDescription": { "text": info.map(|i| i.doc).unwrap_or(id) },
                "defaultConfiguration": { "level": sarif_level(info.map(|i| i.severity).unwrap_or(Severity::Warning)) },
            });
            if let Some(i) = info {
                // SARIF 3.49.7: `name` is omitted when it would repeat the id.
                if i.name != *id {
                    v["name"] = json!(i.name);
                }
                v["properties"] = json!({ "source": i.source });
            }
            v
        })
        .collect();
    let results: Vec<Value> = reports
        .iter()
        .flat_map(|r| {
            let rule_ids = &rule_ids;
            r.findings.iter().map(move |f| {
                let mut message = f.message.clone();
                if let Some(h) = &f.help {
                    message.push_str("\nhelp: ");
                    message.push_str(h);
                }
                let mut v = json!({
                    "ruleId": f.rule,
                    "ruleIndex": rule_ids.iter().position(|r| *r == f.rule).unwrap_or(0),
                    "level": sarif_level(f.severity),
                    "message": { "text": message },
                    "locations": [{
                        "physicalLocation": {
                            "artifactLocation": { "uri": artifact_uri(r.file) },
                            "region": { "startLine": f.line.max(1), "startColumn": f.column.max(1) }
                        }
                    }],
                });
                if !f.related_lines.is_empty() {
                    v["relatedLocations"] = Value::Array(
                        f.related_lines
                            .iter()
                            .enumerate()
                            .map(|(i, l)| {
                                json!({
                                    "id": i,
                                    "physicalLocation": {
                                        "artifactLocation": { "uri": artifact_uri(r.file) },
                                        "region": { "startLine": (*l).max(1) }
                                    }
                                })
                            })
                            .collect(),
                    );
                }
                v
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "builder-lint",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules_json,
            }},
            "results": results,
        }]
    })
}

/// Escapes a workflow-command property or message (`%`, CR, LF, and in properties `:` and `,`).
fn gh_escape(s: &str, property: bool) -> String {
    let mut out = s
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A");
    if property {
        out = out.replace(':', "%3A").replace(',', "%2C");
    }
    out
}

/// GitHub Actions annotations: `::warning file=...,line=...,col=...,title=RULE::message`.
pub fn github(reports: &[Report<'_>]) -> String {
    let mut s = String::new();
    for r in reports {
        for f in r.findings {
            let kind = match f.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
                Severity::Info | Severity::Style => "notice",
            };
            s.push_str(&format!(
                "::{kind} file={},line={},col={},title={}::{}\n",
                gh_escape(r.file, true),
                f.line,
                f.column,
                gh_escape(&f.rule, true),
                gh_escape(&f.message, false)
            ));
        }
    }
    s
}
