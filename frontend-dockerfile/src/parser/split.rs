//! Splitting one joined instruction into keyword, flags and argument words, per instruction.
//!
//! This mirrors BuildKit's line parsers rule for rule, including their quirks: flags are read
//! byte by byte (a non-ASCII byte becomes the Latin-1 character of the same value, and the bytes
//! 0x85 and 0xA0 count as white space), `ENV`/`LABEL` keep quotes and escapes verbatim, and a
//! JSON-looking argument that is not an array of strings silently falls back to the shell form.
//! All positions are byte offsets into the joined instruction text.

use super::error::ParseErrorKind;
use super::json_array::{self, JsonArray};

/// One word found in the joined instruction text: its value and `[start, end)` there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Piece {
    pub value: String,
    pub start: usize,
    pub end: usize,
}

impl Piece {
    fn new(value: impl Into<String>, start: usize, end: usize) -> Self {
        Piece {
            value: value.into(),
            start,
            end,
        }
    }
}

/// An instruction as the grammar sees it, positions relative to the joined text.
#[derive(Debug, Clone)]
pub(crate) struct Parsed {
    pub keyword: Piece,
    pub flags: Vec<Piece>,
    pub args: Vec<Piece>,
    pub json: bool,
    pub inner: Option<Box<Parsed>>,
}

/// A grammar error at a byte offset of the joined text.
#[derive(Debug)]
pub(crate) struct SplitError {
    pub kind: ParseErrorKind,
    pub pos: usize,
}

/// Go's `unicode.IsSpace` applied to a single byte taken as a rune.
fn is_space_byte(b: u8) -> bool {
    matches!(b, b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | b' ' | 0x85 | 0xa0)
}

/// BuildKit's `[\t\v\f\r ]` separator class.
fn is_separator(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// Go's `strings.ToLower`: simple (one-to-one) case mapping per character.
pub(crate) fn go_lower(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\u{130}' => 'i',
            c => {
                let mut l = c.to_lowercase();
                match (l.next(), l.next()) {
                    (Some(one), None) => one,
                    _ => c,
                }
            }
        })
        .collect()
}

/// Go's `strings.ToUpper`: simple (one-to-one) case mapping per character.
pub(crate) fn go_upper(s: &str) -> String {
    s.chars()
        .map(|c| {
            let mut u = c.to_uppercase();
            match (u.next(), u.next()) {
                (Some(one), None) => one,
                _ => c,
            }
        })
        .collect()
}

/// Smallest char boundary at or after `i`.
fn ceil_boundary(s: &str, mut i: usize) -> usize {
    while i < s.len() && !s.is_char_boundary(i) {
        i += 1;
    }
    i.min(s.len())
}

/// `s` trimmed of Unicode white space, as `(start, end)` byte offsets into `s`.
fn trim_bounds(s: &str) -> (usize, usize) {
    let start = s.len() - s.trim_start().len();
    let end = start + s[start..].trim_end().len();
    (start, end)
}

