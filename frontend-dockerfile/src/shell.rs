//! Shell-word lexing and variable expansion, as Dockerfile instructions do it.
//!
//! This reproduces the behaviour of BuildKit's `frontend/dockerfile/shell` package (checked
//! against its `envVarTest` and `wordsTest` vectors): it is not a shell, only the subset of
//! POSIX word expansion that Dockerfiles rely on.
//!
//! # Operations
//!
//! A [`Lexer`] is configured once with the escape character (`\` by default, or `` ` `` from the
//! `# escape=` directive) and then offers:
//!
//! * [`Lexer::process_word`]: one word in, one string out. Quote removal, escapes and variable
//!   expansion, **no** field splitting (what `ENV`, `LABEL`, `WORKDIR`, `USER`, `FROM`, ... use).
//! * [`Lexer::process_words`]: a line in, a list of words out: expansion as above, then splitting
//!   on whitespace outside quotes, including whitespace that came from unquoted expansions
//!   (what shell-form `COPY`/`ADD` sources and `ONBUILD` arguments use).
//! * [`Lexer::process_word_with_matches`]: both results at once, plus the set of variable names
//!   the word referenced that were set ([`Expansion::matched`]) and unset
//!   ([`Expansion::unmatched`]). The linter's `UndefinedVar` and the cache keys (which build args
//!   a step really depends on) need these.
//!
//! Which instructions expand which arguments is decided by the typed-instruction layer, not here.
//!
//! # Supported syntax
//!
//! `$V`, `${V}`, `${V:-w}`, `${V-w}`, `${V:+w}`, `${V+w}`, `${V:?msg}`, `${V?msg}`, `${V#p}`,
//! `${V##p}`, `${V%p}`, `${V%%p}`, `${V/p/r}` and `${V//p/r}`. The words `w`, `msg`, `p` and `r`
//! are themselves expanded. Patterns use `*` and `?` (no bracket classes), with `\` escaping
//! `*`, `?`, `\`, `}` and `/`. Positional (`$1`, `${10}`) and special (`$@`, `$*`, `$#`, `$?`,
//! `$-`, `$$`, `$!`, `$0`) parameters are always unset, never errors. Unsupported modifiers
//! (`${V:=x}`, `${V=x}`, `${#V}`, ...) are errors, as are unterminated quotes and braces.
//!
//! Quoting: outside quotes the escape character escapes any next character (and a trailing one is
//! dropped); inside double quotes it escapes only `"`, `$` and itself; inside single quotes
//! nothing is special. A variable name is a run of Unicode letters, decimal digits and `_`
//! (Go's `unicode.IsLetter`/`IsDigit`, reproduced exactly through the `regex` crate's general
//! categories); names compare exactly (the Unix behaviour).
//!
//! # Environment
//!
//! Variables come from anything implementing [`Env`]: an ordered slice or `Vec` of
//! `(name, value)` pairs in which **later entries win** (the order `ARG`/`ENV` define them), or a
//! `HashMap`/`BTreeMap`.
//!
//! # Invariants
//!
//! No input panics: the lexer walks `char` boundaries only, and nesting of `${...}` is capped at
//! [`MAX_NESTING`] levels (an error beyond) so hostile input cannot exhaust the stack. Errors say
//! which word failed and the byte offset in it where the failing construct starts.

use regex::{Regex, RegexBuilder};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::LazyLock;

/// How deeply `${...}` may nest inside another `${...}` before the word is rejected.
///
/// Real Dockerfiles nest two or three levels; the cap only exists so that hostile input cannot
/// overflow the stack (BuildKit, on Go's growable stacks, has no limit).
pub const MAX_NESTING: usize = 128;

/// The longest a word may grow to by expansion, in bytes.
///
/// Expansions can double a value per line (`ARG B=$A$A`), so a short file could otherwise ask for
/// terabytes. No real value comes near the cap: Linux refuses a single argument or environment
/// string over 128 KiB to the process a RUN step starts anyway.
pub const MAX_WORD_LEN: usize = 1 << 20;

/// Variables visible to expansion.
///
/// Implemented for ordered `(name, value)` lists (later entries win, like successive `ARG`/`ENV`
/// lines) and for maps, so callers can pass whatever they already hold.
pub trait Env {
    /// The value of `name`, or `None` when it is unset (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> Env for [(K, V)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k.as_ref() == name)
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> Env for Vec<(K, V)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl<K: AsRef<str>, V: AsRef<str>, const N: usize> Env for [(K, V); N] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

impl<V: AsRef<str>, S: std::hash::BuildHasher> Env for HashMap<String, V, S> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(|v| v.as_ref())
    }
}

