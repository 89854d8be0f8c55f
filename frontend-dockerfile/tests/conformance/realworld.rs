//! Real-world Dockerfiles against BuildKit's golden parse (`X.expected.json`, FORMAT.md §8).
use crate::SetResult;
use frontend_dockerfile::parser::{self, dump};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The golden fields compared, in order.
const FIELDS: &[&str] = &[
    "cmd",
    "sub_cmd",
    "flags",
    "value",
    "json",
    "start_line",
    "end_line",
    "original",
    "heredocs",
];

fn dockerfiles(dir: &Path) -> Option<Vec<PathBuf>> {
    let mut out = Vec::new();
    for repo in std::fs::read_dir(dir).ok()?.filter_map(Result::ok) {
        let Ok(entries) = std::fs::read_dir(repo.path()) else {
            continue;
        };
        for e in entries.filter_map(Result::ok) {
            let p = e.path();
            if p.to_string_lossy().ends_with(".Dockerfile") {
                out.push(p);
            }
        }
    }
    out.sort();
    Some(out)
}

/// Every `*.Dockerfile` parsed and dumped as JSON must equal its `.expected.json`, field by field.
pub fn goldens(dir: &Path) -> Option<SetResult> {
    let base = dir.join("real-world");
    let files = dockerfiles(&base)?;
    let mut r = SetResult::new("real-world");
    for path in files {
        let case = path
            .strip_prefix(&base)
            .unwrap_or(&path)
            .display()
            .to_string();
        r.check(&case, check(&path));
    }
    Some(r)
}

fn check(path: &Path) -> Result<(), String> {
    let golden_path = PathBuf::from(
        path.to_string_lossy()
            .replace(".Dockerfile", ".expected.json"),
    );
    let golden: Value =
        serde_json::from_str(&std::fs::read_to_string(&golden_path).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let src = std::fs::read(path).map_err(|e| e.to_string())?;
    let src = String::from_utf8_lossy(&src);
    let file = match parser::parse(&src) {
        Ok(f) => f,
        // A golden holding `{"error": ...}` records a file BuildKit rejects.
        Err(_) if golden.get("error").is_some() => return Ok(()),
        Err(e) => return Err(format!("parse error {e}")),
    };
    let got = dump::json(&file);
    let (Some(want), Some(got)) = (golden.as_array(), got.as_array()) else {
        return Err("golden is not a list".into());
    };
    if want.len() != got.len() {
        return Err(format!("{} instructions, want {}", got.len(), want.len()));
    }
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        for field in FIELDS {
            if w.get(field) != g.get(field) {
                return Err(format!(
                    "instruction {i} (line {}): {field} = {}, want {}",
                    g["start_line"],
                    g.get(field).unwrap_or(&Value::Null),
                    w.get(field).unwrap_or(&Value::Null)
                ));
            }
        }
    }
    Ok(())
}
