//! `RUN --mount=type=...,key=value,...`: every documented option, with BuildKit's defaults and
//! checks.

use super::diagnostic::{suggest, Diagnostic, ErrorKind};
use super::{Expander, NodeCtx};
use crate::parser::ast::Span;
use engine::graph::CacheSharing;
use serde::Serialize;

/// The kind of a RUN mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MountType {
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

const MOUNT_TYPES: &[&str] = &["bind", "cache", "tmpfs", "secret", "ssh"];

const MOUNT_KEYS: &[&str] = &[
    "type",
    "from",
    "source",
    "src",
    "target",
    "dst",
    "destination",
    "readonly",
    "ro",
    "readwrite",
    "rw",
    "id",
    "sharing",
    "required",
    "mode",
    "uid",
    "gid",
    "size",
    "env",
];

/// One `--mount` of a RUN, after expansion and validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Mount {
    pub kind: MountType,
    /// `from=`: a stage name or index, or an image; `None` = the build context (bind) or
    /// nothing (cache).
    pub from: Option<String>,
    /// `source=`/`src=`: path within `from`; for secrets, the secret id.
    pub source: Option<String>,
    /// `target=`/`dst=`/`destination=`: where it is mounted (relative = from the workdir).
    pub target: Option<String>,
    /// Defaults: true for bind, secret and ssh; false for cache and tmpfs.
    pub readonly: bool,
    /// `id=`: cache id (default: the target), secret id, ssh id.
    pub id: Option<String>,
    pub sharing: Option<CacheSharing>,
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// tmpfs size in bytes.
    pub size: Option<u64>,
    /// secret/ssh: fail when the build was not given it.
    pub required: bool,
    /// secret: expose as this environment variable.
    pub env: Option<String>,
    /// Where the flag is, for later errors (unknown `from=` stage ...).
    #[serde(skip)]
    pub span: Span,
}

/// Splits a CSV record as Go's `encoding/csv` does for one line: `,` separates, `"..."` quotes,
/// `""` inside quotes is a quote.
fn split_csv(s: &str) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    let mut at_field_start = true;
    while let Some(c) = chars.next() {
        match c {
            '"' if at_field_start => {
                loop {
                    match chars.next() {
                        Some('"') if chars.peek() == Some(&'"') => {
                            chars.next();
                            cur.push('"');
                        }
                        Some('"') => break,
                        Some(ch) => cur.push(ch),
                        None => return Err("unterminated quote".into()),
                    }
                }
                at_field_start = false;
                match chars.peek() {
                    None | Some(',') => {}
                    Some(_) => return Err("extraneous text after a closing quote".into()),
                }
            }
            ',' => {
                fields.push(std::mem::take(&mut cur));
                at_field_start = true;
            }
            c => {
                cur.push(c);
                at_field_start = false;
            }
        }
    }
    fields.push(cur);
    Ok(fields)
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Parses a size such as `64m`, `1g`, `512KiB`, `1024` (bytes), as docker's `units.RAMInBytes`.
fn parse_size(v: &str) -> Option<u64> {
    let lower = v.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let number: f64 = lower[..digits_end].parse().ok()?;
    let unit = lower[digits_end..].trim();
    let unit = unit
        .strip_suffix("ib")
        .or_else(|| unit.strip_suffix('b'))
        .unwrap_or(unit);
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        "p" => 1 << 50,
        _ => return None,
    };
    Some((number * mult as f64) as u64)
}

