//! Errors that point at the Dockerfile: file, line, column, the line's text and a caret.

use crate::parser::ast::Span;
use std::borrow::Cow;
use std::fmt;

/// Characters of user text (a word, a value, a source line) a message quotes at most: a
/// megabyte-long expression is shown by its start and its length, not printed whole.
pub const MAX_EXCERPT: usize = 160;

/// `text` itself when short, else its first [`MAX_EXCERPT`] characters and how many follow.
pub fn excerpt(text: &str) -> Cow<'_, str> {
    match text.char_indices().nth(MAX_EXCERPT) {
        None => Cow::Borrowed(text),
        Some((cut, _)) => {
            let rest = text[cut..].chars().count();
            Cow::Owned(format!("{}… ({rest} more characters)", &text[..cut]))
        }
    }
}

/// The part of a source line to show for a span starting at 1-based character `col`: the line
/// itself when short, else a window of [`MAX_EXCERPT`] characters around `col` marked with `…`.
/// Returns the shown text and the 1-based column of `col` in it.
pub fn line_window(text: &str, col: usize) -> (Cow<'_, str>, usize) {
    let total = text.chars().count();
    if total <= MAX_EXCERPT {
        return (Cow::Borrowed(text), col);
    }
    let col0 = col.max(1) - 1;
    let start = col0
        .saturating_sub(MAX_EXCERPT / 4)
        .min(total.saturating_sub(MAX_EXCERPT));
    let end = (start + MAX_EXCERPT).min(total);
    let mut shown = String::new();
    if start > 0 {
        shown.push('…');
    }
    shown.extend(text.chars().skip(start).take(end - start));
    if end < total {
        shown.push('…');
    }
    (Cow::Owned(shown), col0 - start + 1 + usize::from(start > 0))
}

/// What went wrong, without where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    #[error("unknown instruction `{}`", excerpt(.0))]
    UnknownInstruction(String),
    #[error("unknown flag `--{flag}` for {instruction}")]
    UnknownFlag { instruction: String, flag: String },
    #[error("flag `--{flag}` needs a value")]
    MissingFlagValue { flag: String },
    #[error("flag `--{flag}` given more than once")]
    DuplicateFlag { flag: String },
    #[error("invalid value `{}` for `--{flag}`: {reason}", excerpt(.value))]
    BadFlagValue {
        flag: String,
        value: String,
        reason: String,
    },
    #[error("{instruction} {expected}")]
    WrongArguments {
        instruction: String,
        expected: String,
    },
    #[error("invalid {what} `{}`: {reason}", excerpt(.value))]
    BadValue {
        what: String,
        value: String,
        reason: String,
    },
    #[error("cannot expand `{}`: {reason}", excerpt(.word))]
    Expansion { word: String, reason: String },
    #[error("{0}")]
    Unsupported(String),
    #[error("no FROM instruction: a Dockerfile needs at least one stage")]
    NoStages,
    #[error("{instruction} before the first FROM: only ARG may come before FROM")]
    InstructionBeforeFrom { instruction: String },
    #[error("stage `{0}` is used before it is defined")]
    StageUsedBeforeDefinition(String),
    #[error("stage index {index} is out of range (the Dockerfile has {count} stages)")]
    StageIndexOutOfRange { index: usize, count: usize },
    #[error("a stage can not refer to itself")]
    SelfReference,
    #[error("circular dependency between stages: {0}")]
    Cycle(String),
    #[error("target stage `{0}` could not be found")]
    UnknownTarget(String),
    #[error("invalid build argument `{0}`: expected NAME=VALUE")]
    BadBuildArg(String),
    #[error("{0}")]
    Graph(String),
    /// A step of the build failed, or its base image could not be resolved: the message is
    /// the step's name and what went wrong.
    #[error("{0}")]
    Build(String),
}

impl ErrorKind {
    /// True for errors that do not depend on variable values: they are reported for every stage,
    /// reached by the target or not.
    pub fn is_structural(&self) -> bool {
        matches!(
            self,
            ErrorKind::UnknownInstruction(_)
                | ErrorKind::UnknownFlag { .. }
                | ErrorKind::MissingFlagValue { .. }
                | ErrorKind::DuplicateFlag { .. }
                | ErrorKind::WrongArguments { .. }
                | ErrorKind::Unsupported(_)
        )
    }
}

/// An error located in a Dockerfile, rendered like a compiler error:
///
/// ```text
/// Dockerfile:3:6: unknown flag `--chwon` for COPY
///   3 | COPY --chwon=app . .
///     |      ^^^^^^^^^^^
///     = help: did you mean `--chown`?
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostic {
    /// What went wrong (boxed to keep `Result<_, Diagnostic>` small).
    pub kind: Box<ErrorKind>,
    /// The Dockerfile's name as given by the user (`Dockerfile`, `build/Dockerfile.prod`).
    pub file: String,
    /// Where the error is; line and column are 1-based. A zero line means "no location".
    pub span: Span,
    /// The text of the offending line (the source line when the caller gave the source text,
    /// else the first line of the instruction).
    pub line_text: String,
    /// A suggestion (`did you mean ...?`).
    pub help: Option<Box<str>>,
    /// The instruction's further lines (continuations), shown below the caret.
    pub following: Box<[String]>,
}

