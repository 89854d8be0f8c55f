//! BuildKit's build checks, with BuildKit's rule names and meanings (see `LINT-RULES.md`).

use std::collections::{BTreeSet, HashMap};

use super::context::ContextInfo;
use super::model::{self, Model};
use super::{vars, Finding};
use crate::parser::ast::{Node, Span};

/// Build args every build defines (BuildKit's predefined platform and proxy args).
pub(crate) const PREDEFINED_ARGS: &[&str] = &[
    "TARGETPLATFORM",
    "TARGETOS",
    "TARGETARCH",
    "TARGETVARIANT",
    "BUILDPLATFORM",
    "BUILDOS",
    "BUILDARCH",
    "BUILDVARIANT",
    "TARGETSTAGE",
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "BUILDKIT_SYNTAX",
    "SOURCE_DATE_EPOCH",
];

pub(crate) fn check(model: &Model<'_>, context: Option<&ContextInfo>, out: &mut Vec<Finding>) {
    let df = model.dockerfile;
    for w in &df.warnings {
        if w.rule == "NoEmptyContinuation" {
            out.push(Finding::new(
                "NoEmptyContinuation",
                w.span,
                w.message.clone(),
            ));
        }
    }
    instruction_casing(model, out);
    let directive = super::suppress::CheckDirective::from_dockerfile(df);
    if directive
        .experimental
        .iter()
        .any(|e| super::rules::matches(e, "InvalidDefinitionDescription"))
    {
        definition_descriptions(model, out);
    }
    let global_args: HashMap<&str, Option<&str>> = model
        .globals
        .iter()
        .filter(|n| n.value == "arg")
        .flat_map(|n| model::arg_decls(n))
        .map(|(name, default, _)| (name, default))
        .collect();
    // Global ARG values with earlier globals expanded in their defaults
    // (`ARG CLI_VERSION=${VERSION}`), as BuildKit evaluates them; unset is empty.
    let mut global_values: Vec<(String, String)> = Vec::new();
    for (name, default) in model
        .globals
        .iter()
        .filter(|n| n.value == "arg")
        .flat_map(|n| model::arg_decls(n))
        .map(|(name, default, _)| (name, default))
    {
        let raw = default.unwrap_or("").trim_matches('"');
        let value = vars::expand(raw, &|n: &str| {
            global_values
                .iter()
                .rev()
                .find(|(k, _)| k == n)
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| raw.to_string());
        global_values.push((name.to_string(), value));
    }
    let mut seen_names: HashMap<String, usize> = HashMap::new();
    for stage in &model.stages {
        let from = stage.from;
        if let Some(name) = stage.name {
            if name.value != name.value.to_lowercase() {
                out.push(
                    Finding::new(
                        "StageNameCasing",
                        name.span,
                        format!("Stage name '{}' should be lowercase", name.value),
                    )
                    .help(format!("use `{}`", name.value.to_lowercase())),
                );
            }
            let lower = name.value.to_lowercase();
            if let Some(first) = seen_names.get(&lower) {
                out.push(
                    Finding::new(
                        "DuplicateStageName",
                        name.span,
                        format!(
                            "Duplicate stage name '{}', stage names should be unique",
                            name.value
                        ),
                    )
                    .related([*first]),
                );
            } else {
                seen_names.insert(lower.clone(), from.start_line);
            }
            if lower == "scratch" || lower == "context" {
                out.push(Finding::new(
                    "ReservedStageName",
                    name.span,
                    format!(
                        "'{}' is reserved and should not be used as a stage name",
                        name.value
                    ),
                ));
            }
            if let Some(as_word) = from.args.get(1) {
                let kw = &from.keyword;
                let kw_upper = kw == &kw.to_uppercase();
                let kw_lower = kw == &kw.to_lowercase();
                let as_upper = as_word.value == "AS";
                let as_lower = as_word.value == "as";
                if (kw_upper && !as_upper) || (kw_lower && !as_lower) {
                    out.push(Finding::new(
                        "FromAsCasing",
                        as_word.span,
                        format!(
                            "'{}' and '{}' keywords' casing do not match",
                            as_word.value, kw
                        ),
                    ));
                }
            }
        }
        // FROM variables.
        let mut from_words: Vec<&crate::parser::ast::Word> = stage.base.into_iter().collect();
        from_words.extend(from.flags.iter());
        for w in &from_words {
            for (name, has_default) in vars::references(&w.value, df.escape) {
                if has_default
                    || global_args.contains_key(name.as_str())
                    || PREDEFINED_ARGS.contains(&name.as_str())
                {
                    continue;
                }
                let mut f = Finding::new(
                    "UndefinedArgInFrom",
                    w.span,
                    format!("FROM argument '{name}' is not declared"),
                );
                if let Some(s) = suggest(
                    &name,
                    global_args
                        .keys()
                        .copied()
                        .chain(PREDEFINED_ARGS.iter().copied()),
                ) {
                    f = f.help(format!("did you mean `{s}`?"));
                }
                out.push(f);
            }
        }
        if let Some(base) = stage.base {
            if base.value.contains('$') {
                let lookup = |n: &str| -> Option<String> {
                    global_values
                        .iter()
                        .rev()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                };
                if let Some(expanded) = vars::expand(&base.value, &lookup) {
                    if !valid_reference(&expanded) {
                        out.push(Finding::new(
                            "InvalidDefaultArgInFrom",
                            base.span,
                            format!("Default value for global ARG results in an empty or invalid base image name: '{expanded}'"),
                        ));
                    }
                }
            }
        }
        if let Some(platform) = model::flag(from, "platform") {
            let span = from
                .flags
                .iter()
                .find(|f| f.value.starts_with("--platform"))
                .map(|f| f.span)
                .unwrap_or(from.span);
            if platform == "$TARGETPLATFORM" || platform == "${TARGETPLATFORM}" {
                out.push(Finding::new("RedundantTargetPlatform", span, format!("Setting platform to predefined {platform} in FROM is redundant as this is the default behavior")));
            } else if !platform.contains('$') {
                let stage_name = stage
                    .name
                    .map(|n| n.value.to_lowercase())
                    .unwrap_or_default();
                let mentions_platform = platform
                    .split(['/', ','])
                    .any(|part| !part.is_empty() && stage_name.contains(&part.to_lowercase()));
                if !mentions_platform {
                    out.push(Finding::new(
                        "FromPlatformFlagConstDisallowed",
                        span,
                        format!(
                            "FROM --platform flag should not use constant value \"{platform}\""
                        ),
                    ));
                }
            }
        }
        stage_checks(model, stage.index, context, out);
    }
    for node in &model.globals {
        if node.value == "arg" {
            secrets_in(node, out);
        }
    }
}

fn instruction_casing(model: &Model<'_>, out: &mut Vec<Finding>) {
    let nodes: Vec<&Node> = model.dockerfile.children.iter().collect();
    let upper = nodes
        .iter()
        .filter(|n| n.keyword == n.keyword.to_uppercase())
        .count();
    let lower = nodes
        .iter()
        .filter(|n| n.keyword == n.keyword.to_lowercase())
        .count();
    let want_upper = upper >= lower;
    for n in nodes {
        let ok = if want_upper {
            n.keyword == n.keyword.to_uppercase()
        } else {
            n.keyword == n.keyword.to_lowercase()
        };
        if !ok {
            let case = if want_upper { "uppercase" } else { "lowercase" };
            out.push(Finding::new(
                "ConsistentInstructionCasing",
                n.keyword_span,
                format!(
                    "Command '{}' should match the case of the command majority ({case})",
                    n.keyword
                ),
            ));
        }
    }
}

fn stage_checks(
    model: &Model<'_>,
    index: usize,
    context: Option<&ContextInfo>,
    out: &mut Vec<Finding>,
) {
    let stage = &model.stages[index];
    let mut absolute_workdir_seen = false;
    let mut last: HashMap<&str, Vec<&Node>> = HashMap::new();
    let has_shell = stage.body.iter().any(|n| n.value == "shell");
    for node in &stage.body {
        match node.value.as_str() {
            "maintainer" => out.push(
                Finding::new(
                    "MaintainerDeprecated",
                    node.keyword_span,
                    "Maintainer instruction is deprecated in favor of using label",
                )
                .help("use `LABEL org.opencontainers.image.authors=\"...\"`"),
            ),
            "cmd" | "entrypoint" | "healthcheck" => {
                last.entry(node.value.as_str()).or_default().push(node);
                if node.value != "healthcheck" && !node.json && !has_shell && !node.args.is_empty()
                {
                    out.push(
                        Finding::new(
                            "JSONArgsRecommended",
                            node.span,
                            format!("JSON arguments recommended for {} to prevent unintended behavior related to OS signals", node.keyword.to_uppercase()),
                        )
                        .help(format!("write it as {} [{}]", node.keyword.to_uppercase(), json_words(node))),
                    );
                }
            }
            "workdir" => {
                if let Some(w) = node.args.first() {
                    let abs = w.value.starts_with('/')
                        || w.value.starts_with('$')
                        || is_windows_abs(&w.value);
                    if abs {
                        absolute_workdir_seen = true;
                    } else if !absolute_workdir_seen {
                        out.push(Finding::new(
                            "WorkdirRelativePath",
                            w.span,
                            format!("Relative workdir \"{}\" can have unexpected results if the base image changes", w.value),
                        ));
                    }
                }
            }
            "env" | "label" => {
                for kv in model::key_values(node) {
                    if kv.legacy {
                        out.push(
                            Finding::new(
                                "LegacyKeyValueFormat",
                                kv.key.span,
                                format!("\"{} key=value\" should be used instead of legacy \"{} key value\" format", node.keyword.to_uppercase(), node.keyword.to_uppercase()),
                            )
                            .help(format!("write `{}={}`", kv.key.value, quote_if_needed(&kv.value.value))),
                        );
                    }
                }
                if node.value == "env" {
                    secrets_in(node, out);
                }
            }
            "arg" => secrets_in(node, out),
            "expose" => {
                for w in &node.args {
                    if w.value.contains(':') {
                        out.push(Finding::new("ExposeInvalidFormat", w.span, format!("EXPOSE instruction should not define an IP address or host-port mapping, found '{}'", w.value)));
                    }
                    if let Some((_, proto)) = w.value.rsplit_once('/') {
                        if proto != proto.to_lowercase() {
                            out.push(Finding::new("ExposeProtoCasing", w.span, format!("Defined protocol '{}' in EXPOSE instruction should be lowercase", w.value)));
                        }
                    }
                }
            }
            "copy" | "add" => {
                if let Some(ctx) = context {
                    copy_ignored(node, ctx, out);
                }
            }
            _ => {}
        }
    }
    for (kind, nodes) in last {
        for n in &nodes[..nodes.len().saturating_sub(1)] {
            out.push(Finding::new(
                "MultipleInstructionsDisallowed",
                n.keyword_span,
                format!("Multiple {} instructions should not be used in the same stage because only the last one will be used", kind.to_uppercase()),
            ));
        }
    }
    undefined_vars(model, index, out);
}

fn is_windows_abs(p: &str) -> bool {
    let b = p.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

fn json_words(node: &Node) -> String {
    let text = model::args_text(node);
    text.split_whitespace()
        .map(|w| serde_json::to_string(w).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(", ")
}

fn quote_if_needed(v: &str) -> String {
    if v.contains(char::is_whitespace) && !v.starts_with('"') {
        format!("\"{v}\"")
    } else {
        v.to_string()
    }
}

/// BuildKit's secret-name test: a name part (split on `_`) that is a secret-ish word, unless public.
fn looks_secret(name: &str) -> bool {
    const DENY: &[&str] = &[
        "apikey",
        "auth",
        "credential",
        "credentials",
        "key",
        "password",
        "pword",
        "passwd",
        "secret",
        "token",
    ];
    const ALLOW: &[&str] = &["public"];
    let lower = name.to_lowercase();
    let parts: Vec<&str> = lower.split(['_', '-']).collect();
    parts.iter().any(|p| DENY.contains(p)) && !parts.iter().any(|p| ALLOW.contains(p))
}

fn secrets_in(node: &Node, out: &mut Vec<Finding>) {
    let names: Vec<(&str, Span)> = if node.value == "arg" {
        model::arg_decls(node)
            .into_iter()
            .map(|(n, _, w)| (n, w.span))
            .collect()
    } else {
        model::key_values(node)
            .into_iter()
            .map(|kv| (kv.key.value.as_str(), kv.key.span))
            .collect()
    };
    for (name, span) in names {
        if looks_secret(name) {
            out.push(
                Finding::new(
                    "SecretsUsedInArgOrEnv",
                    span,
                    format!(
                        "Do not use ARG or ENV instructions for sensitive data ({} \"{name}\")",
                        node.keyword.to_uppercase()
                    ),
                )
                .help("pass it with `RUN --mount=type=secret` instead"),
            );
        }
    }
}

/// A rough check that `r` can be an image reference (or stage name) after expansion.
fn valid_reference(r: &str) -> bool {
    !r.is_empty()
        && !r.starts_with([':', '@', '/', '.', '-'])
        && !r.ends_with([':', '@', '/'])
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/:@".contains(c))
        && !r
            .chars()
            .any(|c| c.is_ascii_uppercase() && !r.contains(':'))
}

/// The closest name among `candidates` by edit distance, if close enough to be a typo.
pub(crate) fn suggest<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
) -> Option<&'a str> {
    suggest_within(name, candidates, usize::MAX)
}

/// [`suggest`] limited to edit distance `max`.
fn suggest_within<'a>(
    name: &str,
    candidates: impl Iterator<Item = &'a str>,
    max: usize,
) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d > 0 && *d <= max && *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Env names nearly every base image sets; uses of them are never reported.
const COMMON_IMAGE_ENV: &[&str] = &[
    "PATH", "HOME", "HOSTNAME", "TERM", "LANG", "USER", "PWD", "SHELL",
];

