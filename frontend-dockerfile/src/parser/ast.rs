//! The AST the parser produces: BuildKit's node shape, plus byte spans for diagnostics.
//!
//! One [`Node`] per instruction; its `next` chain holds the argument words exactly as BuildKit's
//! parser splits them (see `conformance/FORMAT.md` §1), `flags` the raw `--name=value` strings,
//! `heredocs` any heredoc bodies. ONBUILD holds its inner instruction in `next[0].children`-like
//! fashion: `inner` below.

use serde::Serialize;

/// A byte range into the Dockerfile source, with the 1-based line and column of its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Span {
    /// Byte offset of the first byte.
    pub start: usize,
    /// Byte offset one past the last byte.
    pub end: usize,
    /// 1-based line of `start`.
    pub line: usize,
    /// 1-based column (in characters) of `start`.
    pub column: usize,
}

/// A heredoc attached to an instruction (`RUN <<EOF`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Heredoc {
    /// The delimiter word with quotes removed (`EOF`).
    pub name: String,
    /// The raw body, every line with its newline, without `<<-` tab stripping.
    pub content: String,
    /// False when any part of the delimiter was quoted: the body is not expanded.
    pub expand: bool,
    /// True for `<<-`: leading tabs are stripped when the body is used.
    pub chomp: bool,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when none.
    pub file_descriptor: u32,
}

/// One argument word of an instruction, as the parser split it, with its span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Word {
    pub value: String,
    pub span: Span,
}

/// One instruction of the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    /// The keyword in lowercase (`run`, `copy`, ...; unknown keywords are kept as written, lowercased).
    pub value: String,
    /// The keyword as written in the source (for casing checks).
    pub keyword: String,
    /// Raw flag strings (`--from=build`), in source order.
    pub flags: Vec<Word>,
    /// Argument words, split per instruction as BuildKit does.
    pub args: Vec<Word>,
    /// True when the arguments came from a JSON (exec form) array.
    pub json: bool,
    /// Heredocs, in the order their delimiters appear.
    pub heredocs: Vec<Heredoc>,
    /// For ONBUILD: the wrapped instruction.
    pub inner: Option<Box<Node>>,
    /// The instruction text after continuation joining (heredoc bodies included), as BuildKit keeps it.
    pub original: String,
    /// 1-based first line of the instruction.
    pub start_line: usize,
    /// 1-based last line holding the instruction's content (heredoc bodies included).
    pub end_line: usize,
    /// Span of the whole instruction in the source.
    pub span: Span,
    /// Span of the keyword.
    pub keyword_span: Span,
    /// Comment lines directly above the instruction (without `#`), for lint ignores.
    pub prev_comments: Vec<String>,
}

/// A parser directive found in the leading directive block (`# syntax=...`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Directive {
    pub name: String,
    pub value: String,
    pub line: usize,
}

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Dockerfile {
    pub directives: Vec<Directive>,
    /// The escape character in force (`\\` or `` ` ``).
    pub escape: char,
    pub children: Vec<Node>,
    /// Non-fatal findings of the parser (empty continuation lines, ...), for lint.
    pub warnings: Vec<ParseWarning>,
}

/// Something the parser accepted but lint should report (BuildKit's NoEmptyContinuation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseWarning {
    pub rule: String,
    pub message: String,
    pub span: Span,
}
