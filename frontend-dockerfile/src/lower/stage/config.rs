//! The instructions that only change the image config (ENV, ARG, LABEL, EXPOSE, VOLUME, USER,
//! STOPSIGNAL, MAINTAINER, ONBUILD, SHELL, HEALTHCHECK, CMD, ENTRYPOINT): each becomes one
//! config vertex on the stage, with the history line BuildKit writes for it.

use super::*;

impl<'a> Lowerer<'a> {
    /// Lowers a metadata instruction onto the stage: updates the stage's own state (ENV, ARG,
    /// USER, SHELL seen by later instructions) and adds its config change.
    pub(super) fn metadata(
        &mut self,
        st: &mut StageState,
        node: &Node,
        command: Command,
    ) -> Result<(), Diagnostic> {
        let (change, created_by) = self.config_change(st, command);
        let history = created_by.map(|created_by| HistoryEntry {
            created_by,
            empty_layer: true,
        });
        let meta = Self::meta(st, node, String::new(), history);
        let platform = st.platform.clone();
        st.current = self.add(node, Op::Config(change), vec![st.current], &platform, meta)?;
        Ok(())
    }

    /// The config change of a metadata instruction and its history line (none for ONBUILD,
    /// which BuildKit leaves out of the history).
    fn config_change(
        &mut self,
        st: &mut StageState,
        command: Command,
    ) -> (ConfigChange, Option<String>) {
        match command {
            Command::Env(pairs) => {
                let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                for (k, v) in &pairs {
                    st.set_env(k.clone(), v.clone());
                }
                let created = format!("ENV {}", text.join(" "));
                (ConfigChange::Env(pairs), Some(created))
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
                    // An ARG with a value assigns it to the step environment, over an ENV of
                    // the same name (as BuildKit's build state); one without leaves it alone.
                    if let Some(v) = &value {
                        st.env.set(d.name.clone(), v.clone());
                    }
                    st.args.push((d.name, value));
                }
                let created = format!("ARG {}", text.join(" "));
                (ConfigChange::Arg(change), Some(created))
            }
            Command::Label(pairs) => {
                let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let created = format!("LABEL {}", text.join(" "));
                (ConfigChange::Label(pairs), Some(created))
            }
            Command::Expose(ports) => {
                let created = history::expose(&ports);
                (ConfigChange::Expose(ports), Some(created))
            }
            Command::Volume(vols) => {
                let created = format!("VOLUME {}", history::go_list(&vols));
                (ConfigChange::Volume(vols), Some(created))
            }
            Command::User(user) => {
                st.user = user.clone();
                let created = format!("USER {user}");
                (ConfigChange::User(user), Some(created))
            }
            Command::StopSignal(sig) => {
                let created = format!("STOPSIGNAL {sig}");
                (ConfigChange::StopSignal(sig), Some(created))
            }
            Command::Maintainer(m) => {
                let created = format!("MAINTAINER {m}");
                (ConfigChange::Maintainer(m), Some(created))
            }
            Command::Onbuild { expression, .. } => (ConfigChange::Onbuild(expression), None),
            Command::Shell(shell) => {
                st.shell = shell.clone();
                let created = format!("SHELL {}", history::go_list(&shell));
                (ConfigChange::Shell(shell), Some(created))
            }
            Command::Healthcheck(h) => {
                let created = history::healthcheck(&h);
                (ConfigChange::Healthcheck(h), Some(created))
            }
            Command::Cmd(cmd) => {
                let args = st.shell_wrap(&cmd);
                st.cmd_set = true;
                let created = format!("CMD {}", history::go_quote_list(&args));
                (ConfigChange::Cmd(args), Some(created))
            }
            Command::Entrypoint(cmd) => {
                let args = st.shell_wrap(&cmd);
                let created = format!("ENTRYPOINT {}", history::go_quote_list(&args));
                let reset_cmd = !st.cmd_set;
                (ConfigChange::Entrypoint { args, reset_cmd }, Some(created))
            }
            Command::From(_)
            | Command::Workdir(_)
            | Command::Run(_)
            | Command::Copy(_)
            | Command::Add(_) => unreachable!("dispatched before metadata instructions"),
        }
    }
}