impl<V: AsRef<str>> Env for BTreeMap<String, V> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(|v| v.as_ref())
    }
}

impl<E: Env + ?Sized> Env for &E {
    fn lookup(&self, name: &str) -> Option<&str> {
        (**self).lookup(name)
    }
}

/// Why a word could not be expanded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShellErrorKind {
    /// A `'` without its closing partner.
    #[error("unexpected end of statement while looking for matching single-quote")]
    UnterminatedSingleQuote,
    /// A `"` without its closing partner.
    #[error("unexpected end of statement while looking for matching double-quote")]
    UnterminatedDoubleQuote,
    /// `${` without its closing `}`.
    #[error("syntax error: missing '}}'")]
    MissingClosingBrace,
    /// `${V/pattern` without the `/` that ends the pattern.
    #[error("syntax error: missing '/' in ${{}}")]
    MissingPatternSlash,
    /// `${}`, `${{...}`, `${:...}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// A modifier Docker does not support, such as `:=` or `=`.
    #[error("unsupported modifier ({modifier}) in substitution")]
    UnsupportedModifier {
        /// The modifier as written (`:=`, `=`, `!`, ...).
        modifier: String,
    },
    /// `${V?msg}` with `V` unset, or `${V:?msg}` with `V` unset or empty.
    #[error("{name}: {message}")]
    Required {
        /// The variable that must be set.
        name: String,
        /// The word after `?`, or Docker's default message.
        message: String,
    },
    /// A `#`, `%` or `/` pattern that cannot be compiled (a bad escape).
    #[error("invalid pattern ({pattern}) in substitution: {reason}")]
    InvalidPattern {
        /// The pattern after expansion.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
    /// More than [`MAX_NESTING`] nested `${...}`.
    #[error("substitutions nested more than {MAX_NESTING} levels deep")]
    TooDeep,
    /// The expanded word would be longer than [`MAX_WORD_LEN`] bytes.
    #[error("the expanded word would be longer than {MAX_WORD_LEN} bytes")]
    TooLong,
}

/// A word that failed to expand: the word, where in it, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {kind}")]
pub struct ShellError {
    /// The whole word (or line) being processed.
    pub word: String,
    /// Byte offset in `word` of the construct that failed (the quote, or the `$` of `${`).
    pub offset: usize,
    /// What went wrong.
    pub kind: ShellErrorKind,
}

/// Everything one expansion produces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expansion {
    /// The single-word result ([`Lexer::process_word`]).
    pub result: String,
    /// The split result ([`Lexer::process_words`]).
    pub words: Vec<String>,
    /// Variable names referenced and set (possibly to the empty string).
    pub matched: BTreeSet<String>,
    /// Variable names referenced and unset (positional and special parameters included).
    pub unmatched: BTreeSet<String>,
}

/// Docker's word lexer and expander, configured with an escape character and modes.
///
/// Cheap to clone and immutable, so one lexer can serve many threads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lexer {
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_process_quotes: bool,
    skip_unset_env: bool,
}

impl Default for Lexer {
    fn default() -> Self {
        Lexer::new('\\')
    }
}

impl Lexer {
    /// A lexer with `escape` as the escape character (`\` or `` ` ``) and default modes.
    pub fn new(escape: char) -> Self {
        Lexer {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
        }
    }

    /// The escape character this lexer uses.
    pub fn escape(&self) -> char {
        self.escape
    }

    /// Keep quote characters in the output instead of removing them (BuildKit's `RawQuotes`).
    pub fn raw_quotes(mut self, on: bool) -> Self {
        self.raw_quotes = on;
        self
    }

    /// Keep escape characters in the output (BuildKit's `RawEscapes`), as heredoc bodies need.
    pub fn raw_escapes(mut self, on: bool) -> Self {
        self.raw_escapes = on;
        self
    }

    /// Treat quotes as ordinary characters (BuildKit's `SkipProcessQuotes`), for heredoc bodies.
    pub fn skip_process_quotes(mut self, on: bool) -> Self {
        self.skip_process_quotes = on;
        self
    }

    /// Leave references to unset variables as written (`$X`, `${X:-w}`) instead of expanding
    /// them (BuildKit's `SkipUnsetEnv`).
    pub fn skip_unset_env(mut self, on: bool) -> Self {
        self.skip_unset_env = on;
        self
    }

    /// Expands one word: quote removal, escapes and variables, without field splitting.
    pub fn process_word<E: Env + ?Sized>(&self, word: &str, env: &E) -> Result<String, ShellError> {
        self.process_word_with_matches(word, env).map(|e| e.result)
    }

