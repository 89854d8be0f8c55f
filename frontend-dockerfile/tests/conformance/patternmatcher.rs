//! `patternmatcher/cases.json` (FORMAT.md §7): every case, plus `pattern_list_rules` and
//! `ignorefile_cases`. `parent-aware` cases are checked twice: with the stateless check and with
//! a walk from the top that carries each directory's match info down, which must agree.
use crate::SetResult;
use frontend_dockerfile::dockerignore::{read_ignore_patterns, MatchInfo, PatternMatcher};
use serde_json::Value;
use std::path::Path;

pub fn cases(dir: &Path) -> Option<SetResult> {
    let text = std::fs::read_to_string(dir.join("patternmatcher/cases.json")).ok()?;
    let mut result = SetResult::new("patternmatcher/cases.json");
    let data: Value = match serde_json::from_str(&text) {
        Ok(v) => v,
        Err(e) => {
            result.check("cases.json", Err(format!("unreadable JSON: {e}")));
            return Some(result);
        }
    };
    for case in data["cases"].as_array().into_iter().flatten() {
        let name = format!("case {}", case["id"]);
        result.check(&name, check_case(case));
    }
    for (i, rule) in data["pattern_list_rules"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        result.check(&format!("pattern_list_rules[{i}]"), check_list_rule(rule));
    }
    for (i, case) in data["ignorefile_cases"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let content = case["content"].as_str().unwrap_or_default();
        let want = strings(&case["patterns"]);
        let got = read_ignore_patterns(content.as_bytes());
        let outcome = if got == want {
            Ok(())
        } else {
            Err(format!("expected {want:?}, got {got:?}"))
        };
        result.check(&format!("ignorefile_cases[{i}]"), outcome);
    }
    Some(result)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

fn check_case(case: &Value) -> Result<(), String> {
    let patterns = strings(&case["patterns"]);
    let path = case["path"].as_str().ok_or("case has no path")?;
    let group = case["group"].as_str().ok_or("case has no group")?;
    let answers: Vec<(&str, Result<bool, String>)> = match PatternMatcher::new(&patterns) {
        Err(e) => vec![("new", Err(e.to_string()))],
        Ok(m) => match group {
            "legacy-matches" => vec![("legacy", m.matches_legacy(path).map_err(|e| e.to_string()))],
            "parent-aware" => vec![
                (
                    "stateless",
                    m.matches_or_parent_matches(path).map_err(|e| e.to_string()),
                ),
                ("walk", walk(&m, path)),
            ],
            other => return Err(format!("unknown group {other:?}")),
        },
    };
    for (how, answer) in answers {
        match (&case["expect"], answer) {
            (Value::String(s), Err(_)) if s == "error" => {}
            (Value::Bool(want), Ok(got)) if *want == got => {}
            (want, got) => {
                return Err(format!(
                    "{patterns:?} on {path:?} ({how}): expected {want}, got {got:?}"
                ))
            }
        }
    }
    Ok(())
}

/// Checks `path` as a context walk would: each ancestor first, passing its info down.
fn walk(m: &PatternMatcher, path: &str) -> Result<bool, String> {
    if path.starts_with('/') {
        // Not a context-relative path: the walk has no components to visit.
        return m.matches_or_parent_matches(path).map_err(|e| e.to_string());
    }
    let mut info = MatchInfo::default();
    let mut verdict = false;
    let mut prefix = String::new();
    for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(part);
        let (v, next) = m
            .matches_using_parent_results(&prefix, &info)
            .map_err(|e| e.to_string())?;
        verdict = v;
        info = next;
    }
    Ok(verdict)
}

fn check_list_rule(rule: &Value) -> Result<(), String> {
    let patterns = strings(&rule["patterns"]);
    match PatternMatcher::new(&patterns) {
        Err(_) if rule["error"] == Value::Bool(true) => Ok(()),
        Err(e) => Err(format!("{patterns:?}: unexpected error {e}")),
        Ok(_) if rule["error"] == Value::Bool(true) => {
            Err(format!("{patterns:?}: expected an error"))
        }
        Ok(m) => {
            if let Some(n) = rule["effective_count"].as_u64() {
                if m.patterns().len() as u64 != n {
                    return Err(format!(
                        "{patterns:?}: expected {n} patterns, got {}",
                        m.patterns().len()
                    ));
                }
            }
            if let Some(want) = rule["has_exclusions"].as_bool() {
                if m.has_exclusions() != want {
                    return Err(format!("{patterns:?}: has_exclusions should be {want}"));
                }
            }
            Ok(())
        }
    }
}
