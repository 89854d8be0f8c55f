//! hadolint's common rules under their `DL` ids and meanings (see `LINT-RULES.md`), checked on
//! our own AST and shell reader.
//!
//! Where we know more than hadolint we say less: local `.deb`/`.rpm`/`.apk` files are not
//! "unpinned packages", heredoc bodies are read as the script they are, and a `set -o pipefail`
//! inside the RUN counts for DL4006. Deliberate differences are listed in
//! `frontend-dockerfile/tests/lint-disagreements.md`.

use super::model::{self, Model, Stage};
use super::script::{Command, Script};
use super::Finding;
use crate::parser::ast::Node;

pub(crate) fn check(model: &Model<'_>, out: &mut Vec<Finding>) {
    first_instruction(model, out);
    let mut aliases: Vec<String> = Vec::new();
    for stage in &model.stages {
        from_rules(model, stage, &aliases, out);
        if let Some(n) = stage.name {
            aliases.push(n.value.to_lowercase());
        }
        stage_rules(model, stage, &aliases, out);
    }
    last_user(model, out);
}

fn first_instruction(model: &Model<'_>, out: &mut Vec<Finding>) {
    if let Some(first) = model.dockerfile.children.iter().find(|n| n.value != "arg") {
        if first.value != "from" {
            out.push(Finding::new(
                "DL3061",
                first.keyword_span,
                "Invalid instruction order. Dockerfile must begin with `FROM`, `ARG` or comment.",
            ));
        }
    }
}

fn from_rules(
    model: &Model<'_>,
    stage: &Stage<'_>,
    earlier_aliases: &[String],
    out: &mut Vec<Finding>,
) {
    let from = stage.from;
    let Some(base) = stage.base else { return };
    let image = base.value.as_str();
    let is_stage = earlier_aliases
        .iter()
        .any(|a| a.eq_ignore_ascii_case(image));
    if !is_stage && !image.eq_ignore_ascii_case("scratch") && !image.contains('$') {
        let without_digest = image.split('@').next().unwrap_or(image);
        let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
        if !image.contains('@') && !last.contains(':') {
            out.push(Finding::new(
                "DL3006",
                from.keyword_span,
                "Always tag the version of an image explicitly",
            ));
        } else if last.ends_with(":latest") {
            out.push(Finding::new("DL3007", from.keyword_span, "Using latest is prone to errors if the image will ever update. Pin the version explicitly to a release tag"));
        }
    }
    if let Some(platform) = model::flag(from, "platform") {
        if platform == "$TARGETPLATFORM" || platform == "${TARGETPLATFORM}" {
            out.push(Finding::new(
                "DL3065",
                from.keyword_span,
                "FROM --platform=$TARGETPLATFORM is redundant: it is the default",
            ));
        } else if !platform.contains('$') {
            out.push(Finding::new(
                "DL3029",
                from.keyword_span,
                format!("Do not use --platform flag with FROM ({platform})"),
            ));
        }
    }
    if let Some(name) = stage.name {
        let lower = name.value.to_lowercase();
        if earlier_aliases.contains(&lower) {
            out.push(Finding::new(
                "DL3024",
                from.keyword_span,
                format!(
                    "FROM aliases (stage names) must be unique: `{}`",
                    name.value
                ),
            ));
        }
        if lower == "scratch" || lower == "context" {
            out.push(Finding::new(
                "DL3063",
                from.keyword_span,
                format!(
                    "`{}` is a reserved word and should not be a stage name",
                    name.value
                ),
            ));
        }
    }
    let _ = model;
}

/// Per-stage state the shell rules need.
#[derive(Default)]
struct ShellState {
    /// `SHELL` set `-o pipefail` (or a shell where pipes need no such option).
    pipefail: bool,
}

