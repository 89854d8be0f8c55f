//! Path patterns for COPY/ADD: Go `filepath.Match` per path component (what Docker uses for
//! source wildcards) and the `--exclude` matcher (moby patternmatcher rules: `**` spans any
//! number of components, `!` re-includes, excluding a directory excludes what is under it).
//!
//! Hand-written because the `glob` crate's syntax differs from Go's (`[!x]` vs `[^x]`,
//! escapes), and Docker's exact behaviour is the contract here.

/// A malformed pattern (unclosed `[`, trailing `\`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern {pattern:?}: syntax error")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
}

/// Whether `s` contains characters `filepath.Match` treats specially.
pub fn has_wildcard(s: &str) -> bool {
    s.contains(['*', '?', '['])
}

/// Go's `filepath.Match` for one component: `*`, `?`, `[a-z]`, `[^a-z]`, `\x`.
pub fn match_component(pattern: &str, name: &str) -> Result<bool, PatternError> {
    let bad = || PatternError {
        pattern: pattern.to_string(),
    };
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Validate the whole pattern once so malformed patterns fail even when matching short-circuits.
    validate(&p).map_err(|_| bad())?;
    Ok(match_here(&p, &n))
}

fn validate(p: &[char]) -> Result<(), ()> {
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(());
                }
                i += 2;
            }
            '[' => {
                let (_, next) = parse_class(p, i, None).ok_or(())?;
                i = next;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

fn match_here(p: &[char], n: &[char]) -> bool {
    if p.is_empty() {
        return n.is_empty();
    }
    match p[0] {
        '*' => {
            let rest = &p[1..];
            (0..=n.len()).any(|k| match_here(rest, &n[k..]))
        }
        '?' => !n.is_empty() && match_here(&p[1..], &n[1..]),
        '[' => {
            if n.is_empty() {
                return false;
            }
            match parse_class(p, 0, Some(n[0])) {
                Some((true, next)) => match_here(&p[next..], &n[1..]),
                _ => false,
            }
        }
        '\\' => p.len() > 1 && !n.is_empty() && p[1] == n[0] && match_here(&p[2..], &n[1..]),
        c => !n.is_empty() && c == n[0] && match_here(&p[1..], &n[1..]),
    }
}

/// Parses a `[...]` class starting at `start`; returns (matched `c`, index after `]`).
fn parse_class(p: &[char], start: usize, c: Option<char>) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = read_class_char(p, &mut i)?;
        let hi = if p.get(i) == Some(&'-') {
            i += 1;
            read_class_char(p, &mut i)?
        } else {
            lo
        };
        if let Some(c) = c {
            if lo <= c && c <= hi {
                matched = true;
            }
        }
    }
    Some((matched != negate, i))
}

fn read_class_char(p: &[char], i: &mut usize) -> Option<char> {
    // Go's getEsc: an unescaped '-' or ']' where a class character is expected is malformed.
    let ch = *p.get(*i)?;
    match ch {
        '-' | ']' => None,
        '\\' => {
            let esc = *p.get(*i + 1)?;
            *i += 2;
            Some(esc)
        }
        _ => {
            *i += 1;
            Some(ch)
        }
    }
}

/// One `--exclude` (or `.dockerignore`-style) rule.
#[derive(Debug, Clone)]
struct Rule {
    components: Vec<String>,
    negate: bool,
}

/// The `--exclude` patterns of one COPY/ADD, matched against slash-separated relative paths.
#[derive(Debug, Clone, Default)]
pub struct ExcludeMatcher {
    rules: Vec<Rule>,
}

impl ExcludeMatcher {
    /// Compiles the patterns; each is cleaned (leading `/` and `./` dropped).
    pub fn new(patterns: &[String]) -> Result<ExcludeMatcher, PatternError> {
        let mut rules = Vec::new();
        for raw in patterns {
            let (negate, body) = match raw.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, raw.as_str()),
            };
            let components: Vec<String> = body
                .split('/')
                .filter(|c| !c.is_empty() && *c != ".")
                .map(str::to_string)
                .collect();
            if components.is_empty() {
                continue;
            }
            for c in &components {
                if c != "**" {
                    match_component(c, "").map_err(|_| PatternError {
                        pattern: raw.clone(),
                    })?;
                }
            }
            rules.push(Rule { components, negate });
        }
        Ok(ExcludeMatcher { rules })
    }

    /// No patterns at all.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether any rule re-includes (`!`); then excluded directories must still be walked.
    pub fn has_negations(&self) -> bool {
        self.rules.iter().any(|r| r.negate)
    }

    /// Whether `rel` (slash-separated, relative) is excluded: the last rule that matches the path
    /// or one of its parent directories decides.
    pub fn is_excluded(&self, rel: &str) -> bool {
        let parts: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        let mut excluded = false;
        for rule in &self.rules {
            let hit = (1..=parts.len()).any(|n| match_rule(&rule.components, &parts[..n]));
            if hit {
                excluded = !rule.negate;
            }
        }
        excluded
    }
}

fn match_rule(pat: &[String], parts: &[&str]) -> bool {
    match pat.first() {
        None => parts.is_empty(),
        Some(p) if p == "**" => (0..=parts.len()).any(|k| match_rule(&pat[1..], &parts[k..])),
        Some(p) => {
            !parts.is_empty()
                && match_component(p, parts[0]).unwrap_or(false)
                && match_rule(&pat[1..], &parts[1..])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_filepath_match_table() {
        let cases: &[(&str, &str, bool)] = &[
            ("*.txt", "a.txt", true),
            ("*.txt", ".txt", true),
            ("*.txt", "a.txt.bak", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("[a-c]x", "bx", true),
            ("[^a-c]x", "bx", false),
            ("[^a-c]x", "dx", true),
            ("\\*", "*", true),
            ("\\*", "a", false),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
        ];
        for (p, n, want) in cases {
            assert_eq!(match_component(p, n).unwrap(), *want, "{p} vs {n}");
        }
        assert!(match_component("[a-", "a").is_err());
        assert!(match_component("ab\\", "ab").is_err());
    }

    #[test]
    fn exclude_rules() {
        let m = ExcludeMatcher::new(&["*.md".into(), "**/tmp".into(), "!keep.md".into()]).unwrap();
        assert!(m.is_excluded("README.md"));
        assert!(!m.is_excluded("keep.md"));
        assert!(!m.is_excluded("src/a.md"), "single * does not cross '/'");
        assert!(m.is_excluded("a/b/tmp/x"));
        assert!(m.is_excluded("tmp"));
        assert!(!m.is_excluded("src/main.rs"));
    }
}
