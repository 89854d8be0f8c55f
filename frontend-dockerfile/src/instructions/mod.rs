//! AST nodes → typed instructions with validated flags.
//!
//! [`parse`] turns one [`Node`] into an [`Instruction`], expanding the words Docker expands
//! through an [`Expander`] (the caller supplies one holding the variables visible at that point:
//! global ARGs for FROM, the stage's ARGs and ENVs elsewhere). Words Docker leaves alone are kept
//! verbatim: RUN/CMD/ENTRYPOINT/SHELL/HEALTHCHECK commands, MAINTAINER, ONBUILD triggers,
//! `--from`, `--network`, `--security` and HEALTHCHECK flags.
//!
//! Errors are [`Diagnostic`]s pointing at the instruction, or at the offending flag.

mod diagnostic;
mod flags;
mod mount;
pub mod values;

pub use diagnostic::{excerpt, line_window, suggest, Diagnostic, ErrorKind, MAX_EXCERPT};
pub use mount::{Mount, MountType};

use crate::parser::ast::{Node, Span};
use engine::graph::{FileMode, Healthcheck, NetworkMode, SecurityMode};
use flags::{FlagKind, FlagSpec, Flags};
use serde::Serialize;

/// Expands words the way Docker does; implemented over the shell lexer with an environment.
pub trait Expander {
    /// One word: variables, quote removal and escapes, no field splitting.
    fn word(&self, word: &str) -> Result<String, String>;
    /// A line: as [`Expander::word`], then split on unquoted whitespace.
    fn words(&self, text: &str) -> Result<Vec<String>, String>;
    /// A heredoc body: variables and backslash escapes; quotes stay as written.
    fn raw(&self, text: &str) -> Result<String, String>;
}

/// An [`Expander`] that changes nothing: used to check a Dockerfile's structure without values.
#[derive(Debug, Clone, Copy, Default)]
pub struct Verbatim;

impl Expander for Verbatim {
    fn word(&self, word: &str) -> Result<String, String> {
        Ok(word.to_string())
    }
    fn words(&self, text: &str) -> Result<Vec<String>, String> {
        Ok(text.split_whitespace().map(str::to_string).collect())
    }
    fn raw(&self, text: &str) -> Result<String, String> {
        Ok(text.to_string())
    }
}

/// A command in shell form (run through the stage's SHELL) or exec form (a JSON array).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShellOrExec {
    Shell(String),
    Exec(Vec<String>),
}

/// A heredoc body used as a file (COPY/ADD) or as a script (RUN).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineFile {
    /// The delimiter, also the file name for COPY/ADD.
    pub name: String,
    /// The body, `<<-` tab stripping applied, expanded when the delimiter was unquoted (COPY/ADD).
    pub data: String,
}

/// A heredoc of a RUN instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunHeredoc {
    /// The delimiter.
    pub name: String,
    /// The body as written (`<<-` tabs included): a command line with heredocs reaches the
    /// shell this way, which strips the tabs itself.
    pub raw: String,
    /// The body with `<<-` tab stripping applied: what runs when the heredoc is the whole
    /// command.
    pub data: String,
}

/// An `ARG` declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArgDecl {
    pub name: String,
    pub default: Option<String>,
}

/// `FROM image [AS name]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct From {
    /// Image reference, stage name or `scratch`, expanded with the global ARGs.
    pub image: String,
    /// `--platform`, expanded.
    pub platform: Option<String>,
    /// The stage name, lowercased.
    pub name: Option<String>,
}

/// `RUN`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Run {
    pub cmd: ShellOrExec,
    pub heredocs: Vec<RunHeredoc>,
    pub mounts: Vec<Mount>,
    pub network: Option<NetworkMode>,
    pub security: Option<SecurityMode>,
}

/// `COPY` and `ADD`: what they share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CopyArgs {
    /// Source paths, URLs or git references, expanded.
    pub sources: Vec<String>,
    /// Heredoc sources (`COPY <<EOF /dest`).
    pub inline: Vec<InlineFile>,
    /// Destination, expanded.
    pub dest: String,
    pub chown: Option<String>,
    pub chmod: Option<FileMode>,
    /// The `--chmod` text as written (for history).
    pub chmod_text: Option<String>,
    pub link: bool,
    pub exclude: Vec<String>,
}

