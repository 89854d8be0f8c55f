//! `shell/envVarTest` (one word in, one string out) and `shell/wordsTest` (a line in, words out),
//! read as FORMAT.md §5–6 describe. `W` (Windows-only) lines are skipped: names compare exactly
//! here, as on Unix.
use crate::SetResult;
use frontend_dockerfile::shell::Lexer;
use std::path::Path;

pub fn env_var_test(dir: &Path) -> Option<SetResult> {
    let text = std::fs::read_to_string(dir.join("shell/envVarTest")).ok()?;
    let mut result = SetResult::new("shell/envVarTest");
    let env = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ];
    let lexer = Lexer::new('\\');
    for (index, raw) in text.lines().enumerate() {
        if raw.starts_with('#') || raw.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = raw.trim().split('|').collect();
        let case = format!("line {}: {raw:?}", index + 1);
        let [platform, input, expected] = fields[..] else {
            result.check(
                &case,
                Err("malformed line (want PLATFORM|INPUT|EXPECTED)".into()),
            );
            continue;
        };
        let (platform, input, expected) = (platform.trim(), input.trim(), expected.trim());
        if platform == "W" {
            continue;
        }
        let got = lexer.process_word(input, &env);
        let outcome = match (expected, got) {
            ("error", Err(_)) => Ok(()),
            ("error", Ok(w)) => Err(format!("expected an error, got {w:?}")),
            (want, Ok(w)) if w == want => Ok(()),
            (want, Ok(w)) => Err(format!("expected {want:?}, got {w:?}")),
            (want, Err(e)) => Err(format!("expected {want:?}, got error: {e}")),
        };
        result.check(&case, outcome);
    }
    Some(result)
}

pub fn words_test(dir: &Path) -> Option<SetResult> {
    let text = std::fs::read_to_string(dir.join("shell/wordsTest")).ok()?;
    let mut result = SetResult::new("shell/wordsTest");
    let lexer = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        if raw.starts_with('#') {
            continue;
        }
        if let Some(rest) = raw.strip_prefix("ENV ") {
            // Trailing spaces of the value are significant.
            let assignment = rest.trim_start_matches(' ');
            let (name, value) = assignment.split_once('=').unwrap_or((assignment, ""));
            env.push((name.to_string(), value.to_string()));
            continue;
        }
        let case = format!("line {}: {raw:?}", index + 1);
        let fields: Vec<&str> = raw.split('|').collect();
        let [input, expected] = fields[..] else {
            result.check(&case, Err("malformed line (want INPUT|EXPECTED)".into()));
            continue;
        };
        let want: Vec<&str> = expected.trim_start_matches(' ').split(',').collect();
        let got = match lexer.process_words(input.trim(), &env) {
            Ok(words) => words,
            Err(_) => vec!["error".to_string()],
        };
        let outcome = if got == want {
            Ok(())
        } else {
            Err(format!("expected {want:?}, got {got:?}"))
        };
        result.check(&case, outcome);
    }
    Some(result)
}