    /// Expands a line and splits it into words on unquoted whitespace (including whitespace
    /// produced by unquoted expansions). Empty words are dropped, even `""`.
    pub fn process_words<E: Env + ?Sized>(
        &self,
        line: &str,
        env: &E,
    ) -> Result<Vec<String>, ShellError> {
        self.process_word_with_matches(line, env).map(|e| e.words)
    }

    /// Expands `word` and reports both forms of the result and which variables it referenced.
    pub fn process_word_with_matches<E: Env + ?Sized>(
        &self,
        word: &str,
        env: &E,
    ) -> Result<Expansion, ShellError> {
        let mut expander = Expander {
            lexer: self,
            src: word,
            // Like Go's text/scanner (which BuildKit reads words with), a leading byte-order
            // mark is skipped.
            pos: if word.starts_with('\u{feff}') { 3 } else { 0 },
            env,
            raw_escapes: self.raw_escapes,
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match expander.process_until(None, self.raw_escapes) {
            Ok((result, words)) => Ok(Expansion {
                result,
                words,
                matched: expander.matched,
                unmatched: expander.unmatched,
            }),
            Err((offset, kind)) => Err(ShellError {
                word: word.to_string(),
                offset,
                kind,
            }),
        }
    }
}

/// An error before it is attached to its word: (byte offset, kind).
type Failure = (usize, ShellErrorKind);

/// Refuses a word that expansion would grow past [`MAX_WORD_LEN`] (`at`: the construct's offset).
fn check_len(at: usize, len: usize) -> Result<(), Failure> {
    if len > MAX_WORD_LEN {
        return Err((at, ShellErrorKind::TooLong));
    }
    Ok(())
}

/// Accumulates the split form of a word, as characters arrive.
#[derive(Default)]
struct WordSplitter {
    word: String,
    words: Vec<String>,
    in_word: bool,
}

impl WordSplitter {
    /// A character subject to splitting: whitespace ends the current word.
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    /// A character that is part of the word whatever it is (quoted or escaped).
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    /// Text subject to splitting (an unquoted expansion).
    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    /// Text that belongs to the current word as is (a quoted section).
    fn add_raw_string(&mut self, s: &str) {
        self.word.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

/// The state of one expansion: a cursor over the word and the names seen so far.
struct Expander<'a, E: ?Sized> {
    lexer: &'a Lexer,
    src: &'a str,
    /// Byte offset of the next character; always on a `char` boundary.
    pos: usize,
    env: &'a E,
    raw_escapes: bool,
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl<E: Env + ?Sized> Expander<'_, E> {
    fn peek(&self) -> Option<char> {
        self.src.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek()?;
        self.pos += ch.len_utf8();
        Some(ch)
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.lookup(name) {
            Some(v) => {
                self.matched.insert(name.to_string());
                Some(v.to_string())
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }

    /// Processes text up to `stop` (consumed) or the end of the word when `stop` is `None`.
    /// Returns the unsplit and the split result.
    fn process_until(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), Failure> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.process_until_inner(stop);
        self.raw_escapes = saved;
        out
    }

    fn process_until_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), Failure> {
        let mut result = String::new();
        let mut words = WordSplitter::default();
        let quotes = !self.lexer.skip_process_quotes;
        let start = self.pos;
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            if ch == '$' {
                let at = self.pos;
                let value = self.process_dollar()?;
                check_len(at, result.len() + value.len())?;
                result.push_str(&value);
                words.add_string(&value);
            } else if quotes && ch == '\'' {
                let value = self.process_single_quote()?;
                result.push_str(&value);
                words.add_raw_string(&value);
            } else if quotes && ch == '"' {
                let at = self.pos;
                let value = self.process_double_quote()?;
                check_len(at, result.len() + value.len())?;
                result.push_str(&value);
                words.add_raw_string(&value);
            } else {
                self.next();
                if ch == self.lexer.escape {
                    if self.raw_escapes {
                        words.add_raw_char(ch);
                        result.push(ch);
                    }
                    // An escape at the very end is dropped.
                    let Some(escaped) = self.next() else { break };
                    words.add_raw_char(escaped);
                    result.push(escaped);
                } else {
                    words.add_char(ch);
                    result.push(ch);
                }
            }
        }
        match stop {
            // Callers translate this into the error that names what is missing.
            Some('}') => Err((start, ShellErrorKind::MissingClosingBrace)),
            Some(_) => Err((start, ShellErrorKind::MissingPatternSlash)),
            None => Ok((result, words.finish())),
        }
    }

