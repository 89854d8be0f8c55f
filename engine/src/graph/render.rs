//! Text renderings of a [`Definition`]: Graphviz DOT for people, JSON for tools.

use serde::Serialize;
use std::fmt::Write as _;

use super::{Definition, FileAction, GraphError, Op, SourceOp, StageInfo, Vertex, VertexId};

/// Escapes text for a double-quoted DOT string.
fn dot_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Shortens long labels so the drawing stays readable.
fn truncate(s: &str, max: usize) -> String {
    let first_line = s.lines().next().unwrap_or("");
    if first_line.chars().count() <= max && first_line.len() == s.len() {
        return s.to_string();
    }
    let mut out: String = first_line.chars().take(max).collect();
    out.push('…');
    out
}

/// A short label for a vertex: its progress name, or a description of its op.
fn label(v: &Vertex) -> String {
    let text = if !v.name.is_empty() {
        v.name.clone()
    } else if let Some(h) = &v.history {
        h.created_by.clone()
    } else {
        match &v.op {
            Op::Source(SourceOp::Image { reference, .. }) => format!("image {reference}"),
            Op::Source(SourceOp::Scratch) => "scratch".to_string(),
            Op::Source(SourceOp::Context { name, includes, .. }) => {
                if includes.is_empty() {
                    format!("context {name}")
                } else {
                    format!("context {name}: {}", includes.join(" "))
                }
            }
            Op::Source(SourceOp::Http { url, .. }) => format!("http {url}"),
            Op::Source(SourceOp::Git { remote, .. }) => format!("git {remote}"),
            Op::Exec(e) => e.args.join(" "),
            Op::File(f) => match f.actions.first() {
                Some(FileAction::Mkfile { path, .. }) => format!("mkfile {path}"),
                Some(FileAction::Mkdir { path, .. }) => format!("mkdir {path}"),
                Some(FileAction::Copy(c)) => format!("copy {} {}", c.src, c.dest),
                Some(FileAction::Rm { path, .. }) => format!("rm {path}"),
                None => "file".to_string(),
            },
            Op::Merge(_) => "merge".to_string(),
            Op::Config(c) => format!("{c:?}"),
        }
    };
    format!(
        "{}\\n{}",
        dot_escape(&truncate(&text, 60)),
        &v.digest.hex()[..12]
    )
}

fn shape(v: &Vertex) -> &'static str {
    match v.op {
        Op::Source(_) => "box3d",
        Op::Exec(_) => "box",
        Op::File(_) => "note",
        Op::Merge(_) => "invtriangle",
        Op::Config(_) => "ellipse",
    }
}

pub(super) fn dot(def: &Definition) -> String {
    let mut out = String::from(
        "digraph build {\n  rankdir=TB;\n  node [fontname=\"monospace\", fontsize=10];\n",
    );
    let node_line = |out: &mut String, v: &Vertex, indent: &str| {
        let bold = if Some(v.id) == def.target {
            ", penwidth=2, color=\"blue\""
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "{indent}v{} [label=\"{}\", shape={}{bold}];",
            v.id.0,
            label(v),
            shape(v)
        );
    };
    for (i, stage) in def.stages.iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_{i} {{");
        let _ = writeln!(out, "    label=\"{}\";", dot_escape(&stage_label(stage)));
        let _ = writeln!(out, "    style=rounded;");
        for v in def.vertices().filter(|v| v.stage == Some(i)) {
            node_line(&mut out, v, "    ");
        }
        out.push_str("  }\n");
    }
    for v in def
        .vertices()
        .filter(|v| !matches!(v.stage, Some(s) if s < def.stages.len()))
    {
        node_line(&mut out, v, "  ");
    }
    for v in def.vertices() {
        for (pos, input) in v.inputs.iter().enumerate() {
            let style = if pos == 0 { "" } else { " [style=dashed]" };
            let _ = writeln!(out, "  v{} -> v{}{style};", input.0, v.id.0);
        }
    }
    out.push_str("}\n");
    out
}

fn stage_label(stage: &StageInfo) -> String {
    format!("stage {}: {}", stage.index, stage.name)
}

#[derive(Serialize)]
struct JsonGraph<'a> {
    target: Option<VertexId>,
    target_stage: Option<&'a StageInfo>,
    stages: &'a [StageInfo],
    vertices: Vec<&'a Vertex>,
}

pub(super) fn json(def: &Definition) -> Result<String, GraphError> {
    let doc = JsonGraph {
        target: def.target,
        target_stage: def.target_stage(),
        stages: &def.stages,
        vertices: def.vertices().collect(),
    };
    Ok(serde_json::to_string_pretty(&doc)?)
}
