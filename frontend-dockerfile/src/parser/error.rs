//! Why a Dockerfile was rejected, and where.

/// A Dockerfile BuildKit's parser rejects, with the 1-based position of the fault.
///
/// Displays as `line:column: message`, so a caller prefixes the file name to get the usual
/// `Dockerfile:3:1: ENV must have two arguments`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {kind}")]
pub struct ParseError {
    /// 1-based line of the fault (for instruction errors: the instruction's first line).
    pub line: usize,
    /// 1-based column (in characters) of the fault.
    pub column: usize,
    /// 1-based last line of the instruction involved (equal to `line` when not applicable).
    pub end_line: usize,
    /// What went wrong.
    pub kind: ParseErrorKind,
}

/// The kinds of parse failure; messages follow BuildKit's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// The file holds no instruction at all (empty, blank or only comments).
    #[error("file with no instructions")]
    NoInstructions,
    /// A parser directive appears twice in the leading directive block.
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    /// `# escape=` names something other than `\` or `` ` ``.
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscapeToken(String),
    /// `ENV key` / `LABEL key` in the legacy form without a value.
    #[error("{0} must have two arguments")]
    MissingValue(String),
    /// A `key=value` list holds a word without `=`.
    #[error("Syntax error - can't find = in {0:?}. Must be of the form: name=value")]
    MissingEquals(String),
    /// A heredoc delimiter word could not be lexed (an unterminated quote, ...).
    #[error("invalid heredoc delimiter: {0}")]
    InvalidHeredoc(String),
    /// The file ended before the heredoc's terminator line.
    #[error("unterminated heredoc {0:?}")]
    UnterminatedHeredoc(String),
    /// A JSON-form argument list (`CMD ["a", ["b"]]`) holds something other than strings.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
    /// A physical line longer than BuildKit's line reader accepts.
    #[error("dockerfile line greater than max allowed size of {0}")]
    LineTooLong(usize),
}
