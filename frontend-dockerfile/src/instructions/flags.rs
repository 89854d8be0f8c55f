//! `--name=value` flags of an instruction, checked against the flags it accepts.

use super::diagnostic::{suggest, Diagnostic, ErrorKind};
use super::NodeCtx;
use crate::parser::ast::{Span, Word};

/// How a flag takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FlagKind {
    /// `--name=value`, at most once.
    String,
    /// `--name`, `--name=true` or `--name=false`, at most once.
    Bool,
    /// `--name=value`, any number of times.
    Multi,
}

/// One flag an instruction accepts.
pub(crate) type FlagSpec = (&'static str, FlagKind);

/// One flag as given.
#[derive(Debug, Clone)]
pub(crate) struct GivenFlag {
    pub name: &'static str,
    pub value: String,
    pub span: Span,
}

/// The flags of one instruction, validated against its spec.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flags {
    given: Vec<GivenFlag>,
}

impl Flags {
    /// Checks every raw flag of the node against `spec`.
    pub fn parse(ctx: &NodeCtx, raw: &[Word], spec: &[FlagSpec]) -> Result<Flags, Diagnostic> {
        let mut given: Vec<GivenFlag> = Vec::new();
        for word in raw {
            let text = word.value.strip_prefix("--").unwrap_or(&word.value);
            let (name, value) = match text.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (text, None),
            };
            let Some(&(spec_name, kind)) = spec.iter().find(|(n, _)| *n == name) else {
                let mut d = ctx.error_at(
                    ErrorKind::UnknownFlag {
                        instruction: ctx.keyword_upper(),
                        flag: name.to_string(),
                    },
                    word.span,
                );
                if let Some(s) = suggest(name, spec.iter().map(|(n, _)| *n)) {
                    d = d.with_help(format!("did you mean `--{s}`?"));
                } else if spec.is_empty() {
                    d = d.with_help(format!("{} takes no flags", ctx.keyword_upper()));
                } else {
                    let list: Vec<String> = spec.iter().map(|(n, _)| format!("--{n}")).collect();
                    d = d.with_help(format!("accepted flags: {}", list.join(", ")));
                }
                return Err(d);
            };
            if kind != FlagKind::Multi && given.iter().any(|g| g.name == spec_name) {
                return Err(ctx.error_at(
                    ErrorKind::DuplicateFlag {
                        flag: spec_name.to_string(),
                    },
                    word.span,
                ));
            }
            let value = match (kind, value) {
                (FlagKind::Bool, None) => "true".to_string(),
                (FlagKind::Bool, Some(v)) => match v.to_ascii_lowercase().as_str() {
                    "true" | "false" => v.to_ascii_lowercase(),
                    _ => {
                        return Err(ctx
                            .error_at(
                                ErrorKind::BadFlagValue {
                                    flag: spec_name.to_string(),
                                    value: v.to_string(),
                                    reason: "expected `true` or `false`".to_string(),
                                },
                                word.span,
                            )
                            .with_help(format!("write `--{spec_name}` or `--{spec_name}=false`")))
                    }
                },
                (_, Some(v)) => v.to_string(),
                (_, None) => {
                    return Err(ctx
                        .error_at(
                            ErrorKind::MissingFlagValue {
                                flag: spec_name.to_string(),
                            },
                            word.span,
                        )
                        .with_help(format!("write `--{spec_name}=<value>`")))
                }
            };
            given.push(GivenFlag {
                name: spec_name,
                value,
                span: word.span,
            });
        }
        Ok(Flags { given })
    }

    /// The value of a single-valued flag.
    pub fn get(&self, name: &str) -> Option<&GivenFlag> {
        self.given.iter().find(|g| g.name == name)
    }

    /// A bool flag's value (false when absent).
    pub fn bool(&self, name: &str) -> bool {
        self.get(name).is_some_and(|g| g.value == "true")
    }

    /// Every value of a repeatable flag, in order.
    pub fn all(&self, name: &str) -> impl Iterator<Item = &GivenFlag> {
        let name = name.to_string();
        self.given.iter().filter(move |g| g.name == name)
    }
}