fn stage_rules(model: &Model<'_>, stage: &Stage<'_>, aliases: &[String], out: &mut Vec<Finding>) {
    let mut shell = ShellState::default();
    let mut workdir_set = stage_has_workdir_ancestry(model, stage);
    let mut cmd_count = 0;
    let mut entrypoint_count = 0;
    let mut healthcheck_count = 0;
    let mut previous: Option<&Node> = None;
    let is_last_stage = stage.index + 1 == model.stages.len();
    for node in &stage.body {
        match node.value.as_str() {
            "run" => {
                run_rules(node, &shell, is_last_stage, out);
                if let Some(prev) = previous.filter(|p| p.value == "run") {
                    // Like hadolint: only RUNs of a single command each are worth merging.
                    if flag_values(prev) == flag_values(node)
                        && command_count(prev) <= 1
                        && command_count(node) <= 1
                    {
                        out.push(Finding::new(
                            "DL3059",
                            node.keyword_span,
                            "Multiple consecutive `RUN` instructions. Consider consolidation.",
                        ));
                    }
                }
            }
            "shell" => {
                let words: Vec<&str> = node.args.iter().map(|w| w.value.as_str()).collect();
                let exe = words
                    .first()
                    .map(|w| w.rsplit(['/', '\\']).next().unwrap_or(w).to_lowercase())
                    .unwrap_or_default();
                let non_posix = [
                    "pwsh",
                    "powershell",
                    "powershell.exe",
                    "pwsh.exe",
                    "cmd",
                    "cmd.exe",
                ]
                .contains(&exe.as_str());
                shell.pipefail = non_posix
                    || words.windows(2).any(|w| {
                        w[0].starts_with('-') && w[0].ends_with('o') && w[1] == "pipefail"
                    });
            }
            "workdir" => {
                workdir_set = true;
                if let Some(w) = node.args.first() {
                    let p = w.value.trim_matches(|c| c == '"' || c == '\'');
                    let abs = p.starts_with('/')
                        || p.starts_with('$')
                        || (p.len() >= 2
                            && p.as_bytes()[1] == b':'
                            && p.as_bytes()[0].is_ascii_alphabetic());
                    if !abs {
                        out.push(Finding::new(
                            "DL3000",
                            node.keyword_span,
                            "Use absolute WORKDIR",
                        ));
                    }
                }
            }
            "copy" | "add" => copy_rules(node, stage, aliases, workdir_set, out),
            "cmd" => {
                cmd_count += 1;
                if cmd_count > 1 {
                    out.push(Finding::new("DL4003", node.keyword_span, "Multiple `CMD` instructions found. If you list more than one `CMD` then only the last `CMD` will take effect"));
                }
                json_form(node, out);
            }
            "entrypoint" => {
                entrypoint_count += 1;
                if entrypoint_count > 1 {
                    out.push(Finding::new("DL4004", node.keyword_span, "Multiple `ENTRYPOINT` instructions found. If you list more than one `ENTRYPOINT` then only the last `ENTRYPOINT` will take effect"));
                }
                json_form(node, out);
            }
            "healthcheck" => {
                healthcheck_count += 1;
                if healthcheck_count > 1 {
                    out.push(Finding::new(
                        "DL3012",
                        node.keyword_span,
                        "Multiple `HEALTHCHECK` instructions",
                    ));
                }
            }
            "maintainer" => out.push(Finding::new(
                "DL4000",
                node.keyword_span,
                "MAINTAINER is deprecated",
            )),
            "user" => {
                if let Some(w) = node.args.first() {
                    let user = w.value.split(':').next().unwrap_or("");
                    if !user.is_empty()
                        && !user.contains('$')
                        && !user.chars().all(|c| c.is_ascii_digit())
                    {
                        out.push(Finding::new(
                            "DL3066",
                            node.keyword_span,
                            "Non-numeric user-id may not be resolvable by host system",
                        ));
                    }
                }
            }
            "expose" => {
                for w in &node.args {
                    let port = w.value.split('/').next().unwrap_or("");
                    let port = port.rsplit(':').next().unwrap_or(port);
                    for part in port.split('-') {
                        if let Ok(n) = part.parse::<u64>() {
                            if n > 65535 {
                                out.push(Finding::new(
                                    "DL3011",
                                    node.keyword_span,
                                    "Valid UNIX ports range from 0 to 65535",
                                ));
                            }
                        }
                    }
                }
            }
            "env" => {
                let kvs = model::key_values(node);
                let defined: Vec<&str> = kvs.iter().map(|kv| kv.key.value.as_str()).collect();
                for (i, kv) in kvs.iter().enumerate() {
                    let refs = super::vars::references(&kv.value.value, model.dockerfile.escape);
                    if refs.iter().any(|(n, _)| defined[..i].contains(&n.as_str())) {
                        out.push(Finding::new("DL3044", node.keyword_span, "Do not refer to an environment variable within the same `ENV` statement where it is defined."));
                        break;
                    }
                }
            }
            "arg" => {}
            "label" => {
                for kv in model::key_values(node) {
                    let k = kv.key.value.trim_matches('"');
                    let valid = !k.is_empty()
                        && k.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-'
                        })
                        && !k.starts_with(['.', '-'])
                        && !k.ends_with(['.', '-'])
                        && !k.contains("..")
                        && !k.contains("--");
                    if !valid {
                        out.push(Finding::new(
                            "DL3048",
                            node.keyword_span,
                            format!("Invalid label key `{k}`"),
                        ));
                    }
                }
            }
            "onbuild" => {
                if let Some(inner) = &node.inner {
                    if ["onbuild", "from", "maintainer"].contains(&inner.value.as_str()) {
                        out.push(Finding::new("DL3043", node.keyword_span, "`ONBUILD`, `FROM` or `MAINTAINER` triggered from within `ONBUILD` instruction."));
                    }
                }
            }
            _ => {}
        }
        previous = Some(node);
    }
}

