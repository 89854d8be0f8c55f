//! BuildKit's own parser test data: AST dumps, rejected files, line numbers, heredocs.
use crate::SetResult;
use frontend_dockerfile::parser::{self, dump, heredoc};
use serde_json::Value;
use std::path::Path;

/// Subdirectories of `dir`, sorted, or `None` when `dir` is missing.
fn cases(dir: &Path) -> Option<Vec<std::path::PathBuf>> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    Some(out)
}

fn name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `testfiles/*`: the sexp dump must equal `result` byte for byte.
pub fn testfiles(dir: &Path) -> Option<SetResult> {
    let mut r = SetResult::new("buildkit-parser/testfiles");
    for case in cases(&dir.join("buildkit-parser/testfiles"))? {
        let outcome = (|| {
            let src = std::fs::read(case.join("Dockerfile")).map_err(|e| e.to_string())?;
            let want = std::fs::read_to_string(case.join("result")).map_err(|e| e.to_string())?;
            let src = String::from_utf8(src).map_err(|e| e.to_string())?;
            let file = parser::parse(&src).map_err(|e| format!("parse error {e}"))?;
            let got = dump::ast(&file);
            if got == want {
                Ok(())
            } else {
                Err(format!("dump differs:\n--- want\n{want}--- got\n{got}"))
            }
        })();
        r.check(&name(&case), outcome);
    }
    Some(r)
}

