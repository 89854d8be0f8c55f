//! Heredoc detection: which words of a RUN/COPY/ADD line open a heredoc, and with what delimiter.
//!
//! BuildKit decides this with its shell-word lexer run over the instruction line with an empty
//! environment, unset variables left as written, and (for the line) quotes and escapes kept raw.
//! [`lex_words`] is a small, self-contained port of exactly that mode: the full expander lives in
//! `crate::shell`, but heredoc detection must not change when the expander grows features, and it
//! needs no environment at all.

use super::ast::Heredoc;

/// Why a heredoc word could not be lexed (an unterminated quote, a bad `${...}`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HeredocWordError(pub String);

/// Classifies one word as a heredoc opener (`<<EOF`, `<<-'EOF'`, `3<<EOF`, `<< EOF`).
///
/// `Ok(None)` when the word is not a heredoc, an error when it looks like one but its delimiter
/// cannot be lexed (`<<'EOF`). The returned heredoc has an empty `content`.
pub fn parse_heredoc_word(word: &str) -> Result<Option<Heredoc>, HeredocWordError> {
    // ^(\d*)<<(-?)\s*([^<]*)$
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let Some(after) = word[digits..].strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, after) = match after.strip_prefix('-') {
        Some(a) => (true, a),
        None => (false, after),
    };
    let rest = after.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.contains('<') || rest.is_empty() {
        return Ok(None);
    }
    // Go's strconv.ParseUint with the error ignored: overflow gives 0.
    let file_descriptor = word[..digits].parse::<u32>().unwrap_or(0);
    let words = lex_words(rest, false, false).map_err(HeredocWordError)?;
    if words.len() != 1 {
        return Ok(None);
    }
    let raw = lex_words(rest, true, false).map_err(HeredocWordError)?;
    if raw.len() != 1 {
        return Err(HeredocWordError(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        )));
    }
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    let expand = quotes(&words[0]) == quotes(&raw[0]);
    Ok(Some(Heredoc {
        name: words[0].clone(),
        content: String::new(),
        expand,
        chomp,
        file_descriptor,
    }))
}

/// True for a word that is only the heredoc operator (`<<`, `<<-`, `3<<`), whose delimiter
/// current BuildKit takes from the next word (`RUN << EOF`).
fn is_bare_operator(word: &str) -> bool {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    matches!(&word[digits..], "<<" | "<<-")
}

/// The heredocs an instruction line opens, in order (BuildKit's `heredocsFromLine`).
///
/// The line is lexed with quotes and escapes kept, so `'<<EOF'` is not a heredoc; a line the
/// lexer rejects (an unterminated quote) opens none.
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, HeredocWordError> {
    let Ok(words) = lex_words(line, true, true) else {
        return Ok(Vec::new());
    };
    let mut docs = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let mut word = words[i].clone();
        if is_bare_operator(&word) && i + 1 < words.len() {
            word.push(' ');
            word.push_str(&words[i + 1]);
            i += 1;
        }
        if let Some(doc) = parse_heredoc_word(&word)? {
            docs.push(doc);
        }
        i += 1;
    }
    Ok(docs)
}

/// Strips leading tabs from every line of a `<<-` heredoc body.
pub fn chomp(content: &str) -> String {
    let mut out = String::with_capacity(content.len());
    for line in content.split_inclusive('\n') {
        out.push_str(line.trim_start_matches('\t'));
    }
    out
}

/// BuildKit's shell-word lexer in heredoc-detection mode: empty environment, unset variables
/// kept as written, escape character `\`. Returns the words or the lexer's error message.
pub(crate) fn lex_words(
    src: &str,
    raw_quotes: bool,
    raw_escapes: bool,
) -> Result<Vec<String>, String> {
    let mut lx = Lexer {
        chars: src.chars().collect(),
        pos: 0,
        raw_quotes,
        raw_escapes,
    };
    let (_, words) = lx.stop_on(None, raw_escapes)?;
    Ok(words)
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
}