/// Commands of a RUN, substitutions included and `[ ... ]` tests not counted.
fn command_count(node: &Node) -> usize {
    model::run_script(node)
        .commands
        .iter()
        .filter(|c| !matches!(c.name(), "[" | "[["))
        .count()
}

/// Flag words without spans, for comparing two instructions' flags.
fn flag_values(node: &Node) -> Vec<&str> {
    node.flags.iter().map(|f| f.value.as_str()).collect()
}

fn stage_has_workdir_ancestry(model: &Model<'_>, stage: &Stage<'_>) -> bool {
    let mut cursor = stage
        .base
        .and_then(|b| model.stage_named(&b.value, stage.index));
    let mut guard = 0;
    while let Some(s) = cursor {
        guard += 1;
        if guard > model.stages.len() {
            break;
        }
        if s.body.iter().any(|n| n.value == "workdir") {
            return true;
        }
        cursor = s.base.and_then(|b| model.stage_named(&b.value, s.index));
    }
    false
}

fn json_form(node: &Node, out: &mut Vec<Finding>) {
    if !node.json && !node.args.is_empty() {
        out.push(Finding::new(
            "DL3025",
            node.keyword_span,
            "Use arguments JSON notation for CMD and ENTRYPOINT arguments",
        ));
    }
}

fn copy_rules(
    node: &Node,
    stage: &Stage<'_>,
    aliases: &[String],
    workdir_set: bool,
    out: &mut Vec<Finding>,
) {
    let args: Vec<&str> = node
        .args
        .iter()
        .map(|w| w.value.as_str())
        .filter(|a| !a.starts_with("<<"))
        .collect();
    let from = model::flag(node, "from");
    if node.value == "copy" {
        if let Some(from) = from {
            let own = stage
                .name
                .is_some_and(|n| n.value.eq_ignore_ascii_case(from));
            if own {
                out.push(Finding::new(
                    "DL3023",
                    node.keyword_span,
                    "`COPY --from` cannot reference its own `FROM` alias",
                ));
            } else if !from.contains('$')
                && !from.chars().all(|c| c.is_ascii_digit())
                && !aliases.iter().any(|a| a.eq_ignore_ascii_case(from))
                && !from.contains(['/', ':'])
            {
                out.push(Finding::new("DL3022", node.keyword_span, format!("`COPY --from` should reference a previously defined `FROM` alias (`{from}`)")));
            }
            if args.len() >= 2 && args[..args.len() - 1].contains(&"/") {
                out.push(Finding::new(
                    "DL3067",
                    node.keyword_span,
                    "Do not copy an entire filesystem from another stage",
                ));
            }
        }
    }
    let Some(dest) = args.last().copied() else {
        return;
    };
    if args.len() > 2
        && !dest.ends_with('/')
        && !dest.ends_with('\\')
        && !dest.contains('$')
        && node.heredocs.is_empty()
    {
        out.push(Finding::new(
            "DL3021",
            node.keyword_span,
            "COPY with more than 2 arguments requires the last argument to end with /",
        ));
    }
    let dest_clean = dest.trim_matches(|c| c == '"' || c == '\'');
    let absolute = dest_clean.starts_with('/')
        || dest_clean.starts_with('$')
        || (dest_clean.len() >= 2
            && dest_clean.as_bytes()[1] == b':'
            && dest_clean.as_bytes()[0].is_ascii_alphabetic());
    if node.value == "copy" && !workdir_set && !absolute && args.len() >= 2 {
        out.push(Finding::new(
            "DL3045",
            node.keyword_span,
            "`COPY` to a relative destination without `WORKDIR` set.",
        ));
    }
    if node.value == "add" && args.len() >= 2 && node.heredocs.is_empty() {
        let sources = &args[..args.len() - 1];
        let all_plain = sources
            .iter()
            .all(|s| !s.contains("://") && !is_archive(s) && !s.starts_with("git@"));
        if all_plain {
            out.push(Finding::new(
                "DL3020",
                node.keyword_span,
                "Use COPY instead of ADD for files and folders",
            ));
        }
    }
    if node.value == "copy"
        && from.is_none()
        && args.len() >= 2
        && args[..args.len() - 1].iter().any(|s| is_archive(s))
    {
        out.push(Finding::new(
            "DL3010",
            node.keyword_span,
            "Use ADD for extracting archives into an image",
        ));
    }
}

