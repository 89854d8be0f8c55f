//! The `builder` command: a thin layer that parses flags, calls the crates and renders output.

mod commands;
mod progress;

use clap::{Parser, Subcommand};

/// An incremental container-image builder.
#[derive(Parser)]
#[command(name = "builder", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Parse a Dockerfile and print its AST (BuildKit's dump) or JSON.
    Parse(commands::parse::ParseArgs),
    /// Lint a Dockerfile: cache-friendly layer order, BuildKit checks, hadolint rules.
    Lint(commands::lint::LintArgs),
}

fn main() -> anyhow::Result<()> {
    // The sandbox helper is this binary re-executed; it must take over before anything else runs.
    engine::executor::maybe_run_helper();
    let cli = Cli::parse();
    match cli.command {
        Command::Parse(args) => commands::parse::run(&args),
        Command::Lint(args) => std::process::exit(commands::lint::run(&args)?),
    }
}
