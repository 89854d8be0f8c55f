//! The `builder` command: a thin layer that parses flags, calls the crates and renders output.

mod commands;
mod docker_flags;
mod progress;

use clap::{Parser, Subcommand};

/// An incremental container-image builder.
#[derive(Parser)]
#[command(name = "builder", version, about)]
struct Cli {
    /// Root directory for the cache, images and state (default: `$BUILDER_ROOT` when set and
    /// not empty, else `/var/lib/builder` as root, `$XDG_DATA_HOME/builder` otherwise).
    #[arg(long, global = true, alias = "cache-dir", value_name = "DIR")]
    root: Option<std::path::PathBuf>,

    /// Most bytes one layer or ADD archive may expand to when unpacked (`10G`, `500M`; default:
    /// the free space of the root's filesystem less a reserve). Stops decompression bombs.
    #[arg(long, global = true, env = "BUILDER_MAX_UNPACK", value_name = "SIZE",
          value_parser = parse_unpack_size)]
    max_unpack_size: Option<String>,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile.
    Build(Box<commands::build::BuildArgs>),
    /// Run an image's command in the sandbox, on a throw-away writable layer.
    Run(Box<commands::run::RunArgs>),
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
    /// Lint a Dockerfile: cache-friendly layer order, BuildKit checks, hadolint rules.
    Lint(commands::lint::LintArgs),
    /// Lower a Dockerfile to the build graph and print it (DOT or JSON).
    Graph(commands::graph::GraphArgs),
    /// Log in to a registry (credentials are checked, then kept in the Docker config).
    Login(commands::login::LoginArgs),
    /// Log out of a registry.
    Logout(commands::login::LogoutArgs),
    /// Download an image from a registry into the local store.
    Pull(commands::registry::PullArgs),
    /// Upload an image from the local store to a registry.
    Push(commands::registry::PushArgs),
    /// Remove build cache (least recently used first) and everything nothing needs any more.
    Prune(commands::cache::PruneArgs),
    /// Show what the root takes on disk: cache records, images, snapshots, cache mounts.
    Du(commands::cache::DuArgs),
    /// Check or repair the cache.
    Cache(commands::cache::CacheArgs),
}

fn parse_unpack_size(v: &str) -> Result<String, String> {
    engine::fileops::archive::parse_size(v)
        .map(|_| v.to_string())
        .ok_or_else(|| format!("{v:?} is not a size (bytes, or a number with K, M, G or T)"))
}

fn main() {
    // The sandbox helper is this binary re-executed; it must take over before anything else runs.
    engine::worker::register_handlers();
    engine::executor::maybe_run_helper();
    refuse_unsupported_docker_flags();
    engine::source::context::deep_stacks();
    let cli = Cli::parse();
    if let Err(e) = run(cli) {
        // A user error is its message and its causes; backtraces are for bugs (panics), so
        // `RUST_BACKTRACE=1` in the user's environment does not turn this into a stack dump.
        eprintln!("Error: {e}");
        let mut causes = e.chain().skip(1).peekable();
        if causes.peek().is_some() {
            eprintln!("\nCaused by:");
            for (i, cause) in causes.enumerate() {
                eprintln!("    {i}: {cause}");
            }
        }
        std::process::exit(1);
    }
}

/// `builder build --squash ...`: names the Docker flag we lack and what to do instead, before
/// clap would answer with a generic "unexpected argument".
fn refuse_unsupported_docker_flags() {
    use clap::CommandFactory;
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The subcommand is the first word that is neither a global option nor its value.
    let mut at = 0;
    while at < args.len() {
        match args[at].as_str() {
            "--root" | "--cache-dir" => at += 2,
            a if a.starts_with('-') => at += 1,
            _ => break,
        }
    }
    if args.get(at).map(String::as_str) != Some("build") {
        return;
    }
    let command = Cli::command();
    let Some(build) = command.find_subcommand("build") else {
        return;
    };
    let supported = |name: &str| {
        build.get_arguments().any(|a| {
            a.get_long() == Some(name) || a.get_all_aliases().is_some_and(|al| al.contains(&name))
        })
    };
    if let Some(message) = docker_flags::unsupported_build_flag(&args[at + 1..], &supported) {
        eprintln!("Error: {message}");
        std::process::exit(2);
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    if let Some(size) = &cli.max_unpack_size {
        // The engine reads the limit where it unpacks; the flag reaches it the same way as the
        // variable. Set before any thread starts.
        std::env::set_var(engine::fileops::archive::MAX_UNPACK_ENV, size);
    }
    // Absolute from here on: the root's paths are handed to mounts and to the sandbox helper,
    // which run in another directory.
    let root = cli.root.as_deref().map(std::path::absolute).transpose()?;
    let root = root.as_deref();
    match cli.command {
        Command::Build(args) => commands::build::run(&args, root),
        Command::Run(a) => std::process::exit(commands::run::run(root, *a)?),
        Command::Images(a) => commands::images::images(root, a),
        Command::Rmi(a) => commands::images::rmi(root, a),
        Command::Tag(a) => commands::images::tag(root, a),
        Command::Inspect(a) => commands::images::inspect(root, a),
        Command::History(a) => commands::images::history(root, a),
        Command::Save(a) => commands::images::save(root, a),
        Command::Load(a) => commands::images::load(root, a),
        Command::Parse(args) => commands::parse::run(&args),
        Command::Lint(args) => std::process::exit(commands::lint::run(&args, root)?),
        Command::Graph(args) => commands::graph::run(&args),
        Command::Login(args) => commands::login::run_login(&args),
        Command::Logout(args) => commands::login::run_logout(&args),
        Command::Pull(args) => commands::registry::pull(root, &args),
        Command::Push(args) => commands::registry::push(root, &args),
        Command::Prune(a) => commands::cache::prune(root, a),
        Command::Du(a) => commands::cache::du(root, a),
        Command::Cache(a) => commands::cache::run(root, a),
    }
}
