//! Parser directives (`# syntax=`, `# escape=`, `# check=`): only the leading run of them counts.

use super::error::ParseErrorKind;

/// Reads directive lines until the first line that is not one (BuildKit's `DirectiveParser`).
#[derive(Default)]
pub(crate) struct DirectiveParser {
    done: bool,
    seen: Vec<String>,
}

/// A directive found on one line: lowercase name and raw value.
pub(crate) struct Found {
    pub name: String,
    pub value: String,
}

impl DirectiveParser {
    /// Looks at one line (newline removed, leading white space already trimmed for first lines).
    /// Returns the directive it holds, if any; any other line ends the directive block.
    pub(crate) fn parse_line(&mut self, line: &str) -> Result<Option<Found>, ParseErrorKind> {
        if self.done {
            return Ok(None);
        }
        let Some((name, value)) = match_directive(line) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !matches!(name.as_str(), "syntax" | "escape" | "check") {
            self.done = true;
            return Ok(None);
        }
        if self.seen.contains(&name) {
            return Err(ParseErrorKind::DuplicateDirective(name));
        }
        self.seen.push(name.clone());
        Ok(Some(Found {
            name,
            value: value.to_string(),
        }))
    }
}

/// Go RE2's `\s`: `[\t\n\f\r ]` (no vertical tab).
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

/// `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`, hand-matched (it runs on every leading line).
fn match_directive(line: &str) -> Option<(&str, &str)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_re_space);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let rest = rest.trim_start_matches(is_re_space).strip_prefix('=')?;
    let value = rest
        .trim_start_matches(is_re_space)
        .trim_end_matches(is_re_space);
    if value.is_empty() {
        // `\s*` gives one character back so that `.+?` can match: `# escape= ` has value " ".
        let last = rest.char_indices().last()?.0;
        return Some((name, &rest[last..]));
    }
    Some((name, value))
}

#[cfg(test)]
mod tests {
    use super::match_directive;

    #[test]
    fn directive_syntax() {
        assert_eq!(match_directive("#escape = `"), Some(("escape", "`")));
        assert_eq!(
            match_directive("# syntax=docker/dockerfile:1 "),
            Some(("syntax", "docker/dockerfile:1"))
        );
        assert_eq!(
            match_directive("# check=skip=all"),
            Some(("check", "skip=all"))
        );
        assert_eq!(match_directive("# escape="), None);
        assert_eq!(match_directive("# escape=  "), Some(("escape", " ")));
        assert_eq!(match_directive("# 1x=a"), None);
        assert_eq!(match_directive("FROM x"), None);
    }
}
