//! Lowering one stage: its instructions, in order, onto a chain of vertices.

use super::args::ArgValues;
use super::history;
use super::step_env::{ConfigEnv, StepEnv};
use super::{
    node_error, resolve_ref, Base, BaseImageConfig, DockerfileLexer, LowerOptions, Lowered,
    ShellExpander, SourceRef, StageNodes, Warning,
};
use crate::instructions::{
    self, Command, CopyArgs, Diagnostic, ErrorKind, Instruction, Mount, MountType, ShellOrExec,
};
use crate::parser::ast::Node;
use engine::graph::{
    normalize_image_reference, CacheSharing, ConfigChange, CopySpec, Definition, FileAction,
    FileOp, HistoryEntry, InputIndex, MergeOp, MountKind, MountSpec, NetworkMode, Op, Platform,
    SourceOp, StageBase, StageId, StageInfo, VertexId, VertexMeta,
};
use std::collections::HashMap;

// One file per family of instructions, as BuildKit's `convert_*.go`: the `Lowerer` methods that
// lower them live there (`config`: metadata instructions; `copy`: COPY/ADD; `run`: RUN and its
// mounts; `sources`: FROM, `--from` and the build context); this file holds the stage's state,
// its start and end, dispatch and WORKDIR.
mod config;
mod copy;
mod run;
mod sources;

use copy::CopyKind;

/// The default PATH BuildKit gives Linux images that have none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The state a stage leaves behind, for stages built on it.
#[derive(Debug, Clone)]
struct Finished {
    vertex: VertexId,
    stage_id: StageId,
    env: StepEnv,
    config_env: ConfigEnv,
    /// The ARGs the stage declared (and inherited): a stage built on it starts with them.
    args: Vec<(String, Option<String>)>,
    workdir: String,
    config_workdir: String,
    user: String,
    shell: Vec<String>,
    resolved: bool,
    platform: Platform,
}

/// The state of the stage being lowered.
struct StageState {
    index: usize,
    stage_id: StageId,
    current: VertexId,
    /// What the stage's steps see: ENV and ARG values in the order of their last assignment.
    env: StepEnv,
    /// The image config's `Env` (ENV only), which a stage built on this one applies again.
    config_env: ConfigEnv,
    /// ARGs declared in this stage (and inherited), in declaration order, each with the value it
    /// took: RUN history lists them.
    args: Vec<(String, Option<String>)>,
    workdir: String,
    /// The image config's `WorkingDir` as BuildKit keeps it (an absolute WORKDIR as written):
    /// an empty WORKDIR keeps it.
    config_workdir: String,
    user: String,
    shell: Vec<String>,
    cmd_set: bool,
    resolved: bool,
    display: String,
    cmd_index: usize,
    cmd_total: usize,
    platform: Platform,
}

/// Variables visible to expansion: the step environment (ENV and ARG values, the last
/// assignment winning). Looked up in place: copying every variable for each instruction made
/// lowering quadratic in the number of instructions of an ENV-heavy stage.
impl crate::shell::Env for StageState {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.env.get(name)
    }
}

impl StageState {
    /// An ENV: sets the variable in the step environment and in the image config.
    fn set_env(&mut self, key: String, value: String) {
        self.env.set(key.clone(), value.clone());
        self.config_env.set(key, value);
    }

    /// The environment of a RUN step's process.
    fn exec_env(&self) -> Vec<(String, String)> {
        self.env.to_vec()
    }

    /// The declared ARGs as RUN history shows them: each once, where first declared, with the
    /// value the step environment holds (an ENV of the same name wins), as BuildKit writes it.
    fn history_args(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.args {
            let value = self
                .env
                .get(k)
                .map(str::to_string)
                .or_else(|| v.clone())
                .unwrap_or_default();
            match out.iter_mut().find(|(e, _)| e == k) {
                Some(slot) => slot.1 = value,
                None => out.push((k.clone(), value)),
            }
        }
        out
    }

