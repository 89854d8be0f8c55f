//! The exec form: a JSON array of strings, decoded exactly as Go's `encoding/json` does.
//!
//! Hand-written rather than serde_json because the accepted language must match BuildKit's
//! byte for byte: Go turns a lone UTF-16 surrogate escape (`"\ud800"`) into U+FFFD where
//! serde_json rejects it, and we need each element's position for spans. Text that is not one
//! complete JSON array (followed only by JSON white space) is [`JsonArray::NotJson`], which the
//! caller turns into the shell form; a valid array holding anything but strings
//! (`["a", ["b"]]`, `[1]`, `[null]`) is [`JsonArray::NotStrings`], which BuildKit rejects.

use super::split::Piece;

/// What the arguments of an exec-form-capable instruction are.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum JsonArray {
    /// A JSON array of strings: the exec form.
    Strings(Vec<Piece>),
    /// A valid JSON array with an element that is not a string: an error in BuildKit.
    NotStrings,
    /// Not a JSON array at all: the shell form.
    NotJson,
}

/// Go's JSON decoder refuses documents nested deeper than this.
const MAX_DEPTH: usize = 10_000;

/// Parses `text` (positions offset by `base`) as a JSON array of strings.
pub(crate) fn parse(text: &str, base: usize) -> JsonArray {
    let lead = text.len() - text.trim_start().len();
    let b = text.as_bytes();
    let mut p = Cursor { b, pos: lead };
    if p.peek() != Some(b'[') {
        return JsonArray::NotJson;
    }
    p.pos += 1;
    let mut items = Vec::new();
    let mut all_strings = true;
    p.skip_ws();
    if p.peek() == Some(b']') {
        p.pos += 1;
    } else {
        loop {
            p.skip_ws();
            let start = p.pos;
            if p.peek() == Some(b'"') {
                let Some(value) = p.string(text) else {
                    return JsonArray::NotJson;
                };
                items.push(Piece {
                    value,
                    start: base + start,
                    end: base + p.pos,
                });
            } else if p.skip_value(text).is_some() {
                all_strings = false;
            } else {
                return JsonArray::NotJson;
            }
            p.skip_ws();
            match p.peek() {
                Some(b',') => p.pos += 1,
                Some(b']') => {
                    p.pos += 1;
                    break;
                }
                _ => return JsonArray::NotJson,
            }
        }
    }
    p.skip_ws();
    match (p.pos == b.len(), all_strings) {
        (false, _) => JsonArray::NotJson,
        (true, true) => JsonArray::Strings(items),
        (true, false) => JsonArray::NotStrings,
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Skips one JSON value of any type (validating it); `None` when it is not valid JSON.
    /// Iterative, so deep nesting cannot overflow the stack.
    fn skip_value(&mut self, text: &str) -> Option<()> {
        // Each open container: `true` for an object (its members are `"key": value`).
        let mut open: Vec<bool> = Vec::new();
        loop {
            self.skip_ws();
            // One scalar, or the opening of a container.
            match self.peek()? {
                b'"' => {
                    self.string(text)?;
                }
                b'[' | b'{' => {
                    let object = self.peek() == Some(b'{');
                    self.pos += 1;
                    if open.len() >= MAX_DEPTH {
                        return None;
                    }
                    self.skip_ws();
                    let close = if object { b'}' } else { b']' };
                    if self.peek()? == close {
                        self.pos += 1;
                    } else {
                        open.push(object);
                        if object {
                            self.member_key(text)?;
                        }
                        continue;
                    }
                }
                b't' => self.literal(b"true")?,
                b'f' => self.literal(b"false")?,
                b'n' => self.literal(b"null")?,
                b'-' | b'0'..=b'9' => self.number()?,
                _ => return None,
            }
            // After a value: close containers or go on with the next element.
            loop {
                let Some(&object) = open.last() else {
                    return Some(());
                };
                self.skip_ws();
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        if object {
                            self.skip_ws();
                            self.member_key(text)?;
                        }
                        break;
                    }
                    b']' if !object => {
                        self.pos += 1;
                        open.pop();
                    }
                    b'}' if object => {
                        self.pos += 1;
                        open.pop();
                    }
                    _ => return None,
                }
            }
        }
    }

    /// `"key" :` of an object member.
    fn member_key(&mut self, text: &str) -> Option<()> {
        self.skip_ws();
        if self.peek()? != b'"' {
            return None;
        }
        self.string(text)?;
        self.skip_ws();
        if self.peek()? != b':' {
            return None;
        }
        self.pos += 1;
        Some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        if self.b.get(self.pos..self.pos + word.len())? != word {
            return None;
        }
        self.pos += word.len();
        Some(())
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    fn number(&mut self) -> Option<()> {
        let digits = |c: &mut Self| {
            let start = c.pos;
            while matches!(c.peek(), Some(b'0'..=b'9')) {
                c.pos += 1;
            }
            (c.pos > start).then_some(())
        };
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek()? {
            b'0' => self.pos += 1,
            b'1'..=b'9' => digits(self)?,
            _ => return None,
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            digits(self)?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.pos += 1;
            }
            digits(self)?;
        }
        Some(())
    }

    fn hex4(&self, at: usize) -> Option<u32> {
        let digits = self.b.get(at..at + 4)?;
        let s = std::str::from_utf8(digits).ok()?;
        if !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(s, 16).ok()
    }

    /// A JSON string starting at the cursor; `text` is the same bytes as a `str`.
    fn string(&mut self, text: &str) -> Option<String> {
        if self.peek()? != b'"' {
            return None;
        }
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.peek()?;
            match c {
                b'"' => {
                    self.pos += 1;
                    return Some(out);
                }
                b'\\' => {
                    let e = *self.b.get(self.pos + 1)?;
                    self.pos += 2;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let r = self.hex4(self.pos)?;
                            self.pos += 4;
                            if (0xd800..0xe000).contains(&r) {
                                // A high surrogate followed by `\uDC00-\uDFFF` is one character;
                                // anything else becomes U+FFFD, as in Go.
                                if (0xd800..0xdc00).contains(&r)
                                    && self.b.get(self.pos) == Some(&b'\\')
                                    && self.b.get(self.pos + 1) == Some(&b'u')
                                {
                                    if let Some(lo) = self.hex4(self.pos + 2) {
                                        if (0xdc00..0xe000).contains(&lo) {
                                            let cp = 0x10000 + ((r - 0xd800) << 10) + (lo - 0xdc00);
                                            out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                                            self.pos += 6;
                                            continue;
                                        }
                                    }
                                }
                                out.push('\u{fffd}');
                            } else {
                                out.push(char::from_u32(r).unwrap_or('\u{fffd}'));
                            }
                        }
                        _ => return None,
                    }
                }
                0..=0x1f => return None,
                _ => {
                    let ch = text[self.pos..].chars().next()?;
                    out.push(ch);
                    self.pos += ch.len_utf8();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, JsonArray};

    fn values(s: &str) -> Option<Vec<String>> {
        match parse(s, 0) {
            JsonArray::Strings(v) => Some(v.into_iter().map(|p| p.value).collect()),
            _ => None,
        }
    }

    #[test]
    fn string_arrays() {
        assert_eq!(values("[]"), Some(vec![]));
        assert_eq!(
            values(" [ \"a\" ,\t\"b\" ] "),
            Some(vec!["a".into(), "b".into()])
        );
        assert_eq!(
            values(r#"["\" \\ \/ \b \f \n \r \t \u0000"]"#),
            Some(vec!["\" \\ / \u{8} \u{c} \n \r \t \0".into()])
        );
        assert_eq!(
            values(r#"["\ud83d\ude00", "\ud800x"]"#),
            Some(vec!["😀".into(), "\u{fffd}x".into()])
        );
    }

    #[test]
    fn not_string_arrays() {
        for s in [
            "",
            "[",
            "[\"a\"",
            "[1]",
            "[\"a\",]",
            "[\"a\"] x",
            "'[\"a\"]'",
            "[\"a\nb\"]",
            "[\"\\x\"]",
        ] {
            assert_eq!(values(s), None, "{s:?}");
        }
    }

    #[test]
    fn json_arrays_with_non_strings_are_not_the_shell_form() {
        for s in [
            r#"["a", ["b"]]"#,
            "[1]",
            "[null]",
            r#"["a", {"k": [1, 2.5e-3, true, false]}]"#,
            "[-0.5, {}]",
            "[[], [[]]] ",
        ] {
            assert_eq!(parse(s, 0), JsonArray::NotStrings, "{s:?}");
        }
        for s in [
            "[1,]",
            "[01]",
            "[1.]",
            "[tru]",
            r#"[{"k" 1}]"#,
            r#"[{1: 2}]"#,
            "[[1]",
            "[1] x",
            "[-]",
        ] {
            assert_eq!(parse(s, 0), JsonArray::NotJson, "{s:?}");
        }
    }
}
