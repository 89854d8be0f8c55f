//! `builder prune`, `builder du`, `builder cache check`, and the cache steps of `builder build`
//! (`--cache-from`, `--cache-to`, the automatic collection over `--cache-max-size`).

use crate::commands::images::human_size;
use anyhow::{bail, Context, Result};
use cache::gc::{self, GcOptions};
use cache::usage::{Inventory, Usage};
use cache::RootDir;
use clap::{Args, Subcommand};
use std::io::{BufRead, Write};
use std::path::Path;

/// Arguments of `builder prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Remove every cache record, every unpacked layer and the cache mounts (images stay).
    #[arg(short = 'a', long)]
    pub all: bool,
    /// Remove least recently used records until the root takes at most this much (`1GB`,
    /// `500MB`, bytes).
    #[arg(long, value_name = "SIZE")]
    pub keep_storage: Option<String>,
    /// Only records unused for longer than a duration: `until=24h`.
    #[arg(long, value_name = "until=DURATION")]
    pub filter: Vec<String>,
    /// Do not ask for confirmation.
    #[arg(short = 'f', long)]
    pub force: bool,
    /// Print what was removed as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `builder du`.
#[derive(Debug, Args)]
pub struct DuArgs {
    /// List every cache record with its shared and exclusive size.
    #[arg(short = 'v', long)]
    pub verbose: bool,
    /// Print the usage as JSON (exact byte counts).
    #[arg(long)]
    pub json: bool,
}

/// `builder cache ...`.
#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub command: CacheCommand,
}

/// Subcommands of `builder cache`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Verify blobs, records, images and snapshots; exit 1 if anything is wrong.
    Check(CheckArgs),
}

/// Arguments of `builder cache check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Remove bad blobs, corrupt records, records missing blobs and bad snapshots.
    #[arg(long)]
    pub repair: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_prune_options(args: &PruneArgs) -> Result<GcOptions> {
    let keep_storage = match &args.keep_storage {
        Some(s) => Some(
            gc::parse_size(s)
                .with_context(|| format!("--keep-storage {s:?}: expected a size like 1GB"))?,
        ),
        None => None,
    };
    let mut unused_for = None;
    for f in &args.filter {
        let Some(("until" | "unused-for", v)) = f.split_once('=') else {
            bail!("--filter {f:?}: expected until=DURATION (e.g. until=24h)");
        };
        unused_for = Some(
            humantime::parse_duration(v)
                .with_context(|| format!("--filter {f:?}: bad duration"))?,
        );
    }
    Ok(GcOptions {
        all: args.all,
        keep_storage,
        unused_for,
    })
}

/// `builder prune`.
pub fn prune(root: Option<&Path>, args: PruneArgs) -> Result<()> {
    let opts = parse_prune_options(&args)?;
    if !args.force {
        use std::io::IsTerminal;
        if !std::io::stdin().is_terminal() {
            bail!("prune asks for confirmation and no terminal is attached: pass -f (--force)");
        }
        let what = if opts.all {
            "all build cache"
        } else {
            "unused build cache"
        };
        eprint!("WARNING! This will remove {what}.\nAre you sure you want to continue? [y/N] ");
        let _ = std::io::stderr().flush();
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        if !matches!(line.trim(), "y" | "Y" | "yes") {
            eprintln!("Aborted.");
            return Ok(());
        }
    }
    let root = RootDir::open_or_default(root).context("opening the builder root directory")?;
    let lock = match root.try_lock_exclusive() {
        Ok(lock) => lock,
        Err(cache::lock::LockError::WouldBlock(_)) => {
            eprintln!("waiting for running builds and containers (builder run) to finish...");
            root.lock_exclusive()
                .context("waiting for running builds and containers to finish")?
        }
        Err(e) => return Err(e).context("locking the builder root"),
    };
    let report = gc::collect(&root, &lock, &opts)?;
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["reclaimed"] = report.reclaimed().into();
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    if !report.removed_records.is_empty() {
        println!("Deleted build cache objects:");
        for k in &report.removed_records {
            println!("{}", &k[..25.min(k.len())]);
        }
        println!();
    }
    let kept = report.kept_for_images + report.kept_for_recent_builds;
    if kept > 0 && !opts.all {
        println!(
            "Kept {kept} cache record{}: {} holding layers of stored images, {} from the latest \
             build of a Dockerfile target (`--all` removes them, `--keep-storage` trims by size)",
            if kept == 1 { "" } else { "s" },
            report.kept_for_images,
            report.kept_for_recent_builds
        );
    }
    println!("Total reclaimed space: {}", human_size(report.reclaimed()));
    Ok(())
}

