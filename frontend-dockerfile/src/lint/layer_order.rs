//! Our own layer-order rules (`BL1xxx`): the orders of instructions that throw the build cache away
//! on every commit, each with the lines involved and a suggested order.
//!
//! BuildKit's cache is a chain: when a step misses, every step below it in the stage misses too.
//! So what changes often (sources, per-build values, downloaded files) belongs as low as possible,
//! and what needs little (dependency manifests, system packages) as high as possible.

use super::context::{ContextInfo, HEAVY_DIRS};
use super::history::{ArgChangeCost, History};
use super::model::{self, Model, Stage};
use super::reorder;
use super::script::{Command, Script};
use super::Finding;
use crate::parser::ast::Node;

pub(crate) fn check(
    model: &Model<'_>,
    context: Option<&ContextInfo>,
    history: Option<&History>,
    source: &str,
    out: &mut Vec<Finding>,
) {
    for stage in &model.stages {
        broad_copy_before_install(model, stage, context, out);
        per_build_values(model, stage, history, source, out);
        apt_update_alone(stage, out);
        runs_belong_together(stage, out);
        early_add_url(stage, out);
        stable_below_changing(stage, source, out);
        if let Some(ctx) = context {
            copy_without_dockerignore(stage, ctx, out);
        }
    }
}

/// A COPY or ADD that reads the build context (no `--from`, no URL, no heredoc).
fn context_sources(node: &Node) -> Option<Vec<&str>> {
    if !matches!(node.value.as_str(), "copy" | "add")
        || model::flag(node, "from").is_some()
        || !node.heredocs.is_empty()
    {
        return None;
    }
    let args: Vec<&str> = node.args.iter().map(|w| w.value.as_str()).collect();
    if args.len() < 2 {
        return None;
    }
    let sources = &args[..args.len() - 1];
    if sources
        .iter()
        .any(|s| s.contains("://") || s.starts_with("git@"))
    {
        return None;
    }
    Some(sources.to_vec())
}

/// File names that describe dependencies rather than being sources.
const MANIFEST_NAMES: &[&str] = &[
    "package.json",
    "package-lock.json",
    "npm-shrinkwrap.json",
    "yarn.lock",
    ".yarnrc",
    ".yarnrc.yml",
    ".npmrc",
    "pnpm-lock.yaml",
    "pnpm-workspace.yaml",
    "pyproject.toml",
    "poetry.lock",
    "uv.lock",
    "Pipfile",
    "Pipfile.lock",
    "setup.cfg",
    "go.mod",
    "go.sum",
    "go.work",
    "go.work.sum",
    "Cargo.toml",
    "Cargo.lock",
    "rust-toolchain.toml",
    "Gemfile",
    "Gemfile.lock",
    "composer.json",
    "composer.lock",
    "pom.xml",
    "build.gradle",
    "build.gradle.kts",
    "settings.gradle",
    "settings.gradle.kts",
    "gradle.properties",
    "gradlew",
    "mvnw",
    "gradle",
    ".mvn",
];

fn is_manifest(source: &str) -> bool {
    let base = source
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or(source);
    MANIFEST_NAMES.contains(&base)
        || (base.starts_with("requirements") && base.ends_with(".txt"))
        || (base.starts_with("constraints") && base.ends_with(".txt"))
        || base.ends_with(".gemspec")
        || base.contains('*')
            && (base.starts_with("package")
                || base.starts_with("requirements")
                || base.starts_with("go.")
                || base.starts_with("Cargo")
                || base.starts_with("Gemfile")
                || base.starts_with("composer")
                || base.ends_with(".lock"))
}

/// A source that is (probably) a directory or a whole tree: `.`, `*`, `src/`, `app`.
fn is_broad(source: &str, context: Option<&ContextInfo>) -> bool {
    if is_manifest(source) {
        return false;
    }
    let s = source.trim_start_matches("./");
    if s.is_empty() || s == "." || s == "*" || source.ends_with('/') {
        return true;
    }
    if let Some(ctx) = context {
        return ctx.root.join(s).is_dir();
    }
    let base = s.rsplit('/').next().unwrap_or(s);
    !base.contains('.') && !base.contains('*')
}

/// A dependency install the stage runs, and the files it needs.
struct Install {
    tool: &'static str,
    manifests: Vec<String>,
    /// For build steps that fetch as they build (`go build`, `cargo build`): the command that
    /// fetches dependencies from the manifests alone, to run before copying sources.
    prefetch: Option<&'static str>,
}

