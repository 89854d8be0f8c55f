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
    /// Log in to a registry (credentials are checked, then kept in the Docker config).
    Login(commands::login::LoginArgs),
    /// Log out of a registry.
    Logout(commands::login::LogoutArgs),
}

fn main() -> anyhow::Result<()> {
    // The sandbox helper is this binary re-executed; it must take over before anything else runs.
    engine::executor::maybe_run_helper();
    let cli = Cli::parse();
    match cli.command {
        Command::Parse(args) => commands::parse::run(&args),
        Command::Login(args) => commands::login::run_login(&args),
        Command::Logout(args) => commands::login::run_logout(&args),
    }
}