fn ago(secs: u64) -> String {
    let now = cache::keys::now_secs();
    let d = chrono::Duration::seconds(now.saturating_sub(secs) as i64);
    format!("{} ago", crate::commands::images::human_duration(d))
}

/// `builder du`.
pub fn du(root: Option<&Path>, args: DuArgs) -> Result<()> {
    let root = RootDir::open_or_default(root).context("opening the builder root directory")?;
    let _lock = root.lock_shared().context("locking the builder root")?;
    let inv = Inventory::take(&root)?;
    let usage = Usage::of(&inv);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&usage)?);
        return Ok(());
    }
    let mut out = String::new();
    if args.verbose {
        out.push_str(&format!(
            "{:<27}{:<8}{:>10}{:>10}{:>11}  {}\n",
            "ID", "LAYERS", "SIZE", "SHARED", "EXCLUSIVE", "LAST ACCESSED"
        ));
        for r in usage.records.iter().rev() {
            out.push_str(&format!(
                "{:<27}{:<8}{:>10}{:>10}{:>11}  {}\n",
                &r.key[..25],
                r.layers,
                human_size(r.size),
                human_size(r.shared),
                human_size(r.exclusive),
                ago(r.last_used),
            ));
        }
        out.push('\n');
        out.push_str(&format!(
            "{:<27}{:>18}{:>10}\n",
            "IMAGE (manifest)", "SIZE", "SHARED"
        ));
        for i in &usage.image_list {
            let hex = i.manifest.trim_start_matches("sha256:");
            out.push_str(&format!(
                "{:<27}{:>18}{:>10}\n",
                &hex[..25.min(hex.len())],
                human_size(i.size),
                human_size(i.shared)
            ));
        }
        out.push('\n');
    }
    let rows = [
        (
            format!("Cache records ({})", usage.records.len()),
            usage.key_files,
        ),
        ("Cache-only layer blobs".to_string(), usage.cache_blobs),
        (
            format!("Image blobs ({} images)", usage.images),
            usage.image_blobs,
        ),
        ("Unreferenced blobs".to_string(), usage.unreferenced_blobs),
        (
            format!("Snapshots ({})", usage.snapshot_count),
            usage.snapshots,
        ),
        ("Cache mounts".to_string(), usage.cache_mounts),
        ("Build records".to_string(), usage.build_records),
        ("Context hashes".to_string(), usage.context_hashes),
        ("Temporary files".to_string(), usage.tmp),
        ("Other (directories, locks, names)".to_string(), usage.other),
    ];
    for (name, size) in rows {
        out.push_str(&format!(
            "{:<36}{:>10}\n",
            format!("{name}:"),
            human_size(size)
        ));
    }
    let shared: u64 = usage.records.iter().map(|r| r.shared).sum();
    out.push_str(&format!(
        "{:<36}{:>10}\n{:<36}{:>10}\n{:<36}{:>10}\n",
        "Reclaimable (prune -f):",
        human_size(usage.reclaimable),
        "Reclaimable (prune --all -f):",
        human_size(usage.reclaimable_all),
        "Total:",
        human_size(usage.total)
    ));
    if args.verbose {
        out.push_str(&format!(
            "{:<36}{:>10}\n",
            "Shared by records (sum):",
            human_size(shared)
        ));
    }
    print!("{out}");
    Ok(())
}

/// `builder cache ...`.
pub fn run(root: Option<&Path>, args: CacheArgs) -> Result<()> {
    match args.command {
        CacheCommand::Check(a) => check(root, a),
    }
}

fn check(root: Option<&Path>, args: CheckArgs) -> Result<()> {
    let root = RootDir::open_or_default(root).context("opening the builder root directory")?;
    let _lock = if args.repair {
        root.lock_exclusive()
    } else {
        root.lock_shared()
    }
    .context("locking the builder root")?;
    let report = cache::check::check(&root, args.repair)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "checked {} blobs, {} cache records, {} images, {} snapshots",
            report.blobs, report.records, report.images, report.snapshots
        );
        for p in &report.problems {
            println!("error: {p}");
        }
        for l in &report.leftovers {
            println!(
                "note: leftover {} (removed by `builder prune`)",
                l.display()
            );
        }
        for r in &report.repaired {
            println!("repaired: {r}");
        }
    }
    if !report.is_clean() && !args.repair {
        bail!("{} problem(s) found", report.problems.len());
    }
    Ok(())
}

/// Parses `--cache-max-size` (before the build, so a typo fails early).
pub fn parse_max_size(text: &str) -> Result<u64> {
    gc::parse_size(text)
        .with_context(|| format!("--cache-max-size {text:?}: expected a size like 10GB"))
}