fn undefined_vars(model: &Model<'_>, index: usize, out: &mut Vec<Finding>) {
    let stage = &model.stages[index];
    // Whether the base chain is fully known (scratch or earlier stages ending in scratch): then
    // every undefined name is reported; otherwise the base image may define it, and only names
    // close to a defined one (likely typos) are.
    let mut known: BTreeSet<String> = PREDEFINED_ARGS.iter().map(|s| s.to_string()).collect();
    known.extend(COMMON_IMAGE_ENV.iter().map(|s| s.to_string()));
    let mut chain_known = false;
    let mut cursor = Some(index);
    let mut guard = 0;
    while let Some(i) = cursor {
        guard += 1;
        if guard > model.stages.len() {
            break;
        }
        let s = &model.stages[i];
        if i != index {
            for n in &s.body {
                collect_defs(n, &mut known);
            }
        }
        let base = s.base.map(|b| b.value.as_str()).unwrap_or("");
        cursor = model.stage_named(base, i).map(|p| p.index);
        if cursor.is_none() {
            chain_known = base.eq_ignore_ascii_case("scratch");
        }
    }
    for node in &stage.body {
        let checked = !matches!(
            node.value.as_str(),
            "run" | "cmd" | "entrypoint" | "healthcheck" | "onbuild" | "arg" | "env"
        );
        let words: Vec<&crate::parser::ast::Word> = match node.value.as_str() {
            "env" => model::key_values(node)
                .into_iter()
                .map(|kv| kv.value)
                .collect(),
            "arg" => node.args.iter().filter(|w| w.value.contains('=')).collect(),
            _ if checked => node.args.iter().chain(node.flags.iter()).collect(),
            _ => Vec::new(),
        };
        for w in words {
            for (name, has_default) in vars::references(&w.value, model.dockerfile.escape) {
                if has_default || known.contains(&name) {
                    continue;
                }
                // With an unknown base image, only a near-certain typo (one edit from a name
                // defined here) is reported: the image may define anything else.
                let max = if chain_known { usize::MAX } else { 1 };
                let suggestion = suggest_within(&name, known.iter().map(String::as_str), max);
                if !chain_known && suggestion.is_none() {
                    continue;
                }
                let mut f = Finding::new(
                    "UndefinedVar",
                    w.span,
                    format!("Usage of undefined variable '${name}'"),
                );
                if let Some(s) = suggestion {
                    f = f.help(format!("did you mean `${s}`?"));
                }
                out.push(f);
            }
        }
        collect_defs(node, &mut known);
    }
}

