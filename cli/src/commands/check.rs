//! `builder build --call check` (`--check`): BuildKit's build checks on the Dockerfile, printed
//! as `docker build --check` prints them, without building. Exit status 1 when there is a
//! warning, as BuildKit's lint result says (`result.statuscode`).

use super::build_request::BuildArgs;
use anyhow::{Context, Result};
use build::DockerfileInput;
use frontend_dockerfile::lint::{self, Finding};
use frontend_dockerfile::parser;
use std::fmt::Write as _;

/// Runs the checks; returns the exit status.
pub fn run(args: &BuildArgs, dockerfile: &DockerfileInput) -> Result<i32> {
    let (path, text) = dockerfile
        .read(&args.context)
        .map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    let parsed = parser::parse(&text).with_context(|| format!("parsing {}", path.display()))?;
    // BuildKit names the file as the frontend got it: its file name.
    let shown = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "Dockerfile".to_string());
    let mut findings = lint::build_checks(&parsed);
    findings.sort_by_key(|f| f.line);
    print!("{}", report(&findings, &shown, &text));
    Ok(if findings.is_empty() { 0 } else { 1 })
}

/// The whole report: the count line, then each warning with its link and source excerpt.
fn report(findings: &[Finding], file: &str, text: &str) -> String {
    let mut out = match findings.len() {
        0 => "Check complete, no warnings found.\n".to_string(),
        1 => "Check complete, 1 warning has been found!\n".to_string(),
        n => format!("Check complete, {n} warnings have been found!\n"),
    };
    for f in findings {
        let _ = write!(
            out,
            "\nWARNING: {} - {}\n{}\n",
            f.rule,
            rule_url(&f.rule),
            f.message
        );
        out.push_str(&excerpt(file, text, f.line));
    }
    out
}

/// The documentation page BuildKit links a check to: its name in kebab case
/// (`FromAsCasing` → `from-as-casing`, `JSONArgsRecommended` → `json-args-recommended`).
fn rule_url(rule: &str) -> String {
    let chars: Vec<char> = rule.chars().collect();
    let mut kebab = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            let prev_lower = chars[i - 1].is_ascii_lowercase() || chars[i - 1].is_ascii_digit();
            let acronym_end = chars[i - 1].is_ascii_uppercase()
                && chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            if prev_lower || acronym_end {
                kebab.push('-');
            }
        }
        kebab.push(c.to_ascii_lowercase());
    }
    format!("https://docs.docker.com/go/dockerfile/rule/{kebab}/")
}

/// The lines around `line` framed as BuildKit frames a source location: four lines of context
/// split around it where there are lines, the line itself marked `>>>`.
fn excerpt(file: &str, text: &str, line: usize) -> String {
    let lines: Vec<&str> = text.split('\n').collect();
    if line < 1 || line > lines.len() {
        return String::new();
    }
    let (mut start, mut end, mut padded) = (line, line, 0);
    while padded < 4 {
        if start > 1 {
            start -= 1;
            padded += 1;
        }
        if end != lines.len() {
            end += 1;
            padded += 1;
        }
        padded += 1;
    }
    let mut out = format!("{file}:{line}\n--------------------\n");
    for (i, l) in lines.iter().enumerate().take(end).skip(start - 1) {
        let mark = if i + 1 == line { ">>>" } else { "   " };
        let _ = writeln!(out, " {:3} | {mark} {l}", i + 1);
    }
    out.push_str("--------------------\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_and_frames_as_buildkit() {
        assert_eq!(
            rule_url("FromAsCasing"),
            "https://docs.docker.com/go/dockerfile/rule/from-as-casing/"
        );
        assert_eq!(
            rule_url("JSONArgsRecommended"),
            "https://docs.docker.com/go/dockerfile/rule/json-args-recommended/"
        );
        // BuildKit's frame of line 1 of `FROM busybox as base\nRUN true\n`.
        assert_eq!(
            excerpt("Dockerfile", "FROM busybox as base\nRUN true\n", 1),
            "Dockerfile:1\n--------------------\n   1 | >>> FROM busybox as base\n   2 |     RUN true\n   3 |     \n--------------------\n"
        );
    }
}