    fn process_single_quote(&mut self) -> Result<String, Failure> {
        let start = self.pos;
        let mut result = String::new();
        let quote = self.next();
        if self.lexer.raw_quotes {
            result.extend(quote);
        }
        loop {
            match self.next() {
                None => return Err((start, ShellErrorKind::UnterminatedSingleQuote)),
                Some('\'') => {
                    if self.lexer.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, Failure> {
        let start = self.pos;
        let mut result = String::new();
        let quote = self.next();
        if self.lexer.raw_quotes {
            result.extend(quote);
        }
        loop {
            match self.peek() {
                None => return Err((start, ShellErrorKind::UnterminatedDoubleQuote)),
                Some('"') => {
                    self.next();
                    if self.lexer.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let at = self.pos;
                    let value = self.process_dollar()?;
                    check_len(at, result.len() + value.len())?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let Some(mut ch) = self.next() else { continue };
                    if ch == self.lexer.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // A trailing escape is dropped; the loop then reports the quote.
                            None => continue,
                            Some(next)
                                if next == '"' || next == '$' || next == self.lexer.escape =>
                            {
                                self.next();
                                ch = next;
                            }
                            // Before anything else the escape character stays literal.
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, Failure> {
        let start = self.pos;
        self.next(); // '$'
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_string());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // '{'
        match self.peek() {
            None => return Err((start, ShellErrorKind::MissingClosingBrace)),
            Some('{' | '}' | ':') => return Err((start, ShellErrorKind::BadSubstitution)),
            Some(_) => {}
        }
        if self.depth >= MAX_NESTING {
            return Err((start, ShellErrorKind::TooDeep));
        }
        self.depth += 1;
        let out = self.process_braced(start);
        self.depth -= 1;
        out
    }

    /// The part of `${...}` after the opening brace.
    fn process_braced(&mut self, start: usize) -> Result<String, Failure> {
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err((start, ShellErrorKind::MissingClosingBrace));
        };
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lexer.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let mut modifier = ch.to_string();
                let (null_is_unset, op) = if ch == ':' {
                    let op = self.next();
                    modifier.extend(op);
                    (true, op)
                } else {
                    (false, Some(ch))
                };
                let raw = matches!(op, Some('#' | '%'));
                let (word, _) = self.process_until(Some('}'), raw).map_err(|e| {
                    if self.peek().is_none() {
                        (start, ShellErrorKind::MissingClosingBrace)
                    } else {
                        e
                    }
                })?;
                let value = self.get_env(&name);
                if value.is_none() && self.lexer.skip_unset_env {
                    return Ok(format!("${{{name}{modifier}{word}}}"));
                }
                let empty = null_is_unset && value.as_deref() == Some("");
                match op {
                    Some('-') => Ok(match value {
                        Some(v) if !empty => v,
                        _ => word,
                    }),
                    Some('+') => Ok(if value.is_none() || empty {
                        String::new()
                    } else {
                        word
                    }),
                    Some('?') => match value {
                        None => Err((
                            start,
                            ShellErrorKind::Required {
                                name,
                                message: if word.is_empty() {
                                    "is not allowed to be unset".to_string()
                                } else {
                                    word
                                },
                            },
                        )),
                        Some(_) if empty => Err((
                            start,
                            ShellErrorKind::Required {
                                name,
                                message: if word.is_empty() {
                                    "is not allowed to be empty".to_string()
                                } else {
                                    word
                                },
                            },
                        )),
                        Some(v) => Ok(v),
                    },
                    Some(op @ ('#' | '%')) => {
                        let value = value.unwrap_or_default();
                        // `#`/`%` remove the shortest match, `##`/`%%` the longest.
                        let (pattern, greedy) = match word.strip_prefix(op) {
                            Some(rest) => (rest, true),
                            None => (word.as_str(), false),
                        };
                        let trimmed = if op == '%' {
                            trim_suffix(pattern, &value, greedy)
                        } else {
                            trim_prefix(pattern, &value, greedy)
                        };
                        trimmed.map_err(|reason| {
                            (
                                start,
                                ShellErrorKind::InvalidPattern {
                                    pattern: pattern.to_string(),
                                    reason,
                                },
                            )
                        })
                    }
                    _ => Err((start, ShellErrorKind::UnsupportedModifier { modifier })),
                }
            }
            '/' => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let (pattern, _) = self.process_until(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        (start, ShellErrorKind::MissingPatternSlash)
                    } else {
                        e
                    }
                })?;
                let (replacement, _) = self.process_until(Some('}'), true).map_err(|e| {
                    if self.peek().is_none() {
                        (start, ShellErrorKind::MissingClosingBrace)
                    } else {
                        e
                    }
                })?;
                let value = match self.get_env(&name) {
                    Some(v) => v,
                    None if self.lexer.skip_unset_env => {
                        return Ok(format!("${{{name}/{pattern}/{replacement}}}"))
                    }
                    None => String::new(),
                };
                let re = shell_pattern_regex(&pattern, true, false).map_err(|reason| {
                    (
                        start,
                        ShellErrorKind::InvalidPattern {
                            pattern: pattern.clone(),
                            reason,
                        },
                    )
                })?;
                // Bounded before replacing: every match may add the whole replacement.
                let matches = if replace_all {
                    re.find_iter(&value).count()
                } else {
                    usize::from(re.is_match(&value))
                };
                check_len(
                    start,
                    value
                        .len()
                        .saturating_add(matches.saturating_mul(replacement.len())),
                )?;
                Ok(if replace_all {
                    // Like Go's ReplaceAllString, `$name`/`${name}` in the replacement refer to
                    // capture groups (there are none, so they vanish) and `$$` is a literal `$`.
                    re.replace_all(&value, replacement.as_str()).into_owned()
                } else {
                    match re.find(&value) {
                        Some(m) => format!(
                            "{}{}{}",
                            &value[..m.start()],
                            replacement,
                            &value[m.end()..]
                        ),
                        None => value,
                    }
                })
            }
            other => Err((
                start,
                ShellErrorKind::UnsupportedModifier {
                    modifier: other.to_string(),
                },
            )),
        }
    }

    /// Reads a variable name: a run of letters, digits and `_`; or a run of digits (positional
    /// parameter); or one special-parameter character.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_go_digit(ch) {
                while let Some(d) = self.peek().filter(|&c| is_go_digit(c)) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
                self.next();
                return ch.to_string();
            }
            if !is_go_letter(ch) && !is_go_digit(ch) && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }
}