/// Parses one `--mount` value, expanding each value with `ex` as BuildKit does.
pub(crate) fn parse_mount(
    ctx: &NodeCtx,
    raw: &str,
    span: Span,
    ex: &dyn Expander,
) -> Result<Mount, Diagnostic> {
    let bad = |reason: String| {
        ctx.error_at(
            ErrorKind::BadFlagValue {
                flag: "mount".into(),
                value: raw.to_string(),
                reason,
            },
            span,
        )
    };
    let fields = split_csv(raw).map_err(&bad)?;
    let mut m = Mount {
        kind: MountType::Bind,
        from: None,
        source: None,
        target: None,
        readonly: true,
        id: None,
        sharing: None,
        mode: None,
        uid: None,
        gid: None,
        size: None,
        required: false,
        env: None,
        span,
    };
    // `type` decides which keys are valid, so read it first wherever it appears.
    for field in &fields {
        if let Some((k, v)) = field.split_once('=') {
            if k.eq_ignore_ascii_case("type") {
                let v = ex.word(v).map_err(&bad)?.to_ascii_lowercase();
                m.kind = match v.as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        let mut d = bad(format!("unsupported mount type `{v}`"));
                        if let Some(s) = suggest(&v, MOUNT_TYPES.iter().copied()) {
                            d = d.with_help(format!("did you mean `type={s}`?"));
                        }
                        return Err(d);
                    }
                };
            }
        }
    }
    let mut ro_auto = true;
    for field in fields.iter().filter(|f| !f.is_empty()) {
        let (key, value) = match field.split_once('=') {
            Some((k, v)) => (k.to_ascii_lowercase(), Some(v)),
            None => (field.to_ascii_lowercase(), None),
        };
        let Some(value) = value else {
            match key.as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true
                }
                "required" => {
                    return Err(bad(format!(
                        "`required` is only for secret and ssh mounts, not {:?}",
                        m.kind
                    )))
                }
                _ => return Err(bad(format!("`{field}` must be a key=value pair"))),
            }
            continue;
        };
        let value = ex.word(value).map_err(&bad)?;
        let bool_value = |v: &str| {
            parse_bool(v).ok_or_else(|| bad(format!("`{key}` takes true or false, not `{v}`")))
        };
        let number = |v: &str, radix: u32| {
            u32::from_str_radix(v, radix)
                .map_err(|_| bad(format!("`{key}` takes a number, not `{v}`")))
        };
        match key.as_str() {
            "type" => {}
            "from" => m.from = Some(value),
            "source" | "src" => m.source = Some(value),
            "target" | "dst" | "destination" => m.target = Some(value),
            "readonly" | "ro" => {
                m.readonly = bool_value(&value)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !bool_value(&value)?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(bad("`required` is only for secret and ssh mounts".into()));
                }
                m.required = bool_value(&value)?;
            }
            "id" => m.id = Some(value),
            "sharing" => {
                if m.kind != MountType::Cache {
                    return Err(bad("`sharing` is only for cache mounts".into()));
                }
                m.sharing = Some(match value.to_ascii_lowercase().as_str() {
                    "shared" => CacheSharing::Shared,
                    "private" => CacheSharing::Private,
                    "locked" => CacheSharing::Locked,
                    _ => {
                        return Err(bad(format!(
                            "unsupported sharing value `{value}` (shared, private or locked)"
                        )))
                    }
                });
            }
            "mode" => m.mode = Some(number(&value, 8)?),
            "uid" => m.uid = Some(number(&value, 10)?),
            "gid" => m.gid = Some(number(&value, 10)?),
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(bad("`size` is only for tmpfs mounts".into()));
                }
                m.size = Some(
                    parse_size(&value)
                        .ok_or_else(|| bad(format!("`{value}` is not a size (64m, 1g)")))?,
                );
            }
            "env" => {
                if m.kind != MountType::Secret {
                    return Err(bad("`env` is only for secret mounts".into()));
                }
                m.env = Some(value);
            }
            _ => {
                let mut d = bad(format!("unexpected key `{key}`"));
                if let Some(s) = suggest(&key, MOUNT_KEYS.iter().copied()) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                return Err(d);
            }
        }
    }
    let file_info_allowed = matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    );
    if !file_info_allowed && (m.mode.is_some() || m.uid.is_some() || m.gid.is_some()) {
        return Err(bad(
            "`mode`, `uid` and `gid` are only for cache, secret and ssh mounts".into(),
        ));
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if m.from.is_some() {
            return Err(bad("a secret mount can not have `from`".into()));
        }
        if m.source.is_none() && m.target.is_none() && m.id.is_none() && m.env.is_none() {
            return Err(bad(
                "a secret mount needs one of `id`, `source`, `target` or `env`".into(),
            ));
        }
        if m.source.is_some() && m.id.is_some() {
            return Err(bad(
                "a secret mount can not have both `source` and `id`".into()
            ));
        }
    }
    if matches!(m.kind, MountType::Tmpfs | MountType::Ssh) && m.from.is_some() {
        return Err(bad(
            format!("a {:?} mount can not have `from`", m.kind).to_lowercase()
        ));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields() {
        assert_eq!(split_csv("a=1,b=2").unwrap(), vec!["a=1", "b=2"]);
        assert_eq!(
            split_csv("\"target=/a,b\",ro").unwrap(),
            vec!["target=/a,b", "ro"]
        );
        assert!(split_csv("\"open").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64m"), Some(64 << 20));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("lots"), None);
    }
}
