//! `--format` templates with Go's text/template syntax and Docker's output conventions.
//!
//! Templates run on `gtmpl`, which prints lists and maps in Rust's debug form. Docker prints
//! them the Go way (`[a b]`, `map[k:v]`, `{v1 v2}` for structs), so every printing action is
//! rewritten to pipe its value through a formatter first (`{{.X}}` → `{{.X | __gofmt}}`), and
//! `print`/`println` are replaced with Go-formatting versions. Docker's extra functions are added:
//! `json`, `join`, `split`, `lower`, `upper`, `title`, `truncate`. A `table` prefix renders a
//! header row; output goes through a Go-style tabwriter (min width 10, padding 3), as in Docker.

use std::collections::HashMap;

use anyhow::{anyhow, Context as _};
use gtmpl::{Context, Template};
use gtmpl_value::{FuncError, Number, Value};

/// JSON object keys whose values are Go maps (printed `map[k:v]`, missing keys are empty);
/// every other object is a struct (printed `{v1 v2}`).
const MAP_KEYS: &[&str] = &["Labels", "ExposedPorts", "Volumes", "Data", "Annotations"];

/// A parsed `--format` template.
pub struct GoTemplate {
    template: Template,
    /// Whether the format began with `table` (print a header row).
    pub table: bool,
}

impl GoTemplate {
    /// Parses `format`, recognising Docker's `table` prefix.
    pub fn parse(format: &str) -> anyhow::Result<GoTemplate> {
        let (table, body) = match format.strip_prefix("table") {
            Some(rest) => (true, rest.trim_start()),
            None => (false, format),
        };
        let body = unescape(body);
        let mut template = Template::default();
        template.add_func("__gofmt", gofmt_func);
        template.add_func("print", print_func);
        template.add_func("println", println_func);
        template.add_func("json", json_func);
        template.add_func("join", join_func);
        template.add_func("split", split_func);
        template.add_func("lower", lower_func);
        template.add_func("upper", upper_func);
        template.add_func("title", title_func);
        template.add_func("truncate", truncate_func);
        template
            .parse(rewrite_actions(&body))
            .map_err(|e| anyhow!("template parsing error: {e}"))?;
        Ok(GoTemplate { template, table })
    }

    /// Renders the template on a JSON value.
    pub fn render(&self, data: &serde_json::Value) -> anyhow::Result<String> {
        self.template
            .render(&Context::from(to_template_value(data, None)))
            .map_err(|e| anyhow!("template: {e}"))
            .context("executing --format template")
    }
}

/// Docker lets `\t` and `\n` be typed literally in a format string.
fn unescape(s: &str) -> String {
    s.replace("\\t", "\t").replace("\\n", "\n")
}

/// Appends `| __gofmt` to every action that prints its value.
fn rewrite_actions(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 32);
    let mut rest = src;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(len) = action_len(after) else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = &after[..len];
        out.push_str("{{");
        out.push_str(&rewrite_one(inner));
        out.push_str("}}");
        rest = &after[len + 2..];
    }
    out.push_str(rest);
    out
}

/// Length of the action body up to its closing `}}`, skipping quoted strings.
fn action_len(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'`' | b'\'') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    if b[i] == b'\\' && q != b'`' {
                        i += 1;
                    }
                    i += 1;
                }
            }
            b'}' if b.get(i + 1) == Some(&b'}') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

fn rewrite_one(inner: &str) -> String {
    let (lead, body) = match inner.strip_prefix('-') {
        Some(r) if r.starts_with([' ', '\t', '\n']) => ("-", r),
        _ => ("", inner),
    };
    let (body, trail) = match body.strip_suffix('-') {
        Some(r) if r.ends_with([' ', '\t', '\n']) => (r, "-"),
        _ => (body, ""),
    };
    let trimmed = body.trim();
    let first = trimmed.split_whitespace().next().unwrap_or("");
    let control = matches!(
        first,
        "if" | "else"
            | "end"
            | "range"
            | "with"
            | "define"
            | "template"
            | "block"
            | "break"
            | "continue"
    ) || trimmed.starts_with("/*")
        || trimmed.is_empty();
    let declaration = first.starts_with('$')
        && trimmed[first.len()..].trim_start().starts_with([':', '='])
        || first.contains(":=");
    if control || declaration {
        return inner.to_string();
    }
    format!("{lead}{} | __gofmt {trail}", body.trim_end())
}

