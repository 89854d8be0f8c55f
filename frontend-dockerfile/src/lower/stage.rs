//! Lowering one stage: its instructions, in order, onto a chain of vertices.

use super::args::ArgValues;
use super::history;
use super::{
    node_error, resolve_ref, Base, BaseImageConfig, LowerOptions, Lowered, ShellExpander,
    SourceRef, StageNodes, Warning,
};
use crate::instructions::{
    self, Command, CopyArgs, Diagnostic, ErrorKind, InlineFile, Instruction, Mount, MountType,
    ShellOrExec,
};
use crate::parser::ast::Node;
use crate::shell::Lexer;
use engine::graph::{
    normalize_image_reference, CacheSharing, ConfigChange, CopySpec, Definition, FileAction,
    FileOp, HistoryEntry, InputIndex, MergeOp, MountKind, MountSpec, Op, Platform, SourceOp,
    StageBase, StageId, StageInfo, VertexId, VertexMeta,
};
use std::collections::HashMap;

/// The default PATH BuildKit gives Linux images that have none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The state a stage leaves behind, for stages built on it.
#[derive(Debug, Clone)]
struct Finished {
    vertex: VertexId,
    stage_id: StageId,
    env: Vec<(String, String)>,
    /// The ARGs the stage declared (and inherited): a stage built on it starts with them.
    args: Vec<(String, Option<String>)>,
    workdir: String,
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
    /// ENV in image-config order; change it only through [`StageState::set_env`] and
    /// [`StageState::replace_env`], which keep `env_index` in step.
    env: Vec<(String, String)>,
    /// Name → position in `env` (the first of duplicates, as `set_env` updates): lookups and
    /// updates stay O(1) however many variables a stage sets.
    env_index: HashMap<String, usize>,
    /// ARGs declared in this stage, with their values.
    args: Vec<(String, Option<String>)>,
    workdir: String,
    user: String,
    shell: Vec<String>,
    cmd_set: bool,
    resolved: bool,
    display: String,
    cmd_index: usize,
    cmd_total: usize,
    platform: Platform,
}

