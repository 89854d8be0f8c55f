//! Dockerfile text → AST, with BuildKit's grammar exactly (see `ast` for the node shape).
//!
//! The reading loop follows BuildKit's `parser.Parse`: physical lines are read one by one; the
//! leading run of `# name=value` lines are parser directives; comment and blank lines outside an
//! instruction are skipped; an instruction continues while its line ends in the escape character
//! (not itself escaped), skipping comment lines and recording empty ones (NoEmptyContinuation);
//! the joined text is split per instruction ([`split`]); RUN/COPY/ADD lines (also under ONBUILD)
//! that name heredocs then consume body lines up to each terminator.
//!
//! Invariants: never panics on any input; every node, word and flag carries a byte span into
//! the source with its 1-based line and column.

pub mod ast;
mod directives;
pub mod dump;
mod error;
pub mod heredoc;
mod json_array;
mod source;
pub(crate) mod split;

pub use ast::{Directive, Dockerfile, Heredoc, Node, ParseWarning, Span, Word};
pub use error::{ParseError, ParseErrorKind};

use directives::DirectiveParser;
use source::{Logical, SourceIndex};
use split::{Parsed, Piece};

/// Longest physical line (newline included) BuildKit's line reader accepts.
const MAX_LINE: usize = 64 * 1024;

/// The rule name BuildKit gives an empty line inside a continuation.
pub const NO_EMPTY_CONTINUATION: &str = "NoEmptyContinuation";

/// One physical line: byte offset of its start and its text including the newline.
#[derive(Clone, Copy)]
struct PhysLine<'a> {
    start: usize,
    text: &'a str,
}

/// Go's `trimNewline`: drops every trailing `\r` and `\n`.
fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

/// BuildKit's `isComment`: the first non-white-space character is `#`.
fn is_comment(s: &str) -> bool {
    s.trim_start().starts_with('#')
}

/// BuildKit's continuation test: the line ends in the escape character (then only spaces or
/// tabs), and that escape is not preceded by another escape. Returns the length to keep (the
/// escape and what follows it removed) and whether the instruction ends on this line.
fn trim_continuation(line: &str, escape: char) -> (usize, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    let Some(before) = body.strip_suffix(escape) else {
        return (line.len(), true);
    };
    match before.chars().next_back() {
        None => (0, false),
        Some(c) if c == escape => (line.len(), true),
        Some(_) => (before.len(), false),
    }
}

/// Parses a Dockerfile (BuildKit's grammar; see `conformance/FORMAT.md`).
///
/// Errors for what BuildKit rejects at parse time: no instruction at all, `ENV`/`LABEL` without
/// a value, a `key=value` list with a bare word, a duplicate or invalid directive, an
/// unterminated heredoc, or a line longer than 64 KiB.
pub fn parse(src: &str) -> Result<Dockerfile, ParseError> {
    let index = SourceIndex::new(src);
    let mut lines = Vec::new();
    let mut off = 0;
    for text in src.split_inclusive('\n') {
        let limit = if text.ends_with('\n') {
            MAX_LINE
        } else {
            MAX_LINE - 1
        };
        if text.len() > limit {
            let (line, column) = index.line_col(off);
            return Err(ParseError {
                line,
                column,
                end_line: line,
                kind: ParseErrorKind::LineTooLong(MAX_LINE - 1),
            });
        }
        lines.push(PhysLine { start: off, text });
        off += text.len();
    }
    Reader {
        index,
        lines,
        next: 0,
        escape: '\\',
        directive_parser: DirectiveParser::default(),
        directives: Vec::new(),
        children: Vec::new(),
        warnings: Vec::new(),
    }
    .run()
}

struct Reader<'a> {
    index: SourceIndex<'a>,
    lines: Vec<PhysLine<'a>>,
    /// Index of the next physical line to read (also: lines read so far).
    next: usize,
    escape: char,
    directive_parser: DirectiveParser,
    directives: Vec<Directive>,
    children: Vec<Node>,
    warnings: Vec<ParseWarning>,
}