/// Parses the joined text `line[start..end]` into an instruction (BuildKit's `newNodeFromLine`).
pub(crate) fn parse_instruction(
    line: &str,
    start: usize,
    end: usize,
    escape: char,
) -> Result<Parsed, SplitError> {
    let text = &line[start..end];
    let (ts, te) = trim_bounds(text);
    let trimmed = &text[ts..te];
    let base = start + ts;
    // Keyword: everything up to the first run of separators.
    let kw_end = trimmed.find(is_separator).unwrap_or(trimmed.len());
    let keyword = Piece::new(&trimmed[..kw_end], base, base + kw_end);
    let mut flags = Vec::new();
    let mut args_start = base + trimmed.len();
    let mut args_end = args_start;
    if kw_end < trimmed.len() {
        let after = kw_end
            + trimmed[kw_end..]
                .find(|c: char| !is_separator(c))
                .unwrap_or(trimmed.len() - kw_end);
        let rest_base = base + after;
        let rest = &trimmed[after..];
        let (rest_start, found) = extract_flags(rest, rest_base);
        flags = found;
        let remainder = &rest[rest_start..];
        let (rs, re) = trim_bounds(remainder);
        args_start = rest_base + rest_start + rs;
        args_end = rest_base + rest_start + re;
    }
    let rest = &line[args_start..args_end];
    let lower = go_lower(&keyword.value);
    let mut parsed = Parsed {
        keyword,
        flags,
        args: Vec::new(),
        json: false,
        inner: None,
    };
    match lower.as_str() {
        "add" | "copy" | "volume" => match json_array::parse(rest, args_start) {
            JsonArray::Strings(items) => {
                parsed.args = items;
                parsed.json = true;
            }
            JsonArray::NotStrings => return Err(not_string_array(args_start)),
            JsonArray::NotJson => parsed.args = whitespace_delimited(rest, args_start),
        },
        "cmd" | "entrypoint" | "run" | "shell" => {
            let (args, json) = maybe_json(rest, args_start)?;
            parsed.args = args;
            parsed.json = json;
        }
        "arg" => {
            parsed.args = parse_words(rest, args_start, escape);
        }
        "env" | "label" => {
            let key = if lower == "env" { "ENV" } else { "LABEL" };
            parsed.args = name_values(rest, args_start, escape, key)?;
        }
        "expose" | "from" => parsed.args = whitespace_delimited(rest, args_start),
        "healthcheck" => {
            let (args, json) = health_config(rest, args_start)?;
            parsed.args = args;
            parsed.json = json;
        }
        "maintainer" | "stopsignal" | "user" | "workdir" => {
            if !rest.is_empty() {
                parsed.args = vec![Piece::new(rest, args_start, args_end)];
            }
        }
        "onbuild" => {
            if !rest.is_empty() {
                let inner = parse_instruction(line, args_start, args_end, escape)?;
                parsed.inner = Some(Box::new(inner));
            }
        }
        // Unknown instructions parse (rejection happens later) with one empty argument node,
        // exactly like BuildKit's `parseIgnore`.
        _ => parsed.args = vec![Piece::new("", args_start, args_start)],
    }
    Ok(parsed)
}

/// BuildKit's `extractBuilderFlags`: reads leading `--flag[=value]` words byte by byte.
/// Returns where the arguments start (relative to `line`) and the flags found.
fn extract_flags(line: &str, base: usize) -> (usize, Vec<Piece>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let b = line.as_bytes();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut quote = 0u8;
    let mut blank_ok = false;
    let mut ch = 0u8;
    let mut pos = 0;
    while pos <= b.len() {
        if pos != b.len() {
            ch = b[pos];
        }
        if phase == Phase::Spaces {
            if pos == b.len() {
                break;
            }
            if is_space_byte(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || pos + 1 == b.len() || b[pos + 1] != b'-' {
                return (ceil_boundary(line, pos), words);
            }
            phase = Phase::Word;
            word_start = pos;
        }
        if pos == b.len() {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(Piece::new(word, base + word_start, base + pos));
            }
            break;
        }
        if phase == Phase::Word {
            if is_space_byte(ch) {
                phase = Phase::Spaces;
                if word == "--" {
                    return (ceil_boundary(line, pos), words);
                }
                if blank_ok || !word.is_empty() {
                    let w = std::mem::take(&mut word);
                    words.push(Piece::new(w, base + word_start, base + pos));
                }
                word.clear();
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                pos += 1;
                continue;
            }
            if ch == b'\\' {
                if pos + 1 == b.len() {
                    pos += 1;
                    continue;
                }
                pos += 1;
                ch = b[pos];
            }
            word.push(char::from(ch));
            pos += 1;
            continue;
        }
        // Phase::Quote
        if ch == quote {
            phase = Phase::Word;
            pos += 1;
            continue;
        }
        if ch == b'\\' {
            if pos + 1 == b.len() {
                phase = Phase::Word;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = b[pos];
        }
        word.push(char::from(ch));
        pos += 1;
    }
    (line.len(), words)
}

/// BuildKit's `parseWords`: white-space separated words, quotes and escapes kept verbatim.
pub(crate) fn parse_words(rest: &str, base: usize, escape: char) -> Vec<Piece> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    let pos_of = |i: usize| chars.get(i).map(|&(p, _)| p).unwrap_or(rest.len());
    loop {
        let at_end = i >= chars.len();
        let ch = if at_end { '\0' } else { chars[i].1 };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            phase = Phase::Word;
            word_start = pos_of(i);
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(Piece::new(word, base + word_start, base + rest.len()));
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    let w = std::mem::take(&mut word);
                    words.push(Piece::new(w, base + word_start, base + pos_of(i)));
                }
                blank_ok = false;
                i += 1;
                continue;
            }
            let mut ch = ch;
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if i + 1 == chars.len() {
                    i += 1;
                    continue; // an escape at the very end is dropped
                }
                word.push(ch);
                i += 1;
                ch = chars[i].1;
            }
            word.push(ch);
            i += 1;
            continue;
        }
        // Phase::Quote
        let mut ch = ch;
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            i += 1;
            word.push(ch);
            ch = chars[i].1;
        }
        word.push(ch);
        i += 1;
    }
    words
}