    /// `[stage 2/5] ` as BuildKit prefixes progress names.
    fn prefix(&mut self, text: &str) -> String {
        if self.cmd_total == 0 {
            return text.to_string();
        }
        self.cmd_index += 1;
        let width = self.cmd_total.to_string().len();
        let stage = if self.display.is_empty() {
            String::new()
        } else {
            format!("{} ", self.display)
        };
        format!(
            "[{stage}{:>width$}/{}] {text}",
            self.cmd_index, self.cmd_total
        )
    }

    fn shell_wrap(&self, cmd: &ShellOrExec) -> Vec<String> {
        match cmd {
            ShellOrExec::Exec(args) => args.clone(),
            ShellOrExec::Shell(text) => {
                let mut out = if self.shell.is_empty() {
                    vec!["/bin/sh".to_string(), "-c".to_string()]
                } else {
                    self.shell.clone()
                };
                out.push(text.clone());
                out
            }
        }
    }

    /// Makes `p` absolute against the working directory, keeping a trailing `/`.
    fn resolve_path(&self, p: &str) -> String {
        let joined = if p.starts_with('/') {
            clean_path(p)
        } else {
            clean_path(&format!("{}/{}", self.workdir_or_root(), p))
        };
        let dir_like = p.ends_with('/') || p.ends_with("/.") || p == "." || p.is_empty();
        if dir_like && !joined.ends_with('/') {
            format!("{joined}/")
        } else {
            joined
        }
    }

    fn workdir_or_root(&self) -> String {
        if self.workdir.is_empty() {
            "/".to_string()
        } else {
            self.workdir.clone()
        }
    }
}