fn detect_install(script: &Script) -> Option<Install> {
    let m = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    for c in &script.commands {
        let sub = c.subcommand(&["--prefix", "-C", "--cwd", "--filter"]);
        let install = match (c.name(), sub) {
            ("npm", Some("ci")) => Install {
                tool: "npm",
                manifests: m(&["package.json", "package-lock.json"]),
                prefetch: None,
            },
            ("npm", Some("install" | "i"))
                if c.operands_after(sub.unwrap_or(""), &[]).is_empty() =>
            {
                Install {
                    tool: "npm",
                    manifests: m(&["package.json", "package-lock.json"]),
                    prefetch: None,
                }
            }
            ("yarn", None | Some("install")) => Install {
                tool: "yarn",
                manifests: m(&["package.json", "yarn.lock"]),
                prefetch: None,
            },
            ("pnpm", Some("install" | "i" | "fetch")) => Install {
                tool: "pnpm",
                manifests: m(&["package.json", "pnpm-lock.yaml"]),
                prefetch: None,
            },
            ("poetry", Some("install")) => Install {
                tool: "poetry",
                manifests: m(&["pyproject.toml", "poetry.lock"]),
                prefetch: None,
            },
            ("pipenv", Some("install" | "sync")) => Install {
                tool: "pipenv",
                manifests: m(&["Pipfile", "Pipfile.lock"]),
                prefetch: None,
            },
            ("uv", Some("sync")) => Install {
                tool: "uv",
                manifests: m(&["pyproject.toml", "uv.lock"]),
                prefetch: None,
            },
            ("go", Some("mod")) if c.has_arg("download") => Install {
                tool: "go",
                manifests: m(&["go.mod", "go.sum"]),
                prefetch: None,
            },
            ("go", Some("build" | "install")) => Install {
                tool: "go",
                manifests: m(&["go.mod", "go.sum"]),
                prefetch: Some("go mod download"),
            },
            ("cargo", Some("fetch")) => Install {
                tool: "cargo",
                manifests: m(&["Cargo.toml", "Cargo.lock"]),
                prefetch: None,
            },
            ("cargo", Some("build" | "install")) => Install {
                tool: "cargo",
                manifests: m(&["Cargo.toml", "Cargo.lock"]),
                prefetch: Some("cargo fetch"),
            },
            ("bundle", Some("install")) => Install {
                tool: "bundler",
                manifests: m(&["Gemfile", "Gemfile.lock"]),
                prefetch: None,
            },
            ("composer", Some("install")) => Install {
                tool: "composer",
                manifests: m(&["composer.json", "composer.lock"]),
                prefetch: None,
            },
            ("mvn" | "mvnw", _) if c.args().iter().any(|a| a.starts_with("dependency:")) => {
                Install {
                    tool: "maven",
                    manifests: m(&["pom.xml"]),
                    prefetch: None,
                }
            }
            ("mvn" | "mvnw", Some("package" | "install" | "verify")) => Install {
                tool: "maven",
                manifests: m(&["pom.xml"]),
                prefetch: Some("mvn -B dependency:go-offline"),
            },
            ("gradle" | "gradlew", Some("dependencies")) => Install {
                tool: "gradle",
                manifests: m(&["build.gradle", "settings.gradle"]),
                prefetch: None,
            },
            ("gradle" | "gradlew", Some("build" | "assemble" | "bootJar" | "installDist")) => {
                Install {
                    tool: "gradle",
                    manifests: m(&["build.gradle", "settings.gradle"]),
                    prefetch: Some("gradle dependencies --no-daemon"),
                }
            }
            _ => match pip_requirements(c).or_else(|| apt_list_file(c)) {
                Some((tool, file)) => Install {
                    tool,
                    manifests: vec![file],
                    prefetch: None,
                },
                None => continue,
            },
        };
        return Some(install);
    }
    None
}

/// `pip install -r requirements.txt` / `uv pip install -r x.txt`.
fn pip_requirements(c: &Command) -> Option<(&'static str, String)> {
    let is_pip = c.name().starts_with("pip")
        || (c.name() == "uv" && c.has_arg("pip"))
        || c.args().windows(2).any(|w| w[0] == "-m" && w[1] == "pip");
    if !is_pip || !c.has_arg("install") {
        return None;
    }
    let args = c.args();
    let i = args
        .iter()
        .position(|a| a == "-r" || a == "--requirement")?;
    let file = args.get(i + 1)?;
    (!file.contains('$')).then(|| ("pip", file.trim_start_matches("./").to_string()))
}

