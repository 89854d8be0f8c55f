//! `builder parse [--format ast|json] FILE`: print a Dockerfile's parse the way BuildKit sees it.

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use frontend_dockerfile::parser::{self, dump};
use std::io::Write;
use std::path::PathBuf;

/// Output formats of `builder parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// BuildKit's sexp AST dump, one `(instruction "arg" ...)` line per instruction.
    Ast,
    /// One JSON object per instruction (cmd, flags, value, lines, heredocs ...).
    Json,
}

/// Arguments of `builder parse`.
#[derive(Debug, Args)]
pub struct ParseArgs {
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Ast)]
    pub format: Format,
    /// The Dockerfile to parse.
    pub file: PathBuf,
}

/// Parses the file and prints it; a file the parser rejects fails with `file:line:column: why`.
pub fn run(args: &ParseArgs) -> Result<()> {
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let src = String::from_utf8_lossy(&bytes);
    let file = match parser::parse(&src) {
        Ok(f) => f,
        Err(e) => bail!("{}:{e}", args.file.display()),
    };
    for w in &file.warnings {
        eprintln!(
            "{}:{}:{}: warning: {}: {}",
            args.file.display(),
            w.span.line,
            w.span.column,
            w.rule,
            w.message
        );
    }
    let text = match args.format {
        Format::Ast => dump::ast(&file),
        Format::Json => serde_json::to_string_pretty(&dump::json(&file))? + "\n",
    };
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        // A closed pipe (`builder parse f | head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other.context("writing to stdout")?),
    }
}
