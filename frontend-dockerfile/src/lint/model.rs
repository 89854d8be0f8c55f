//! Stages and instruction helpers shared by the rule modules: which instructions belong to which
//! stage, flag lookup, ENV/LABEL pairs and the shell script of a `RUN`.

use super::script::{self, Script};
use crate::parser::ast::{Dockerfile, Node, Word};

/// One `FROM` and the instructions up to the next `FROM`.
#[derive(Debug)]
pub struct Stage<'a> {
    pub from: &'a Node,
    /// Position among stages, from 0.
    pub index: usize,
    /// The image reference word (`golang:1.22`, `builder`, `$BASE`).
    pub base: Option<&'a Word>,
    /// The `AS name` word, if any.
    pub name: Option<&'a Word>,
    /// Instructions after `FROM`, in order.
    pub body: Vec<&'a Node>,
}

/// A Dockerfile seen as global `ARG`s plus stages.
#[derive(Debug)]
pub struct Model<'a> {
    pub dockerfile: &'a Dockerfile,
    /// Instructions before the first `FROM` (ARGs, normally).
    pub globals: Vec<&'a Node>,
    pub stages: Vec<Stage<'a>>,
}

impl<'a> Model<'a> {
    pub fn new(dockerfile: &'a Dockerfile) -> Self {
        let mut globals = Vec::new();
        let mut stages: Vec<Stage<'a>> = Vec::new();
        for node in &dockerfile.children {
            if node.value == "from" {
                let words: Vec<&Word> = node.args.iter().collect();
                let name = match words.as_slice() {
                    [_, kw, name, ..] if kw.value.eq_ignore_ascii_case("as") => Some(*name),
                    _ => None,
                };
                stages.push(Stage {
                    from: node,
                    index: stages.len(),
                    base: words.first().copied(),
                    name,
                    body: Vec::new(),
                });
            } else if let Some(stage) = stages.last_mut() {
                stage.body.push(node);
            } else {
                globals.push(node);
            }
        }
        Model {
            dockerfile,
            globals,
            stages,
        }
    }

    /// The stage whose name is `name` (case-insensitive) among stages before `before`.
    pub fn stage_named(&self, name: &str, before: usize) -> Option<&Stage<'a>> {
        self.stages[..before.min(self.stages.len())]
            .iter()
            .find(|s| s.name.is_some_and(|n| n.value.eq_ignore_ascii_case(name)))
    }
}

/// The value of flag `--name` (`--from=build` → `Some("build")`; bare `--link` → `Some("")`).
pub fn flag<'n>(node: &'n Node, name: &str) -> Option<&'n str> {
    node.flags.iter().find_map(|f| {
        let rest = f.value.strip_prefix("--")?;
        match rest.split_once('=') {
            Some((n, v)) if n == name => Some(v),
            None if rest == name => Some(""),
            _ => None,
        }
    })
}

/// All values of a repeatable flag (`--mount`).
pub fn flags<'n>(node: &'n Node, name: &str) -> Vec<&'n str> {
    node.flags
        .iter()
        .filter_map(|f| {
            f.value
                .strip_prefix("--")?
                .split_once('=')
                .filter(|(n, _)| *n == name)
                .map(|(_, v)| v)
        })
        .collect()
}

/// One `key=value` of ENV or LABEL.
#[derive(Debug, Clone)]
pub struct KeyValue<'n> {
    pub key: &'n Word,
    pub value: &'n Word,
    /// Written as `KEY value` (the legacy form).
    pub legacy: bool,
}

/// The pairs of an ENV or LABEL node: the parser gives triples `key value sep`.
pub fn key_values(node: &Node) -> Vec<KeyValue<'_>> {
    let step = if node.args.len().is_multiple_of(3) {
        3
    } else {
        2
    };
    node.args
        .chunks(step)
        .filter(|c| c.len() >= 2)
        .map(|c| KeyValue {
            key: &c[0],
            value: &c[1],
            legacy: step == 3 && c[2].value.is_empty(),
        })
        .collect()
}

/// The ARG declarations of a node: `(name, default)`.
pub fn arg_decls(node: &Node) -> Vec<(&str, Option<&str>, &Word)> {
    node.args
        .iter()
        .map(|w| match w.value.split_once('=') {
            Some((n, d)) => (n, Some(d), w),
            None => (w.value.as_str(), None, w),
        })
        .collect()
}

/// The arguments joined by spaces (the text of a shell-form instruction).
pub fn args_text(node: &Node) -> String {
    node.args
        .iter()
        .map(|w| w.value.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// True when a word is only heredoc markers (`<<EOF`, `<<-"EOF"`, `3<<X`).
fn is_heredoc_marker(word: &str) -> bool {
    let w = word.trim_start_matches(|c: char| c.is_ascii_digit());
    w.starts_with("<<") && w.len() > 2
}

/// The shell text a `RUN` executes: the command, or the heredoc bodies when the command is only a
/// heredoc (`RUN <<EOF`). Exec form gives its words joined by spaces.
pub fn run_text(node: &Node) -> String {
    let text = args_text(node);
    if !node.heredocs.is_empty() && text.split_whitespace().all(is_heredoc_marker) {
        return node
            .heredocs
            .iter()
            .map(|h| h.content.as_str())
            .collect::<Vec<_>>()
            .join("\n");
    }
    text
}

/// The parsed script of a `RUN` (or of the wrapped RUN of an ONBUILD).
pub fn run_script(node: &Node) -> Script {
    script::parse(&run_text(node))
}