/// POSIX special parameters: always unset in a Dockerfile.
fn is_special_param(ch: char) -> bool {
    matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Unicode general category L (Go's `unicode.IsLetter`), which is narrower than Rust's
/// `char::is_alphabetic` (that one also takes marks and letter numbers).
fn is_go_letter(ch: char) -> bool {
    static LETTER: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\A\p{L}\z").ok());
    if ch.is_ascii() {
        return ch.is_ascii_alphabetic();
    }
    let mut buf = [0u8; 4];
    LETTER
        .as_ref()
        .is_some_and(|re| re.is_match(ch.encode_utf8(&mut buf)))
}

/// Unicode general category Nd (Go's `unicode.IsDigit`), narrower than `char::is_numeric`.
fn is_go_digit(ch: char) -> bool {
    static DIGIT: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"\A\p{Nd}\z").ok());
    if ch.is_ascii() {
        return ch.is_ascii_digit();
    }
    let mut buf = [0u8; 4];
    DIGIT
        .as_ref()
        .is_some_and(|re| re.is_match(ch.encode_utf8(&mut buf)))
}

/// Compiles a `${V#pattern}`-style pattern: `*` is any run (greedy or shortest), `?` any one
/// character, `\` escapes `*`, `?` and `\`, and is dropped before `}` and `/`.
fn shell_pattern_regex(pattern: &str, greedy: bool, anchored: bool) -> Result<Regex, String> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    while let Some(tok) = chars.next() {
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(esc @ ('*' | '?' | '\\')) => {
                        out.push('\\');
                        out.push(esc);
                    }
                    Some(other) => return Err(format!("invalid escape '\\{other}'")),
                    None => return Err("invalid escape '\\' at end of pattern".to_string()),
                }
            }
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                out.push('\\');
                out.push(tok);
            }
            _ => out.push(tok),
        }
    }
    RegexBuilder::new(&out)
        .size_limit(1 << 22)
        .build()
        .map_err(|e| e.to_string())
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let re = shell_pattern_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// Removes the shortest or longest suffix matching `pattern`. A regex finds leftmost matches
/// only, so the pattern and the value are reversed and the problem becomes a prefix trim.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, String> {
    let reversed_value: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed_value, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

