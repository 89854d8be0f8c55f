//! `builder pull` / `builder push`: move images between the local store and a registry, moving
//! only the blobs the other side lacks, with `docker pull`/`docker push`-style output.

use std::path::Path;

use anyhow::{Context, Result};
use clap::Args;
use registry::{Client, ClientOptions, Platform, ProgressEvent};

use super::images::LocalImages;

/// Arguments of `builder pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Platform to choose from a multi-platform image (`linux/arm64`); this machine's by default.
    #[arg(long)]
    pub platform: Option<String>,
    /// Print only the image name at the end.
    #[arg(short, long)]
    pub quiet: bool,
    /// Image to pull (`alpine`, `localhost:5000/app:1`, `name@sha256:...`).
    pub name: String,
}

/// Arguments of `builder push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Print only errors.
    #[arg(short, long)]
    pub quiet: bool,
    /// Local image name to push; it names the registry and repository too.
    pub name: String,
}

/// Where `pull` reports: standard output (`builder pull`), or standard error (the pull before a
/// `builder run`, whose standard output is the container's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Report {
    Stdout,
    Stderr,
}

impl Report {
    fn line(self, text: &str) {
        match self {
            Report::Stdout => println!("{text}"),
            Report::Stderr => eprintln!("{text}"),
        }
    }
}

/// Prints the per-layer lines `docker pull`/`docker push` print (byte counts are left out).
fn printer(quiet: bool, report: Report) -> impl Fn(ProgressEvent) + Send + Sync {
    move |event| match &event {
        ProgressEvent::Downloading { .. }
        | ProgressEvent::Pushing { .. }
        | ProgressEvent::Resolved { .. }
        | ProgressEvent::ManifestPushed { .. } => {}
        ProgressEvent::Retrying { .. } => eprintln!("{}", event.docker_line()),
        _ if quiet => {}
        _ => report.line(&event.docker_line()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// `builder pull NAME`: fetches the image (only missing blobs) and names it in the local store.
pub fn pull(root: Option<&Path>, args: &PullArgs) -> Result<()> {
    pull_reporting(root, args, Report::Stdout)
}

/// [`pull`], reporting on `report`.
pub fn pull_reporting(root: Option<&Path>, args: &PullArgs, report: Report) -> Result<()> {
    let reference = registry::parse_reference(&args.name)?;
    let mut options = ClientOptions::from_env();
    if let Some(platform) = &args.platform {
        options.platform = Platform::parse(platform).with_context(|| {
            format!("invalid platform `{platform}` (expected os/arch[/variant])")
        })?;
    }
    let client = Client::new(options)?;
    let platform = client.options().platform.clone();
    let local = LocalImages::open(root)?;
    if !args.quiet {
        report.line(&format!(
            "{}: Pulling from {}",
            reference.tag().unwrap_or("latest"),
            reference.path()
        ));
    }
    let progress = printer(args.quiet, report);
    let stored = runtime()?.block_on(registry::pull_to_store(
        &client,
        &reference,
        &platform,
        &local.cas,
        &local.store,
        &progress,
    ))?;
    let shown = reference.familiar();
    if args.quiet {
        report.line(&shown);
    } else {
        report.line(&format!("Digest: {}", stored.pulled.resolved_digest));
        if stored.existed {
            report.line(&format!("Status: Image is up to date for {shown}"));
        } else {
            report.line(&format!("Status: Downloaded newer image for {shown}"));
        }
        report.line(&reference.to_string());
    }
    Ok(())
}

/// `builder push NAME`: sends the image's missing blobs, then its manifest, to the registry the
/// name points at; blobs are mounted from repositories the image was pulled from when possible.
pub fn push(root: Option<&Path>, args: &PushArgs) -> Result<()> {
    let reference = registry::parse_reference(&args.name)?;
    let local = LocalImages::open(root)?;
    let entry = local
        .store
        .resolve(&args.name)
        .with_context(|| format!("no such image: {}", args.name))?;
    let client = Client::new(ClientOptions::from_env())?;
    if !args.quiet {
        println!("The push refers to repository [{}]", reference.repository());
    }
    let progress = printer(args.quiet, Report::Stdout);
    let pushed = runtime()?.block_on(registry::push_from_store(
        &client,
        &entry,
        &reference,
        &local.cas,
        &local.store,
        &progress,
    ))?;
    if !args.quiet {
        println!(
            "{}: digest: {} size: {}",
            reference.tag().unwrap_or("latest"),
            pushed.digest,
            pushed.size
        );
    }
    Ok(())
}
