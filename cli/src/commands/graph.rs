//! `builder graph [-f FILE] [--target T] [--build-arg K=V]... [--format dot|json] [CONTEXT]`:
//! lowers a Dockerfile and prints the build graph, without building anything.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use frontend_dockerfile::dockerignore::DockerIgnore;
use frontend_dockerfile::lower::{self, LowerOptions};
use frontend_dockerfile::parser;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// Output formats of `builder graph`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT (pipe into `dot -Tsvg`), one cluster per stage.
    Dot,
    /// The vertices, stages and target as JSON.
    Json,
}

/// Arguments of `builder graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The stage to build (default: the last one).
    #[arg(long)]
    pub target: Option<String>,
    /// A build argument, `NAME=VALUE` (or `NAME` to take it from the environment).
    #[arg(long = "build-arg", value_name = "NAME=VALUE")]
    pub build_args: Vec<String>,
    /// The platform to build for (`linux/amd64`; default: this machine's).
    #[arg(long)]
    pub platform: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
    /// The build context directory.
    #[arg(default_value = ".")]
    pub context: PathBuf,
}

/// Reads, parses and lowers the Dockerfile, then prints the graph.
pub fn run(args: &GraphArgs) -> Result<()> {
    let file = args
        .file
        .clone()
        .unwrap_or_else(|| args.context.join("Dockerfile"));
    let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
    let src = String::from_utf8_lossy(&bytes);
    let shown = file.display().to_string();
    let dockerfile = match parser::parse(&src) {
        Ok(d) => d,
        Err(e) => bail!("{shown}:{e}"),
    };
    let mut build_args = BTreeMap::new();
    for text in &args.build_args {
        match lower::parse_build_arg(text) {
            Ok(Some((k, v))) => {
                build_args.insert(k, v);
            }
            Ok(None) => {}
            Err(d) => bail!("{d}"),
        }
    }
    let platform = match &args.platform {
        Some(p) => Some(p.parse().with_context(|| format!("--platform {p}"))?),
        None => None,
    };
    let ignore = DockerIgnore::load_for_dockerfile(&args.context, &file)
        .with_context(|| format!("reading the ignore file of {}", args.context.display()))?;
    let dockerignore = ignore
        .matcher()
        .patterns()
        .iter()
        .map(|p| {
            if p.is_exclusion() {
                format!("!{}", p.as_str())
            } else {
                p.as_str().to_string()
            }
        })
        .collect();
    let opts = LowerOptions {
        file_name: shown,
        source: Some(&src),
        build_args,
        target: args.target.clone(),
        platform,
        dockerignore,
        ..LowerOptions::default()
    };
    let lowered = match lower::lower(&dockerfile, &opts) {
        Ok(l) => l,
        Err(d) => bail!("{d}"),
    };
    for w in &lowered.warnings {
        match w.line {
            Some(line) => eprintln!("{}:{line}: warning: {}", opts.file_name, w.message),
            None => eprintln!("warning: {}", w.message),
        }
    }
    let text = match args.format {
        GraphFormat::Dot => lowered.definition.to_dot(),
        GraphFormat::Json => lowered.definition.to_json()? + "\n",
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A closed pipe (`builder graph | head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other.context("writing to stdout")?),
    }
}