/// BuildKit's `parseStringsWhitespaceDelimited`: split on runs of `[\t\v\f\r ]`.
fn whitespace_delimited(rest: &str, base: usize) -> Vec<Piece> {
    if rest.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_sep = false;
    let mut sep_start = 0;
    for (i, c) in rest.char_indices() {
        if is_separator(c) {
            if !in_sep {
                in_sep = true;
                sep_start = i;
            }
        } else if in_sep {
            out.push(Piece::new(
                &rest[start..sep_start],
                base + start,
                base + sep_start,
            ));
            in_sep = false;
            start = i;
        }
    }
    let end = if in_sep { sep_start } else { rest.len() };
    out.push(Piece::new(&rest[start..end], base + start, base + end));
    if in_sep {
        // A trailing separator run yields a final empty word, as Go's regexp.Split does.
        out.push(Piece::new("", base + rest.len(), base + rest.len()));
    }
    out
}

/// The error for a JSON array holding something other than strings, at the arguments' start.
fn not_string_array(pos: usize) -> SplitError {
    SplitError {
        kind: ParseErrorKind::NotStringArray,
        pos,
    }
}

/// BuildKit's `parseMaybeJSON`: a JSON string array, else the whole text as one word; a JSON
/// array of anything else is an error.
fn maybe_json(rest: &str, base: usize) -> Result<(Vec<Piece>, bool), SplitError> {
    if rest.is_empty() {
        return Ok((Vec::new(), false));
    }
    Ok(match json_array::parse(rest, base) {
        JsonArray::Strings(items) => (items, true),
        JsonArray::NotStrings => return Err(not_string_array(base)),
        JsonArray::NotJson => (vec![Piece::new(rest, base, base + rest.len())], false),
    })
}

/// BuildKit's `parseHealthConfig`: the first word (`CMD`, `NONE`, ...), then `parseMaybeJSON`.
fn health_config(rest: &str, base: usize) -> Result<(Vec<Piece>, bool), SplitError> {
    let b = rest.as_bytes();
    let sep = b.iter().position(|&c| is_space_byte(c)).unwrap_or(b.len());
    let next = sep + b[sep..].iter().take_while(|&&c| is_space_byte(c)).count();
    // Byte-wise like BuildKit; keep the cut on a character boundary.
    let sep = ceil_boundary(rest, sep);
    let next = ceil_boundary(rest, next.max(sep));
    if sep == 0 {
        return Ok((Vec::new(), false));
    }
    let mut out = vec![Piece::new(&rest[..sep], base, base + sep)];
    let (cmd, json) = maybe_json(&rest[next..], base + next)?;
    out.extend(cmd);
    Ok((out, json))
}