/// Converts JSON to a template value; `parent` is the key the value sits under.
pub fn to_template_value(v: &serde_json::Value, parent: Option<&str>) -> Value {
    match v {
        serde_json::Value::Null => Value::Nil,
        serde_json::Value::Bool(b) => Value::Bool(*b),
        serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => Value::Number(Number::from(u)),
            (_, Some(i), _) => Value::Number(Number::from(i)),
            (_, _, Some(f)) => Value::Number(Number::from(f)),
            _ => Value::Nil,
        },
        serde_json::Value::String(s) => Value::String(s.clone()),
        serde_json::Value::Array(a) => {
            Value::Array(a.iter().map(|x| to_template_value(x, None)).collect())
        }
        serde_json::Value::Object(o) => {
            let is_map = parent.is_some_and(|p| MAP_KEYS.contains(&p));
            let m: HashMap<String, Value> = o
                .iter()
                .map(|(k, x)| {
                    // Values of a map are anonymous; objects inside them are structs.
                    let key = if is_map { None } else { Some(k.as_str()) };
                    (k.clone(), to_template_value(x, key))
                })
                .collect();
            if is_map {
                Value::Map(m)
            } else {
                Value::Object(m)
            }
        }
    }
}

/// Formats a value the way Go's `fmt` `%v` does.
pub fn go_format(v: &Value) -> String {
    match v {
        Value::NoValue => String::new(),
        Value::Nil => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Function(_) => "<func>".to_string(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_format).collect::<Vec<_>>().join(" ")
        ),
        Value::Map(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let items: Vec<String> = keys
                .iter()
                .map(|k| format!("{k}:{}", go_format(&m[*k])))
                .collect();
            format!("map[{}]", items.join(" "))
        }
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let items: Vec<String> = keys.iter().map(|k| go_format(&o[*k])).collect();
            format!("{{{}}}", items.join(" "))
        }
    }
}

fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::NoValue | Value::Nil | Value::Function(_) => serde_json::Value::Null,
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                u.into()
            } else if let Some(i) = n.as_i64() {
                i.into()
            } else {
                n.as_f64()
                    .map(serde_json::Value::from)
                    .unwrap_or(serde_json::Value::Null)
            }
        }
        Value::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
        Value::Map(m) | Value::Object(m) => {
            serde_json::Value::Object(m.iter().map(|(k, x)| (k.clone(), to_json(x))).collect())
        }
    }
}

fn one_arg<'a>(name: &str, args: &'a [Value]) -> Result<&'a Value, FuncError> {
    match args {
        [v] => Ok(v),
        _ => Err(FuncError::ExactlyXArgs(name.to_string(), 1)),
    }
}

fn string_arg(name: &str, v: &Value) -> Result<String, FuncError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        other => Err(FuncError::Generic(format!(
            "{name}: expected a string, got {}",
            go_format(other)
        ))),
    }
}

fn gofmt_func(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(go_format(one_arg("__gofmt", args)?)))
}

/// Go's Sprint: spaces between operands when neither is a string.
fn print_func(args: &[Value]) -> Result<Value, FuncError> {
    let mut out = String::new();
    for (i, a) in args.iter().enumerate() {
        let is_str = matches!(a, Value::String(_));
        if i > 0 && !is_str && !matches!(args[i - 1], Value::String(_)) {
            out.push(' ');
        }
        out.push_str(&go_format(a));
    }
    Ok(Value::String(out))
}

/// Go's Sprintln: spaces between all operands, newline at the end.
fn println_func(args: &[Value]) -> Result<Value, FuncError> {
    let mut s = args.iter().map(go_format).collect::<Vec<_>>().join(" ");
    s.push('\n');
    Ok(Value::String(s))
}

fn json_func(args: &[Value]) -> Result<Value, FuncError> {
    let v = to_json(one_arg("json", args)?);
    serde_json::to_string(&v)
        .map(Value::String)
        .map_err(|e| FuncError::Generic(format!("json: {e}")))
}

fn join_func(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [Value::Array(a), sep] => {
            let sep = string_arg("join", sep)?;
            Ok(Value::String(
                a.iter().map(go_format).collect::<Vec<_>>().join(&sep),
            ))
        }
        [Value::Nil | Value::NoValue, _] => Ok(Value::String(String::new())),
        _ => Err(FuncError::Generic(
            "join: expected a list and a separator".into(),
        )),
    }
}

fn split_func(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [s, sep] => {
            let (s, sep) = (string_arg("split", s)?, string_arg("split", sep)?);
            Ok(Value::Array(
                s.split(sep.as_str())
                    .map(|x| Value::String(x.to_string()))
                    .collect(),
            ))
        }
        _ => Err(FuncError::ExactlyXArgs("split".into(), 2)),
    }
}

