//! `builder login` / `builder logout`: check credentials against a registry and keep them in the
//! Docker config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`), as `docker login` does.

use std::io::{BufRead, Write};

use anyhow::{bail, Context, Result};
use clap::Args;
use registry::{normalize_registry, Client, ClientOptions};

/// Arguments of `builder login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry to log in to (`localhost:5000`, `ghcr.io`); Docker Hub when omitted.
    pub server: Option<String>,
    /// User name (asked on the terminal when omitted).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Password or token (prefer `--password-stdin`: arguments are visible to other users).
    #[arg(short, long, conflicts_with = "password_stdin")]
    pub password: Option<String>,
    /// Read the password or token from standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// Arguments of `builder logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry to log out of; Docker Hub when omitted.
    pub server: Option<String>,
}

fn read_line(stdin: &mut impl BufRead) -> Result<String> {
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .context("reading standard input")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

/// Verifies the credentials (`GET /v2/`, answering the registry's challenge) and stores them.
pub fn run_login(args: &LoginArgs) -> Result<()> {
    let server = normalize_registry(args.server.as_deref().unwrap_or("docker.io"));
    let mut stdin = std::io::stdin().lock();
    let username = match &args.username {
        Some(username) => username.clone(),
        None if args.password_stdin => bail!("--password-stdin needs --username"),
        None => {
            eprint!("Username: ");
            std::io::stderr().flush().ok();
            read_line(&mut stdin)?
        }
    };
    let password = match (&args.password, args.password_stdin) {
        (Some(password), _) => password.clone(),
        (None, true) => read_line(&mut stdin)?,
        (None, false) => bail!("no password given: pass it with --password-stdin (or --password)"),
    };
    if username.is_empty() || password.is_empty() {
        bail!("user name and password must not be empty");
    }
    let client = Client::new(ClientOptions::from_env())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(client.login(&server, &username, &password))?;
    println!("Login Succeeded");
    Ok(())
}

/// Removes the stored credentials for the registry.
pub fn run_logout(args: &LogoutArgs) -> Result<()> {
    let server = normalize_registry(args.server.as_deref().unwrap_or("docker.io"));
    let client = Client::new(ClientOptions::from_env())?;
    if client.logout(&server)? {
        println!("Removing login credentials for {server}");
    } else {
        println!("Not logged in to {server}");
    }
    Ok(())
}