/// Word accumulator with BuildKit's rules: unquoted white space splits, quoted text never does.
#[derive(Default)]
struct Words {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(ch);
        }
    }
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(std::mem::take(&mut self.word));
        }
        self.words
    }
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }
    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    /// Reads until `stop` (consumed) or the end; `raw_escapes` applies to this stretch only.
    fn stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        r
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '\'' => {
                    let s = self.single_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '"' => {
                    let s = self.double_quote()?;
                    result.push_str(&s);
                    words.add_raw_string(&s);
                }
                '$' => {
                    let s = self.dollar()?;
                    result.push_str(&s);
                    words.add_string(&s);
                }
                _ => {
                    self.next();
                    let mut ch = ch;
                    if ch == '\\' {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        match self.next() {
                            None => break,
                            Some(c) => ch = c,
                        }
                        words.add_raw_char(ch);
                    } else {
                        words.add_char(ch);
                    }
                    result.push(ch);
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    fn single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next();
        if self.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    )
                }
                Some('\'') => {
                    if self.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next();
        if self.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    )
                }
                Some('"') => {
                    self.next();
                    if self.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or('\0');
                    if ch == '\\' {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some('"' | '$' | '\\') => ch = self.next().unwrap_or('\0'),
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                name.push(ch);
                return name;
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    /// `$name` / `${...}` with every variable unset: the text is kept as written.
    fn dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            return Ok(format!("${name}"));
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            Some(_) => {}
        }
        let name = self.name();
        let ch = self.next();
        let mut modifier = ch.map(String::from).unwrap_or_default();
        match ch {
            Some('}') => Ok(format!("${{{name}}}")),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let mut op = ch;
                if ch == Some(':') {
                    op = self.next();
                    modifier.extend(op);
                }
                let raw = matches!(op, Some('#' | '%'));
                match self.stop_on(Some('}'), raw) {
                    Ok((word, _)) => Ok(format!("${{{name}{modifier}{word}}}")),
                    Err(e) if self.peek().is_none() => {
                        let _ = e;
                        Err("syntax error: missing '}'".into())
                    }
                    Err(e) => Err(e),
                }
            }
            Some('/') => {
                let (pattern, _) = self.stop_on_any(&['/', '}'])?;
                let replacement = if self.chars.get(self.pos.wrapping_sub(1)) == Some(&'/') {
                    let (r, _) = self.stop_on(Some('}'), true)?;
                    format!("/{r}")
                } else {
                    String::new()
                };
                Ok(format!("${{{name}/{pattern}{replacement}}}"))
            }
            _ => Err(format!("unsupported modifier ({modifier}) in substitution")),
        }
    }

    /// Like `stop_on` for several stop characters, with raw escapes.
    fn stop_on_any(&mut self, stops: &[char]) -> Result<(String, Vec<String>), String> {
        let start = self.pos;
        let end = (start..self.chars.len()).find(|&i| stops.contains(&self.chars[i]));
        match end {
            Some(stop_at) => {
                let stop = self.chars[stop_at];
                self.stop_on(Some(stop), true)
            }
            None => Err("syntax error: missing '}'".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(line: &str) -> Vec<String> {
        heredocs_from_line(line)
            .unwrap()
            .into_iter()
            .map(|h| h.name)
            .collect()
    }

    #[test]
    fn words_and_operator_forms() {
        let h = parse_heredoc_word("3<<-'EOF'").unwrap().unwrap();
        assert_eq!(
            (h.name.as_str(), h.chomp, h.expand, h.file_descriptor),
            ("EOF", true, false, 3)
        );
        assert!(parse_heredoc_word("<<EO\"F\"").unwrap().unwrap().name == "EOF");
        assert!(parse_heredoc_word("<<'EOF").is_err());
        assert!(parse_heredoc_word("<<EOF sh").unwrap().is_none());
        assert!(parse_heredoc_word("<<<EOF").unwrap().is_none());
    }

    #[test]
    fn line_forms() {
        assert_eq!(names("RUN << -EOF"), ["-EOF"]);
        assert_eq!(names("RUN <<- EOF"), ["EOF"]);
        assert_eq!(names("COPY <<A <<B /x"), ["A", "B"]);
        assert!(names("RUN '<<EOF'").is_empty());
        assert!(names("RUN echo \"<<EOF").is_empty());
        assert_eq!(names("RUN cat <<EOF > ${HOME:-/root}/x"), ["EOF"]);
    }

    #[test]
    fn chomp_strips_leading_tabs_per_line() {
        assert_eq!(chomp("\t\ta\n b\n\tc"), "a\n b\nc");
    }
}