impl<'a> Reader<'a> {
    fn error_at(&self, offset: usize, end_line: usize, kind: ParseErrorKind) -> ParseError {
        let (line, column) = self.index.line_col(offset);
        ParseError {
            line,
            column,
            end_line: end_line.max(line),
            kind,
        }
    }

    /// BuildKit's `processLine`: newline trimmed, optionally leading white space, directive
    /// check, and a comment becomes empty. Returns the content and its source offset.
    fn process_line(
        &mut self,
        line: &PhysLine<'a>,
        skip_bom: bool,
        strip_left: bool,
    ) -> Result<(&'a str, usize, bool), ParseError> {
        let mut text = trim_newline(line.text);
        let mut start = line.start;
        if skip_bom {
            if let Some(t) = text.strip_prefix('\u{feff}') {
                text = t;
                start += 3;
            }
        }
        if strip_left {
            let t = text.trim_start();
            start += text.len() - t.len();
            text = t;
        }
        let mut is_directive = false;
        match self.directive_parser.parse_line(text) {
            Err(kind) => return Err(self.error_at(start, 0, kind)),
            Ok(Some(found)) => {
                if found.name == "escape" {
                    match found.value.as_str() {
                        "\\" => self.escape = '\\',
                        "`" => self.escape = '`',
                        other => {
                            let kind = ParseErrorKind::InvalidEscapeToken(other.to_string());
                            return Err(self.error_at(start, 0, kind));
                        }
                    }
                }
                let (line, _) = self.index.line_col(start);
                self.directives.push(Directive {
                    name: found.name,
                    value: found.value,
                    line,
                });
                is_directive = true;
            }
            Ok(None) => {}
        }
        if is_comment(text) {
            return Ok(("", start + text.len(), is_directive));
        }
        Ok((text, start, is_directive))
    }

    fn run(mut self) -> Result<Dockerfile, ParseError> {
        let mut comments: Vec<String> = Vec::new();
        while self.next < self.lines.len() {
            let first = self.next == 0;
            let line = self.lines[self.next];
            self.next += 1;
            let raw = if first {
                line.text.strip_prefix('\u{feff}').unwrap_or(line.text)
            } else {
                line.text
            };
            if is_comment(raw) {
                // BuildKit drops the first byte of the (untrimmed) line and trims the rest.
                let comment = String::from_utf8_lossy(&raw.as_bytes()[1..])
                    .trim()
                    .to_string();
                if comment.is_empty() {
                    comments.clear();
                } else {
                    comments.push(comment);
                }
            }
            let (content, content_start, is_directive) = self.process_line(&line, first, true)?;
            if is_directive {
                comments.pop();
            }
            let start_line = self.next;
            let (keep, mut at_end) = trim_continuation(content, self.escape);
            if at_end && keep == 0 {
                continue;
            }
            let mut logical = Logical::default();
            logical.push(&content[..keep], content_start);
            let mut last_end = line.start + trim_newline(line.text).len();
            let mut empty_continuation = false;
            while !at_end && self.next < self.lines.len() {
                let cont = self.lines[self.next];
                self.next += 1;
                let (content, content_start, _) = self.process_line(&cont, false, false)?;
                if is_comment(cont.text) {
                    continue;
                }
                if content.trim_start().is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (keep, end) = trim_continuation(content, self.escape);
                at_end = end;
                logical.push(&content[..keep], content_start);
                last_end = cont.start + trim_newline(cont.text).len();
            }
            let end_line = self.next;
            let text = logical.text.clone();
            if empty_continuation {
                let line_start = self.lines[end_line - 1].start;
                let mut span = self.index.span(line_start, line_start);
                span.end = last_end.max(line_start);
                self.warnings.push(ParseWarning {
                    rule: NO_EMPTY_CONTINUATION.to_string(),
                    message: format!("Empty continuation line found in: {text}"),
                    span,
                });
            }
            let parsed =
                split::parse_instruction(&text, 0, text.len(), self.escape).map_err(|e| {
                    let off = logical.source_start(e.pos.min(text.len()));
                    self.error_at(off, end_line, e.kind)
                })?;
            let mut node = self.node(
                &parsed,
                &logical,
                content_start,
                last_end,
                start_line,
                end_line,
            );
            node.prev_comments = std::mem::take(&mut comments);
            if can_contain_heredoc(&node) && text.contains("<<") {
                self.read_heredocs(&mut node, &text, content_start, start_line)?;
            }
            self.children.push(node);
        }
        if self.children.is_empty() {
            // Point at the last line read, as BuildKit does.
            let off = self.lines.last().map(|l| l.start).unwrap_or(0);
            return Err(self.error_at(off, 0, ParseErrorKind::NoInstructions));
        }
        Ok(Dockerfile {
            directives: self.directives,
            escape: self.escape,
            children: self.children,
            warnings: self.warnings,
        })
    }