/// `testfiles-negative/*`: parsing must fail.
pub fn negative(dir: &Path) -> Option<SetResult> {
    let mut r = SetResult::new("buildkit-parser/testfiles-negative");
    for case in cases(&dir.join("buildkit-parser/testfiles-negative"))? {
        let outcome = match std::fs::read(case.join("Dockerfile")) {
            Err(e) => Err(e.to_string()),
            Ok(src) => match parser::parse(&String::from_utf8_lossy(&src)) {
                Ok(f) => Err(format!("parsed, expected an error:\n{}", dump::ast(&f))),
                Err(_) => Ok(()),
            },
        };
        r.check(&name(&case), outcome);
    }
    Some(r)
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn usize_at(v: &Value, key: &str) -> Option<usize> {
    v.get(key)?.as_u64().map(|n| n as usize)
}

/// `testfile-line`: start and end line of the file and of each instruction.
pub fn line_numbers(dir: &Path) -> Option<SetResult> {
    let base = dir.join("buildkit-parser/testfile-line");
    if !base.is_dir() {
        return None;
    }
    let mut r = SetResult::new("buildkit-parser/testfile-line");
    let outcome = (|| {
        let want = read_json(&base.join("expected.json"))?;
        let src = std::fs::read_to_string(base.join("Dockerfile")).map_err(|e| e.to_string())?;
        let file = parser::parse(&src).map_err(|e| e.to_string())?;
        let root = &want["root"];
        let (first, last) = (file.children.first(), file.children.last());
        let got_root = (first.map(|n| n.start_line), last.map(|n| n.end_line));
        if got_root != (usize_at(root, "start_line"), usize_at(root, "end_line")) {
            return Err(format!("root lines {got_root:?}, want {root}"));
        }
        let instrs = want["instructions"].as_array().ok_or("no instructions")?;
        if instrs.len() != file.children.len() {
            return Err(format!(
                "{} instructions, want {}",
                file.children.len(),
                instrs.len()
            ));
        }
        for (i, (w, n)) in instrs.iter().zip(&file.children).enumerate() {
            let want = (usize_at(w, "start_line"), usize_at(w, "end_line"));
            if want != (Some(n.start_line), Some(n.end_line)) {
                return Err(format!(
                    "instruction {i}: lines {}-{}, want {w}",
                    n.start_line, n.end_line
                ));
            }
        }
        Ok(())
    })();
    r.check("testfile-line", outcome);
    Some(r)
}

/// `heredoc/expected.json`: every part (cases, word, line and chomp vectors).
pub fn heredoc(dir: &Path) -> Option<SetResult> {
    let base = dir.join("buildkit-parser/heredoc");
    let want = read_json(&base.join("expected.json")).ok()?;
    let mut r = SetResult::new("buildkit-parser/heredoc");
    for case in want["cases"].as_array().into_iter().flatten() {
        let file = case["file"].as_str().unwrap_or_default();
        r.check(&format!("cases/{file}"), check_heredoc_case(&base, case));
    }
    let words = &want["heredoc_word_cases"];
    for w in words["valid"].as_array().into_iter().flatten() {
        let w = w.as_str().unwrap_or_default();
        let outcome = match heredoc::parse_heredoc_word(w) {
            Ok(Some(h)) if h.name == "EOF" => Ok(()),
            other => Err(format!("got {other:?}, want heredoc EOF")),
        };
        r.check(&format!("heredoc_word_cases/valid/{w:?}"), outcome);
    }
    for w in words["error"].as_array().into_iter().flatten() {
        let w = w.as_str().unwrap_or_default();
        let outcome = match heredoc::parse_heredoc_word(w) {
            Err(_) => Ok(()),
            other => Err(format!("got {other:?}, want an error")),
        };
        r.check(&format!("heredoc_word_cases/error/{w:?}"), outcome);
    }
    for w in words["not_heredoc"].as_array().into_iter().flatten() {
        let w = w.as_str().unwrap_or_default();
        let outcome = match heredoc::parse_heredoc_word(w) {
            Ok(None) => Ok(()),
            other => Err(format!("got {other:?}, want not a heredoc")),
        };
        r.check(&format!("heredoc_word_cases/not_heredoc/{w:?}"), outcome);
    }
    for c in want["heredocs_from_line_cases"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let line = c["line"].as_str().unwrap_or_default();
        let want: Vec<&str> = c["names"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let outcome = match heredoc::heredocs_from_line(line) {
            Ok(docs) => {
                let got: Vec<&str> = docs.iter().map(|d| d.name.as_str()).collect();
                if got == want {
                    Ok(())
                } else {
                    Err(format!("names {got:?}, want {want:?}"))
                }
            }
            Err(e) => Err(format!("error {e}")),
        };
        r.check(&format!("heredocs_from_line_cases/{line:?}"), outcome);
    }
    for c in want["chomp_cases"].as_array().into_iter().flatten() {
        let input = c["input"].as_str().unwrap_or_default();
        let output = c["output"].as_str().unwrap_or_default();
        let got = heredoc::chomp(input);
        let outcome = if got == output {
            Ok(())
        } else {
            Err(format!("got {got:?}, want {output:?}"))
        };
        r.check(&format!("chomp_cases/{input:?}"), outcome);
    }
    Some(r)
}

fn check_heredoc_case(base: &Path, case: &Value) -> Result<(), String> {
    let file = case["file"].as_str().ok_or("case without file")?;
    let src = std::fs::read_to_string(base.join(file)).map_err(|e| e.to_string())?;
    let parsed = parser::parse(&src);
    let want_ok = case["parse_ok"].as_bool().unwrap_or(true);
    let parsed = match (parsed, want_ok) {
        (Err(_), false) => return Ok(()),
        (Ok(_), false) => return Err("parsed, expected an error".into()),
        (Err(e), true) => return Err(format!("parse error {e}")),
        (Ok(p), true) => p,
    };
    let count = usize_at(case, "instruction_count").ok_or("no instruction_count")?;
    if parsed.children.len() != count {
        return Err(format!(
            "{} instructions, want {count}",
            parsed.children.len()
        ));
    }
    let lines: Vec<&str> = src.lines().collect();
    for (i, (w, n)) in case["instructions"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(&parsed.children)
        .enumerate()
    {
        let first = lines
            .get(n.start_line.wrapping_sub(1))
            .copied()
            .unwrap_or_default();
        if Some(first) != w["first_line_text"].as_str() {
            return Err(format!(
                "instruction {i} starts with {first:?}, want {}",
                w["first_line_text"]
            ));
        }
        let want_docs = w["heredocs"].as_array().ok_or("no heredocs")?;
        if want_docs.len() != n.heredocs.len() {
            return Err(format!(
                "instruction {i}: {} heredocs, want {}",
                n.heredocs.len(),
                want_docs.len()
            ));
        }
        for (wd, d) in want_docs.iter().zip(&n.heredocs) {
            let ok = wd["name"].as_str() == Some(d.name.as_str())
                && wd["content"].as_str() == Some(d.content.as_str())
                && wd["expand"].as_bool() == Some(d.expand)
                && wd["chomp"].as_bool() == Some(d.chomp)
                && wd["fd"].as_u64() == Some(u64::from(d.file_descriptor));
            if !ok {
                return Err(format!("instruction {i}: heredoc {d:?}, want {wd}"));
            }
        }
    }
    Ok(())
}