fn is_archive(path: &str) -> bool {
    const EXT: &[&str] = &[
        ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tbz", ".tar.xz", ".txz", ".tar.zst",
        ".tzst", ".gz", ".bz2", ".xz", ".zst", ".Z", ".lz", ".lzma",
    ];
    EXT.iter().any(|e| path.ends_with(e))
}

fn last_user(model: &Model<'_>, out: &mut Vec<Finding>) {
    let Some(stage) = model.stages.last() else {
        return;
    };
    if let Some(user) = stage.body.iter().rev().find(|n| n.value == "user") {
        if let Some(w) = user.args.first() {
            let name = w.value.split(':').next().unwrap_or("");
            if name == "root" || name == "0" {
                out.push(Finding::new(
                    "DL3002",
                    user.keyword_span,
                    "Last USER should not be root",
                ));
            }
        }
    }
}

/// True when the script switches pipefail on before its first pipe (`set -o pipefail`, `set -eo pipefail`).
fn sets_pipefail(script: &Script) -> bool {
    for c in &script.commands {
        if c.name() == "set"
            && c.args()
                .windows(2)
                .any(|w| w[0].starts_with('-') && w[0].ends_with('o') && w[1] == "pipefail")
        {
            return true;
        }
        if c.pipes_into_next {
            return false;
        }
    }
    false
}