/// `apt-get install $(cat packages.txt)` / `xargs -a list apt-get install`.
fn apt_list_file(c: &Command) -> Option<(&'static str, String)> {
    if c.name() == "apt-get" && c.has_arg("install") {
        for a in c.args() {
            if let Some(inner) = a.strip_prefix("$(cat ").and_then(|r| r.strip_suffix(')')) {
                return Some(("apt", inner.trim().trim_start_matches("./").to_string()));
            }
        }
    }
    if c.name() == "xargs" && c.args().iter().any(|a| a == "apt-get") {
        let args = c.args();
        let i = args.iter().position(|a| a == "-a" || a == "--arg-file")?;
        return args
            .get(i + 1)
            .map(|f| ("apt", f.trim_start_matches("./").to_string()));
    }
    None
}

/// True when a stage this one is built on (`FROM deps`) installs dependencies from manifests.
fn ancestor_installed(model: &Model<'_>, stage: &Stage<'_>) -> bool {
    let mut cursor = stage
        .base
        .and_then(|b| model.stage_named(&b.value, stage.index));
    let mut guard = 0;
    while let Some(s) = cursor {
        guard += 1;
        if guard > model.stages.len() {
            break;
        }
        let installs =
            s.body.iter().filter(|n| n.value == "run").any(|n| {
                detect_install(&model::run_script(n)).is_some_and(|i| i.prefetch.is_none())
            });
        if installs {
            return true;
        }
        cursor = s.base.and_then(|b| model.stage_named(&b.value, s.index));
    }
    false
}

fn broad_copy_before_install(
    model: &Model<'_>,
    stage: &Stage<'_>,
    context: Option<&ContextInfo>,
    out: &mut Vec<Finding>,
) {
    let mut first_broad: Option<(usize, &Node)> = None;
    let mut prefetched = ancestor_installed(model, stage);
    for (i, node) in stage.body.iter().enumerate() {
        if let Some(sources) = context_sources(node) {
            if first_broad.is_none() && sources.iter().any(|s| is_broad(s, context)) {
                first_broad = Some((i, node));
            }
            continue;
        }
        if node.value != "run" {
            continue;
        }
        let script = model::run_script(node);
        let Some(install) = detect_install(&script) else {
            continue;
        };
        if install.prefetch.is_none() && first_broad.is_none() {
            prefetched = true;
        }
        let Some((broad_index, broad)) = first_broad else {
            continue;
        };
        if install.prefetch.is_some() && prefetched {
            continue;
        }
        let mut manifests = install.manifests.clone();
        if let Some(ctx) = context {
            let present: Vec<String> = manifests.iter().filter(|m| ctx.has(m)).cloned().collect();
            if !present.is_empty() {
                manifests = present;
            }
            // Workspace-level extras that exist next to the manifests.
            for extra in [".npmrc", ".yarnrc.yml", "go.work", "go.work.sum"] {
                if ctx.has(extra)
                    && manifests
                        .iter()
                        .any(|m| m == "package.json" || m == "go.mod")
                    && !manifests.iter().any(|m| m == extra)
                {
                    let applies = (extra.starts_with(".npm") || extra.starts_with(".yarn"))
                        == manifests.iter().any(|m| m == "package.json");
                    if applies {
                        manifests.push(extra.to_string());
                    }
                }
            }
        }
        let dest = broad.args.last().map(|w| w.value.as_str()).unwrap_or(".");
        let dest = if dest == "." || dest == "./" {
            "./".to_string()
        } else if dest.ends_with('/') {
            dest.to_string()
        } else {
            format!("{dest}/")
        };
        let manifest_copy = format!("COPY {} {dest}", manifests.join(" "));
        let between = &stage.body[broad_index..=i];
        let mut old: Vec<String> = Vec::new();
        let mut new_top: Vec<String> = vec![manifest_copy.clone()];
        let mut moved_down: Vec<String> = Vec::new();
        for n in between {
            let text = one_line(n);
            old.push(text.clone());
            if std::ptr::eq(*n, node as &Node) {
                continue;
            }
            if context_sources(n).is_some() {
                moved_down.push(text);
            } else {
                new_top.push(text);
            }
        }
        let mut new = new_top;
        match install.prefetch {
            Some(prefetch) => {
                new.push(format!("RUN {prefetch}"));
                new.extend(moved_down);
                new.push(one_line(node));
            }
            None => {
                new.push(one_line(node));
                new.extend(moved_down);
            }
        }
        let diff = render_diff(broad.start_line, &old, &new);
        let verb = if install.prefetch.is_some() {
            "builds"
        } else {
            "installs dependencies"
        };
        out.push(
            Finding::new(
                "BL1001",
                broad.keyword_span,
                format!(
                    "this COPY brings the whole source tree in before line {} {verb} with {}: any source change re-runs it",
                    node.start_line, install.tool
                ),
            )
            .related([node.start_line])
            .help(match install.prefetch {
                Some(p) => format!("copy {} first and run `{p}` before copying the sources", manifests.join(", ")),
                None => format!("copy {} first, install, then copy the rest", manifests.join(", ")),
            })
            .suggestion(diff),
        );
        // One finding per broad COPY.
        first_broad = None;
        prefetched = true;
    }
}

