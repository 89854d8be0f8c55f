//! What lint knows about the build context: whether it has a `.dockerignore`, which top-level
//! entries it holds, and which paths the ignore file excludes.

use std::path::{Path, PathBuf};

/// A summary of the build context directory, read once by the caller.
#[derive(Debug, Clone, Default)]
pub struct ContextInfo {
    /// The context directory.
    pub root: PathBuf,
    /// The ignore file's patterns, if the context has one (`.dockerignore` or `<Dockerfile>.dockerignore`).
    pub ignore_patterns: Option<Vec<String>>,
    /// Names of the entries directly in the context root (`.git`, `src`, `package.json`, ...).
    pub top_level: Vec<String>,
}

/// Directories whose presence in a context without an ignore file is worth a warning.
pub const HEAVY_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "target",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".gradle",
    "build",
    "dist",
    ".next",
    ".terraform",
    "vendor/bundle",
    ".pytest_cache",
    ".mypy_cache",
    "coverage",
];

impl ContextInfo {
    /// Reads the context at `root`; `dockerfile` is used to find `<Dockerfile>.dockerignore` first,
    /// as BuildKit does.
    pub fn read(root: &Path, dockerfile: Option<&Path>) -> std::io::Result<Self> {
        let mut top_level = Vec::new();
        for entry in std::fs::read_dir(root)? {
            top_level.push(entry?.file_name().to_string_lossy().into_owned());
        }
        top_level.sort();
        let mut candidates = Vec::new();
        if let Some(df) = dockerfile {
            let mut name = df.as_os_str().to_owned();
            name.push(".dockerignore");
            candidates.push(PathBuf::from(name));
        }
        candidates.push(root.join(".dockerignore"));
        let mut ignore_patterns = None;
        for c in candidates {
            if let Ok(text) = std::fs::read_to_string(&c) {
                ignore_patterns = Some(read_ignore_lines(&text));
                break;
            }
        }
        Ok(ContextInfo {
            root: root.to_path_buf(),
            ignore_patterns,
            top_level,
        })
    }

    /// True when the context root holds `name`.
    pub fn has(&self, name: &str) -> bool {
        if name.contains('/') {
            return self.root.join(name).exists();
        }
        self.top_level.iter().any(|n| n == name)
    }

    /// True when the ignore file excludes `path` (relative to the context root).
    pub fn is_ignored(&self, path: &str) -> bool {
        match &self.ignore_patterns {
            Some(patterns) => crate::lint::context::ignored_by(patterns, path),
            None => false,
        }
    }
}

/// The lines of an ignore file that are patterns (comments and blanks dropped, trimmed).
fn read_ignore_lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// Evaluates moby pattern semantics for `path`: the last matching pattern wins, `!` re-includes,
/// and a pattern matching a parent directory matches everything below it.
pub(crate) fn ignored_by(patterns: &[String], path: &str) -> bool {
    let path = path
        .trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/');
    let mut ignored = false;
    for p in patterns {
        let (negate, pat) = match p.strip_prefix('!') {
            Some(rest) => (true, rest.trim()),
            None => (false, p.as_str()),
        };
        let pat = clean_pattern(pat);
        if pat.is_empty() {
            continue;
        }
        let mut prefix = String::new();
        let mut hit = false;
        for component in path.split('/') {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            if glob_match(&pat, &prefix) {
                hit = true;
                break;
            }
        }
        if hit {
            ignored = !negate;
        }
    }
    ignored
}

fn clean_pattern(p: &str) -> String {
    let p = p
        .trim_start_matches("./")
        .trim_start_matches('/')
        .trim_end_matches('/');
    p.to_string()
}

/// Glob matching with `*` (no `/`), `?`, `**` (any number of components) and `[...]` classes.
fn glob_match(pattern: &str, path: &str) -> bool {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' if chars.get(i + 1) == Some(&'*') => {
                i += 1;
                if chars.get(i + 1) == Some(&'/') {
                    i += 1;
                    re.push_str("(.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '[' => {
                let end = chars[i..].iter().position(|&c| c == ']').map(|p| p + i);
                match end {
                    Some(end) => {
                        let class: String = chars[i + 1..end].iter().collect();
                        let class = class
                            .strip_prefix('!')
                            .map(|c| format!("^{c}"))
                            .unwrap_or(class);
                        re.push('[');
                        re.push_str(&class.replace('\\', "\\\\"));
                        re.push(']');
                        i = end;
                    }
                    None => re.push_str("\\["),
                }
            }
            '\\' if i + 1 < chars.len() => {
                i += 1;
                re.push_str(&regex::escape(&chars[i].to_string()));
            }
            c => re.push_str(&regex::escape(&c.to_string())),
        }
        i += 1;
    }
    re.push('$');
    regex::Regex::new(&re)
        .map(|r| r.is_match(path))
        .unwrap_or(false)
}