/// `COPY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Copy {
    pub args: CopyArgs,
    /// `--from`: stage name, stage index or image, not expanded (as BuildKit).
    pub from: Option<String>,
    pub parents: bool,
}

/// `ADD`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Add {
    pub args: CopyArgs,
    pub checksum: Option<String>,
    pub keep_git_dir: bool,
    /// `--unpack`: `None` = the default (local archives are unpacked, remote ones are not).
    pub unpack: Option<bool>,
}

/// One typed instruction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "instruction", content = "args", rename_all = "snake_case")]
pub enum Command {
    From(From),
    Run(Run),
    Copy(Copy),
    Add(Add),
    Env(Vec<(String, String)>),
    Arg(Vec<ArgDecl>),
    Label(Vec<(String, String)>),
    /// Ports as `port/proto`, ranges expanded.
    Expose(Vec<String>),
    Volume(Vec<String>),
    User(String),
    Workdir(String),
    Cmd(ShellOrExec),
    Entrypoint(ShellOrExec),
    Healthcheck(Healthcheck),
    Shell(Vec<String>),
    StopSignal(String),
    /// The trigger text (as the image config stores it) and its node.
    Onbuild {
        expression: String,
        #[serde(skip)]
        trigger: Box<Node>,
    },
    Maintainer(String),
}

/// A typed instruction and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Instruction {
    pub command: Command,
    pub start_line: usize,
    pub end_line: usize,
    pub span: Span,
    /// The instruction text as written (continuations joined).
    pub original: String,
}

/// The instructions this frontend knows, lowercase.
pub const KNOWN_INSTRUCTIONS: &[&str] = &[
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// The node being typed and the file it came from: builds located diagnostics.
pub(crate) struct NodeCtx<'a> {
    pub node: &'a Node,
    pub file: &'a str,
}

impl NodeCtx<'_> {
    pub fn keyword_upper(&self) -> String {
        self.node.value.to_ascii_uppercase()
    }

    fn first_line(&self) -> String {
        self.node.original.lines().next().unwrap_or("").to_string()
    }

    /// An error at `span` (a flag or word of this node).
    pub fn error_at(&self, kind: ErrorKind, span: Span) -> Diagnostic {
        let span = if span.line == 0 { self.node.span } else { span };
        let mut d = Diagnostic::new(kind, span, self.first_line()).in_file(self.file);
        // Without the source text, the shown line is the instruction's first line: shift the
        // column so the caret still lands under the right characters when the span is on it.
        if span.line == self.node.start_line {
            let indent = self.node.span.column.saturating_sub(1);
            d.line_text = format!("{}{}", " ".repeat(indent), d.line_text);
        }
        d
    }

    /// An error about the whole instruction (caret under the keyword).
    pub fn error(&self, kind: ErrorKind) -> Diagnostic {
        self.error_at(kind, self.node.keyword_span)
    }

    fn args_error(&self, expected: &str) -> Diagnostic {
        self.error(ErrorKind::WrongArguments {
            instruction: self.keyword_upper(),
            expected: expected.to_string(),
        })
    }

    fn expand_error(&self, word: &str, reason: String, span: Span) -> Diagnostic {
        self.error_at(
            ErrorKind::Expansion {
                word: word.to_string(),
                reason,
            },
            span,
        )
    }
}

const FROM_FLAGS: &[FlagSpec] = &[("platform", FlagKind::String)];
const RUN_FLAGS: &[FlagSpec] = &[
    ("mount", FlagKind::Multi),
    ("network", FlagKind::String),
    ("security", FlagKind::String),
];
const COPY_FLAGS: &[FlagSpec] = &[
    ("from", FlagKind::String),
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("parents", FlagKind::Bool),
    ("exclude", FlagKind::Multi),
];
const ADD_FLAGS: &[FlagSpec] = &[
    ("chown", FlagKind::String),
    ("chmod", FlagKind::String),
    ("link", FlagKind::Bool),
    ("checksum", FlagKind::String),
    ("keep-git-dir", FlagKind::Bool),
    ("unpack", FlagKind::Bool),
    ("exclude", FlagKind::Multi),
];
const HEALTHCHECK_FLAGS: &[FlagSpec] = &[
    ("interval", FlagKind::String),
    ("timeout", FlagKind::String),
    ("start-period", FlagKind::String),
    ("start-interval", FlagKind::String),
    ("retries", FlagKind::String),
];