/// BuildKit's `parseNameVal` for ENV and LABEL: `(key, value, separator)` triples.
fn name_values(
    rest: &str,
    base: usize,
    escape: char,
    instruction: &str,
) -> Result<Vec<Piece>, SplitError> {
    let words = parse_words(rest, base, escape);
    let Some(first) = words.first() else {
        return Ok(Vec::new());
    };
    if !first.value.contains('=') {
        // Legacy `KEY value`: the value is the rest of the line after the first separator run.
        let Some(sep) = rest.find(is_separator) else {
            return Err(SplitError {
                kind: ParseErrorKind::MissingValue(instruction.to_string()),
                pos: base,
            });
        };
        let value_start = sep
            + rest[sep..]
                .find(|c: char| !is_separator(c))
                .unwrap_or(rest.len() - sep);
        return Ok(vec![
            Piece::new(&rest[..sep], base, base + sep),
            Piece::new(&rest[value_start..], base + value_start, base + rest.len()),
            Piece::new("", base + sep, base + sep),
        ]);
    }
    let mut out = Vec::with_capacity(words.len() * 3);
    for word in words {
        let Some(eq) = word.value.find('=') else {
            return Err(SplitError {
                kind: ParseErrorKind::MissingEquals(word.value),
                pos: word.start,
            });
        };
        // Words keep their source text verbatim (only a trailing escape is dropped), so the
        // key ends `eq` bytes into the word.
        let key_end = word.start + eq;
        out.push(Piece::new(&word.value[..eq], word.start, key_end));
        out.push(Piece::new(&word.value[eq + 1..], key_end + 1, word.end));
        out.push(Piece::new("=", key_end, key_end + 1));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(p: &[Piece]) -> Vec<&str> {
        p.iter().map(|p| p.value.as_str()).collect()
    }

    #[test]
    fn flags_stop_at_double_dash_and_first_non_flag() {
        let (rest, flags) = extract_flags("--a=1 --b -- --c x", 0);
        assert_eq!(values(&flags), ["--a=1", "--b"]);
        assert_eq!(rest, 12);
        let (rest, flags) = extract_flags("--x=\"a b\" y", 0);
        assert_eq!(values(&flags), ["--x=a b"]);
        assert_eq!(rest, 10);
    }

    #[test]
    fn flags_read_non_ascii_bytewise_like_buildkit() {
        let (_, flags) = extract_flags("--chown=é x", 0);
        assert_eq!(values(&flags), ["--chown=Ã©"]);
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        let w = parse_words(r#"a="b c" d\ e 'f\'"#, 0, '\\');
        assert_eq!(values(&w), [r#"a="b c""#, r"d\ e", r"'f\'"]);
    }

    #[test]
    fn env_legacy_and_modern_forms() {
        let p = name_values("name value with spaces", 0, '\\', "ENV").unwrap();
        assert_eq!(values(&p), ["name", "value with spaces", ""]);
        let p = name_values("a=1 b=\"2 3\"", 0, '\\', "ENV").unwrap();
        assert_eq!(values(&p), ["a", "1", "=", "b", "\"2 3\"", "="]);
        assert!(name_values("a=1 b", 0, '\\', "ENV").is_err());
        assert!(name_values("key", 0, '\\', "ENV").is_err());
    }

    #[test]
    fn healthcheck_splits_type_and_command() {
        let (a, json) = health_config("CMD [\"a\", \"b\"]", 0).unwrap();
        assert!(json);
        assert_eq!(values(&a), ["CMD", "a", "b"]);
        let (a, json) = health_config("NONE", 0).unwrap();
        assert!(!json);
        assert_eq!(values(&a), ["NONE"]);
    }
}