/// An instruction on one line (continuations joined, as the parser keeps it).
fn one_line(node: &Node) -> String {
    let first = node.original.lines().next().unwrap_or("");
    if node.heredocs.is_empty() {
        node.original.clone()
    } else {
        first.to_string()
    }
}

/// A small unified diff replacing `old` (starting at `line`) with `new`.
fn render_diff(line: usize, old: &[String], new: &[String]) -> String {
    let mut s = format!("@@ -{line},{} +{line},{} @@\n", old.len(), new.len());
    for l in old {
        s.push_str(&format!("-{l}\n"));
    }
    for l in new {
        s.push_str(&format!("+{l}\n"));
    }
    s
}

/// A diff moving `body[from]` to just after `body[to]` (`from < to`) or just before it
/// (`from > to`), with the lines in between as context (long runs elided).
fn render_move(body: &[&Node], from: usize, to: usize) -> String {
    let moved = one_line(body[from]);
    let (lo, hi) = if from < to { (from, to) } else { (to, from) };
    let mut s = format!(
        "@@ -{},{} +{},{} @@\n",
        body[lo].start_line,
        hi - lo + 1,
        body[lo].start_line,
        hi - lo + 1
    );
    let context: Vec<String> = if from < to {
        body[from + 1..=to].iter().map(|n| one_line(n)).collect()
    } else {
        body[to..from].iter().map(|n| one_line(n)).collect()
    };
    let mut context_text = String::new();
    if context.len() > 6 {
        for l in &context[..2] {
            context_text.push_str(&format!(" {l}\n"));
        }
        context_text.push_str(&format!(" ... ({} instructions)\n", context.len() - 4));
        for l in &context[context.len() - 2..] {
            context_text.push_str(&format!(" {l}\n"));
        }
    } else {
        for l in &context {
            context_text.push_str(&format!(" {l}\n"));
        }
    }
    if from < to {
        s.push_str(&format!("-{moved}\n{context_text}+{moved}\n"));
    } else {
        s.push_str(&format!("+{moved}\n{context_text}-{moved}\n"));
    }
    s
}

/// Names of build args whose values change every build.
fn is_per_build_name(name: &str, has_default: bool) -> bool {
    let upper = name.to_ascii_uppercase();
    let parts: Vec<&str> = upper.split('_').collect();
    const ALWAYS: &[&str] = &[
        "DATE",
        "TIMESTAMP",
        "TIME",
        "COMMIT",
        "SHA",
        "REVISION",
        "REF",
        "BUILDDATE",
        "BUILDTIME",
        "GITSHA",
        "GITCOMMIT",
        "VCSREF",
        "CREATED",
    ];
    if parts.iter().any(|p| ALWAYS.contains(p))
        || upper == "BUILD_NUMBER"
        || upper == "BUILD_ID"
        || upper.ends_with("_BUILD_NUMBER")
        || upper.ends_with("_BUILD_ID")
    {
        return true;
    }
    // The product's own version, passed in per build (a dependency's `FOO_VERSION` is a pin).
    const OWN_VERSION: &[&str] = &[
        "VERSION",
        "APP_VERSION",
        "BUILD_VERSION",
        "RELEASE",
        "RELEASE_VERSION",
        "IMAGE_VERSION",
        "IMAGE_TAG",
        "TAG",
        "SEMVER",
        "PROJECT_VERSION",
    ];
    !has_default && OWN_VERSION.contains(&upper.as_str())
}

