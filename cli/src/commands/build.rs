//! `builder build`: turns flags into a [`build::BuildRequest`], runs it, renders the outcome.
//! Where the build happens is the `build` crate.

use super::build_request::request;
pub use super::build_request::BuildArgs;
use super::images::human_size;
use crate::progress::{self, ProgressMode};
use anyhow::{Context, Result};
use build::{Build, BuildOutcome};
use engine::solver::progress::ProgressSink;
use std::path::Path;
use std::sync::Arc;

/// Runs the build.
pub fn run(args: &BuildArgs, root: Option<&Path>) -> Result<()> {
    let req = request(args)?;
    if args.check || args.call == "check" {
        std::process::exit(super::check::run(args, &req.dockerfile)?);
    }
    let root =
        cache::RootDir::open_or_default(root).context("opening the builder root directory")?;
    let mode = if args.quiet {
        ProgressMode::Quiet
    } else {
        args.progress
    };
    let view = progress::view(mode);
    progress::exit_on_interrupt(view.clone()).context("handling Ctrl-C")?;
    let sink: Arc<dyn ProgressSink> = view.clone();
    let outcome = Build::new(root, req).run(sink);
    view.finish();
    let outcome = outcome.map_err(|e| anyhow::anyhow!(e.render()))?;
    if let Some(path) = &args.iidfile {
        std::fs::write(path, outcome.image.id().to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.metadata_file {
        std::fs::write(path, serde_json::to_vec_pretty(&outcome.metadata())?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    report(&outcome, args.quiet);
    Ok(())
}

/// What the build did beyond the progress display: cache transfers, warnings, the collection,
/// and the result line (the bare image id with `-q`).
fn report(outcome: &BuildOutcome, quiet: bool) {
    let id = outcome.image.id();
    for w in &outcome.warnings {
        eprintln!("WARNING: {w}");
    }
    if quiet {
        println!("{id}");
        return;
    }
    for i in &outcome.cache_imports {
        let r = &i.report;
        eprintln!(
            "imported cache: {} keys ({} new records, {} blobs copied, {} cache mounts)",
            r.keys, r.records_added, r.blobs_copied, r.mounts_restored
        );
    }
    for e in &outcome.cache_exports {
        let r = &e.report;
        eprintln!(
            "exported cache: {} keys, {} new blobs ({}), {} already there",
            r.keys,
            r.blobs_written,
            human_size(r.bytes_written),
            r.blobs_reused
        );
    }
    let named = if outcome.names.is_empty() {
        String::new()
    } else {
        let names: Vec<String> = outcome.names.iter().map(|n| n.to_string()).collect();
        format!(" as {}", names.join(", "))
    };
    eprintln!(
        "built {id}{named} in {:.1}s",
        outcome.duration_ms as f64 / 1000.0
    );
    for line in &outcome.loaded {
        eprintln!("docker: {line}");
    }
    if let Some(c) = &outcome.collected {
        eprintln!(
            "cache over {}: removed {} records, reclaimed {}",
            human_size(c.limit),
            c.report.removed_records.len(),
            human_size(c.report.reclaimed())
        );
    }
}