impl Diagnostic {
    /// A diagnostic of `kind` at `span`, with `line_text` as the shown line.
    pub fn new(kind: ErrorKind, span: Span, line_text: impl Into<String>) -> Self {
        Diagnostic {
            kind: Box::new(kind),
            file: String::from("Dockerfile"),
            span,
            line_text: line_text.into(),
            help: None,
            following: Box::default(),
        }
    }

    /// A diagnostic with no location (bad command-line input, an empty Dockerfile).
    pub fn unlocated(kind: ErrorKind) -> Self {
        Self::new(kind, Span::default(), "")
    }

    /// Adds a suggestion.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into().into_boxed_str());
        self
    }

    /// Sets the file name shown.
    pub fn in_file(mut self, file: &str) -> Self {
        self.file = file.to_string();
        self
    }

    /// Replaces the shown line with the exact source line, when the source is known.
    pub fn with_source(mut self, source: &str) -> Self {
        if self.span.line > 0 {
            if let Some(line) = source.lines().nth(self.span.line - 1) {
                self.line_text = line.to_string();
            }
        }
        self
    }

    /// Shows the lines after the located one up to `end_line` (1-based, inclusive) of
    /// `source`: an instruction continued over several lines is shown whole.
    pub fn with_following_lines(mut self, source: &str, end_line: usize) -> Self {
        if self.span.line > 0 && end_line > self.span.line {
            self.following = source
                .lines()
                .skip(self.span.line)
                .take(end_line - self.span.line)
                .map(str::to_string)
                .collect::<Vec<_>>()
                .into_boxed_slice();
        }
        self
    }

    /// 1-based line (0 when unknown).
    pub fn line(&self) -> usize {
        self.span.line
    }

    /// 1-based column (0 when unknown).
    pub fn column(&self) -> usize {
        self.span.column
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.span.line == 0 {
            write!(f, "{}: {}", self.file, self.kind)?;
            if let Some(help) = &self.help {
                write!(f, "\n  = help: {help}")?;
            }
            return Ok(());
        }
        writeln!(
            f,
            "{}:{}:{}: {}",
            self.file, self.span.line, self.span.column, self.kind
        )?;
        let width = (self.span.line + self.following.len()).to_string().len();
        let number = format!("{:>width$}", self.span.line);
        let pad = " ".repeat(width);
        let line = self.line_text.replace('\t', " ");
        let (text, col) = line_window(&line, self.span.column.max(1));
        write!(f, " {number} | {text}")?;
        let line_chars = text.chars().count();
        let available = line_chars.saturating_sub(col - 1).max(1);
        let span_chars = self.span.end.saturating_sub(self.span.start).max(1);
        let carets = span_chars.min(available);
        write!(
            f,
            "\n {pad} | {}{}",
            " ".repeat(col - 1),
            "^".repeat(carets)
        )?;
        for (i, following) in self.following.iter().enumerate() {
            let number = self.span.line + i + 1;
            let following = following.replace('\t', " ");
            let (text, _) = line_window(&following, 1);
            write!(f, "\n {number:>width$} | {text}")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n {pad} = help: {help}")?;
        }
        Ok(())
    }
}

/// The closest candidate to `input` by Jaro-Winkler similarity, if one is close enough to be a
/// likely typo.
pub fn suggest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let input_lower = input.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| {
            (
                strsim::jaro_winkler(&input_lower, &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

#[cfg(test)]
mod excerpt_tests {
    use super::*;

    #[test]
    fn long_words_and_lines_are_quoted_by_an_excerpt() {
        let word = "${a:-".repeat(10_000);
        let kind = ErrorKind::Expansion {
            word: word.clone(),
            reason: "too deep".into(),
        };
        let d = Diagnostic::new(
            kind,
            Span {
                line: 1,
                column: 7,
                start: 6,
                end: 6 + word.len(),
            },
            format!("ENV b={word}"),
        );
        let text = d.to_string();
        assert!(text.len() < 4 * MAX_EXCERPT + 200, "{} bytes", text.len());
        assert!(text.contains("more characters") && text.contains("too deep"));
        let line = format!("{}X{}", "a".repeat(5000), "b".repeat(5000));
        let (shown, col) = line_window(&line, 5001);
        assert_eq!(shown.chars().nth(col - 1), Some('X'));
        assert_eq!(excerpt("short"), "short");
    }
}
