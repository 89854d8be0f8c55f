//! Parsed Dockerfile + build args + target → [`engine::graph::Definition`].
//!
//! Each stage becomes a chain of vertices from its base (an image source, scratch, or another
//! stage's final vertex): one vertex per instruction that changes files (RUN, COPY, ADD,
//! WORKDIR's mkdir) or metadata (ENV, LABEL, CMD, ... as `Op::Config`). `FROM <stage>`,
//! `COPY --from` and `RUN --mount=from=` become edges. Only the stages the target needs are
//! lowered; the default target is the last stage.
//!
//! What a step's digest sees: its own op (argv, env with the ARGs visible at that point, cwd,
//! user, mounts ...) and its inputs. ARGs a step cannot see never reach it, and proxy build args
//! are passed outside the digest (see [`args`]).
//!
//! Base image configs: lowering does not fetch images. When a [`BaseImageResolver`] is given it
//! is asked for each base image's env, workdir, user, shell and ONBUILD triggers, and exec ops
//! come out complete, as BuildKit's. Without one, exec ops hold overrides relative to the base
//! image's config and `StageInfo::base_config_resolved` is false (see `engine::graph::ExecOp`).

mod args;
mod history;
mod stage;
mod step_env;

pub use args::PROXY_ARGS;

use crate::instructions::{self, Command, Diagnostic, ErrorKind, Expander, Verbatim};
use crate::parser::ast::{Dockerfile, Node, Span};
use crate::shell::{Env, Lexer};
use args::ArgValues;
use engine::graph::{normalize_image_reference, Definition, Platform};
use std::collections::{BTreeMap, HashMap};

/// What to build and with which values.
#[derive(Clone)]
pub struct LowerOptions<'a> {
    /// The Dockerfile's name as shown in errors (`Dockerfile`, `docker/Dockerfile.prod`).
    pub file_name: String,
    /// The Dockerfile's text, so errors can show the exact source line.
    pub source: Option<&'a str>,
    /// `--build-arg NAME=VALUE` values.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build; `None` = the last stage.
    pub target: Option<String>,
    /// The platform to build for; `None` = the host's.
    pub platform: Option<Platform>,
    /// The platform the build runs on; `None` = the host's.
    pub build_platform: Option<Platform>,
    /// The name of the main build context source.
    pub context_name: String,
    /// `.dockerignore` patterns, passed to every context source.
    pub dockerignore: Vec<String>,
    /// Answers questions about base images (env, workdir, ONBUILD triggers), when available.
    pub resolver: Option<&'a dyn BaseImageResolver>,
    /// What every `RUN` step gets from the build's flags (`--network`, ...).
    pub run: RunDefaults,
    /// `--build-context NAME=...`: names that `FROM NAME`, `COPY --from=NAME` and
    /// `RUN --mount=from=NAME` mean instead of an image of that name (stage names still win).
    pub named_contexts: BTreeMap<String, NamedContext>,
}

/// What a `--build-context` name stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamedContext {
    /// A local directory: the solver's context source of the same name.
    Local,
    /// An image (`docker-image://REF`, or an OCI layout loaded into the store), by reference.
    Image(String),
}

impl NamedContext {
    /// The base of a stage that starts from this context, named `key`.
    fn base(&self, key: &str) -> Base {
        match self {
            NamedContext::Local => Base::Context(key.to_string()),
            NamedContext::Image(reference) => Base::Image(reference.clone()),
        }
    }
}

/// The build context `name` (an image name as written in `FROM` or `--from`, or a stage name)
/// stands for, with its key. As BuildKit, names compare in their familiar form without
/// `:latest`: `alpine`, `alpine:latest` and `docker.io/library/alpine` are one name.
pub(crate) fn named_context<'m>(
    contexts: &'m BTreeMap<String, NamedContext>,
    name: &str,
) -> Option<(&'m str, &'m NamedContext)> {
    if contexts.is_empty() {
        return None;
    }
    let wanted = familiar_name(name)?;
    contexts
        .iter()
        .find(|(key, _)| familiar_name(key).as_deref() == Some(wanted.as_str()))
        .map(|(key, named)| (key.as_str(), named))
}

