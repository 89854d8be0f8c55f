//! `builder lint [-f Dockerfile] [CONTEXT]`: layer-order advice, BuildKit's build checks and
//! hadolint's common rules, printed as code frames, JSON, SARIF or GitHub annotations.
//!
//! Exit status: 0 when no finding reaches the failure threshold, 1 when one does, 2 when the
//! Dockerfile cannot be read or parsed (or a config/history file is bad).

use anyhow::{anyhow, Context, Result};
use clap::{Args, ValueEnum};
use frontend_dockerfile::lint::{
    self,
    history::{BuildRecord, History, StepRecord},
    output::{self, Report},
    ContextInfo, LintConfig, LintInput, Severity,
};
use frontend_dockerfile::parser;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// Output formats of `builder lint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Code frames with the line, a caret and a help line (colour on a terminal).
    Human,
    /// A JSON array of findings (`file`, `line`, `column`, `rule`, `severity`, `message`, ...).
    Json,
    /// A SARIF 2.1.0 log.
    Sarif,
    /// GitHub Actions workflow annotations.
    Github,
}

/// Severity thresholds for the exit status (`none` never fails).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Threshold {
    Error,
    Warning,
    Info,
    Style,
    None,
}

/// Arguments of `builder lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// The Dockerfile (default: `<CONTEXT>/Dockerfile`).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The build context directory; enables the checks that look at it (.dockerignore, manifests).
    #[arg(default_value = ".")]
    pub context: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Do not report this rule (id such as `DL3008` or name such as `StageNameCasing`); repeatable.
    #[arg(long = "ignore", value_name = "RULE")]
    pub ignore: Vec<String>,
    /// Exit 1 when a finding is at least this severe (default: the config's, else `info`).
    #[arg(long, value_enum)]
    pub failure_threshold: Option<Threshold>,
    /// Lint configuration (default: `.builder-lint.toml` or the `[lint]` table of `builder.toml`
    /// in the context, then beside the Dockerfile).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Build records to rank cache misses by (JSON, see `lint::history`). Default: the records
    /// the cache holds for this Dockerfile and target.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// The build target: the stage whose build errors to report and whose records to read
    /// (default: the last stage).
    #[arg(long, default_value = "")]
    pub target: String,
    /// A build argument the build would get (`NAME=VALUE`, or `NAME` to take it from the
    /// environment); repeatable.
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,
    /// Print every rule (id, name, origin, default severity, what it wants) and exit.
    #[arg(long)]
    pub list_rules: bool,
    /// Colour for human output: auto (on a terminal, unless NO_COLOR is set), always or never.
    #[arg(long, default_value = "auto", value_parser = ["auto", "always", "never"])]
    pub color: String,
}

/// Runs lint and returns the process exit code.
/// `root` is the global `--root` (the cache root build records are read from).
pub fn run(args: &LintArgs, root: Option<&Path>) -> Result<i32> {
    match run_inner(args, root) {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            Ok(2)
        }
    }
}

fn run_inner(args: &LintArgs, root: Option<&Path>) -> Result<i32> {
    if args.list_rules {
        let mut out = String::new();
        for r in lint::rules::RULES {
            let source = match r.source {
                lint::RuleSource::Builder => "builder",
                lint::RuleSource::BuildKit => "buildkit",
                lint::RuleSource::Hadolint => "hadolint",
            };
            out.push_str(&format!(
                "{:<32} {:<34} {:<9} {:<8} {}\n",
                r.id, r.name, source, r.severity, r.doc
            ));
        }
        print!("{out}");
        return Ok(0);
    }
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let source = String::from_utf8_lossy(&bytes).into_owned();
    let dockerfile = parser::parse(&source).map_err(|e| anyhow!("{}:{e}", file.display()))?;

    let mut config = match &args.config {
        Some(path) => LintConfig::from_file(path)?,
        None => {
            let c = LintConfig::discover(&args.context)?;
            if c == LintConfig::default() {
                match file.parent().filter(|p| !p.as_os_str().is_empty()) {
                    Some(dir) => LintConfig::discover(dir)?,
                    None => c,
                }
            } else {
                c
            }
        }
    };
    config.ignore.extend(args.ignore.iter().cloned());
    let threshold = match args.failure_threshold {
        Some(Threshold::None) => None,
        Some(Threshold::Error) => Some(Severity::Error),
        Some(Threshold::Warning) => Some(Severity::Warning),
        Some(Threshold::Info) => Some(Severity::Info),
        Some(Threshold::Style) => Some(Severity::Style),
        None => Some(config.failure_threshold.unwrap_or(Severity::Info)),
    };

    let context = if args.context.is_dir() {
        Some(ContextInfo::read(&args.context, &file)?)
    } else {
        None
    };
    let history = load_history(args, root, &file)?;
    let mut build_args = std::collections::BTreeMap::new();
    for text in &args.build_args {
        if let Some((k, v)) = frontend_dockerfile::lower::parse_build_arg(text)? {
            build_args.insert(k, v);
        }
    }
    let findings = lint::lint(
        &dockerfile,
        &LintInput {
            source: &source,
            context: context.as_ref(),
            history: history.as_ref(),
            build_args,
            target: (!args.target.is_empty()).then(|| args.target.clone()),
        },
        &config,
    );

    let shown = file.display().to_string();
    let reports = [Report {
        file: &shown,
        source: &source,
        findings: &findings,
    }];
    let color = match args.color.as_str() {
        "always" => true,
        "never" => false,
        _ => std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let format = match args.format {
        Format::Human => output::Format::Human,
        Format::Json => output::Format::Json,
        Format::Sarif => output::Format::Sarif,
        Format::Github => output::Format::Github,
    };
    let text = output::render(format, &reports, color);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other.context("writing to stdout")?,
    }
    let failed = threshold.is_some_and(|t| findings.iter().any(|f| f.severity >= t));
    Ok(i32::from(failed))
}

/// `--history FILE`, else the build records the cache holds for this Dockerfile and target.
fn load_history(
    args: &LintArgs,
    root: Option<&Path>,
    dockerfile: &Path,
) -> Result<Option<History>> {
    if let Some(path) = &args.history {
        return Ok(Some(History::load(path)?));
    }
    let root = match root {
        Some(p) => p.to_path_buf(),
        None => match cache::RootDir::default_path() {
            Ok(p) => p,
            Err(_) => return Ok(None),
        },
    };
    // Only read: lint never creates a cache root.
    if !root.join(cache::records::RECORDS_DIR).is_dir() {
        return Ok(None);
    }
    let store = cache::records::RecordStore::open(&root)?;
    let records = store.list(&cache::records::target_id(dockerfile, &args.target));
    if records.is_empty() {
        return Ok(None);
    }
    Ok(Some(History {
        builds: records
            .into_iter()
            .map(|r| BuildRecord {
                steps: r
                    .steps
                    .into_iter()
                    .filter(|s| s.line > 0)
                    .map(|s| StepRecord {
                        line: s.line,
                        cached: s.cached,
                        duration_ms: s.duration_ms,
                        // A reason this version cannot read is left out, not an error.
                        reason: serde_json::from_value(s.reason).ok(),
                        name: Some(s.name),
                    })
                    .collect(),
            })
            .collect(),
    }))
}