/// Reverses a pattern while keeping each `\x` escape pair in order (`a\*c` becomes `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    // Split into units front to back (an escape pair is one unit), then emit them back to front.
    let mut units: Vec<&[char]> = Vec::with_capacity(chars.len());
    let mut rest = chars.as_slice();
    while let Some(&first) = rest.first() {
        let len = if first == '\\' && rest.len() > 1 {
            2
        } else {
            1
        };
        let (unit, tail) = rest.split_at(len);
        units.push(unit);
        rest = tail;
    }
    units.iter().rev().flat_map(|u| u.iter()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(&'static str, &'static str)> {
        vec![("PWD", "/home"), ("SHELL", "bash"), ("NULL", "")]
    }

    fn word(w: &str) -> Result<String, ShellError> {
        Lexer::new('\\').process_word(w, &env())
    }

    fn with(w: &str, env: &[(&str, &str)]) -> Result<Expansion, ShellError> {
        Lexer::new('\\').process_word_with_matches(w, env)
    }

    /// (word, environment, expected result)
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn later_env_entries_win() {
        let env = [("car", "hat"), ("car", "bike")];
        assert_eq!(Lexer::default().process_word("$car", &env).unwrap(), "bike");
    }

    #[test]
    fn maps_are_environments_too() {
        let mut m = HashMap::new();
        m.insert("A".to_string(), "1".to_string());
        assert_eq!(Lexer::default().process_word("${A}x", &m).unwrap(), "1x");
        let b: BTreeMap<String, &str> = [("A".to_string(), "2")].into();
        assert_eq!(Lexer::default().process_word("${A}x", &b).unwrap(), "2x");
    }

    #[test]
    fn required_messages_are_expanded() {
        let set_env = [("VAR", "plain"), ("ARG", "x")];
        let empty = [("VAR", ""), ("ARG", "x")];
        let unset = [("ARG", "x")];
        let l = Lexer::default();
        assert_eq!(
            l.process_word("${VAR:?message here$ARG}", &set_env)
                .unwrap(),
            "plain"
        );
        let e = l
            .process_word("${VAR:?message here$ARG}", &empty)
            .unwrap_err();
        assert!(e.to_string().contains("message herex"), "{e}");
        let e = l
            .process_word("${VAR?message here$ARG}", &unset)
            .unwrap_err();
        assert_eq!(
            e.kind,
            ShellErrorKind::Required {
                name: "VAR".into(),
                message: "message herex".into()
            }
        );
        assert_eq!(l.process_word("${VAR?message}", &empty).unwrap(), "");
        let e = l.process_word("ab${VAR:?}", &unset).unwrap_err();
        assert_eq!(e.offset, 2);
        assert!(e.to_string().contains("is not allowed to be unset"));
        let e = l.process_word("${VAR:?}", &empty).unwrap_err();
        assert!(e.to_string().contains("is not allowed to be empty"));
    }

    #[test]
    fn matches_and_unmatched_are_reported() {
        let env = [("FOO", "xxx"), ("BAR", "")];
        let e = with("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", &env).unwrap();
        assert_eq!(e.result, "xxx  ccc");
        assert_eq!(e.matched, set(&["FOO", "BAR"]));
        assert_eq!(e.unmatched, set(&["BAZ"]));
        let e = with("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", &env).unwrap();
        assert_eq!(e.result, "xxx bbb ccc");
        let e = with("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", &env).unwrap();
        assert_eq!(e.result, "aaa bbb ");
        let e = with("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", &env).unwrap();
        assert_eq!(e.result, "aaa  ");
        let e = with("x ${UNUSED} $1 $@", &env).unwrap();
        assert_eq!(e.unmatched, set(&["UNUSED", "1", "@"]));
        assert!(e.matched.is_empty());
        let e = with(
            "something-${VERSION}.${OS}${VARIANT:+-${VARIANT}}.tgz",
            &[("VERSION", "v1"), ("OS", "linux")],
        )
        .unwrap();
        assert_eq!(e.result, "something-v1.linux.tgz");
        assert_eq!(e.matched, set(&["VERSION", "OS"]));
        assert_eq!(e.unmatched, set(&["VARIANT"]));
    }

    #[test]
    fn unsupported_modifiers_are_errors() {
        for w in [
            "${FOO=aaa}",
            "${FOO=:aaa}",
            "${FOO=}",
            "${PWD:=000}",
            "${#PWD}",
            "${a!b}",
        ] {
            let e = with(w, &[("FOO", "xxx")]).unwrap_err();
            assert!(
                matches!(e.kind, ShellErrorKind::UnsupportedModifier { .. }),
                "{w}: {e:?}"
            );
        }
        assert_eq!(
            word("${PWD:=000}").unwrap_err().kind,
            ShellErrorKind::UnsupportedModifier {
                modifier: ":=".into()
            }
        );
    }

    #[test]
    fn prefix_and_suffix_removal() {
        let cases: &[Case] = &[
            (
                r"${FOO#()[]{\}^$.\*\?|\\}",
                &[("FOO", r"()[]{}^$.*?|\x")],
                "x",
            ),
            (r"${FOO%%\**}", &[("FOO", "xx**")], "xx"),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], "y"),
            ("${FOO#*}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], "xyy"),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy"),
            ("${FOO#}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO##*x}", &[("FOO", "xxyy")], "yy"),
            ("${FOO##}", &[("FOO", "xxyy")], "xxyy"),
            (r"${FOO#?\?}", &[("FOO", "???y")], "?y"),
            ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], ".xxyy."),
            (r"${FOO%%\**\*}", &[("FOO", "a***yy*")], "a"),
            ("${FOO%}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO%%$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy"),
            ("${FOO%y*}", &[("FOO", "xxyy")], "xxy"),
            ("${FOO%%y*}", &[("FOO", "xxyy")], "xx"),
            ("${FOO%.*}", &[("FOO", "app.tar.gz")], "app.tar"),
            ("${FOO%%.*}", &[("FOO", "app.tar.gz")], "app"),
            ("${FOO#*/}", &[("FOO", "한국/어/x")], "어/x"),
            ("${FOO%/*}", &[("FOO", "한국/어/x")], "한국/어"),
            ("${NOPE#x}", &[], ""),
        ];
        for (w, env, want) in cases {
            assert_eq!(with(w, env).unwrap().result, *want, "{w}");
        }
        for bad in [r"${FOO#\x}", r"${FOO%a\b}"] {
            let e = with(bad, &[("FOO", "x")]).unwrap_err();
            assert!(
                matches!(e.kind, ShellErrorKind::InvalidPattern { .. }),
                "{bad}"
            );
        }
    }

    #[test]
    fn pattern_replacement() {
        let cases: &[Case] = &[
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")],
                "/foo.*/*.txt - /foo..*.txt",
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                "/tmp/bar.txt - /bar.txt",
            ),
            (
                "${FOO/$NEEDLE/$R} - ${FOO//$NEEDLE/$R}",
                &[("FOO", "/a/foo/b/c.txt"), ("NEEDLE", "/?/"), ("R", "/")],
                "/foo/b/c.txt - /foo/c.txt",
            ),
            (
                "${FOO/$NEEDLE/$R}",
                &[
                    ("FOO", "http://google.de"),
                    ("NEEDLE", "http://"),
                    ("R", "https://"),
                ],
                "https://google.de",
            ),
            (
                r"${FOO//\//\/}",
                &[("FOO", "/tmp/foo.txt")],
                r"\/tmp\/foo.txt",
            ),
            ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy"),
            ("${FOO///}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO///}", &[], ""),
            ("${FOO//a*/-}", &[("FOO", "baaac")], "b-"),
            ("${FOO//*/-}", &[("FOO", "abc")], "-"),
            ("${FOO//?/-}", &[("FOO", "ab")], "--"),
        ];
        for (w, env, want) in cases {
            assert_eq!(with(w, env).unwrap().result, *want, "{w}");
        }
        for bad in ["${FOO//ww}", "${FOO//}", "${FOO/a"] {
            assert!(with(bad, &[("FOO", "xxyy")]).is_err(), "{bad}");
        }
    }

    #[test]
    fn backtick_escape() {
        let l = Lexer::new('`');
        let env = [("A", "1")];
        assert_eq!(l.process_word(r"C:\path\$A", &env).unwrap(), r"C:\path\1");
        assert_eq!(l.process_word("`$A", &env).unwrap(), "$A");
        assert_eq!(l.process_word("\"a`\"b\"", &env).unwrap(), "a\"b");
        assert_eq!(l.process_words("a` b c", &env).unwrap(), vec!["a b", "c"]);
    }

    #[test]
    fn splitting_keeps_quoted_runs_and_drops_empty_words() {
        let l = Lexer::default();
        let env = [("S", " a  b ")];
        assert_eq!(
            l.process_words("x${S}y", &env).unwrap(),
            vec!["x", "a", "b", "y"]
        );
        assert_eq!(
            l.process_words("x\"${S}\"y", &env).unwrap(),
            vec!["x a  b y"]
        );
        assert_eq!(l.process_words("a \"\" b", &env).unwrap(), vec!["a", "b"]);
        assert_eq!(l.process_words("   ", &env).unwrap(), Vec::<String>::new());
        // Non-breaking space counts as whitespace, as in Go's unicode.IsSpace.
        assert_eq!(l.process_words("a\u{a0}b", &env).unwrap(), vec!["a", "b"]);
    }

    #[test]
    fn names_follow_go_letter_and_digit_classes() {
        let env = [("é1", "ok"), ("x", "X")];
        assert_eq!(Lexer::default().process_word("$é1!", &env).unwrap(), "ok!");
        // U+0301 (a combining mark) is not a letter to Go, so the name ends before it.
        assert_eq!(
            Lexer::default().process_word("$x\u{301}", &env).unwrap(),
            "X\u{301}"
        );
        // Arabic-Indic digits are decimal digits: a positional parameter.
        assert_eq!(
            Lexer::default()
                .process_word("$\u{661}\u{662}z", &env)
                .unwrap(),
            "z"
        );
    }

    #[test]
    fn skip_unset_and_raw_modes() {
        let l = Lexer::default().skip_unset_env(true);
        let env = [("A", "1")];
        assert_eq!(
            l.process_word("$A $B ${C} ${D:-x}", &env).unwrap(),
            "1 $B ${C} ${D:-x}"
        );
        assert_eq!(l.process_word("${D/a/b}", &env).unwrap(), "${D/a/b}");
        let raw = Lexer::default().raw_quotes(true).raw_escapes(true);
        assert_eq!(
            raw.process_word(r#"'a'"b\$"\c"#, &env).unwrap(),
            r#"'a'"b\$"\c"#
        );
        let heredoc = Lexer::default()
            .raw_quotes(true)
            .raw_escapes(true)
            .skip_process_quotes(true);
        assert_eq!(
            heredoc.process_word("'$A' \"$A\"", &env).unwrap(),
            "'1' \"1\""
        );
    }

    #[test]
    fn error_offsets_point_at_the_construct() {
        let e = word("ab'cd").unwrap_err();
        assert_eq!(
            (e.offset, e.kind),
            (2, ShellErrorKind::UnterminatedSingleQuote)
        );
        let e = word("안녕\"x").unwrap_err();
        assert_eq!(
            (e.offset, e.kind),
            (6, ShellErrorKind::UnterminatedDoubleQuote)
        );
        let e = word("x${PWD").unwrap_err();
        assert_eq!((e.offset, e.kind), (1, ShellErrorKind::MissingClosingBrace));
        let e = word("x${aaa:-bbb ${foo}").unwrap_err();
        assert_eq!((e.offset, e.kind), (1, ShellErrorKind::MissingClosingBrace));
        let e = word("${}").unwrap_err();
        assert_eq!(
            (e.offset, e.kind.clone()),
            (0, ShellErrorKind::BadSubstitution)
        );
        assert!(e.to_string().starts_with("failed to process \"${}\""));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let depth = MAX_NESTING + 5;
        let w = format!("{}x{}", "${A:-".repeat(depth), "}".repeat(depth));
        let e = word(&w).unwrap_err();
        assert_eq!(e.kind, ShellErrorKind::TooDeep);
        let ok = format!("{}x{}", "${A:-".repeat(10), "}".repeat(10));
        assert_eq!(word(&ok).unwrap(), "x");
    }

    #[test]
    fn expansion_past_the_word_limit_is_an_error_not_an_allocation() {
        let big = "x".repeat(MAX_WORD_LEN / 2 + 1);
        let env = [("B", big.as_str())];
        let lexer = Lexer::default();
        assert_eq!(lexer.process_word("$B", &env).unwrap().len(), big.len());
        for w in ["$B$B", "\"$B$B\"", "${B}x${B}", "${B//x/yy}", "${B/x/$B$B}"] {
            let e = lexer.process_word(w, &env).unwrap_err();
            assert_eq!(e.kind, ShellErrorKind::TooLong, "{w}");
        }
        // A replacement that matches nothing adds nothing.
        assert!(lexer.process_word("${B//z/$B}", &env).is_ok());
    }

    #[test]
    fn leading_byte_order_mark_is_skipped() {
        assert_eq!(word("\u{feff}$PWD\u{feff}").unwrap(), "/home\u{feff}");
    }

    #[test]
    fn trailing_escapes() {
        assert_eq!(word("hello\\").unwrap(), "hello");
        assert!(word("\"hello\\").is_err());
        assert!(word("${A:-\\").is_err());
        assert_eq!(word("$").unwrap(), "$");
        assert_eq!(word("$ $.").unwrap(), "$ $.");
    }

    #[test]
    fn reverse_pattern_keeps_escape_pairs() {
        assert_eq!(reverse_pattern(r"a\*c"), r"c\*a");
        assert_eq!(reverse_pattern(r"\\\ab"), r"b\a\\");
        assert_eq!(reverse_pattern(r"ab\"), r"\ba");
        assert_eq!(reverse_pattern(r"👽\🚀🖖"), r"🖖\🚀👽");
        assert_eq!(reverse_pattern(r"\\b"), r"b\\");
    }
}
