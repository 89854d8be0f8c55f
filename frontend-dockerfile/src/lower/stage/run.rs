//! `RUN`: the command, its environment and network, and its `--mount`s (BuildKit's
//! `convert_runmount`).

use super::*;

impl<'a> Lowerer<'a> {
    pub(super) fn run(
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
                // Reconstituted as written, as BuildKit does: the shell strips `<<-` tabs.
                let mut full = cmdline.clone();
                for h in &run.heredocs {
                    full.push('\n');
                    full.push_str(&h.raw);
                    full.push_str(&h.name);
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
            // As BuildKit: the build's network unless the step names `none` or `host`.
            network: match run.network {
                None | Some(NetworkMode::Default) => self.opts.run.network,
                Some(mode) => mode,
            },
            security: run.security.unwrap_or_default(),
            mounts,
            extra_hosts: self.opts.run.extra_hosts.clone(),
            shm_size: self.opts.run.shm_size,
            ulimits: self.opts.run.ulimits.clone(),
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

    pub(super) fn mount(
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
}
