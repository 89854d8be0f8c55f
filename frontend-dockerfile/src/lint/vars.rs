//! Variable references in instruction words (`$NAME`, `${NAME}`, `${NAME:-default}`), for the
//! checks that compare uses against ARG/ENV definitions.
//!
//! Separate from [`crate::shell`] because lint needs what the expander does not report: which
//! references carry a default (`${A:-x}` never counts as undefined), and a best-effort expansion
//! that never fails on words the build would reject later.
//!
//! [`references`] follows nested defaults (`${A:-${B:-x}}`) at most [`MAX_NESTING`] levels
//! deep, as the expander does (it rejects deeper words with an error): a hostile word nested
//! 200,000 levels must not exhaust the stack; the build reports it.

use crate::shell::MAX_NESTING;

/// The names referenced in `word`, in order, skipping single-quoted text and escaped `$`.
/// For `${A:-$B}`, both `A` and `B` are returned; names whose use has a default (`${A:-x}`,
/// `${A-x}`, `${A:+x}`, `${A+x}`) are marked `true` in the second field.
pub fn references(word: &str, escape: char) -> Vec<(String, bool)> {
    let chars: Vec<char> = word.chars().collect();
    let mut out = Vec::new();
    scan(&chars, escape, 0, &mut out);
    out
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

fn scan(chars: &[char], escape: char, nesting: usize, out: &mut Vec<(String, bool)>) {
    let mut i = 0;
    let mut in_double = false;
    while i < chars.len() {
        let c = chars[i];
        if c == escape {
            i += 2;
            continue;
        }
        if c == '"' {
            in_double = !in_double;
        } else if c == '\'' && !in_double {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
        } else if c == '$' {
            match chars.get(i + 1) {
                Some('{') => {
                    let start = i + 2;
                    let mut depth = 1;
                    let mut j = start;
                    while j < chars.len() {
                        match chars[j] {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            _ => {}
                        }
                        j += 1;
                    }
                    let inner = &chars[start..j.min(chars.len())];
                    let name_len = inner.iter().take_while(|c| is_name_char(**c)).count();
                    let name: String = inner[..name_len].iter().collect();
                    let rest = &inner[name_len..];
                    let has_default =
                        matches!(rest, [':', '-' | '+' | '?', ..] | ['-' | '+' | '?', ..]);
                    if !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()) {
                        out.push((name, has_default));
                    }
                    if has_default && nesting < MAX_NESTING {
                        scan(rest, escape, nesting + 1, out);
                    }
                    i = j + 1;
                    continue;
                }
                Some(&n) if is_name_char(n) && !n.is_ascii_digit() => {
                    let name: String = chars[i + 1..]
                        .iter()
                        .take_while(|c| is_name_char(**c))
                        .collect();
                    i += 1 + name.chars().count();
                    out.push((name, false));
                    continue;
                }
                _ => {}
            }
        }
        i += 1;
    }
}

/// Expands `$NAME` / `${NAME}` (and the `:-`/`-` defaults) with `lookup`; `None` when a name
/// without a default is unknown. Good enough for judging FROM references and WORKDIR paths.
pub fn expand(word: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    expand_at(word, lookup, 0)
}

fn expand_at(word: &str, lookup: &dyn Fn(&str) -> Option<String>, depth: usize) -> Option<String> {
    if depth > MAX_NESTING {
        return None;
    }
    let mut out = String::new();
    let chars: Vec<char> = word.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' {
            if chars.get(i + 1) == Some(&'{') {
                let end = chars[i..].iter().position(|&c| c == '}')? + i;
                let inner: String = chars[i + 2..end].iter().collect();
                let name_len = inner.chars().take_while(|c| is_name_char(*c)).count();
                let (name, rest) = inner.split_at(name_len);
                let value = lookup(name);
                let rest_default = rest.strip_prefix(":-").or_else(|| rest.strip_prefix('-'));
                match (value, rest_default) {
                    (Some(v), _) if !v.is_empty() || !rest.starts_with(':') => out.push_str(&v),
                    (_, Some(d)) => out.push_str(&expand(d, lookup)?),
                    (Some(v), None) => out.push_str(&v),
                    (None, None) => return None,
                }
                i = end + 1;
                continue;
            }
            let name: String = chars[i + 1..]
                .iter()
                .take_while(|c| is_name_char(**c))
                .collect();
            if !name.is_empty() {
                out.push_str(&lookup(&name)?);
                i += 1 + name.chars().count();
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_followed_only_to_the_expander_bound() {
        let levels = 100_000;
        let word = format!("{}x{}", "${a:-".repeat(levels), "}".repeat(levels));
        let refs = references(&word, '\\');
        assert_eq!(
            refs.len(),
            MAX_NESTING + 1,
            "bounded, and no stack overflow"
        );
        assert_eq!(expand(&word, &|_| None), None);
    }

    #[test]
    fn finds_references() {
        let r = references("${A:-$B}/$C_1 '$D' \\$E ${F}", '\\');
        let names: Vec<_> = r.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["A", "B", "C_1", "F"]);
        assert!(r[0].1 && !r[3].1);
    }

    #[test]
    fn expands_with_defaults() {
        let lookup = |n: &str| (n == "V").then(|| "1.2".to_string());
        assert_eq!(
            expand("go:${V}-${X:-alpine}", &lookup).as_deref(),
            Some("go:1.2-alpine")
        );
        assert_eq!(expand("$X", &lookup), None);
    }
}
