//! Text renderings of the AST that match BuildKit's tools byte for byte.
//!
//! [`ast`] is BuildKit's sexp dump (`(run "echo hi")`, the `testfiles/*/result` format) and
//! [`json`] the per-instruction objects of the real-world goldens (`conformance/FORMAT.md` §8).

use super::ast::{Dockerfile, Node};
use super::split::go_upper;
use serde_json::{json, Value};
use unicode_general_category::{get_general_category, GeneralCategory as Gc};

/// BuildKit's `Node.Dump()` of the whole file: one line per instruction, ending in `\n`.
pub fn ast(file: &Dockerfile) -> String {
    let mut out = String::new();
    for node in &file.children {
        out.push('(');
        out.push_str(&node_sexp(node));
        out.push_str(")\n");
    }
    // BuildKit trims the joined dump and appends one newline.
    let trimmed = out.trim();
    let mut out = trimmed.to_string();
    out.push('\n');
    out
}

/// One instruction in sexp form, without the surrounding parentheses.
pub fn node_sexp(node: &Node) -> String {
    let mut s = node.value.clone();
    if !node.flags.is_empty() {
        s.push_str(" [");
        for (i, f) in node.flags.iter().enumerate() {
            if i > 0 {
                s.push(' ');
            }
            s.push_str(&go_quote(&f.value));
        }
        s.push(']');
    }
    if let Some(inner) = &node.inner {
        s.push_str(" (");
        s.push_str(&node_sexp(inner));
        s.push(')');
    }
    for a in &node.args {
        s.push(' ');
        s.push_str(&go_quote(&a.value));
    }
    s.trim().to_string()
}

/// Go's `strconv.Quote`: double-quoted, with Go escapes for what is not printable.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Go's `strconv.IsPrint`: letters, marks, numbers, punctuation, symbols and ASCII space.
fn go_is_print(c: char) -> bool {
    if c.is_ascii() {
        return (' '..='~').contains(&c);
    }
    !matches!(
        get_general_category(c),
        Gc::Control
            | Gc::Format
            | Gc::Surrogate
            | Gc::PrivateUse
            | Gc::Unassigned
            | Gc::SpaceSeparator
            | Gc::LineSeparator
            | Gc::ParagraphSeparator
    )
}

/// The real-world golden form (BuildKit v0.12.5 through its Python binding): one object per
/// instruction. ENV and LABEL values are flat `[k1, v1, k2, v2, ...]` without separators;
/// ONBUILD reports its inner instruction's flags, values and form, with `sub_cmd` set.
pub fn json(file: &Dockerfile) -> Value {
    Value::Array(file.children.iter().map(node_json).collect())
}

fn node_json(node: &Node) -> Value {
    let (target, sub_cmd) = match &node.inner {
        Some(inner) => (inner.as_ref(), Value::String(go_upper(&inner.keyword))),
        None => (node, Value::Null),
    };
    let flat = matches!(target.value.as_str(), "env" | "label");
    let value: Vec<&str> = target
        .args
        .iter()
        .enumerate()
        .filter(|(i, _)| !flat || i % 3 != 2)
        .map(|(_, w)| w.value.as_str())
        .collect();
    let flags: Vec<&str> = target.flags.iter().map(|f| f.value.as_str()).collect();
    let heredocs: Vec<Value> = node
        .heredocs
        .iter()
        .map(
            |h| json!({"name": h.name, "file_descriptor": h.file_descriptor, "content": h.content}),
        )
        .collect();
    json!({
        "cmd": go_upper(&node.keyword),
        "sub_cmd": sub_cmd,
        "flags": flags,
        "value": value,
        "json": target.json,
        "start_line": node.start_line,
        "end_line": node.end_line,
        "original": node.original,
        "heredocs": heredocs,
    })
}

#[cfg(test)]
mod tests {
    use super::go_quote;

    #[test]
    fn quotes_like_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\0\u{1b}\u{7f}"), r#""\x00\x1b\x7f""#);
        assert_eq!(go_quote("♥☃"), "\"♥☃\"");
        assert_eq!(
            go_quote("\u{a0}\u{feff}\u{e000}"),
            r#""\u00a0\ufeff\ue000""#
        );
        assert_eq!(go_quote("\u{f0000}"), r#""\U000f0000""#);
    }
}
