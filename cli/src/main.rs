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
    /// Lower a Dockerfile to the build graph and print it (DOT or JSON).
    Graph(commands::graph::GraphArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Graph(args) => commands::graph::run(&args),
    }
}