/// Types one instruction, expanding words with `ex`. `file` names the Dockerfile in errors.
pub fn parse(node: &Node, ex: &dyn Expander, file: &str) -> Result<Instruction, Diagnostic> {
    let ctx = NodeCtx { node, file };
    let command = match node.value.as_str() {
        "from" => parse_from(&ctx, ex)?,
        "run" => parse_run(&ctx, ex)?,
        "copy" => {
            let flags = Flags::parse(&ctx, &node.flags, COPY_FLAGS)?;
            let args = parse_copy_args(&ctx, &flags, ex)?;
            Command::Copy(Copy {
                args,
                from: flags.get("from").map(|f| copy_from(&ctx, f)).transpose()?,
                parents: flags.bool("parents"),
            })
        }
        "add" => {
            let flags = Flags::parse(&ctx, &node.flags, ADD_FLAGS)?;
            let args = parse_copy_args(&ctx, &flags, ex)?;
            let checksum = match flags.get("checksum") {
                Some(f) => {
                    let v = expand_flag(&ctx, ex, f)?;
                    if let Err(reason) = values::validate_digest(&v) {
                        return Err(bad_flag(&ctx, f, &v, reason));
                    }
                    Some(v)
                }
                None => None,
            };
            Command::Add(Add {
                args,
                checksum,
                keep_git_dir: flags.bool("keep-git-dir"),
                unpack: flags.get("unpack").map(|f| f.value == "true"),
            })
        }
        "env" | "label" => {
            no_flags(&ctx)?;
            let pairs = parse_pairs(&ctx, ex)?;
            if node.value == "env" {
                Command::Env(pairs)
            } else {
                Command::Label(pairs)
            }
        }
        "arg" => parse_arg(&ctx, ex)?,
        "expose" => {
            no_flags(&ctx)?;
            if node.args.is_empty() {
                return Err(ctx.args_error("requires at least one argument"));
            }
            let mut ports = Vec::new();
            // BuildKit sorts the words as written, then expands each in turn: the order of
            // the ports in the history.
            let mut words: Vec<_> = node.args.iter().collect();
            words.sort_by(|a, b| a.value.cmp(&b.value));
            for w in words {
                for p in ex
                    .words(&w.value)
                    .map_err(|e| ctx.expand_error(&w.value, e, w.span))?
                {
                    let spec = values::parse_port_spec(&p).map_err(|reason| {
                        ctx.error_at(
                            ErrorKind::BadValue {
                                what: "port".into(),
                                value: p.clone(),
                                reason,
                            },
                            w.span,
                        )
                    })?;
                    ports.extend(spec);
                }
            }
            Command::Expose(ports)
        }
        "volume" => {
            no_flags(&ctx)?;
            if node.args.is_empty() {
                return Err(ctx.args_error("requires at least one argument"));
            }
            let mut vols = Vec::new();
            for w in &node.args {
                let v = if node.json {
                    w.value.clone()
                } else {
                    expand_word(&ctx, ex, &w.value, w.span)?
                };
                if v.is_empty() {
                    return Err(ctx.error_at(
                        ErrorKind::BadValue {
                            what: "volume".into(),
                            value: w.value.clone(),
                            reason: "a volume can not be an empty string".into(),
                        },
                        w.span,
                    ));
                }
                vols.push(v);
            }
            Command::Volume(vols)
        }
        "user" => Command::User(single_expanded(&ctx, ex)?),
        "workdir" => Command::Workdir(single_expanded(&ctx, ex)?),
        "stopsignal" => {
            let sig = single_expanded(&ctx, ex)?;
            if let Err(reason) = values::validate_signal(&sig) {
                let mut d = ctx.error_at(
                    ErrorKind::BadValue {
                        what: "signal".into(),
                        value: sig.clone(),
                        reason,
                    },
                    node.args[0].span,
                );
                let names: Vec<String> = values::signal_names().collect();
                let upper = sig.to_ascii_uppercase();
                let candidate = if upper.starts_with("SIG") {
                    upper
                } else {
                    format!("SIG{upper}")
                };
                if let Some(s) = suggest(&candidate, names.iter().map(String::as_str)) {
                    d = d.with_help(format!("did you mean `{s}`?"));
                }
                return Err(d);
            }
            Command::StopSignal(sig)
        }
        "cmd" => {
            no_flags(&ctx)?;
            Command::Cmd(shell_or_exec(node))
        }
        "entrypoint" => {
            no_flags(&ctx)?;
            Command::Entrypoint(shell_or_exec(node))
        }
        "shell" => {
            no_flags(&ctx)?;
            if !node.json {
                return Err(ctx.args_error(
                    "requires the arguments in JSON form: SHELL [\"executable\", \"parameters\"]",
                ));
            }
            if node.args.is_empty() {
                return Err(ctx.args_error("requires at least one argument"));
            }
            Command::Shell(node.args.iter().map(|w| w.value.clone()).collect())
        }
        "healthcheck" => parse_healthcheck(&ctx)?,
        "onbuild" => {
            no_flags(&ctx)?;
            let Some(inner) = &node.inner else {
                return Err(ctx.args_error("requires an instruction to run later"));
            };
            match inner.value.as_str() {
                "onbuild" | "from" | "maintainer" => {
                    return Err(ctx.error_at(
                        ErrorKind::Unsupported(format!(
                            "{} is not allowed as an ONBUILD trigger",
                            inner.value.to_ascii_uppercase()
                        )),
                        inner.keyword_span,
                    ))
                }
                _ => {}
            }
            // The trigger must itself be a valid instruction; its values are checked when it runs.
            if let Err(d) = parse(inner, &Verbatim, file) {
                if d.kind.is_structural() {
                    return Err(d);
                }
            }
            Command::Onbuild {
                expression: onbuild_expression(&node.original),
                trigger: inner.clone(),
            }
        }
        "maintainer" => {
            no_flags(&ctx)?;
            if node.args.is_empty() {
                return Err(ctx.args_error("requires exactly one argument"));
            }
            let text: Vec<&str> = node.args.iter().map(|w| w.value.as_str()).collect();
            Command::Maintainer(text.join(" "))
        }
        other => {
            let mut d = ctx.error(ErrorKind::UnknownInstruction(other.to_ascii_uppercase()));
            if let Some(s) = suggest(other, KNOWN_INSTRUCTIONS.iter().copied()) {
                d = d.with_help(format!("did you mean `{}`?", s.to_ascii_uppercase()));
            }
            return Err(d);
        }
    };
    Ok(Instruction {
        command,
        start_line: node.start_line,
        end_line: node.end_line,
        span: node.span,
        original: node.original.clone(),
    })
}