/// Variables visible to expansion: ENV, then the stage's ARGs that have a value (ENV wins).
/// Looked up in place: copying every variable for each instruction made lowering quadratic in
/// the number of instructions of an ENV-heavy stage.
impl crate::shell::Env for StageState {
    fn lookup(&self, name: &str) -> Option<&str> {
        if let Some(&i) = self.env_index.get(name) {
            return Some(&self.env[i].1);
        }
        self.args
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

impl StageState {
    /// The environment of a RUN: ENV, then ARGs no ENV overrides.
    fn exec_env(&self) -> Vec<(String, String)> {
        let mut out = self.env.clone();
        for (k, v) in &self.args {
            if let Some(v) = v {
                if !self.env.iter().any(|(e, _)| e == k) {
                    out.retain(|(e, _)| e != k);
                    out.push((k.clone(), v.clone()));
                }
            }
        }
        out
    }

    /// The declared ARGs as RUN history shows them (ENV values win).
    fn history_args(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in &self.args {
            let value = self
                .env
                .iter()
                .rev()
                .find(|(e, _)| e == k)
                .map(|(_, v)| v.clone())
                .or_else(|| v.clone())
                .unwrap_or_default();
            match out.iter_mut().find(|(e, _)| e == k) {
                Some(slot) => slot.1 = value,
                None => out.push((k.clone(), value)),
            }
        }
        out
    }

    fn set_env(&mut self, key: String, value: String) {
        match self.env_index.get(&key) {
            Some(&i) => self.env[i].1 = value,
            None => {
                self.env_index.insert(key.clone(), self.env.len());
                self.env.push((key, value));
            }
        }
    }

    /// Replaces the whole environment (a base image's or a base stage's).
    fn replace_env(&mut self, env: Vec<(String, String)>) {
        self.env_index.clear();
        for (i, (k, _)) in env.iter().enumerate() {
            self.env_index.entry(k.clone()).or_insert(i);
        }
        self.env = env;
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
    lexer: &'a Lexer,
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
        lexer: &'a Lexer,
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

    /// A one-file filesystem holding a heredoc body (`/<name>`), for RUN and COPY to use.
    fn inline_document(
        &mut self,
        node: &Node,
        name: &str,
        data: &str,
        mode: u32,
        platform: &Platform,
    ) -> Result<VertexId, Diagnostic> {
        self.add(
            node,
            Op::File(FileOp {
                base: None,
                actions: vec![FileAction::Mkfile {
                    path: format!("/{name}"),
                    mode,
                    data: data.to_string(),
                    owner: None,
                }],
            }),
            vec![],
            platform,
            VertexMeta {
                name: "preparing inline document".into(),
                ..VertexMeta::default()
            },
        )
    }

    fn image_source(
        &mut self,
        node: &Node,
        reference: &str,
        platform: &Platform,
        name: String,
        stage: Option<StageId>,
    ) -> Result<VertexId, Diagnostic> {
        let reference = normalize_image_reference(reference).map_err(|e| {
            node_error(
                node,
                ErrorKind::BadValue {
                    what: "image reference".into(),
                    value: reference.to_string(),
                    reason: e.to_string(),
                },
                node.keyword_span,
            )
        })?;
        self.add(
            node,
            Op::Source(SourceOp::Image {
                reference,
                platform: platform.clone(),
            }),
            vec![],
            platform,
            VertexMeta {
                name,
                stage,
                line_range: Some((node.start_line, node.end_line)),
                history: None,
            },
        )
    }

    fn context_source(
        &mut self,
        node: &Node,
        includes: Vec<String>,
        platform: &Platform,
    ) -> Result<VertexId, Diagnostic> {
        self.add(
            node,
            Op::Source(SourceOp::Context {
                name: self.opts.context_name.clone(),
                includes,
                excludes: self.opts.dockerignore.clone(),
            }),
            vec![],
            platform,
            VertexMeta {
                name: "[internal] load build context".into(),
                ..VertexMeta::default()
            },
        )
    }

    fn resolve_base_config(
        &self,
        node: &Node,
        reference: &str,
        platform: &Platform,
    ) -> Result<Option<BaseImageConfig>, Diagnostic> {
        let Some(resolver) = self.opts.resolver else {
            return Ok(None);
        };
        resolver.resolve(reference, platform).map_err(|e| {
            node_error(
                node,
                ErrorKind::BadValue {
                    what: "base image".into(),
                    value: reference.to_string(),
                    reason: e,
                },
                node.args
                    .first()
                    .map(|w| w.span)
                    .unwrap_or(node.keyword_span),
            )
        })
    }

    /// Lowers stage `i`; the stages it depends on must be lowered already.
    pub fn lower_stage(&mut self, i: usize) -> Result<(), Diagnostic> {
        let stages = self.stages;
        let st_nodes = &stages[i];
        let from_node = st_nodes.from_node;
        let platform = match &st_nodes.from.platform {
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
        };
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
            env: Vec::new(),
            env_index: HashMap::new(),
            args: Vec::new(),
            workdir: String::new(),
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
        let stage_base = match base {
            Base::Stage(j) => {
                let f = self.finished.get(j).cloned().ok_or_else(|| {
                    node_error(
                        from_node,
                        ErrorKind::Graph(format!("stage {j} was not lowered before stage {i}")),
                        from_node.keyword_span,
                    )
                })?;
                st.current = f.vertex;
                st.replace_env(f.env);
                // As BuildKit: a stage built on another keeps the ARGs that one declared, with
                // their values, for its RUN steps, expansions and history.
                st.args = f.args;
                st.workdir = f.workdir;
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
                    &platform,
                    VertexMeta::default(),
                )?;
                st.set_env("PATH".into(), DEFAULT_PATH.into());
                StageBase::Scratch
            }
            Base::Image(reference) => {
                let name = st.prefix(&format!("FROM {reference}"));
                st.current =
                    self.image_source(from_node, reference, &platform, name, Some(stage_id))?;
                match self.resolve_base_config(from_node, reference, &platform)? {
                    Some(cfg) => {
                        st.replace_env(cfg.env);
                        if !st.env_index.contains_key("PATH") {
                            st.set_env("PATH".into(), DEFAULT_PATH.into());
                        }
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
        };
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
                args: st.args,
                workdir: st.workdir,
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
        let platform = st.platform.clone();
        let config = |st: &mut StageState,
                      this: &mut Self,
                      change: ConfigChange,
                      created_by: Option<String>|
         -> Result<(), Diagnostic> {
            let history = created_by.map(|c| HistoryEntry {
                created_by: c,
                empty_layer: true,
            });
            let meta = Self::meta(st, node, String::new(), history);
            st.current = this.add(node, Op::Config(change), vec![st.current], &platform, meta)?;
            Ok(())
        };
        match ins.command {
            Command::From(_) => unreachable!("FROM starts a stage"),
            Command::Env(pairs) => {
                let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                for (k, v) in &pairs {
                    st.set_env(k.clone(), v.clone());
                }
                config(
                    st,
                    self,
                    ConfigChange::Env(pairs),
                    Some(format!("ENV {}", text.join(" "))),
                )?;
            }
            Command::Arg(decls) => {
                let mut text = Vec::new();
                let mut change = Vec::new();
                for d in decls {
                    let value = self.args.declare_in_stage(&d.name, d.default.clone());
                    // The history shows the value the ARG took: a build arg, the default, or
                    // the global (platform args included) a bare declaration inherits.
                    text.push(match &value {
                        Some(v) => format!("{}={v}", d.name),
                        None => d.name.clone(),
                    });
                    change.push((d.name.clone(), d.default.clone()));
                    st.args.retain(|(k, _)| *k != d.name);
                    st.args.push((d.name, value));
                }
                config(
                    st,
                    self,
                    ConfigChange::Arg(change),
                    Some(format!("ARG {}", text.join(" "))),
                )?;
            }
            Command::Label(pairs) => {
                let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                config(
                    st,
                    self,
                    ConfigChange::Label(pairs),
                    Some(format!("LABEL {}", text.join(" "))),
                )?;
            }
            Command::Expose(ports) => {
                let created = history::expose(&ports);
                config(st, self, ConfigChange::Expose(ports), Some(created))?;
            }
            Command::Volume(vols) => {
                let created = format!("VOLUME {}", history::go_list(&vols));
                config(st, self, ConfigChange::Volume(vols), Some(created))?;
            }
            Command::User(user) => {
                st.user = user.clone();
                config(
                    st,
                    self,
                    ConfigChange::User(user.clone()),
                    Some(format!("USER {user}")),
                )?;
            }
            Command::StopSignal(sig) => {
                let created = format!("STOPSIGNAL {sig}");
                config(st, self, ConfigChange::StopSignal(sig), Some(created))?;
            }
            Command::Maintainer(m) => {
                let created = format!("MAINTAINER {m}");
                config(st, self, ConfigChange::Maintainer(m), Some(created))?;
            }
            Command::Onbuild { expression, .. } => {
                config(st, self, ConfigChange::Onbuild(expression), None)?;
            }
            Command::Shell(shell) => {
                st.shell = shell.clone();
                let created = format!("SHELL {}", history::go_list(&shell));
                config(st, self, ConfigChange::Shell(shell), Some(created))?;
            }
            Command::Healthcheck(h) => {
                let created = history::healthcheck(&h);
                config(st, self, ConfigChange::Healthcheck(h), Some(created))?;
            }
            Command::Cmd(cmd) => {
                let args = st.shell_wrap(&cmd);
                st.cmd_set = true;
                let created = format!("CMD {}", history::go_quote_list(&args));
                config(st, self, ConfigChange::Cmd(args), Some(created))?;
            }
            Command::Entrypoint(cmd) => {
                let args = st.shell_wrap(&cmd);
                let created = format!("ENTRYPOINT {}", history::go_quote_list(&args));
                let reset_cmd = !st.cmd_set;
                config(
                    st,
                    self,
                    ConfigChange::Entrypoint { args, reset_cmd },
                    Some(created),
                )?;
            }
            Command::Workdir(path) => self.workdir(st, node, &path)?,
            Command::Run(_) => self.run(st, node, ins)?,
            Command::Copy(c) => {
                let from = match &c.from {
                    Some(f) => Some(self.copy_source(st, node, f)?),
                    None => None,
                };
                self.copy(
                    st,
                    node,
                    &c.args,
                    from,
                    CopyKind::Copy { parents: c.parents },
                )?
            }
            Command::Add(a) => self.copy(
                st,
                node,
                &a.args,
                None,
                CopyKind::Add {
                    checksum: a.checksum.clone(),
                    keep_git_dir: a.keep_git_dir,
                    unpack: a.unpack,
                },
            )?,
        }
        Ok(())
    }

    fn display_name(&self, st: &StageState, node: &Node) -> String {
        let first = node.original.lines().next().unwrap_or("").trim();
        let (kw, rest) = match first.find(char::is_whitespace) {
            Some(p) => (&first[..p], &first[p..]),
            None => (first, ""),
        };
        let text = format!("{}{rest}", kw.to_ascii_uppercase());
        self.lexer
            .clone()
            .raw_quotes(true)
            .skip_unset_env(true)
            .process_word(&text, st)
            .unwrap_or(text)
    }

    fn workdir(&mut self, st: &mut StageState, node: &Node, path: &str) -> Result<(), Diagnostic> {
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

    /// Resolves `COPY --from` to the vertex holding the files.
    fn copy_source(
        &mut self,
        st: &StageState,
        node: &Node,
        from: &str,
    ) -> Result<VertexId, Diagnostic> {
        let span = node
            .flags
            .iter()
            .find(|f| f.value.starts_with("--from"))
            .map(|f| f.span)
            .unwrap_or(node.keyword_span);
        self.ref_vertex(st, node, from, span)
    }

    fn ref_vertex(
        &mut self,
        st: &StageState,
        node: &Node,
        value: &str,
        span: crate::parser::ast::Span,
    ) -> Result<VertexId, Diagnostic> {
        match resolve_ref(value, self.names, self.stages.len(), node, span)? {
            SourceRef::Stage(j) => match self.finished.get(&j) {
                Some(f) => Ok(f.vertex),
                None => Err(node_error(
                    node,
                    ErrorKind::Cycle(format!("stage-{} -> stage-{j}", st.index)),
                    span,
                )),
            },
            SourceRef::Image(image) => {
                let name = format!(
                    "FROM {}",
                    normalize_image_reference(&image).unwrap_or(image.clone())
                );
                let platform = st.platform.clone();
                self.image_source(node, &image, &platform, name, None)
                    .map_err(|mut d| {
                        d.span = span;
                        d
                    })
            }
        }
    }

    fn run(
        &mut self,
        st: &mut StageState,
        node: &Node,
        ins: Instruction,
    ) -> Result<(), Diagnostic> {
        let Command::Run(run) = ins.command else {
            unreachable!("run() is called for RUN")
        };
        let platform = st.platform.clone();
        let mut inputs = vec![st.current];
        let mut mounts = Vec::new();
        let mut args = st.shell_wrap(&run.cmd);
        if !run.heredocs.is_empty() {
            let ShellOrExec::Shell(cmdline) = &run.cmd else {
                return Err(node_error(
                    node,
                    ErrorKind::Unsupported("heredocs need the shell form of RUN".into()),
                    node.keyword_span,
                ));
            };
            let first = &run.heredocs[0];
            let whole_is_heredoc =
                heredoc_delimiter(cmdline.trim()).as_deref() == Some(first.name.as_str());
            if whole_is_heredoc && first.data.starts_with("#!") {
                // A script with a shebang: write it to a file and run that.
                let file =
                    self.inline_document(node, &first.name, &first.data, 0o755, &platform)?;
                inputs.push(file);
                mounts.push(MountSpec {
                    input: Some((inputs.len() - 1) as InputIndex),
                    target: "/dev/pipes/".into(),
                    kind: MountKind::Bind {
                        source: "/".into(),
                        readonly: true,
                    },
                });
                args = st.shell_wrap(&ShellOrExec::Shell(format!("/dev/pipes/{}", first.name)));
            } else if whole_is_heredoc {
                args = st.shell_wrap(&ShellOrExec::Shell(first.data.clone()));
            } else {
                let mut full = cmdline.clone();
                for InlineFile { name, data } in &run.heredocs {
                    full.push('\n');
                    full.push_str(data);
                    full.push_str(name);
                }
                args = st.shell_wrap(&ShellOrExec::Shell(full));
            }
        }
        let mut ssh_count = 0;
        for m in &run.mounts {
            let spec = self.mount(st, node, m, &mut inputs, &mut ssh_count)?;
            mounts.push(spec);
        }
        let history_args = st.history_args();
        let created = history::run(&args, &history_args);
        let name = self.display_name(st, node);
        let name = st.prefix(&name);
        let exec = engine::graph::ExecOp {
            args,
            env: st.exec_env(),
            proxy_env: self.proxy_env.clone(),
            cwd: st.workdir.clone(),
            user: st.user.clone(),
            network: run.network.unwrap_or_default(),
            security: run.security.unwrap_or_default(),
            mounts,
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
        st.current = self.add(node, Op::Exec(exec), inputs, &platform, meta)?;
        Ok(())
    }

    fn mount(
        &mut self,
        st: &StageState,
        node: &Node,
        m: &Mount,
        inputs: &mut Vec<VertexId>,
        ssh_count: &mut usize,
    ) -> Result<MountSpec, Diagnostic> {
        let add_input = |v: VertexId, inputs: &mut Vec<VertexId>| -> InputIndex {
            match inputs.iter().position(|&x| x == v) {
                Some(p) if p > 0 => p as InputIndex,
                _ => {
                    inputs.push(v);
                    (inputs.len() - 1) as InputIndex
                }
            }
        };
        let target = m.target.as_deref().map(|t| {
            let r = st.resolve_path(t);
            if r.len() > 1 {
                r.trim_end_matches('/').to_string()
            } else {
                r
            }
        });
        let platform = st.platform.clone();
        let spec = match m.kind {
            MountType::Bind => {
                let src = match &m.from {
                    Some(f) => self.ref_vertex(st, node, f, m.span)?,
                    None => self.context_source(node, Vec::new(), &platform)?,
                };
                MountSpec {
                    input: Some(add_input(src, inputs)),
                    target: target.unwrap_or_else(|| st.workdir_or_root()),
                    kind: MountKind::Bind {
                        source: clean_path(m.source.as_deref().unwrap_or("/")),
                        readonly: m.readonly,
                    },
                }
            }
            MountType::Cache => {
                let target = target.unwrap_or_else(|| st.workdir_or_root());
                let input = match &m.from {
                    Some(f) => {
                        let v = self.ref_vertex(st, node, f, m.span)?;
                        Some(add_input(v, inputs))
                    }
                    None => None,
                };
                MountSpec {
                    input,
                    target: target.clone(),
                    kind: MountKind::Cache {
                        id: m.id.clone().unwrap_or(target),
                        sharing: m.sharing.unwrap_or(CacheSharing::Shared),
                        readonly: m.readonly,
                        source: clean_path(m.source.as_deref().unwrap_or("/")),
                        mode: m.mode.unwrap_or(0o755),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    },
                }
            }
            MountType::Tmpfs => MountSpec {
                input: None,
                target: target.unwrap_or_else(|| st.workdir_or_root()),
                kind: MountKind::Tmpfs {
                    size: m.size.unwrap_or(0),
                },
            },
            MountType::Secret => {
                let id =
                    m.id.clone()
                        .or_else(|| m.source.clone())
                        .or_else(|| {
                            m.target
                                .as_deref()
                                .map(|t| t.rsplit('/').next().unwrap_or(t).to_string())
                        })
                        .or_else(|| m.env.clone())
                        .unwrap_or_default();
                let target = match (&target, &m.env) {
                    (Some(t), _) => t.clone(),
                    (None, Some(_)) => String::new(),
                    (None, None) => format!("/run/secrets/{id}"),
                };
                MountSpec {
                    input: None,
                    target,
                    kind: MountKind::Secret {
                        id,
                        env: m.env.clone(),
                        required: m.required,
                        mode: m.mode.unwrap_or(0o400),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    },
                }
            }
            MountType::Ssh => {
                let n = *ssh_count;
                *ssh_count += 1;
                MountSpec {
                    input: None,
                    target: target.unwrap_or_else(|| format!("/run/buildkit/ssh_agent.{n}")),
                    kind: MountKind::Ssh {
                        id: m.id.clone().unwrap_or_else(|| "default".into()),
                        required: m.required,
                        mode: m.mode.unwrap_or(0o600),
                        uid: m.uid.unwrap_or(0),
                        gid: m.gid.unwrap_or(0),
                    },
                }
            }
        };
        Ok(spec)
    }

    fn copy(
        &mut self,
        st: &mut StageState,
        node: &Node,
        c: &CopyArgs,
        from: Option<VertexId>,
        kind: CopyKind,
    ) -> Result<(), Diagnostic> {
        let platform = st.platform.clone();
        let is_add = matches!(kind, CopyKind::Add { .. });
        let dest = st.resolve_path(&c.dest);
        let link = c.link && c.chmod.is_none();
        if let (true, Some(chown)) = (link, &c.chown) {
            // A linked copy is made apart from the image, so there is no /etc/passwd or
            // /etc/group to look a name up in; BuildKit fails such a copy.
            if let Some(name) = super::chown_name(chown) {
                return Err(node_error(
                    node,
                    ErrorKind::Unsupported(format!(
                        "COPY --link cannot look up the name {name:?} of --chown (a linked copy \
                         does not see the image's /etc/passwd and /etc/group): use numeric ids"
                    )),
                    node.keyword_span,
                ));
            }
        }
        if let Some(name) = c.chown.as_deref().and_then(super::chown_name) {
            if !link && super::is_empty_scratch(&self.def, st.current) {
                return Err(node_error(
                    node,
                    ErrorKind::Unsupported(format!(
                        "--chown cannot look up the name {name:?}: the stage's filesystem is \
                         still the empty one of FROM scratch, with no /etc/passwd or /etc/group \
                         to read: use numeric ids"
                    )),
                    node.keyword_span,
                ));
            }
        }
        let mut inputs: Vec<VertexId> = if link { Vec::new() } else { vec![st.current] };
        let input_of = |v: VertexId, inputs: &mut Vec<VertexId>| -> InputIndex {
            match inputs.iter().position(|&x| x == v) {
                Some(p) => p as InputIndex,
                None => {
                    inputs.push(v);
                    (inputs.len() - 1) as InputIndex
                }
            }
        };
        let (checksum, keep_git_dir, unpack) = match &kind {
            CopyKind::Add {
                checksum,
                keep_git_dir,
                unpack,
            } => (checksum.clone(), *keep_git_dir, *unpack),
            CopyKind::Copy { .. } => (None, false, None),
        };
        let parents = matches!(kind, CopyKind::Copy { parents: true });
        let mut created = String::from(if is_add { "ADD" } else { "COPY" });
        if parents {
            created.push_str(" --parents");
        }
        if let Some(chown) = &c.chown {
            created.push_str(&format!(" --chown={chown}"));
        }
        if let Some(chmod) = &c.chmod_text {
            created.push_str(&format!(" --chmod={chmod}"));
        }
        if checksum.is_some() {
            let remote = c.sources.len() == 1
                && (is_http(&c.sources[0]) || git_source(&c.sources[0]).is_some());
            if !remote {
                return Err(node_error(
                    node,
                    ErrorKind::Unsupported(
                        "--checksum needs exactly one HTTP(S) or git source".into(),
                    ),
                    node.keyword_span,
                ));
            }
        }
        let base_spec = |source_input: InputIndex, src: String| {
            let mut spec = CopySpec::new(source_input, src, dest.clone());
            spec.owner = c.chown.clone();
            spec.mode = c.chmod.clone();
            spec.exclude_patterns = c.exclude.clone();
            spec
        };
        let mut actions = Vec::new();
        let local_sources: Vec<&String> = c
            .sources
            .iter()
            .filter(|s| !is_http(s) && git_source(s).is_none())
            .collect();
        let local_input = if local_sources.is_empty() {
            None
        } else {
            Some(match from {
                Some(v) => v,
                None => {
                    let includes = local_sources
                        .iter()
                        .map(|s| {
                            let cleaned = clean_path(&s.replace("/./", "/"));
                            let rel = cleaned.trim_start_matches('/');
                            if rel.is_empty() {
                                ".".to_string()
                            } else {
                                rel.to_string()
                            }
                        })
                        .collect();
                    self.context_source(node, includes, &platform)?
                }
            })
        };
        for src in &c.sources {
            created.push(' ');
            created.push_str(src);
            if let Some(git) = git_source(src) {
                if !is_add {
                    return Err(node_error(
                        node,
                        ErrorKind::Unsupported("a git source can only be used with ADD".into()),
                        node.keyword_span,
                    )
                    .with_help("use `ADD` for git repositories"));
                }
                let name = self.display_name(st, node);
                let v = self.add(
                    node,
                    Op::Source(SourceOp::Git {
                        remote: git.0,
                        reference: git.1,
                        subdir: git.2,
                        keep_git_dir,
                        checksum: checksum.clone(),
                    }),
                    vec![],
                    &platform,
                    VertexMeta {
                        name,
                        ..VertexMeta::default()
                    },
                )?;
                let mut spec = base_spec(input_of(v, &mut inputs), "/".into());
                spec.follow_symlinks = false;
                spec.allow_wildcard = false;
                spec.allow_empty_wildcard = false;
                actions.push(FileAction::Copy(spec));
            } else if is_http(src) {
                if !is_add {
                    return Err(node_error(
                        node,
                        ErrorKind::Unsupported("a URL source can only be used with ADD".into()),
                        node.keyword_span,
                    )
                    .with_help("use `ADD` to download files"));
                }
                let filename = url_filename(src);
                let name = self.display_name(st, node);
                let v = self.add(
                    node,
                    Op::Source(SourceOp::Http {
                        url: src.clone(),
                        checksum: checksum.clone(),
                        filename: filename.clone(),
                    }),
                    vec![],
                    &platform,
                    VertexMeta {
                        name,
                        ..VertexMeta::default()
                    },
                )?;
                let mut spec = base_spec(input_of(v, &mut inputs), format!("/{filename}"));
                spec.attempt_unpack = unpack.unwrap_or(false);
                spec.allow_wildcard = false;
                spec.allow_empty_wildcard = false;
                spec.follow_symlinks = false;
                spec.dir_contents_only = false;
                actions.push(FileAction::Copy(spec));
            } else {
                let input = local_input.expect("local sources have an input");
                let (src_path, include) = if parents {
                    match src.split_once("/./") {
                        Some((parent, pattern)) => (parent.to_string(), pattern.to_string()),
                        None => ("/".to_string(), src.clone()),
                    }
                } else {
                    (src.clone(), String::new())
                };
                let mut spec = base_spec(input_of(input, &mut inputs), clean_path(&src_path));
                if parents {
                    spec.include_patterns =
                        vec![clean_path(&include).trim_start_matches('/').to_string()];
                    spec.preserve_parents = true;
                }
                spec.attempt_unpack = is_add && unpack.unwrap_or(true);
                actions.push(FileAction::Copy(spec));
            }
        }
        for inline in &c.inline {
            created.push_str(&format!(" <<{}", inline.name));
            let v = self.inline_document(node, &inline.name, &inline.data, 0o644, &platform)?;
            let mut spec = base_spec(input_of(v, &mut inputs), format!("/{}", inline.name));
            spec.follow_symlinks = false;
            spec.dir_contents_only = false;
            spec.allow_wildcard = false;
            spec.allow_empty_wildcard = false;
            actions.push(FileAction::Copy(spec));
        }
        created.push(' ');
        created.push_str(&c.dest);
        created.push_str(" # buildkit");
        let name = self.display_name(st, node);
        let name = st.prefix(&name);
        let history = Some(HistoryEntry {
            created_by: created,
            empty_layer: false,
        });
        if link {
            let meta = Self::meta(st, node, name.clone(), None);
            let layer = self.add(
                node,
                Op::File(FileOp {
                    base: None,
                    actions,
                }),
                inputs,
                &platform,
                meta,
            )?;
            let link_name = match name.find("] ") {
                Some(p) => format!("{}LINK {}", &name[..p + 2], &name[p + 2..]),
                None => format!("LINK {name}"),
            };
            let meta = Self::meta(st, node, link_name, history);
            st.current = self.add(
                node,
                Op::Merge(MergeOp {}),
                vec![st.current, layer],
                &platform,
                meta,
            )?;
        } else {
            let meta = Self::meta(st, node, name, history);
            st.current = self.add(
                node,
                Op::File(FileOp {
                    base: Some(0),
                    actions,
                }),
                inputs,
                &platform,
                meta,
            )?;
        }
        Ok(())
    }
}

/// Which of COPY/ADD, with the options only one of them has.
enum CopyKind {
    Copy {
        parents: bool,
    },
    Add {
        checksum: Option<String>,
        keep_git_dir: bool,
        unpack: Option<bool>,
    },
}

fn is_http(src: &str) -> bool {
    let lower = src.to_ascii_lowercase();
    (lower.starts_with("http://") || lower.starts_with("https://")) && git_source(src).is_none()
}

/// `(remote, ref, subdir)` when `src` names a git repository: `git@host:repo`, `git://`,
/// `ssh://`, or an HTTP(S) URL whose path ends in `.git`; `#ref:subdir` selects what to check out.
fn git_source(src: &str) -> Option<(String, Option<String>, Option<String>)> {
    let (remote, fragment) = match src.split_once('#') {
        Some((r, f)) => (r, Some(f)),
        None => (src, None),
    };
    let lower = remote.to_ascii_lowercase();
    let is_git = lower.starts_with("git@")
        || lower.starts_with("git://")
        || lower.starts_with("ssh://")
        || ((lower.starts_with("http://") || lower.starts_with("https://"))
            && lower.trim_end_matches('/').ends_with(".git"));
    if !is_git {
        return None;
    }
    let (reference, subdir) = match fragment {
        Some(f) => match f.split_once(':') {
            Some((r, s)) => (
                Some(r.to_string()).filter(|r| !r.is_empty()),
                Some(s.to_string()).filter(|s| !s.is_empty()),
            ),
            None => (Some(f.to_string()).filter(|r| !r.is_empty()), None),
        },
        None => (None, None),
    };
    Some((remote.to_string(), reference, subdir))
}

/// The file name an HTTP download is stored under: the URL path's last component.
fn url_filename(url: &str) -> String {
    let without_query = url.split(['?', '#']).next().unwrap_or(url);
    let after_scheme = without_query
        .split_once("://")
        .map(|x| x.1)
        .unwrap_or(without_query);
    let path = after_scheme.split_once('/').map(|x| x.1).unwrap_or("");
    match path.trim_end_matches('/').rsplit('/').next() {
        Some(base) if !base.is_empty() && base != "." => base.to_string(),
        _ => "__unnamed__".to_string(),
    }
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
