//! The exec form: a JSON array of strings, decoded exactly as Go's `encoding/json` does.
//!
//! Hand-written rather than serde_json because the accepted language must match BuildKit's
//! byte for byte: Go turns a lone UTF-16 surrogate escape (`"\ud800"`) into U+FFFD where
//! serde_json rejects it, and we need each element's position for spans. Anything that is not
//! a complete array of strings (followed only by JSON white space) yields `None`, which the
//! caller turns into the shell form.

use super::split::Piece;

/// Parses `text` (positions offset by `base`) as a JSON array of strings.
pub(crate) fn parse(text: &str, base: usize) -> Option<Vec<Piece>> {
    let lead = text.len() - text.trim_start().len();
    let b = text.as_bytes();
    let mut p = Cursor { b, pos: lead };
    if p.peek()? != b'[' {
        return None;
    }
    p.pos += 1;
    let mut items = Vec::new();
    p.skip_ws();
    if p.peek()? == b']' {
        p.pos += 1;
    } else {
        loop {
            p.skip_ws();
            let start = p.pos;
            let value = p.string(text)?;
            items.push(Piece {
                value,
                start: base + start,
                end: base + p.pos,
            });
            p.skip_ws();
            match p.peek()? {
                b',' => p.pos += 1,
                b']' => {
                    p.pos += 1;
                    break;
                }
                _ => return None,
            }
        }
    }
    p.skip_ws();
    (p.pos == b.len()).then_some(items)
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
    use super::parse;

    fn values(s: &str) -> Option<Vec<String>> {
        parse(s, 0).map(|v| v.into_iter().map(|p| p.value).collect())
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
}