    /// Reads the bodies of the heredocs `text` opens, from the lines after the instruction.
    fn read_heredocs(
        &mut self,
        node: &mut Node,
        text: &str,
        start: usize,
        start_line: usize,
    ) -> Result<(), ParseError> {
        let docs = heredoc::heredocs_from_line(text)
            .map_err(|e| self.error_at(start, self.next, ParseErrorKind::InvalidHeredoc(e.0)))?;
        if docs.is_empty() {
            return Ok(());
        }
        node.original.push('\n');
        for mut doc in docs {
            let mut terminated = false;
            while self.next < self.lines.len() {
                let line = self.lines[self.next];
                self.next += 1;
                node.original.push_str(line.text);
                let mut candidate = trim_newline(line.text);
                if doc.chomp {
                    candidate = candidate.trim_start_matches('\t');
                }
                if candidate == doc.name {
                    terminated = true;
                    node.span.end = line.start + trim_newline(line.text).len();
                    break;
                }
                doc.content.push_str(line.text);
            }
            if !terminated {
                let kind = ParseErrorKind::UnterminatedHeredoc(doc.name);
                let mut err = self.error_at(start, self.next, kind);
                err.line = start_line;
                return Err(err);
            }
            node.heredocs.push(doc);
        }
        node.end_line = self.next;
        Ok(())
    }

    fn word(&self, piece: &Piece, logical: &Logical) -> Word {
        let start = logical.source_start(piece.start);
        let end = if piece.end > piece.start {
            logical.source_end(piece.end)
        } else {
            start
        };
        Word {
            value: piece.value.clone(),
            span: self.index.span(start, end),
        }
    }

    fn node(
        &self,
        parsed: &Parsed,
        logical: &Logical,
        start: usize,
        end: usize,
        start_line: usize,
        end_line: usize,
    ) -> Node {
        let keyword = self.word(&parsed.keyword, logical);
        let node_start = if parsed.keyword.value.is_empty() {
            start
        } else {
            keyword.span.start
        };
        let inner = parsed.inner.as_ref().map(|inner| {
            let original = logical.text[inner.keyword.start..].to_string();
            let inner_start = logical.source_start(inner.keyword.start);
            let mut n = self.node(inner, logical, inner_start, end, start_line, end_line);
            n.original = original;
            Box::new(n)
        });
        Node {
            value: split::go_lower(&parsed.keyword.value),
            keyword: parsed.keyword.value.clone(),
            flags: parsed.flags.iter().map(|p| self.word(p, logical)).collect(),
            args: parsed.args.iter().map(|p| self.word(p, logical)).collect(),
            json: parsed.json,
            heredocs: Vec::new(),
            inner,
            original: logical.text.clone(),
            start_line,
            end_line,
            span: self.index.span(node_start, end.max(node_start)),
            keyword_span: keyword.span,
            prev_comments: Vec::new(),
        }
    }
}

/// Only RUN, COPY and ADD in shell form take heredocs, also when wrapped in ONBUILD.
fn can_contain_heredoc(node: &Node) -> bool {
    let target = match (&node.inner, node.value.as_str()) {
        (Some(inner), "onbuild") => inner.as_ref(),
        _ => node,
    };
    matches!(target.value.as_str(), "run" | "copy" | "add") && !target.json
}

#[cfg(test)]
mod tests;