fn per_build_values(
    model: &Model<'_>,
    stage: &Stage<'_>,
    history: Option<&History>,
    source: &str,
    out: &mut Vec<Finding>,
) {
    let escape = model.dockerfile.escape;
    // A stage `ARG NAME` without a value takes the global ARG's default.
    let global_defaults: Vec<&str> = model
        .globals
        .iter()
        .filter(|n| n.value == "arg")
        .flat_map(|n| model::arg_decls(n))
        .filter(|(_, d, _)| d.is_some_and(|d| !d.is_empty()))
        .map(|(n, _, _)| n)
        .collect();
    let mut volatile: Vec<String> = Vec::new();
    // Lines already moved along with an earlier finding's ARG.
    let mut carried: Vec<usize> = Vec::new();
    for (i, node) in stage.body.iter().enumerate() {
        if carried.contains(&i) {
            continue;
        }
        // ARGs with per-build names or values the build records show changing, and ENVs whose
        // values carry one (ENV reaches every RUN as ARG does). LABELs are image metadata: they
        // invalidate nothing.
        let mut measured: Vec<(String, ArgChangeCost)> = Vec::new();
        let names: Vec<String> = match node.value.as_str() {
            "arg" => model::arg_decls(node)
                .into_iter()
                .filter(|(n, d, _)| {
                    let has_default =
                        d.is_some_and(|d| !d.is_empty()) || global_defaults.contains(n);
                    let cost = history.map(|h| h.arg_change_cost(n)).unwrap_or_default();
                    if cost.builds > 0 {
                        measured.push((n.to_string(), cost));
                        return true;
                    }
                    is_per_build_name(n, has_default)
                })
                .map(|(n, _, _)| n.to_string())
                .collect(),
            "env" => model::key_values(node)
                .into_iter()
                .filter(|kv| {
                    super::vars::references(&kv.value.value, escape)
                        .iter()
                        .any(|(r, _)| volatile.contains(r))
                })
                .map(|kv| kv.key.value.clone())
                .collect(),
            _ => continue,
        };
        if names.is_empty() {
            continue;
        }
        volatile.extend(names.iter().cloned());
        let mv = reorder::plan_down(stage, i, escape);
        let needless: Vec<usize> = mv.passed_runs(stage).iter().map(|n| n.start_line).collect();
        if needless.is_empty() {
            continue;
        }
        carried.extend(mv.moved.iter().copied());
        let followers: Vec<usize> = mv.followers(stage).iter().map(|n| n.start_line).collect();
        let place = match mv.first_use {
            Some(k) => format!(
                "just above line {}, the first instruction that uses it",
                stage.body[k].start_line
            ),
            None => format!(
                "after line {} (the last RUN of the stage)",
                stage.body[mv.insert_at - 1].end_line
            ),
        };
        let mut help = format!("declare it {place}");
        if !followers.is_empty() {
            help.push_str(&format!(
                ", together with the ENV/LABEL lines that use it ({})",
                followers
                    .iter()
                    .map(|l| l.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let what = if measured.is_empty() {
            "carries a per-build value".to_string()
        } else {
            let shown: Vec<String> = measured
                .iter()
                .map(|(n, c)| {
                    format!(
                        "`ARG {n} changed` in {} of {} recorded builds, re-running {} ms of steps",
                        c.builds, c.of_builds, c.ms
                    )
                })
                .collect();
            format!(
                "has a value that changes between builds (the build records show {})",
                shown.join("; ")
            )
        };
        let mut f = Finding::new(
            "BL1002",
            node.keyword_span,
            format!(
                "{} `{}` {what}, above {} RUN step(s) that do not use it (lines {}): every new value re-runs them",
                node.keyword.to_uppercase(),
                names.join("`, `"),
                needless.len(),
                needless.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(", ")
            ),
        )
        .related(needless.iter().copied().chain(followers.iter().copied()))
        .help(help);
        if let Some(diff) = mv.render(stage, source) {
            f = f.suggestion(diff);
        }
        out.push(f);
    }
}

fn is_update(c: &Command) -> bool {
    matches!(
        (c.name(), c.subcommand(&["-o", "-c"])),
        ("apt-get" | "apt", Some("update")) | ("apk", Some("update"))
    )
}

fn is_install(c: &Command) -> bool {
    matches!(
        (c.name(), c.subcommand(&["-o", "-c", "-t"])),
        (
            "apt-get" | "apt",
            Some("install" | "upgrade" | "dist-upgrade" | "full-upgrade" | "build-dep")
        ) | ("apk", Some("add" | "upgrade"))
    )
}

fn apt_update_alone(stage: &Stage<'_>, out: &mut Vec<Finding>) {
    for (i, node) in stage.body.iter().enumerate() {
        if node.value != "run" {
            continue;
        }
        let script = model::run_script(node);
        if script.commands.iter().any(is_update) && !script.commands.iter().any(is_install) {
            let next = stage.body.get(i + 1).filter(|n| n.value == "run");
            let mut f = Finding::new(
                "BL1003",
                node.keyword_span,
                "package lists are updated in a RUN of their own: this layer stays cached while later installs read stale lists",
            )
            .help("run the update and the install in one RUN: `apt-get update && apt-get install -y ...`");
            if let Some(next) = next {
                f = f.related([next.start_line]).suggestion(render_diff(
                    node.start_line,
                    &[one_line(node), one_line(next)],
                    &[merge_runs(node, next)],
                ));
            }
            out.push(f);
        }
    }
}

fn merge_runs(a: &Node, b: &Node) -> String {
    let strip = |n: &Node| model::args_text(n);
    let flags = a
        .flags
        .iter()
        .map(|f| f.value.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let flags = if flags.is_empty() {
        String::new()
    } else {
        format!("{flags} ")
    };
    format!(
        "RUN {flags}{} \\\n+ && {}",
        strip(a).trim(),
        strip(b).trim()
    )
}

/// The package manager a command drives, if any.
fn package_manager(c: &Command) -> Option<&'static str> {
    match c.name() {
        "apt-get" | "apt" | "dpkg" => Some("apt"),
        "apk" => Some("apk"),
        "yum" | "dnf" | "microdnf" => Some("yum"),
        "pip" | "pip3" => Some("pip"),
        "npm" => Some("npm"),
        _ => None,
    }
}

fn is_cleanup(c: &Command) -> bool {
    (c.name() == "rm" && c.has_flag(&["-r", "-f", "-rf", "-fr", "--recursive"]))
        || matches!(
            (c.name(), c.subcommand(&[])),
            (
                "apt-get",
                Some("clean" | "autoremove" | "purge" | "autoclean")
            ) | ("apk", Some("del"))
                | ("yum" | "dnf", Some("clean"))
                | ("npm", Some("cache"))
        )
}

fn runs_belong_together(stage: &Stage<'_>, out: &mut Vec<Finding>) {
    for pair in stage.body.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a.value != "run" || b.value != "run" || a.json || b.json {
            continue;
        }
        let flags = |n: &Node| n.flags.iter().map(|f| f.value.clone()).collect::<Vec<_>>();
        if flags(a) != flags(b) {
            continue;
        }
        let sa = model::run_script(a);
        let sb = model::run_script(b);
        if sa.commands.iter().any(is_update) && !sa.commands.iter().any(is_install) {
            continue; // BL1003 reports this pair.
        }
        let cleanup_only = !sb.commands.is_empty()
            && sb
                .commands
                .iter()
                .all(|c| is_cleanup(c) || c.name() == "set");
        let shared = sa
            .commands
            .iter()
            .filter(|c| is_install(c) || c.has_arg("install"))
            .filter_map(package_manager)
            .find(|pm| {
                sb.commands
                    .iter()
                    .filter(|c| is_install(c) || c.has_arg("install"))
                    .filter_map(package_manager)
                    .any(|p| p == *pm)
            });
        // Two RUNs that do nothing but drive the same package manager (a long build script that
        // happens to install something is its own step).
        let only_packages = |sc: &Script| {
            sc.commands
                .iter()
                .all(|c| package_manager(c).is_some() || is_cleanup(c) || c.name() == "set")
        };
        let shared = shared.filter(|_| only_packages(&sa) && only_packages(&sb));
        let why = if cleanup_only {
            "line {b} only cleans up after line {a}: files removed in a later layer still ship in the earlier one".to_string()
        } else if let Some(pm) = shared {
            format!("lines {{a}} and {{b}} both install with {pm}: one RUN makes one layer and one cache entry")
        } else {
            continue;
        };
        let why = why
            .replace("{a}", &a.start_line.to_string())
            .replace("{b}", &b.start_line.to_string());
        out.push(
            Finding::new("BL1004", b.keyword_span, why)
                .related([a.start_line])
                .help("merge the two RUNs with `&&`")
                .suggestion(render_diff(
                    a.start_line,
                    &[one_line(a), one_line(b)],
                    &[merge_runs(a, b)],
                )),
        );
    }
}

fn early_add_url(stage: &Stage<'_>, out: &mut Vec<Finding>) {
    for (i, node) in stage.body.iter().enumerate() {
        if node.value != "add" || model::flag(node, "checksum").is_some() {
            continue;
        }
        let args: Vec<&str> = node.args.iter().map(|w| w.value.as_str()).collect();
        if args.len() < 2
            || !args[..args.len() - 1]
                .iter()
                .any(|s| s.starts_with("http://") || s.starts_with("https://"))
        {
            continue;
        }
        let below: Vec<&&Node> = stage.body[i + 1..]
            .iter()
            .filter(|n| n.value == "run")
            .collect();
        if below.is_empty() {
            continue;
        }
        let dest = args[args.len() - 1];
        let file = args[0].rsplit('/').next().unwrap_or("");
        let user = below.iter().find(|n| {
            let t = model::run_text(n);
            t.contains(dest) || (!file.is_empty() && t.contains(file))
        });
        let mut f = Finding::new(
            "BL1005",
            node.keyword_span,
            format!("ADD of a URL sits above {} RUN step(s): it is fetched every build and any change to it re-runs them", below.len()),
        )
        .related(below.iter().map(|n| n.start_line))
        .help("pin it with `ADD --checksum=sha256:<digest>` or move it down to the step that uses it");
        if let Some(user) = user {
            if user.start_line != below[0].start_line {
                if let Some(user_index) = stage.body.iter().position(|n| std::ptr::eq(*n, **user)) {
                    f = f.suggestion(render_move(&stage.body, i, user_index - 1));
                }
            }
        }
        out.push(f);
    }
}

/// A command that depends on nothing in the build context.
fn is_context_free(c: &Command) -> bool {
    let reads_files = c.words.iter().any(|w| {
        w.starts_with("./") || w.contains("$(cat") || w.ends_with(".deb") || w.ends_with(".txt")
    });
    if reads_files {
        return false;
    }
    matches!(
        c.name(),
        "apt-get"
            | "apk"
            | "yum"
            | "dnf"
            | "microdnf"
            | "zypper"
            | "useradd"
            | "adduser"
            | "groupadd"
            | "addgroup"
            | "set"
            | "echo"
            | "update-ca-certificates"
    ) || (c.name() == "rm"
        && c.args().iter().all(|a| {
            a.starts_with('-')
                || a.starts_with("/var/lib/apt")
                || a.starts_with("/var/cache")
                || a.starts_with("/tmp")
        }))
}

/// Whether a step may read the files a COPY wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reads {
    /// The step names the destination, or is a known reader of that place.
    Yes,
    /// The files land where system tools look (package scripts may read them): cannot tell.
    Maybe,
    No,
}

/// System places and the commands (or package names) known to read what is put there.
const KNOWN_READERS: &[(&str, &[&str])] = &[
    (
        "/usr/local/share/ca-certificates",
        &["ca-certificates", "update-ca-certificates"],
    ),
    (
        "/usr/share/ca-certificates",
        &["ca-certificates", "update-ca-certificates"],
    ),
    (
        "/etc/ca-certificates",
        &["ca-certificates", "update-ca-certificates"],
    ),
    (
        "/etc/ssl",
        &[
            "ca-certificates",
            "update-ca-certificates",
            "openssl",
            "curl",
            "wget",
        ],
    ),
    ("/etc/apt", &["apt-get", "apt", "dpkg"]),
    ("/etc/dpkg", &["apt-get", "apt", "dpkg"]),
    ("/etc/apk", &["apk"]),
    ("/etc/yum", &["yum", "dnf", "microdnf"]),
    ("/etc/dnf", &["yum", "dnf", "microdnf"]),
    ("/etc/pki", &["yum", "dnf", "microdnf", "update-ca-trust"]),
    ("/etc/zypp", &["zypper"]),
    ("/etc/pip.conf", &["pip", "pip3"]),
    (
        "/etc/login.defs",
        &["useradd", "adduser", "groupadd", "addgroup"],
    ),
    ("/etc/skel", &["useradd", "adduser"]),
    ("/etc/default", &["useradd", "adduser"]),
    (
        "/etc/passwd",
        &["useradd", "adduser", "groupadd", "addgroup", "usermod"],
    ),
    (
        "/etc/group",
        &["useradd", "adduser", "groupadd", "addgroup", "usermod"],
    ),
    ("/etc/shadow", &["useradd", "adduser", "usermod"]),
];

/// Top-level directories where package installs and user tools look for configuration.
const SYSTEM_DIRS: &[&str] = &[
    "/etc", "/usr", "/lib", "/lib64", "/var", "/opt", "/root", "/bin", "/sbin", "/home",
];

fn under(path: &str, dir: &str) -> bool {
    path == dir || path.starts_with(&format!("{}/", dir.trim_end_matches('/')))
}

/// Whether the RUN `node` (with `script`) may read what the COPY `copy` wrote.
fn may_read(copy: &Node, node: &Node, script: &Script) -> Reads {
    let Some(dest) = copy.args.last().map(|w| w.value.as_str()) else {
        return Reads::Maybe;
    };
    if dest.contains('$') {
        return Reads::Maybe;
    }
    let dest = dest.trim_end_matches('/');
    let text = model::run_text(node);
    // The step names the destination (or a place inside it, or the directory holding it).
    if dest.starts_with('/') && dest.len() > 1 && text.contains(dest) {
        return Reads::Yes;
    }
    let words: Vec<&str> = script
        .commands
        .iter()
        .flat_map(|c| c.words.iter().map(String::as_str))
        .collect();
    if words
        .iter()
        .any(|w| w.starts_with('/') && w.len() > 1 && under(dest, w.trim_end_matches('/')))
    {
        return Reads::Yes;
    }
    if !dest.starts_with('/') {
        // Relative to the WORKDIR: the application's own directory.
        return Reads::No;
    }
    for (place, readers) in KNOWN_READERS {
        if under(dest, place) || under(place, dest) {
            let named = words.iter().any(|w| {
                let base = w.split(['=', ':']).next().unwrap_or(w);
                readers.contains(&base.rsplit('/').next().unwrap_or(base))
            });
            if named {
                return Reads::Yes;
            }
        }
    }
    if dest.is_empty() || SYSTEM_DIRS.iter().any(|d| under(dest, d)) {
        return Reads::Maybe;
    }
    Reads::No
}

fn stable_below_changing(stage: &Stage<'_>, source: &str, out: &mut Vec<Finding>) {
    for (index, node) in stage.body.iter().enumerate() {
        if node.value != "run" || !node.flags.is_empty() {
            continue;
        }
        let script = model::run_script(node);
        let installs_system = script.commands.iter().any(|c| {
            package_manager(c).is_some_and(|p| p == "apt" || p == "apk" || p == "yum")
                || c.name().contains("user")
                || c.name().contains("group")
        });
        if !installs_system || !script.commands.iter().all(is_context_free) {
            continue;
        }
        // How far up it can go: past COPY/ADD and metadata that no step sees; anything that
        // changes what a RUN runs with (ENV, ARG, USER, WORKDIR, SHELL, another RUN) stays put.
        let mut top = index;
        while top > 0
            && matches!(
                stage.body[top - 1].value.as_str(),
                "copy" | "add" | "label" | "expose"
            )
        {
            top -= 1;
        }
        let copies: Vec<&Node> = stage.body[top..index]
            .iter()
            .copied()
            .filter(|n| context_sources(n).is_some())
            .collect();
        let Some(first) = copies.first() else {
            continue;
        };
        let mut reads = Reads::No;
        let mut unsure: Vec<usize> = Vec::new();
        for c in &copies {
            match may_read(c, node, &script) {
                Reads::Yes => {
                    reads = Reads::Yes;
                    break;
                }
                Reads::Maybe => {
                    reads = Reads::Maybe;
                    unsure.push(c.start_line);
                }
                Reads::No => {}
            }
        }
        let lines = |ls: &[usize]| {
            ls.iter()
                .map(|l| l.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let copy_lines: Vec<usize> = copies.iter().map(|c| c.start_line).collect();
        let message = format!(
            "this step needs nothing from the build context, yet sits below the COPY on line {}: every change to the copied files re-runs it",
            lines(&copy_lines)
        );
        let f = Finding::new("BL1007", node.keyword_span, message).related(copy_lines.clone());
        match reads {
            Reads::Yes => continue,
            Reads::Maybe => out.push(f.help(format!(
                "if this step does not read the files of line {}, move it above line {}",
                lines(&unsure),
                first.start_line
            ))),
            Reads::No => {
                let mv = reorder::Move {
                    moved: (top..index).collect(),
                    insert_at: index + 1,
                    first_use: None,
                    show_up: true,
                };
                let mut f = f.help(format!("move it above line {}", first.start_line));
                if let Some(diff) = mv.render(stage, source) {
                    f = f.suggestion(diff);
                }
                out.push(f);
            }
        }
    }
}

fn copy_without_dockerignore(stage: &Stage<'_>, ctx: &ContextInfo, out: &mut Vec<Finding>) {
    if ctx.ignore.is_some() {
        return;
    }
    let heavy: Vec<&str> = HEAVY_DIRS.iter().copied().filter(|d| ctx.has(d)).collect();
    if heavy.is_empty() {
        return;
    }
    for node in &stage.body {
        let Some(sources) = context_sources(node) else {
            continue;
        };
        if sources
            .iter()
            .any(|s| matches!(s.trim_start_matches("./"), "" | "." | "*"))
        {
            out.push(
                Finding::new(
                    "BL1006",
                    node.keyword_span,
                    format!("the context has no .dockerignore but holds {}: they are sent with every build and any change to them re-runs this COPY", heavy.join(", ")),
                )
                .help("add a .dockerignore listing them")
                .suggestion(format!("@@ new file .dockerignore @@\n{}", heavy.iter().map(|d| format!("+{d}\n")).collect::<String>())),
            );
        }
    }
}