/// The text after the `ONBUILD` keyword, as the image config stores a trigger.
fn onbuild_expression(original: &str) -> String {
    let trimmed = original.trim_start();
    let rest = if trimmed.len() >= 7 && trimmed[..7].eq_ignore_ascii_case("onbuild") {
        &trimmed[7..]
    } else {
        trimmed
    };
    rest.trim().to_string()
}

/// A `COPY --from` value, taken as written: BuildKit refuses one that expansion would change
/// (which stage a COPY reads is settled before any variable has a value).
fn copy_from(ctx: &NodeCtx, f: &flags::GivenFlag) -> Result<String, Diagnostic> {
    let empty: [(&str, &str); 0] = [];
    match crate::shell::Lexer::new('\\').process_word(&f.value, &empty) {
        Ok(v) if v == f.value => Ok(v),
        _ => Err(bad_flag(
            ctx,
            f,
            &f.value,
            "variable expansion is not supported for --from: define a stage with `FROM ${VAR} AS \
             name` using a global ARG, and copy from that"
                .into(),
        )),
    }
}

fn no_flags(ctx: &NodeCtx) -> Result<(), Diagnostic> {
    Flags::parse(ctx, &ctx.node.flags, &[]).map(|_| ())
}

fn bad_flag(ctx: &NodeCtx, f: &flags::GivenFlag, value: &str, reason: String) -> Diagnostic {
    ctx.error_at(
        ErrorKind::BadFlagValue {
            flag: f.name.to_string(),
            value: value.to_string(),
            reason,
        },
        f.span,
    )
}