fn collect_defs(node: &Node, known: &mut BTreeSet<String>) {
    match node.value.as_str() {
        "arg" => known.extend(
            model::arg_decls(node)
                .into_iter()
                .map(|(n, _, _)| n.to_string()),
        ),
        "env" => known.extend(
            model::key_values(node)
                .into_iter()
                .map(|kv| kv.key.value.clone()),
        ),
        _ => {}
    }
}

fn copy_ignored(node: &Node, ctx: &ContextInfo, out: &mut Vec<Finding>) {
    if model::flag(node, "from").is_some() || node.json && node.args.len() < 2 {
        return;
    }
    let n = node.args.len();
    for w in &node.args[..n.saturating_sub(1)] {
        let src = w.value.as_str();
        if src.contains("://") || src.starts_with("<<") || src.contains('$') {
            continue;
        }
        if ctx.is_ignored(src) {
            out.push(Finding::new(
                "CopyIgnoredFile",
                w.span,
                format!(
                    "Attempting to {} file \"{src}\" that is excluded by .dockerignore",
                    node.keyword.to_uppercase()
                ),
            ));
        }
    }
}

/// BuildKit's experimental InvalidDefinitionDescription: the comment directly above a named
/// stage or an ARG describes it, so it should start with the name.
fn definition_descriptions(model: &Model<'_>, out: &mut Vec<Finding>) {
    for node in &model.dockerfile.children {
        let Some(comment) = node.prev_comments.last() else {
            continue;
        };
        let names: Vec<&str> = match node.value.as_str() {
            "from" => match node.args.as_slice() {
                [_, kw, name, ..] if kw.value.eq_ignore_ascii_case("as") => {
                    vec![name.value.as_str()]
                }
                _ => continue,
            },
            "arg" => model::arg_decls(node)
                .into_iter()
                .map(|(n, _, _)| n)
                .collect(),
            _ => continue,
        };
        let first = comment.split_whitespace().next().unwrap_or("");
        if names.len() == 1 && first != names[0] {
            out.push(
                Finding::new(
                    "InvalidDefinitionDescription",
                    node.keyword_span,
                    format!("Comment for {} should follow the format: `# {} <description>`", node.keyword.to_uppercase(), names[0]),
                )
                .help("start the comment with the name, or leave a blank line if it is not a description"),
            );
        }
    }
}