/// Lexically cleans an absolute path (`/a/./b/../c` → `/a/c`).
pub(crate) fn clean_path(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for comp in p.split('/') {
        match comp {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Lowers stages one by one into one [`Definition`].
pub(crate) struct Lowerer<'a> {
    opts: &'a LowerOptions<'a>,
    lexer: &'a DockerfileLexer,
    stages: &'a [StageNodes<'a>],
    bases: &'a [Base],
    names: &'a HashMap<String, usize>,
    args: ArgValues,
    target_platform: Platform,
    def: Definition,
    finished: HashMap<usize, Finished>,
    warnings: Vec<Warning>,
    proxy_env: Vec<(String, String)>,
}

fn graph_error(node: &Node, e: engine::graph::GraphError) -> Diagnostic {
    node_error(node, ErrorKind::Graph(e.to_string()), node.keyword_span)
}

impl<'a> Lowerer<'a> {
    pub fn new(
        opts: &'a LowerOptions<'a>,
        lexer: &'a DockerfileLexer,
        stages: &'a [StageNodes<'a>],
        bases: &'a [Base],
        names: &'a HashMap<String, usize>,
        args: ArgValues,
        target_platform: Platform,
    ) -> Self {
        let proxy_env = args.proxy_env();
        Lowerer {
            opts,
            lexer,
            stages,
            bases,
            names,
            args,
            target_platform,
            def: Definition::new(),
            finished: HashMap::new(),
            warnings: Vec::new(),
            proxy_env,
        }
    }

    fn add(
        &mut self,
        node: &Node,
        op: Op,
        inputs: Vec<VertexId>,
        platform: &Platform,
        meta: VertexMeta,
    ) -> Result<VertexId, Diagnostic> {
        self.def
            .add(op, inputs, platform.clone(), meta)
            .map_err(|e| graph_error(node, e))
    }

    fn meta(
        st: &StageState,
        node: &Node,
        name: String,
        history: Option<HistoryEntry>,
    ) -> VertexMeta {
        VertexMeta {
            name,
            stage: Some(st.stage_id),
            line_range: Some((node.start_line, node.end_line)),
            history,
        }
    }

    /// The platform of stage `i`: its `FROM --platform`, else the build's target platform.
    fn stage_platform(&self, i: usize) -> Result<Platform, Diagnostic> {
        let st_nodes = &self.stages[i];
        let from_node = st_nodes.from_node;
        Ok(match &st_nodes.from.platform {
            Some(p) => p.parse::<Platform>().map_err(|e| {
                let span = from_node
                    .flags
                    .iter()
                    .find(|f| f.value.starts_with("--platform"))
                    .map(|f| f.span)
                    .unwrap_or(from_node.keyword_span);
                node_error(
                    from_node,
                    ErrorKind::BadFlagValue {
                        flag: "platform".into(),
                        value: p.clone(),
                        reason: e.reason,
                    },
                    span,
                )
                .with_help("write `--platform=linux/amd64` or `--platform=$BUILDPLATFORM`")
            })?,
            None => self.target_platform.clone(),
        })
    }

    /// Starts stage `i` from its base (another stage, scratch, a named context or an image):
    /// the vertex it builds on, the environment, workdir, user and shell it inherits, and the
    /// ONBUILD triggers it must run first (into `triggers`).
    fn start_from_base(
        &mut self,
        st: &mut StageState,
        i: usize,
        platform: &Platform,
        triggers: &mut Vec<Node>,
    ) -> Result<StageBase, Diagnostic> {
        let stages = self.stages;
        let st_nodes = &stages[i];
        let from_node = st_nodes.from_node;
        let stage_id = st.stage_id;
        let base = &self.bases[i];
        Ok(match base {
            Base::Stage(j) => {
                let f = self.finished.get(j).cloned().ok_or_else(|| {
                    node_error(
                        from_node,
                        ErrorKind::Graph(format!("stage {j} was not lowered before stage {i}")),
                        from_node.keyword_span,
                    )
                })?;
                st.current = f.vertex;
                // As BuildKit starts a stage: the parent's step environment, with the image
                // config's Env applied over it (an ENV wins again over an ARG of its name).
                st.env = f.env;
                for (k, v) in f.config_env.vars() {
                    st.env.set(k.clone(), v.clone());
                }
                st.config_env = f.config_env;
                // As BuildKit: a stage built on another keeps the ARGs that one declared, with
                // their values, for its RUN steps, expansions and history.
                st.args = f.args;
                st.workdir = f.workdir;
                st.config_workdir = f.config_workdir;
                st.user = f.user;
                st.shell = f.shell;
                st.resolved = f.resolved;
                st.platform = if st_nodes.from.platform.is_some() {
                    platform.clone()
                } else {
                    f.platform
                };
                // ONBUILD triggers of a base stage run first in this one.
                for n in &stages[*j].body {
                    if let Some(inner) = &n.inner {
                        triggers.push((**inner).clone());
                    }
                }
                StageBase::Stage { stage: f.stage_id }
            }
            Base::Scratch => {
                st.current = self.add(
                    from_node,
                    Op::Source(SourceOp::Scratch),
                    vec![],
                    platform,
                    VertexMeta::default(),
                )?;
                st.set_env("PATH".into(), DEFAULT_PATH.into());
                StageBase::Scratch
            }
            Base::Context(name) => {
                st.current = self.named_context_source(from_node, name, platform)?;
                st.set_env("PATH".into(), DEFAULT_PATH.into());
                StageBase::Scratch
            }
            Base::Image(reference) => {
                let name = st.prefix(&format!("FROM {reference}"));
                st.current =
                    self.image_source(from_node, reference, platform, name, Some(stage_id))?;
                match self.resolve_base_config(from_node, reference, platform)? {
                    Some(cfg) => {
                        st.env = StepEnv::from_vars(cfg.env.clone());
                        st.config_env = ConfigEnv::from_vars(cfg.env);
                        if !st.config_env.contains("PATH") {
                            st.set_env("PATH".into(), DEFAULT_PATH.into());
                        }
                        st.config_workdir = cfg.working_dir.clone();
                        st.workdir = cfg.working_dir;
                        st.user = cfg.user;
                        st.shell = cfg.shell;
                        for t in &cfg.onbuild {
                            triggers.extend(parse_trigger(from_node, t)?);
                        }
                    }
                    None => st.resolved = false,
                }
                StageBase::Image {
                    reference: reference.clone(),
                }
            }
        })
    }

    /// Lowers stage `i`; the stages it depends on must be lowered already.
    pub fn lower_stage(&mut self, i: usize) -> Result<(), Diagnostic> {
        let stages = self.stages;
        let st_nodes = &stages[i];
        let from_node = st_nodes.from_node;
        let platform = self.stage_platform(i)?;
        let display = if stages.len() == 1 {
            String::new()
        } else {
            st_nodes
                .from
                .name
                .clone()
                .unwrap_or_else(|| format!("stage-{i}"))
        };
        let base = &self.bases[i];
        let counted = st_nodes
            .body
            .iter()
            .filter(|n| matches!(n.value.as_str(), "run" | "copy" | "add" | "workdir"))
            .count();
        let from_counts = matches!(base, Base::Image(_));
        let cmd_total = counted + usize::from(from_counts);
        let stage_id = self.def.stages().len();
        let mut st = StageState {
            index: i,
            stage_id,
            current: VertexId(0),
            env: StepEnv::default(),
            config_env: ConfigEnv::default(),
            args: Vec::new(),
            workdir: String::new(),
            config_workdir: String::new(),
            user: String::new(),
            shell: Vec::new(),
            cmd_set: false,
            resolved: true,
            display,
            cmd_index: 0,
            cmd_total,
            platform: platform.clone(),
        };
        let mut triggers: Vec<Node> = Vec::new();
        let stage_base = self.start_from_base(&mut st, i, &platform, &mut triggers)?;
        st.cmd_total += triggers
            .iter()
            .filter(|n| matches!(n.value.as_str(), "run" | "copy" | "add" | "workdir"))
            .count();
        if !triggers.is_empty() {
            // The triggers run here, once: the new image does not carry them on.
            let meta = Self::meta(&st, from_node, String::new(), None);
            st.current = self.add(
                from_node,
                Op::Config(ConfigChange::ClearOnbuild),
                vec![st.current],
                &st.platform.clone(),
                meta,
            )?;
        }
        for node in &triggers {
            self.dispatch(&mut st, node)?;
        }
        for node in &st_nodes.body {
            self.dispatch(&mut st, node)?;
        }
        let info = StageInfo {
            name: if st.display.is_empty() {
                st_nodes
                    .from
                    .name
                    .clone()
                    .unwrap_or_else(|| format!("stage-{i}"))
            } else {
                st.display.clone()
            },
            alias: st_nodes.from.name.clone(),
            index: i,
            base: stage_base,
            base_config_resolved: st.resolved,
            final_vertex: st.current,
            platform: st.platform.clone(),
        };
        let id = self.def.add_stage(info);
        debug_assert_eq!(id, stage_id);
        self.finished.insert(
            i,
            Finished {
                vertex: st.current,
                stage_id,
                env: st.env,
                config_env: st.config_env,
                args: st.args,
                workdir: st.workdir,
                config_workdir: st.config_workdir,
                user: st.user,
                shell: st.shell,
                resolved: st.resolved,
                platform: st.platform,
            },
        );
        Ok(())
    }

    /// Sets the target and hands back the graph.
    pub fn finish(mut self, target: usize) -> Result<Lowered, Diagnostic> {
        let f = self.finished.get(&target).cloned().ok_or_else(|| {
            Diagnostic::unlocated(ErrorKind::Graph("the target stage was not lowered".into()))
        })?;
        self.def.set_target(f.vertex, Some(f.stage_id));
        let unused = self.args.unconsumed();
        if !unused.is_empty() {
            self.warnings.push(Warning {
                message: format!(
                    "one or more build args were not consumed: {}",
                    unused.join(", ")
                ),
                line: None,
            });
        }
        Ok(Lowered {
            definition: self.def,
            warnings: self.warnings,
        })
    }

    fn dispatch(&mut self, st: &mut StageState, node: &Node) -> Result<(), Diagnostic> {
        let ex = ShellExpander::new(self.lexer, &*st);
        let file = self.opts.file_name.as_str();
        let ins = instructions::parse(node, &ex, file)?;
        match ins.command {
            Command::From(_) => unreachable!("FROM starts a stage"),
            Command::Workdir(path) => self.workdir(st, node, &path),
            Command::Run(_) => self.run(st, node, ins),
            Command::Copy(c) => {
                let from = match &c.from {
                    Some(f) => Some(self.copy_source(st, node, f)?),
                    None => None,
                };
                let kind = CopyKind::Copy { parents: c.parents };
                self.copy(st, node, &c.args, from, kind)
            }
            Command::Add(a) => {
                let kind = CopyKind::Add {
                    checksum: a.checksum.clone(),
                    keep_git_dir: a.keep_git_dir,
                    unpack: a.unpack,
                };
                self.copy(st, node, &a.args, None, kind)
            }
            metadata => self.metadata(st, node, metadata),
        }
    }

    fn display_name(&self, st: &StageState, node: &Node) -> String {
        let first = node.original.lines().next().unwrap_or("").trim();
        let (kw, rest) = match first.find(char::is_whitespace) {
            Some(p) => (&first[..p], &first[p..]),
            None => (first, ""),
        };
        let text = format!("{}{rest}", kw.to_ascii_uppercase());
        self.lexer
            .lexer()
            .clone()
            .raw_quotes(true)
            .skip_unset_env(true)
            .process_word(&text, st)
            .unwrap_or(text)
    }

    fn workdir(&mut self, st: &mut StageState, node: &Node, path: &str) -> Result<(), Diagnostic> {
        // An empty WORKDIR (a variable that expanded to nothing) keeps the current one as the
        // config has it, as BuildKit.
        let current = if st.config_workdir.is_empty() {
            "/".to_string()
        } else {
            st.config_workdir.clone()
        };
        let path = if path.is_empty() {
            current.as_str()
        } else {
            path
        };
        let wd = if path.starts_with('/') {
            clean_path(path)
        } else if st.workdir.is_empty() && !st.resolved {
            // Relative to a base-image workdir not known here: kept relative for the solver.
            clean_path(&format!("/{path}"))
                .trim_start_matches('/')
                .to_string()
        } else {
            clean_path(&format!("{}/{path}", st.workdir_or_root()))
        };
        st.workdir = wd.clone();
        // The config and history keep an absolute WORKDIR as written (`/srv/app/`), as BuildKit
        // does; a relative one is joined to the current one and cleaned.
        let shown = if path.starts_with('/') {
            path.to_string()
        } else {
            wd.clone()
        };
        let platform = st.platform.clone();
        let name = self.display_name(st, node);
        let name = st.prefix(&name);
        st.config_workdir = shown.clone();
        let created = format!("WORKDIR {shown}");
        if wd == "/" {
            let meta = Self::meta(
                st,
                node,
                String::new(),
                Some(HistoryEntry {
                    created_by: created,
                    empty_layer: true,
                }),
            );
            st.current = self.add(
                node,
                Op::Config(ConfigChange::Workdir(shown)),
                vec![st.current],
                &platform,
                meta,
            )?;
            return Ok(());
        }
        let meta = Self::meta(st, node, String::new(), None);
        st.current = self.add(
            node,
            Op::Config(ConfigChange::Workdir(shown)),
            vec![st.current],
            &platform,
            meta,
        )?;
        let owner = if st.user.is_empty() {
            None
        } else {
            Some(st.user.clone())
        };
        let meta = Self::meta(
            st,
            node,
            name,
            Some(HistoryEntry {
                created_by: created,
                empty_layer: false,
            }),
        );
        st.current = self.add(
            node,
            Op::File(FileOp {
                base: Some(0),
                actions: vec![FileAction::Mkdir {
                    path: wd,
                    mode: 0o755,
                    make_parents: true,
                    owner,
                }],
            }),
            vec![st.current],
            &platform,
            meta,
        )?;
        Ok(())
    }
}

/// Parses an image's ONBUILD trigger into a node.
fn parse_trigger(from_node: &Node, text: &str) -> Result<Vec<Node>, Diagnostic> {
    let parsed = crate::parser::parse(text).map_err(|e| {
        node_error(
            from_node,
            ErrorKind::BadValue {
                what: "ONBUILD trigger of the base image".into(),
                value: text.to_string(),
                reason: e.to_string(),
            },
            from_node.keyword_span,
        )
    })?;
    Ok(parsed.children)
}

/// The delimiter of a word that is a whole heredoc (`<<EOF`, `<<-"EOF"`).
fn heredoc_delimiter(word: &str) -> Option<String> {
    let rest = word.strip_prefix("<<")?;
    let rest = rest.strip_prefix('-').unwrap_or(rest);
    let name: String = rest.chars().filter(|c| *c != '"' && *c != '\'').collect();
    if name.is_empty() || name.contains(char::is_whitespace) {
        None
    } else {
        Some(name)
    }
}