fn expand_word(
    ctx: &NodeCtx,
    ex: &dyn Expander,
    word: &str,
    span: Span,
) -> Result<String, Diagnostic> {
    ex.word(word).map_err(|e| ctx.expand_error(word, e, span))
}

fn expand_flag(
    ctx: &NodeCtx,
    ex: &dyn Expander,
    f: &flags::GivenFlag,
) -> Result<String, Diagnostic> {
    expand_word(ctx, ex, &f.value, f.span)
}

fn single_expanded(ctx: &NodeCtx, ex: &dyn Expander) -> Result<String, Diagnostic> {
    no_flags(ctx)?;
    if ctx.node.args.len() != 1 {
        return Err(ctx.args_error("requires exactly one argument"));
    }
    let w = &ctx.node.args[0];
    expand_word(ctx, ex, &w.value, w.span)
}

fn shell_or_exec(node: &Node) -> ShellOrExec {
    if node.json {
        ShellOrExec::Exec(node.args.iter().map(|w| w.value.clone()).collect())
    } else {
        let text: Vec<&str> = node.args.iter().map(|w| w.value.as_str()).collect();
        ShellOrExec::Shell(text.join(" "))
    }
}

fn parse_from(ctx: &NodeCtx, ex: &dyn Expander) -> Result<Command, Diagnostic> {
    let node = ctx.node;
    let flags = Flags::parse(ctx, &node.flags, FROM_FLAGS)?;
    let args = &node.args;
    let name = match args.len() {
        1 => None,
        3 if args[1].value.eq_ignore_ascii_case("as") => {
            let name = args[2].value.to_ascii_lowercase();
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c));
            if !valid {
                return Err(ctx
                    .error_at(
                        ErrorKind::BadValue {
                            what: "stage name".into(),
                            value: args[2].value.clone(),
                            reason: "a name starts with a letter and holds only letters, digits, `-`, `_` and `.`".into(),
                        },
                        args[2].span,
                    ));
            }
            Some(name)
        }
        3 => {
            return Err(ctx
                .error_at(
                    ErrorKind::WrongArguments {
                        instruction: "FROM".into(),
                        expected: format!("expects `AS`, found `{}`", args[1].value),
                    },
                    args[1].span,
                )
                .with_help("write `FROM image AS name`"))
        }
        _ => {
            return Err(ctx
                .args_error("requires either one or three arguments")
                .with_help("write `FROM image` or `FROM image AS name`"))
        }
    };
    let image = expand_word(ctx, ex, &args[0].value, args[0].span)?;
    if image.is_empty() {
        return Err(ctx.error_at(
            ErrorKind::BadValue {
                what: "base image".into(),
                value: args[0].value.clone(),
                reason: "it expands to an empty string".into(),
            },
            args[0].span,
        ));
    }
    let platform = match flags.get("platform") {
        Some(f) => {
            let v = expand_flag(ctx, ex, f)?;
            if v.is_empty() {
                return Err(bad_flag(
                    ctx,
                    f,
                    &f.value,
                    "it expands to an empty string".into(),
                ));
            }
            Some(v)
        }
        None => None,
    };
    Ok(Command::From(From {
        image,
        platform,
        name,
    }))
}