/// `docker.io/library/alpine:latest` → `alpine`; `None` for what is not an image name.
fn familiar_name(name: &str) -> Option<String> {
    let full = normalize_image_reference(name).ok()?;
    let short = full
        .strip_prefix("docker.io/library/")
        .or_else(|| full.strip_prefix("docker.io/"))
        .unwrap_or(&full);
    Some(short.strip_suffix(":latest").unwrap_or(short).to_string())
}

/// Settings of every `RUN` step that come from the build rather than the Dockerfile: `docker
/// build --network`, ... A `RUN --network=none|host` of its own wins over the build's network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunDefaults {
    /// The network of steps without `RUN --network` (or with `--network=default`).
    pub network: engine::graph::NetworkMode,
    /// `--add-host`: entries for each step's `/etc/hosts`.
    pub extra_hosts: Vec<engine::graph::ExtraHost>,
    /// `--shm-size` in bytes; 0 = the default.
    pub shm_size: u64,
    /// `--ulimit`s.
    pub ulimits: Vec<engine::graph::Ulimit>,
}

impl Default for LowerOptions<'_> {
    fn default() -> Self {
        LowerOptions {
            file_name: "Dockerfile".to_string(),
            source: None,
            build_args: BTreeMap::new(),
            target: None,
            platform: None,
            build_platform: None,
            context_name: "context".to_string(),
            dockerignore: Vec::new(),
            resolver: None,
            run: RunDefaults::default(),
            named_contexts: BTreeMap::new(),
        }
    }
}

/// The parts of a base image's config that change how later steps are lowered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BaseImageConfig {
    pub env: Vec<(String, String)>,
    pub working_dir: String,
    pub user: String,
    pub shell: Vec<String>,
    /// ONBUILD triggers, as the image config stores them (`RUN make`).
    pub onbuild: Vec<String>,
}

/// The hook through which the solver (or a test) tells lowering about base images.
pub trait BaseImageResolver {
    /// The config of `reference` (normalised) for `platform`; `Ok(None)` when unknown.
    fn resolve(
        &self,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<BaseImageConfig>, String>;
}

/// A non-fatal finding while lowering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub message: String,
    /// 1-based line it concerns, if any.
    pub line: Option<usize>,
}

/// The result of lowering.
#[derive(Debug, Clone)]
pub struct Lowered {
    pub definition: Definition,
    pub warnings: Vec<Warning>,
}

/// Parses `NAME=VALUE` (`--build-arg`); a bare `NAME` takes the value of the environment
/// variable `NAME` as docker does, and is skipped when that is unset.
pub fn parse_build_arg(text: &str) -> Result<Option<(String, String)>, Diagnostic> {
    match text.split_once('=') {
        Some(("", _)) => Err(Diagnostic::unlocated(ErrorKind::BadBuildArg(text.into()))),
        Some((k, v)) => Ok(Some((k.to_string(), v.to_string()))),
        None if text.is_empty() => Err(Diagnostic::unlocated(ErrorKind::BadBuildArg(text.into()))),
        None => Ok(std::env::var(text).ok().map(|v| (text.to_string(), v))),
    }
}

/// The most bytes all expansions of one Dockerfile may produce together.
///
/// Each word is capped by [`crate::shell::MAX_WORD_LEN`]; this caps their sum, so that a file of
/// a few thousand short lines (`ENV V1=$BIG`, `ENV V2=$BIG`, ...) cannot make lowering hold
/// gigabytes either.
pub(crate) const MAX_EXPANDED_TOTAL: usize = 256 << 20;

/// The lexer of one Dockerfile (its escape character) and what its expansions may still produce.
pub(crate) struct DockerfileLexer {
    lexer: Lexer,
    remaining: std::cell::Cell<usize>,
}

impl DockerfileLexer {
    pub fn new(escape: char) -> DockerfileLexer {
        DockerfileLexer {
            lexer: Lexer::new(escape),
            remaining: std::cell::Cell::new(MAX_EXPANDED_TOTAL),
        }
    }

    pub fn lexer(&self) -> &Lexer {
        &self.lexer
    }