fn lower_func(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        go_format(one_arg("lower", args)?).to_lowercase(),
    ))
}

fn upper_func(args: &[Value]) -> Result<Value, FuncError> {
    Ok(Value::String(
        go_format(one_arg("upper", args)?).to_uppercase(),
    ))
}

fn title_func(args: &[Value]) -> Result<Value, FuncError> {
    let s = go_format(one_arg("title", args)?);
    let mut out = String::with_capacity(s.len());
    let mut at_start = true;
    for c in s.chars() {
        if at_start && c.is_alphabetic() {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        at_start = !c.is_alphanumeric();
    }
    Ok(Value::String(out))
}

fn truncate_func(args: &[Value]) -> Result<Value, FuncError> {
    match args {
        [s, Value::Number(n)] => {
            let s = go_format(s);
            let n = n.as_u64().unwrap_or(0) as usize;
            Ok(Value::String(s.chars().take(n).collect()))
        }
        _ => Err(FuncError::Generic(
            "truncate: expected a string and a length".into(),
        )),
    }
}

/// Aligns tab-separated cells like Go's `tabwriter.NewWriter(w, 10, 1, 3, ' ', 0)`: every cell
/// but the last of a line is padded to its column's width plus 3, at least 10.
pub fn tabwrite(text: &str) -> String {
    let lines: Vec<Vec<&str>> = text
        .split_inclusive('\n')
        .map(|l| l.split('\t').collect())
        .collect();
    let mut widths: Vec<usize> = Vec::new();
    for cells in &lines {
        for (i, c) in cells.iter().enumerate().take(cells.len().saturating_sub(1)) {
            let w = c.chars().count() + 3;
            if widths.len() <= i {
                widths.push(10);
            }
            widths[i] = widths[i].max(w);
        }
    }
    let mut out = String::with_capacity(text.len() * 2);
    for cells in &lines {
        for (i, c) in cells.iter().enumerate() {
            out.push_str(c);
            if i + 1 < cells.len() {
                out.extend(std::iter::repeat_n(' ', widths[i] - c.chars().count()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn render(format: &str, data: serde_json::Value) -> String {
        GoTemplate::parse(format).unwrap().render(&data).unwrap()
    }

    #[test]
    fn prints_like_go() {
        let data = json!({
            "Size": 1234,
            "Config": {"Cmd": ["sh", "-c", "echo hi"], "Env": ["A=1", "B=2"], "Labels": {"k": "v", "a": "b"},
                       "ExposedPorts": {"80/tcp": {}}, "Entrypoint": null},
            "RootFS": {"Type": "layers", "Layers": ["sha256:a", "sha256:b"]}
        });
        assert_eq!(render("{{.Config.Cmd}}", data.clone()), "[sh -c echo hi]");
        assert_eq!(
            render("{{json .Config.Env}}", data.clone()),
            r#"["A=1","B=2"]"#
        );
        assert_eq!(render("{{.Size}}", data.clone()), "1234");
        assert_eq!(
            render("{{range .RootFS.Layers}}{{println .}}{{end}}", data.clone()),
            "sha256:a\nsha256:b\n"
        );
        assert_eq!(render(r#"{{index .Config.Labels "k"}}"#, data.clone()), "v");
        assert_eq!(
            render(r#"{{index .Config.Labels "missing"}}"#, data.clone()),
            ""
        );
        assert_eq!(render("{{.Config.Labels}}", data.clone()), "map[a:b k:v]");
        assert_eq!(
            render("{{.Config.ExposedPorts}}", data.clone()),
            "map[80/tcp:{}]"
        );
        assert_eq!(
            render("{{json .Config.Labels}}", data.clone()),
            r#"{"a":"b","k":"v"}"#
        );
        assert_eq!(
            render(
                "{{- .Size -}} x {{if .Size}}yes{{else}}no{{end}}",
                data.clone()
            ),
            "1234x yes"
        );
        assert_eq!(render("{{$x := .Size}}{{$x}}", data.clone()), "1234");
        assert_eq!(
            render(r#"{{join .Config.Env ","}}"#, data.clone()),
            "A=1,B=2"
        );
        assert_eq!(render("{{.Config.Entrypoint}}", data.clone()), "<nil>");
        assert_eq!(render("{{upper \"a}}b\"}}", data), "A}}B");
        assert!(GoTemplate::parse("{{.Foo").is_err());
    }

    #[test]
    fn tabwriter_matches_go_padding() {
        assert_eq!(
            tabwrite("A\tBB\tC\nxxxxxxxxxxxx\ty\tz\n"),
            "A              BB        C\nxxxxxxxxxxxx   y         z\n"
        );
    }
}