fn run_rules(node: &Node, shell: &ShellState, is_last_stage: bool, out: &mut Vec<Finding>) {
    let script = model::run_script(node);
    let at = node.keyword_span;
    let mut push = |rule: &str, msg: &str| out.push(Finding::new(rule, at, msg.to_string()));
    if !node.json && script.has_pipe() && !shell.pipefail && !sets_pipefail(&script) {
        push("DL4006", "Set the SHELL option -o pipefail before RUN with a pipe in it. If you are using /bin/sh in an alpine image or if your shell is symlinked to busybox then consider explicitly setting your SHELL to /bin/ash, or disable this check");
    }
    let cmds = &script.commands;
    let any = |pred: &dyn Fn(&Command) -> bool| cmds.iter().any(pred);
    if any(&|c| c.name() == "cd") {
        push("DL3003", "Use WORKDIR to switch to a directory");
    }
    if any(&|c| c.name() == "sudo") {
        push("DL3004", "Do not use sudo as it leads to unpredictable behavior. Use a tool like gosu to enforce root");
    }
    if any(&|c| {
        [
            "ssh", "vim", "shutdown", "service", "ps", "free", "top", "kill", "mount", "ifconfig",
        ]
        .contains(&c.name())
    }) {
        push("DL3001", "For some bash commands it makes no sense running them in a Docker container like `ssh`, `vim`, `shutdown`, `service`, `ps`, `free`, `top`, `kill`, `mount`, `ifconfig`");
    }
    if any(&|c| c.name() == "apt") {
        push("DL3027", "Do not use apt as it is meant to be an end-user tool, use apt-get or apt-cache instead");
    }
    // apt-get.
    let apt_installs: Vec<&Command> = cmds
        .iter()
        .filter(|c| c.name() == "apt-get" && c.has_arg("install"))
        .collect();
    if apt_installs
        .iter()
        .any(|c| apt_packages(c).iter().any(|p| !apt_pinned(p)))
    {
        push("DL3008", "Pin versions in apt get install. Instead of `apt-get install <package>` use `apt-get install <package>=<version>`");
    }
    if apt_installs
        .iter()
        .any(|c| !c.has_flag(&["-y", "--yes", "--assume-yes", "-qq", "--quiet=2", "-q=2"]))
    {
        push(
            "DL3014",
            "Use the `-y` switch to avoid manual input `apt-get -y install <package>`",
        );
    }
    if apt_installs.iter().any(|c| {
        !c.has_flag(&["--no-install-recommends"])
            && !c.args().iter().any(|a| {
                a.contains("Install-Recommends=false") || a.contains("Install-Recommends=0")
            })
    }) {
        push(
            "DL3015",
            "Avoid additional packages by specifying `--no-install-recommends`",
        );
    }
    let apt_update = any(&|c| c.name() == "apt-get" && c.has_arg("update"));
    let lists_removed = any(&|c| {
        (c.name() == "rm" && c.args().iter().any(|a| a.starts_with("/var/lib/apt/lists")))
            || (c.name() == "apt-get" && c.subcommand(&["-o"]) == Some("dist-clean"))
    });
    // Like hadolint: lists left in an intermediate stage do not reach the final image.
    if is_last_stage && apt_update && !lists_removed && !has_cache_mount(node, "/var/lib/apt") {
        push(
            "DL3009",
            "Delete the apt lists (/var/lib/apt/lists) after installing something",
        );
    }
    // apk.
    let apk_adds: Vec<&Command> = cmds
        .iter()
        .filter(|c| c.name() == "apk" && c.subcommand(&[]) == Some("add"))
        .collect();
    if apk_adds.iter().any(|c| {
        c.operands_after(
            "add",
            &[
                "-t",
                "--virtual",
                "-X",
                "--repository",
                "-p",
                "--root",
                "--arch",
                "--keys-dir",
                "--repositories-file",
                "--cache-dir",
            ],
        )
        .iter()
        .any(|p| !p.contains('=') && !p.ends_with(".apk") && !p.contains('$'))
    }) {
        push("DL3018", "Pin versions in apk add. Instead of `apk add <package>` use `apk add <package>=<version>`");
    }
    if apk_adds.iter().any(|c| !c.has_flag(&["--no-cache"]))
        && !has_cache_mount(node, "/var/cache/apk")
    {
        push("DL3019", "Use the `--no-cache` switch to avoid the need to use `--update` and remove `/var/cache/apk/*` when done installing packages");
    }
    // pip.
    let pip_installs: Vec<&Command> = cmds
        .iter()
        .filter(|c| is_pip(c) && c.has_arg("install"))
        .collect();
    if pip_installs.iter().any(|c| {
        let has_constraint = c.has_flag(&[
            "-r",
            "--requirement",
            "-c",
            "--constraint",
            "-e",
            "--editable",
        ]);
        !has_constraint && pip_packages(c).iter().any(|p| !pip_pinned(p))
    }) {
        push("DL3013", "Pin versions in pip. Instead of `pip install <package>` use `pip install <package>==<version>` or `pip install --requirement <requirements file>`");
    }
    if pip_installs.iter().any(|c| {
        !c.has_flag(&["--no-cache-dir"])
            && !c.args().iter().any(|a| a.starts_with("PIP_NO_CACHE_DIR"))
    }) && !cmds
        .iter()
        .any(|c| c.words.iter().any(|w| w.starts_with("PIP_NO_CACHE_DIR=")))
        && !has_cache_mount(node, "/root/.cache")
    {
        push(
            "DL3042",
            "Avoid use of cache directory with pip. Use `pip install --no-cache-dir <package>`",
        );
    }
    // npm.
    if cmds.iter().any(|c| {
        c.name() == "npm" && matches!(c.subcommand(&[]), Some("install" | "i" | "add")) && {
            let pkgs = c.operands_after(
                c.subcommand(&[]).unwrap_or("install"),
                &["--prefix", "--registry"],
            );
            pkgs.iter().any(|p| !npm_pinned(p))
        }
    }) {
        push("DL3016", "Pin versions in npm. Instead of `npm install <package>` use `npm install <package>@<version>`");
    }
    // gem.
    if cmds.iter().any(|c| {
        c.name() == "gem" && c.subcommand(&[]) == Some("install") && {
            let pinned_by_flag = c.has_flag(&["-v", "--version"]);
            !pinned_by_flag
                && c.operands_after(
                    "install",
                    &[
                        "-v",
                        "--version",
                        "-i",
                        "--install-dir",
                        "--bindir",
                        "-n",
                        "-s",
                        "--source",
                        "-P",
                        "--trust-policy",
                    ],
                )
                .iter()
                .any(|p| !p.contains(':') && !p.ends_with(".gem") && !p.contains('$'))
        }
    }) {
        push("DL3028", "Pin versions in gem install. Instead of `gem install <gem>` use `gem install <gem>:<version>`");
    }
    // go.
    if cmds.iter().any(|c| {
        c.name() == "go"
            && c.subcommand(&[]) == Some("install")
            && c.operands_after("install", &[])
                .iter()
                .any(|p| !p.contains('@') && !p.starts_with('.') && !p.contains('$'))
    }) {
        push("DL3062", "Pin versions in go. Instead of `go install <package>` use `go install <package>@<version>`");
    }
    // yum / dnf / zypper.
    for (tool, yes_rule, pin_rule, clean_rule) in [
        ("yum", "DL3030", "DL3033", "DL3032"),
        ("dnf", "DL3038", "DL3041", "DL3040"),
        ("microdnf", "DL3038", "DL3041", "DL3040"),
    ] {
        let installs: Vec<&Command> = cmds
            .iter()
            .filter(|c| c.name() == tool && c.has_arg("install"))
            .collect();
        if installs.is_empty() {
            continue;
        }
        if tool != "microdnf" && installs.iter().any(|c| !c.has_flag(&["-y", "--assumeyes"])) {
            push(
                yes_rule,
                &format!("Use the -y switch to avoid manual input `{tool} install -y <package>`"),
            );
        }
        if installs.iter().any(|c| {
            c.operands_after(
                "install",
                &[
                    "--setopt",
                    "--enablerepo",
                    "--disablerepo",
                    "--releasever",
                    "--installroot",
                ],
            )
            .iter()
            .any(|p| !rpm_pinned(p))
        }) {
            push(
                pin_rule,
                &format!("Specify version with `{tool} install -y <package>-<version>`."),
            );
        }
        let cleaned = cmds
            .iter()
            .any(|c| c.name() == tool && c.has_arg("clean") && c.has_arg("all"))
            || cmds.iter().any(|c| {
                c.name() == "rm"
                    && c.args().iter().any(|a| {
                        a.starts_with(&format!(
                            "/var/cache/{}",
                            if tool == "microdnf" { "yum" } else { tool }
                        )) || a.starts_with("/var/cache/dnf")
                    })
            });
        if !cleaned && !has_cache_mount(node, "/var/cache") {
            push(
                clean_rule,
                &format!("`{tool} clean all` missing after {tool} command."),
            );
        }
    }
    let zypper: Vec<&Command> = cmds.iter().filter(|c| c.name() == "zypper").collect();
    if !zypper.is_empty() {
        let installs: Vec<&&Command> = zypper
            .iter()
            .filter(|c| c.has_arg("install") || c.has_arg("in"))
            .collect();
        if installs
            .iter()
            .any(|c| !c.has_flag(&["-n", "--non-interactive", "-y", "--no-confirm"]))
        {
            push(
                "DL3034",
                "Non-interactive switch missing from `zypper` command: `zypper install -y`",
            );
        }
        if zypper
            .iter()
            .any(|c| c.has_arg("dist-upgrade") || c.has_arg("dup"))
        {
            push("DL3035", "Do not use `zypper dist-upgrade`.");
        }
        if installs.iter().any(|c| {
            let sub = if c.has_arg("install") {
                "install"
            } else {
                "in"
            };
            c.operands_after(sub, &[])
                .iter()
                .any(|p| !p.contains(['=', '<', '>']) && !p.ends_with(".rpm") && !p.contains('$'))
        }) {
            push(
                "DL3037",
                "Specify version with `zypper install -y <package>=<version>`.",
            );
        }
        if !zypper.iter().any(|c| c.has_arg("clean") || c.has_arg("cc")) {
            push("DL3036", "`zypper clean` missing after zypper use.");
        }
    }
    // yarn.
    if cmds.iter().any(|c| {
        c.name() == "yarn" && (c.args().is_empty() || c.subcommand(&[]) == Some("install"))
    }) && !cmds
        .iter()
        .any(|c| c.name() == "yarn" && c.has_arg("cache") && c.has_arg("clean"))
        && !has_cache_mount(node, "yarn")
    {
        push(
            "DL3060",
            "`yarn cache clean` missing after `yarn install` was run.",
        );
    }
    // wget / curl.
    if any(&|c| {
        c.name() == "wget"
            && !c.has_flag(&[
                "--progress",
                "-q",
                "--quiet",
                "-nv",
                "--no-verbose",
                "-o",
                "--output-file",
                "-a",
                "--append-output",
            ])
    }) {
        push("DL3047", "Avoid use of wget without progress bar. Use `wget --progress=dot:giga <url>`. Or consider using `-q` or `-nv` (shorthands for `--quiet` or `--no-verbose`).");
    }
    if any(&|c| c.name() == "wget") && any(&|c| c.name() == "curl") {
        push("DL4001", "Either use Wget or Curl but not both");
    }
    // useradd.
    if any(&|c| {
        c.name() == "useradd" && !c.has_flag(&["-l", "--no-log-init"]) && {
            let args = c.args();
            args.iter()
                .position(|a| a == "-u" || a == "--uid")
                .and_then(|i| args.get(i + 1))
                .and_then(|u| u.parse::<u64>().ok())
                .is_some_and(|u| u > 99_999)
        }
    }) {
        push(
            "DL3046",
            "`useradd` without flag `-l` and high UID will result in excessively large Image.",
        );
    }
    if any(&|c| c.name() == "ln" && c.args().iter().any(|a| a == "/bin/sh")) {
        push("DL4005", "Use SHELL to change the default shell");
    }
}