    /// Counts `bytes` of expanded text against the Dockerfile's total.
    fn spend(&self, bytes: usize) -> Result<(), String> {
        match self.remaining.get().checked_sub(bytes) {
            Some(left) => {
                self.remaining.set(left);
                Ok(())
            }
            None => Err(format!(
                "the Dockerfile's expansions would produce more than {MAX_EXPANDED_TOTAL} bytes"
            )),
        }
    }
}

/// Expands words with the Dockerfile's lexer over one set of variables.
pub(crate) struct ShellExpander<'a> {
    lexer: &'a DockerfileLexer,
    env: &'a dyn Env,
}

impl<'a> ShellExpander<'a> {
    pub fn new(lexer: &'a DockerfileLexer, env: &'a dyn Env) -> Self {
        ShellExpander { lexer, env }
    }
}

impl Expander for ShellExpander<'_> {
    fn word(&self, word: &str) -> Result<String, String> {
        let out = self
            .lexer
            .lexer
            .process_word(word, self.env)
            .map_err(|e| e.kind.to_string())?;
        self.lexer.spend(out.len())?;
        Ok(out)
    }
    fn words(&self, text: &str) -> Result<Vec<String>, String> {
        let out = self
            .lexer
            .lexer
            .process_words(text, self.env)
            .map_err(|e| e.kind.to_string())?;
        self.lexer.spend(out.iter().map(String::len).sum())?;
        Ok(out)
    }
    /// Heredoc bodies always escape with a backslash (whatever `# escape=` says), and a
    /// backslash escape is consumed (`\$` gives `$`); quotes stay as written.
    fn raw(&self, text: &str) -> Result<String, String> {
        let out = Lexer::new('\\')
            .skip_process_quotes(true)
            .process_word(text, self.env)
            .map_err(|e| e.kind.to_string())?;
        self.lexer.spend(out.len())?;
        Ok(out)
    }
}

/// What a `--from` / `from=` value refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SourceRef {
    Stage(usize),
    Image(String),
    /// A local `--build-context`, by name.
    Context(String),
}

/// A stage's instructions as found in the file.
pub(crate) struct StageNodes<'a> {
    pub from_node: &'a Node,
    pub from: instructions::From,
    pub body: Vec<&'a Node>,
}

/// What a stage starts from, resolved against the other stages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Base {
    Stage(usize),
    Scratch,
    Image(String),
    /// A local `--build-context`: its files, with no image config (as BuildKit).
    Context(String),
}

/// Lowers `dockerfile` into a build graph for `opts.target`.
pub fn lower(dockerfile: &Dockerfile, opts: &LowerOptions) -> Result<Lowered, Diagnostic> {
    lower_inner(dockerfile, opts).map_err(|d| {
        let d = d.in_file(&opts.file_name);
        match opts.source {
            Some(src) => d.with_source(src),
            None => d,
        }
    })
}

fn lower_inner(dockerfile: &Dockerfile, opts: &LowerOptions) -> Result<Lowered, Diagnostic> {
    let file = opts.file_name.as_str();
    // Structure first: unknown instructions and flags anywhere are errors, reached or not.
    for node in &dockerfile.children {
        if let Err(d) = instructions::parse(node, &Verbatim, file) {
            if d.kind.is_structural() {
                return Err(d);
            }
        }
    }

    let target_platform = opts.platform.clone().unwrap_or_else(Platform::host);
    let build_platform = opts.build_platform.clone().unwrap_or_else(Platform::host);
    let mut arg_values = ArgValues::new(
        opts.build_args.clone(),
        args::platform_args(&target_platform, &build_platform),
    );
    let lexer = DockerfileLexer::new(dockerfile.escape);
    let mut stages = split_stages(dockerfile, &lexer, &mut arg_values, file)?;

    // Stage names. A name given twice names the last stage that has it, as in BuildKit (the
    // DuplicateStageName lint rule warns about it).
    let mut names: HashMap<String, usize> = HashMap::new();
    for (i, st) in stages.iter().enumerate() {
        if let Some(name) = &st.from.name {
            names.insert(name.clone(), i);
        }
    }
    let bases = stage_bases(&mut stages, &names, opts)?;
    let deps = stage_deps(&stages, &bases, &names, opts)?;
    check_cycles(&stages, &deps)?;

    // Target and the stages it needs.
    let target = resolve_target(opts.target.as_deref(), stages.len(), &names)?;
    let mut order = Vec::new();
    let mut seen = vec![false; stages.len()];
    postorder(target, &deps, &mut seen, &mut order);

    let mut lowerer = stage::Lowerer::new(
        opts,
        &lexer,
        &stages,
        &bases,
        &names,
        arg_values,
        target_platform,
    );
    for &i in &order {
        lowerer.lower_stage(i)?;
    }
    lowerer.finish(target)
}