/// Removes leading tabs from every line, as `<<-` asks.
pub fn chomp_heredoc(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

fn parse_run(ctx: &NodeCtx, ex: &dyn Expander) -> Result<Command, Diagnostic> {
    let node = ctx.node;
    let flags = Flags::parse(ctx, &node.flags, RUN_FLAGS)?;
    let mut mounts = Vec::new();
    for f in flags.all("mount") {
        mounts.push(mount::parse_mount(ctx, &f.value, f.span, ex)?);
    }
    let network = match flags.get("network") {
        Some(f) => Some(match f.value.as_str() {
            "default" => NetworkMode::Default,
            "none" => NetworkMode::None,
            "host" => NetworkMode::Host,
            other => {
                let mut d = bad_flag(ctx, f, other, "expected default, none or host".into());
                if let Some(s) = suggest(other, ["default", "none", "host"]) {
                    d = d.with_help(format!("did you mean `--network={s}`?"));
                }
                return Err(d);
            }
        }),
        None => None,
    };
    let security = match flags.get("security") {
        Some(f) => Some(match f.value.as_str() {
            "sandbox" => SecurityMode::Sandbox,
            "insecure" => SecurityMode::Insecure,
            other => {
                let mut d = bad_flag(ctx, f, other, "expected sandbox or insecure".into());
                if let Some(s) = suggest(other, ["sandbox", "insecure"]) {
                    d = d.with_help(format!("did you mean `--security={s}`?"));
                }
                return Err(d);
            }
        }),
        None => None,
    };
    if node.args.is_empty() && node.heredocs.is_empty() {
        return Err(ctx.args_error("requires at least one argument"));
    }
    let heredocs = node
        .heredocs
        .iter()
        .map(|h| RunHeredoc {
            name: h.name.clone(),
            raw: h.content.clone(),
            data: if h.chomp {
                chomp_heredoc(&h.content)
            } else {
                h.content.clone()
            },
        })
        .collect();
    Ok(Command::Run(Run {
        cmd: shell_or_exec(node),
        heredocs,
        mounts,
        network,
        security,
    }))
}

/// Recognises a heredoc source word (`<<EOF`, `<<-"EOF"`) and returns its delimiter.
fn heredoc_word(word: &str) -> Option<String> {
    let rest = word.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name: String = rest.chars().filter(|c| *c != '"' && *c != '\'').collect();
    if name.is_empty() {
        None
    } else {
        Some(name)
    }
}

fn parse_copy_args(
    ctx: &NodeCtx,
    flags: &Flags,
    ex: &dyn Expander,
) -> Result<CopyArgs, Diagnostic> {
    let node = ctx.node;
    if node.args.len() < 2 {
        return Err(ctx
            .args_error("requires at least two arguments: a source and a destination")
            .with_help(format!("write `{} <src>... <dest>`", ctx.keyword_upper())));
    }
    let (dest_word, src_words) = node.args.split_last().expect("checked length above");
    let mut sources = Vec::new();
    let mut inline = Vec::new();
    for w in src_words {
        if let Some(name) = heredoc_word(&w.value) {
            if let Some(h) = node.heredocs.iter().find(|h| h.name == name) {
                let mut data = if h.chomp {
                    chomp_heredoc(&h.content)
                } else {
                    h.content.clone()
                };
                if h.expand {
                    data = ex
                        .raw(&data)
                        .map_err(|e| ctx.expand_error(&w.value, e, w.span))?;
                }
                inline.push(InlineFile { name, data });
                continue;
            }
        }
        // Each word is expanded in the JSON form too, as BuildKit expands every source and
        // the destination of COPY/ADD whatever their form.
        sources.push(expand_word(ctx, ex, &w.value, w.span)?);
    }
    let dest = expand_word(ctx, ex, &dest_word.value, dest_word.span)?;
    let chown = match flags.get("chown") {
        Some(f) => Some(expand_flag(ctx, ex, f)?).filter(|s| !s.is_empty()),
        None => None,
    };
    let (chmod, chmod_text) = match flags.get("chmod") {
        Some(f) => {
            let v = expand_flag(ctx, ex, f)?;
            let mode = values::parse_chmod(&v).map_err(|reason| bad_flag(ctx, f, &v, reason))?;
            (Some(mode), Some(v))
        }
        None => (None, None),
    };
    let mut exclude = Vec::new();
    for f in flags.all("exclude") {
        exclude.push(expand_flag(ctx, ex, f)?);
    }
    Ok(CopyArgs {
        sources,
        inline,
        dest,
        chown,
        chmod,
        chmod_text,
        link: flags.bool("link"),
        exclude,
    })
}

fn parse_pairs(ctx: &NodeCtx, ex: &dyn Expander) -> Result<Vec<(String, String)>, Diagnostic> {
    let args = &ctx.node.args;
    if args.is_empty() {
        return Err(ctx.args_error("requires at least one argument"));
    }
    // The parser gives (key, value, separator) triples.
    if !args.chunks_exact(3).remainder().is_empty() {
        return Err(ctx.args_error("requires KEY=VALUE pairs"));
    }
    let mut out = Vec::new();
    for triple in args.chunks(3) {
        let key = expand_word(ctx, ex, &triple[0].value, triple[0].span)?;
        if key.is_empty() {
            return Err(ctx.error_at(
                ErrorKind::BadValue {
                    what: "name".into(),
                    value: triple[0].value.clone(),
                    reason: "names can not be empty".into(),
                },
                triple[0].span,
            ));
        }
        let value = expand_word(ctx, ex, &triple[1].value, triple[1].span)?;
        out.push((key, value));
    }
    Ok(out)
}

fn parse_arg(ctx: &NodeCtx, ex: &dyn Expander) -> Result<Command, Diagnostic> {
    no_flags(ctx)?;
    let args = &ctx.node.args;
    if args.is_empty() {
        return Err(ctx.args_error("requires at least one argument"));
    }
    let mut decls = Vec::new();
    for w in args {
        let (name, default) = match w.value.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (w.value.as_str(), None),
        };
        let name = expand_word(ctx, ex, name, w.span)?;
        if name.is_empty() {
            return Err(ctx.error_at(
                ErrorKind::BadValue {
                    what: "ARG name".into(),
                    value: w.value.clone(),
                    reason: "names can not be empty".into(),
                },
                w.span,
            ));
        }
        let default = match default {
            Some(v) => Some(expand_word(ctx, ex, v, w.span)?),
            None => None,
        };
        decls.push(ArgDecl { name, default });
    }
    Ok(Command::Arg(decls))
}

