//! The `builder` command: a thin layer that parses flags, calls the crates and renders output.

mod commands;
mod progress;

use clap::{Parser, Subcommand};

/// An incremental container-image builder.
#[derive(Parser)]
#[command(name = "builder", version, about)]
struct Cli {
    /// Root directory for the cache, images and state (default: `$XDG_DATA_HOME/builder`,
    /// `/var/lib/builder` as root).
    #[arg(
        long,
        global = true,
        env = "BUILDER_ROOT",
        alias = "cache-dir",
        value_name = "DIR"
    )]
    root: Option<std::path::PathBuf>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile.
    Build(commands::build::BuildArgs),
    /// List images in the local store.
    Images(commands::images::ImagesArgs),
    /// Remove images from the local store.
    Rmi(commands::images::RmiArgs),
    /// Give an image another name.
    Tag(commands::images::TagArgs),
    /// Show an image's configuration as JSON.
    Inspect(commands::images::InspectArgs),
    /// Show the build steps of an image.
    History(commands::images::HistoryArgs),
    /// Write images to a docker-archive or OCI archive.
    Save(commands::images::SaveArgs),
    /// Load images from a docker-archive or OCI archive.
    Load(commands::images::LoadArgs),
    /// Parse a Dockerfile and print its AST (BuildKit's dump) or JSON.
    Parse(commands::parse::ParseArgs),
    /// Lower a Dockerfile to the build graph and print it (DOT or JSON).
    Graph(commands::graph::GraphArgs),
}

fn main() -> anyhow::Result<()> {
    // The sandbox helper is this binary re-executed; it must take over before anything else runs.
    engine::worker::register_handlers();
    engine::executor::maybe_run_helper();
    let cli = Cli::parse();
    let root = cli.root.as_deref();
    match cli.command {
        Command::Build(args) => commands::build::run(&args, root),
        Command::Images(a) => commands::images::images(root, a),
        Command::Rmi(a) => commands::images::rmi(root, a),
        Command::Tag(a) => commands::images::tag(root, a),
        Command::Inspect(a) => commands::images::inspect(root, a),
        Command::History(a) => commands::images::history(root, a),
        Command::Save(a) => commands::images::save(root, a),
        Command::Load(a) => commands::images::load(root, a),
        Command::Parse(args) => commands::parse::run(&args),
        Command::Graph(args) => commands::graph::run(&args),
    }
}