/// Splits the file into its stages, declaring the global ARGs (those before the first FROM) on
/// the way; anything else before the first FROM is an error.
fn split_stages<'d>(
    dockerfile: &'d Dockerfile,
    lexer: &DockerfileLexer,
    arg_values: &mut ArgValues,
    file: &str,
) -> Result<Vec<StageNodes<'d>>, Diagnostic> {
    let mut stages: Vec<StageNodes> = Vec::new();
    for node in &dockerfile.children {
        if node.value == "from" {
            let env = arg_values.global_env();
            let ex = ShellExpander::new(lexer, &env);
            let parsed = instructions::parse(node, &ex, file)?;
            let Command::From(from) = parsed.command else {
                unreachable!("a FROM node parses to Command::From")
            };
            stages.push(StageNodes {
                from_node: node,
                from,
                body: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.body.push(node);
        } else if node.value == "arg" {
            let env = arg_values.global_env();
            let ex = ShellExpander::new(lexer, &env);
            if let Command::Arg(decls) = instructions::parse(node, &ex, file)?.command {
                for d in decls {
                    arg_values.declare_global(&d.name, d.default);
                }
            }
        } else {
            let ctx_err = Diagnostic::new(
                ErrorKind::InstructionBeforeFrom {
                    instruction: node.value.to_ascii_uppercase(),
                },
                node.keyword_span,
                node.original.lines().next().unwrap_or(""),
            )
            .with_help("start the stage with `FROM <image>`");
            return Err(ctx_err);
        }
    }
    if stages.is_empty() {
        return Err(Diagnostic::unlocated(ErrorKind::NoStages)
            .with_help("add `FROM <image>` (or `FROM scratch`)"));
    }
    Ok(stages)
}

/// What each stage starts from: an earlier stage, scratch, a named build context or an image.
/// A stage named like a build context is that context, its own instructions dropped (as
/// BuildKit).
fn stage_bases(
    stages: &mut [StageNodes<'_>],
    names: &HashMap<String, usize>,
    opts: &LowerOptions,
) -> Result<Vec<Base>, Diagnostic> {
    let mut bases = Vec::new();
    let mut replaced_stages = Vec::new();
    for (i, st) in stages.iter().enumerate() {
        let image = &st.from.image;
        let span = st
            .from_node
            .args
            .first()
            .map(|w| w.span)
            .unwrap_or_default();
        let replaced = st
            .from
            .name
            .as_deref()
            .and_then(|n| named_context(&opts.named_contexts, n));
        if let Some((key, named)) = replaced {
            bases.push(named.base(key));
            replaced_stages.push(i);
            continue;
        }
        let base = match names.get(&image.to_ascii_lowercase()) {
            Some(&j) if j < i => Base::Stage(j),
            Some(&j) if j > i => {
                return Err(node_error(
                    st.from_node,
                    ErrorKind::StageUsedBeforeDefinition(image.clone()),
                    span,
                )
                .with_help(format!(
                    "move the stage `{image}` above this FROM, or name the image differently"
                )))
            }
            _ if image.eq_ignore_ascii_case("scratch") => Base::Scratch,
            _ if named_context(&opts.named_contexts, image).is_some() => {
                let (key, named) = named_context(&opts.named_contexts, image).expect("just found");
                named.base(key)
            }
            _ => Base::Image(normalize_image_reference(image).map_err(|e| {
                node_error(
                    st.from_node,
                    ErrorKind::BadValue {
                        what: "image reference".into(),
                        value: image.clone(),
                        reason: e.to_string(),
                    },
                    span,
                )
            })?),
        };
        bases.push(base);
    }
    for i in replaced_stages {
        stages[i].body.clear();
    }
    Ok(bases)
}

/// The stages each stage needs, with the node that needs it: its base stage, `COPY --from`,
/// `RUN --mount from=`, and the triggers it inherits.
fn stage_deps<'d>(
    stages: &[StageNodes<'d>],
    bases: &[Base],
    names: &HashMap<String, usize>,
    opts: &LowerOptions,
) -> Result<Vec<Vec<(usize, &'d Node)>>, Diagnostic> {
    let mut deps: Vec<Vec<(usize, &Node)>> = vec![Vec::new(); stages.len()];
    for i in 0..stages.len() {
        if let Base::Stage(j) = bases[i] {
            deps[i].push((j, stages[i].from_node));
        }
        let mut nodes: Vec<&Node> = stages[i].body.clone();
        if let Base::Stage(j) = bases[i] {
            nodes.extend(stages[j].body.iter().filter_map(|n| n.inner.as_deref()));
        }
        for node in nodes {
            for (value, span) in from_refs(node) {
                if let SourceRef::Stage(j) = resolve_ref(
                    &value,
                    names,
                    &opts.named_contexts,
                    stages.len(),
                    node,
                    span,
                )? {
                    if j == i {
                        return Err(node_error(node, ErrorKind::SelfReference, span)
                            .with_help("copy from an earlier stage or an image"));
                    }
                    deps[i].push((j, node));
                }
            }
        }
    }
    Ok(deps)
}

/// The stage `--target` names (the last stage without one), or an error suggesting a name.
fn resolve_target(
    target: Option<&str>,
    stage_count: usize,
    names: &HashMap<String, usize>,
) -> Result<usize, Diagnostic> {
    let Some(t) = target else {
        return Ok(stage_count - 1);
    };
    if let Some(&i) = names.get(&t.to_ascii_lowercase()) {
        return Ok(i);
    }
    let mut d = Diagnostic::unlocated(ErrorKind::UnknownTarget(t.to_string()));
    let known: Vec<&str> = names.keys().map(String::as_str).collect();
    if let Some(s) = instructions::suggest(t, known.iter().copied()) {
        d = d.with_help(format!("did you mean `{s}`?"));
    } else if !known.is_empty() {
        let mut known = known;
        known.sort();
        d = d.with_help(format!("stages: {}", known.join(", ")));
    }
    Err(d)
}

/// A located error for `node` at `span`.
pub(crate) fn node_error(node: &Node, kind: ErrorKind, span: Span) -> Diagnostic {
    let span = if span.line == 0 { node.span } else { span };
    let mut line = node.original.lines().next().unwrap_or("").to_string();
    if span.line == node.start_line {
        line = format!("{}{}", " ".repeat(node.span.column.saturating_sub(1)), line);
    }
    Diagnostic::new(kind, span, line)
}

/// The `--from` and `--mount=...,from=` values of a node, unexpanded, with their spans.
pub(crate) fn from_refs(node: &Node) -> Vec<(String, Span)> {
    let mut out = Vec::new();
    for f in &node.flags {
        let text = f.value.strip_prefix("--").unwrap_or(&f.value);
        if node.value == "copy" {
            if let Some(v) = text.strip_prefix("from=") {
                out.push((v.to_string(), f.span));
            }
        } else if node.value == "run" {
            if let Some(v) = text.strip_prefix("mount=") {
                for field in v.split(',') {
                    if let Some((k, val)) = field.split_once('=') {
                        if k.eq_ignore_ascii_case("from") {
                            out.push((val.trim_matches('"').to_string(), f.span));
                        }
                    }
                }
            }
        }
    }
    out
}

/// Whether the filesystem of `v` is the empty one of `FROM scratch`: nothing but config
/// changes on top of it. BuildKit has no filesystem to read `/etc/passwd` from then.
pub(crate) fn is_empty_scratch(def: &Definition, mut v: engine::graph::VertexId) -> bool {
    use engine::graph::{Op, SourceOp};
    loop {
        let Some(vertex) = def.vertex(v) else {
            return false;
        };
        match (&vertex.op, vertex.inputs.first()) {
            (Op::Source(SourceOp::Scratch), _) => return true,
            (Op::Config(_), Some(&input)) => v = input,
            _ => return false,
        }
    }
}

/// The first name (neither an id nor `root`) of a `--chown` value, if it has one.
pub(crate) fn chown_name(chown: &str) -> Option<&str> {
    chown
        .split(':')
        .take(2)
        .find(|side| !side.is_empty() && *side != "root" && side.parse::<i32>().is_err())
}

/// Resolves a `--from` value: a stage index, a stage name, or else an image.
pub(crate) fn resolve_ref(
    value: &str,
    names: &HashMap<String, usize>,
    named_contexts: &BTreeMap<String, NamedContext>,
    count: usize,
    node: &Node,
    span: Span,
) -> Result<SourceRef, Diagnostic> {
    if let Ok(index) = value.parse::<usize>() {
        if index >= count {
            return Err(
                node_error(node, ErrorKind::StageIndexOutOfRange { index, count }, span)
                    .with_help(format!("stage indexes run from 0 to {}", count - 1)),
            );
        }
        return Ok(SourceRef::Stage(index));
    }
    if let Some(&i) = names.get(&value.to_ascii_lowercase()) {
        return Ok(SourceRef::Stage(i));
    }
    match named_context(named_contexts, value) {
        Some((key, NamedContext::Local)) => Ok(SourceRef::Context(key.to_string())),
        Some((_, NamedContext::Image(reference))) => Ok(SourceRef::Image(reference.clone())),
        None => Ok(SourceRef::Image(value.to_string())),
    }
}

fn check_cycles(stages: &[StageNodes], deps: &[Vec<(usize, &Node)>]) -> Result<(), Diagnostic> {
    // 0 = unvisited, 1 = on the stack, 2 = done.
    fn visit(
        i: usize,
        deps: &[Vec<(usize, &Node)>],
        state: &mut [u8],
        stack: &mut Vec<usize>,
    ) -> Option<(Vec<usize>, usize)> {
        state[i] = 1;
        stack.push(i);
        for (pos, &(j, _)) in deps[i].iter().enumerate() {
            if state[j] == 1 {
                let start = stack.iter().position(|&s| s == j).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(j);
                return Some((cycle, pos));
            }
            if state[j] == 0 {
                if let Some(found) = visit(j, deps, state, stack) {
                    return Some(found);
                }
            }
        }
        stack.pop();
        state[i] = 2;
        None
    }
    let mut state = vec![0u8; stages.len()];
    for i in 0..stages.len() {
        if state[i] != 0 {
            continue;
        }
        let mut stack = Vec::new();
        if let Some((cycle, _)) = visit(i, deps, &mut state, &mut stack) {
            let name = |s: usize| {
                stages[s]
                    .from
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("stage-{s}"))
            };
            let text: Vec<String> = cycle.iter().map(|&s| name(s)).collect();
            // Point at the instruction that closes the cycle.
            let from = cycle[cycle.len() - 2];
            let to = cycle[cycle.len() - 1];
            let node = deps[from]
                .iter()
                .find(|(j, _)| *j == to)
                .map(|(_, n)| *n)
                .unwrap_or(stages[from].from_node);
            let span = from_refs(node)
                .first()
                .map(|(_, s)| *s)
                .unwrap_or(node.keyword_span);
            return Err(node_error(node, ErrorKind::Cycle(text.join(" -> ")), span)
                .with_help("a stage can only use stages that do not use it"));
        }
    }
    Ok(())
}

fn postorder(i: usize, deps: &[Vec<(usize, &Node)>], seen: &mut [bool], out: &mut Vec<usize>) {
    if seen[i] {
        return;
    }
    seen[i] = true;
    let mut next: Vec<usize> = deps[i].iter().map(|(j, _)| *j).collect();
    next.sort();
    next.dedup();
    for j in next {
        postorder(j, deps, seen, out);
    }
    out.push(i);
}

#[cfg(test)]
mod tests;