fn parse_healthcheck(ctx: &NodeCtx) -> Result<Command, Diagnostic> {
    let node = ctx.node;
    let args = &node.args;
    let Some(first) = args.first() else {
        return Err(ctx
            .args_error("requires an argument")
            .with_help("write `HEALTHCHECK CMD <command>` or `HEALTHCHECK NONE`"));
    };
    let kind = first.value.to_ascii_uppercase();
    if kind == "NONE" {
        if args.len() > 1 {
            return Err(ctx.args_error("NONE takes no arguments"));
        }
        no_flags(ctx)?;
        return Ok(Command::Healthcheck(Healthcheck {
            test: vec!["NONE".into()],
            interval: 0,
            timeout: 0,
            start_period: 0,
            start_interval: 0,
            retries: 0,
        }));
    }
    if kind != "CMD" {
        let mut d = ctx.error_at(
            ErrorKind::WrongArguments {
                instruction: "HEALTHCHECK".into(),
                expected: format!("expects CMD or NONE, found `{}`", first.value),
            },
            first.span,
        );
        if let Some(s) = suggest(&kind, ["CMD", "NONE"]) {
            d = d.with_help(format!("did you mean `{s}`?"));
        }
        return Err(d);
    }
    let flags = Flags::parse(ctx, &node.flags, HEALTHCHECK_FLAGS)?;
    let rest: Vec<String> = args[1..].iter().map(|w| w.value.clone()).collect();
    if rest.is_empty() || (rest.len() == 1 && rest[0].is_empty()) {
        return Err(ctx.args_error("CMD requires a command"));
    }
    let test = if node.json {
        let mut t = vec!["CMD".to_string()];
        t.extend(rest);
        t
    } else {
        vec!["CMD-SHELL".to_string(), rest.join(" ")]
    };
    let duration = |name: &str| -> Result<u64, Diagnostic> {
        let Some(f) = flags.get(name) else {
            return Ok(0);
        };
        let ns = values::parse_go_duration(&f.value)
            .map_err(|reason| bad_flag(ctx, f, &f.value, reason))?;
        if ns != 0 && ns < 1_000_000 {
            return Err(bad_flag(ctx, f, &f.value, "must be at least 1ms".into()));
        }
        Ok(ns)
    };
    let retries = match flags.get("retries") {
        Some(f) => f
            .value
            .parse::<u32>()
            .map_err(|_| bad_flag(ctx, f, &f.value, "expected a whole number >= 0".into()))?,
        None => 0,
    };
    Ok(Command::Healthcheck(Healthcheck {
        test,
        interval: duration("interval")?,
        timeout: duration("timeout")?,
        start_period: duration("start-period")?,
        start_interval: duration("start-interval")?,
        retries,
    }))
}

#[cfg(test)]
mod tests;
