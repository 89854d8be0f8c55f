//! Byte offsets → line/column, and the joined instruction text with its map back to the source.
//!
//! BuildKit parses the *joined* text of an instruction (continuations removed), so every position
//! the grammar finds is a position in that text. [`Logical`] remembers which source byte each
//! piece came from, so spans in the AST point into the original file.

use super::ast::Span;

/// Line starts of the source, for turning byte offsets into 1-based lines and columns.
pub(crate) struct SourceIndex<'a> {
    src: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceIndex<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        let mut line_starts = vec![0];
        line_starts.extend(
            src.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        SourceIndex { src, line_starts }
    }

    /// The largest char boundary at or before `off` (clamped to the source length).
    fn floor(&self, off: usize) -> usize {
        let mut off = off.min(self.src.len());
        while !self.src.is_char_boundary(off) {
            off -= 1;
        }
        off
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn line_col(&self, off: usize) -> (usize, usize) {
        let off = self.floor(off);
        let line = self.line_starts.partition_point(|&s| s <= off).max(1);
        let start = self.line_starts[line - 1];
        let column = self.src[start..off].chars().count() + 1;
        (line, column)
    }

    /// A span over `[start, end)` of the source.
    pub(crate) fn span(&self, start: usize, end: usize) -> Span {
        let start = self.floor(start);
        let end = self.floor(end).max(start);
        let (line, column) = self.line_col(start);
        Span {
            start,
            end,
            line,
            column,
        }
    }
}

/// The text of one instruction after continuation joining, with the source offset of each piece.
#[derive(Default)]
pub(crate) struct Logical {
    pub(crate) text: String,
    /// `(offset in text, offset in source)` of each appended piece, in order.
    pieces: Vec<(usize, usize)>,
}

impl Logical {
    /// Appends `piece`, which starts at byte `source_offset` of the source.
    pub(crate) fn push(&mut self, piece: &str, source_offset: usize) {
        if piece.is_empty() {
            return;
        }
        self.pieces.push((self.text.len(), source_offset));
        self.text.push_str(piece);
    }

    /// The source offset of byte `pos` of the joined text (`pos == len` maps past the last byte).
    pub(crate) fn source_start(&self, pos: usize) -> usize {
        if pos >= self.text.len() {
            return self.source_end(pos);
        }
        let i = self
            .pieces
            .partition_point(|&(l, _)| l <= pos)
            .saturating_sub(1);
        self.pieces.get(i).map(|&(l, s)| s + (pos - l)).unwrap_or(0)
    }

    /// The source offset just past byte `pos - 1` of the joined text (an exclusive end).
    pub(crate) fn source_end(&self, pos: usize) -> usize {
        if pos == 0 {
            return self.pieces.first().map(|&(_, s)| s).unwrap_or(0);
        }
        let pos = pos.min(self.text.len());
        if pos == 0 {
            return self.pieces.first().map(|&(_, s)| s).unwrap_or(0);
        }
        let last = pos - 1;
        let i = self
            .pieces
            .partition_point(|&(l, _)| l <= last)
            .saturating_sub(1);
        self.pieces
            .get(i)
            .map(|&(l, s)| s + (last - l) + 1)
            .unwrap_or(0)
    }
}
