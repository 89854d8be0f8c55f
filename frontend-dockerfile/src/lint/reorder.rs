//! Moving instructions down a stage without changing what the stage builds: the moved
//! instruction takes along the ENV and LABEL lines that expand what it declares, stops above the
//! first other instruction that uses any of it, and the result is a patch over the source lines
//! as written (continuations, comments and blank lines kept).

use super::model::{self, Stage};
use super::vars;
use crate::parser::ast::Node;

/// Instructions of one stage to move, and where to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Move {
    /// Indexes into the stage body, in order; the first is the instruction that asked for the move.
    pub moved: Vec<usize>,
    /// The moved lines go just above `body[insert_at]` (at the end when it is the body's length).
    pub insert_at: usize,
    /// The first instruction left in place that uses a moved name, if the move stopped at one.
    pub first_use: Option<usize>,
    /// Show the patch as the other instructions moving up (a RUN lifted above COPYs) rather
    /// than the moved ones going down.
    pub show_up: bool,
}

/// The variable names a node references anywhere in its text (heredoc bodies included).
fn references(node: &Node, escape: char) -> Vec<String> {
    let mut text = node.original.clone();
    for h in &node.heredocs {
        text.push('\n');
        text.push_str(&h.content);
    }
    vars::references(&text, escape)
        .into_iter()
        .map(|(name, _)| name)
        .collect()
}

/// The names a node defines: ARG names and ENV keys.
fn defines(node: &Node) -> Vec<String> {
    match node.value.as_str() {
        "arg" => model::arg_decls(node)
            .into_iter()
            .map(|(n, _, _)| n.to_string())
            .collect(),
        "env" => model::key_values(node)
            .into_iter()
            .map(|kv| kv.key.value.clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// Plans moving `body[from]` (an ARG or ENV) down past the steps that do not use it: ENV and
/// LABEL lines expanding a moved name come along (an ENV's key becomes a moved name in turn); the
/// move stops above the first other instruction that uses a moved name, or above an ENV that
/// would otherwise change places with a moved ENV (the image's Env keeps its order). Without
/// such an instruction the lines go after the last RUN.
pub(crate) fn plan_down(stage: &Stage<'_>, from: usize, escape: char) -> Move {
    let body = &stage.body;
    let mut names = defines(body[from]);
    let mut moved = vec![from];
    let mut moved_env = body[from].value == "env";
    let mut stop = None;
    for (j, node) in body.iter().enumerate().skip(from + 1) {
        let uses = references(node, escape).iter().any(|r| names.contains(r));
        let is_meta = matches!(node.value.as_str(), "env" | "label");
        if uses && is_meta {
            moved.push(j);
            if node.value == "env" {
                moved_env = true;
                names.extend(defines(node));
            }
            continue;
        }
        if uses || (moved_env && node.value == "env") {
            stop = Some(j);
            break;
        }
        // Redeclaring a moved name changes what later lines see: stop there too.
        if defines(node).iter().any(|d| names.contains(d)) {
            stop = Some(j);
            break;
        }
    }
    let insert_at = match stop {
        Some(j) => j,
        None => body
            .iter()
            .enumerate()
            .rposition(|(k, n)| n.value == "run" && !moved.contains(&k))
            .map(|k| k + 1)
            .unwrap_or(0)
            .max(from + 1),
    };
    moved.retain(|&k| k < insert_at);
    Move {
        moved,
        insert_at,
        first_use: stop,
        show_up: false,
    }
}

impl Move {
    /// The RUN steps the moved lines no longer sit above.
    pub fn passed_runs<'a>(&self, stage: &Stage<'a>) -> Vec<&'a Node> {
        (self.moved[0]..self.insert_at)
            .filter(|k| !self.moved.contains(k))
            .map(|k| stage.body[k])
            .filter(|n| n.value == "run")
            .collect()
    }

    /// The moved lines other than the first (what comes along).
    pub fn followers<'a>(&self, stage: &Stage<'a>) -> Vec<&'a Node> {
        self.moved[1..].iter().map(|&k| stage.body[k]).collect()
    }

    /// The move as unified-diff hunks over `source` (no file header; `patch` applies it with
    /// one added). Each instruction keeps the comment and blank lines right above it.
    pub fn render(&self, stage: &Stage<'_>, source: &str) -> Option<String> {
        let lines: Vec<&str> = source.split_inclusive('\n').collect();
        let body = &stage.body;
        // The source lines of body[k]: from the line after the previous instruction to its last.
        let chunk = |k: usize| -> (usize, usize) {
            let prev_end = if k == 0 {
                stage.from.end_line
            } else {
                body[k - 1].end_line
            };
            (prev_end + 1, body[k].end_line)
        };
        let first = self.moved[0];
        let last = self.insert_at.checked_sub(1)?;
        if last <= first || lines.len() < body[last].end_line {
            return None;
        }
        let (lo, _) = chunk(first);
        let hi = body[last].end_line;
        let take = |k: usize| -> Vec<&str> {
            let (a, b) = chunk(k);
            lines[a - 1..b].to_vec()
        };
        let stays: Vec<usize> = (first..=last).filter(|k| !self.moved.contains(k)).collect();
        let mut hunk: Vec<String> = Vec::new();
        let line = |mark: char, l: &str| format!("{mark}{}", l.trim_end_matches('\n'));
        // One line of context on each side.
        let before = lo.checked_sub(2).map(|i| lines[i]);
        if let Some(l) = before {
            hunk.push(line(' ', l));
        }
        if self.show_up {
            // What stays goes up: added at the top, removed where it was.
            for &k in &stays {
                hunk.extend(take(k).iter().map(|l| line('+', l)));
            }
            for k in first..=last {
                let mark = if self.moved.contains(&k) { ' ' } else { '-' };
                hunk.extend(take(k).iter().map(|l| line(mark, l)));
            }
        } else {
            // What moves goes down: removed where it was, added at the bottom.
            for k in first..=last {
                let mark = if self.moved.contains(&k) { '-' } else { ' ' };
                hunk.extend(take(k).iter().map(|l| line(mark, l)));
            }
            for &k in &self.moved {
                hunk.extend(take(k).iter().map(|l| line('+', l)));
            }
        }
        if let Some(l) = lines.get(hi) {
            hunk.push(line(' ', l));
        }
        let start = lo - usize::from(before.is_some());
        let len = hi - start + 1 + usize::from(lines.get(hi).is_some());
        let mut out = format!("@@ -{start},{len} +{start},{len} @@\n");
        for l in hunk {
            out.push_str(&l);
            out.push('\n');
        }
        (!out.is_empty()).then_some(out)
    }
}