fn has_cache_mount(node: &Node, target_prefix: &str) -> bool {
    model::flags(node, "mount")
        .iter()
        .any(|m| m.contains("type=cache") && m.contains(target_prefix))
}

/// Packages named after `install` in an apt-get command (flags and their values dropped).
fn apt_packages(c: &Command) -> Vec<&str> {
    c.operands_after(
        "install",
        &[
            "-o",
            "--option",
            "-t",
            "--target-release",
            "-c",
            "--config-file",
        ],
    )
}

fn apt_pinned(p: &str) -> bool {
    // `pkg=version`, `pkg/release`, and local package files (`./x.deb`, `/tmp/*.deb`) need no pin.
    p.contains('=') || p.contains('/') || p.ends_with(".deb")
}

fn is_pip(c: &Command) -> bool {
    let n = c.name();
    if n.starts_with("pip") {
        return n == "pip"
            || n.trim_start_matches("pip")
                .chars()
                .all(|ch| ch.is_ascii_digit() || ch == '.');
    }
    // `python -m pip install`
    n.starts_with("python") && c.args().windows(2).any(|w| w[0] == "-m" && w[1] == "pip")
}

fn pip_packages(c: &Command) -> Vec<&str> {
    c.operands_after(
        "install",
        &[
            "-i",
            "--index-url",
            "--extra-index-url",
            "-f",
            "--find-links",
            "--target",
            "-t",
            "--prefix",
            "--root",
            "--platform",
            "--python-version",
            "--implementation",
            "--abi",
            "--trusted-host",
            "--upgrade-strategy",
            "--progress-bar",
            "--root-user-action",
            "--src",
        ],
    )
}

fn pip_pinned(p: &str) -> bool {
    p.contains("==")
        || p.contains(">=")
        || p.contains("<=")
        || p.contains("~=")
        || p.contains('<')
        || p.contains('>')
        || p.contains('@')
        || p.contains('/')
        || p.ends_with(".whl")
        || p.ends_with(".tar.gz")
        || p.ends_with(".zip")
        || p.starts_with('.')
        || p.contains('$')
}

fn npm_pinned(p: &str) -> bool {
    let bare = p.strip_prefix('@').unwrap_or(p);
    bare.contains('@')
        || p.starts_with('.')
        || p.starts_with('/')
        || p.contains("://")
        || p.starts_with("git")
        || p.ends_with(".tgz")
        || p.contains('$')
}

fn rpm_pinned(p: &str) -> bool {
    // `pkg-1.2.3`: a dash followed by a digit; local `.rpm` files and variables need no pin.
    p.ends_with(".rpm")
        || p.contains('$')
        || p.split('-')
            .skip(1)
            .any(|part| part.starts_with(|c: char| c.is_ascii_digit()))
        || p.contains('=')
}
