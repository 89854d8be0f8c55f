//! Layer export throughput next to `tar -c | gzip` / `tar -c | zstd` on the same tree, same run,
//! and snapshot unpack throughput next to `tar -xzf` of the same blob.
//!
//! Usage: `layer_export_bench <dir> [threads...]` (default threads: 1 and all cores). Prints the
//! uncompressed tar size, the blob size and MB/s of uncompressed input for each variant. Run a
//! release build (`bench/layer-export.sh` does): a debug build measures the debug allocator.

use engine::compression::Compression;
use engine::layer::{self, LayerOptions};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(
        args.next()
            .ok_or("usage: layer_export_bench <dir> [threads...]")?,
    );
    let mut threads: Vec<usize> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    if threads.is_empty() {
        threads = vec![1, std::thread::available_parallelism()?.get()];
    }
    // Warm the page cache so every variant reads from memory.
    let warm = run_shell(&format!("tar -C '{}' -cf - . | wc -c", dir.display()))?;
    let tar_bytes: f64 = warm.trim().parse::<f64>()?;
    println!("tree {}: {:.1} MB as tar", dir.display(), tar_bytes / 1e6);
    println!(
        "{:<28} {:>10} {:>10} {:>9}",
        "variant", "blob MB", "seconds", "MB/s"
    );

    for compression in [Compression::Gzip, Compression::Zstd, Compression::None] {
        for &n in &threads {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(n).build()?;
            let opts = LayerOptions {
                compression,
                ..Default::default()
            };
            let start = Instant::now();
            let desc = pool.install(|| layer::write_layer(&dir, &mut std::io::sink(), &opts))?;
            let secs = start.elapsed().as_secs_f64();
            let name = format!("builder {compression:?} x{n}");
            println!(
                "{name:<28} {:>10.1} {secs:>10.2} {:>9.1}",
                desc.size as f64 / 1e6,
                tar_bytes / 1e6 / secs
            );
        }
    }
    // Unpack: builder's snapshot unpack (verifying the diffID) against `tar -xzf`, same blob.
    let scratch = tempfile::tempdir_in(std::env::temp_dir())?;
    let blob = scratch.path().join("layer.tar.gz");
    let desc = layer::write_layer_file(&dir, &blob, &LayerOptions::default())?;
    let start = Instant::now();
    engine::snapshot::unpack_layer(
        &blob,
        &scratch.path().join("snap"),
        Some(&desc.diff_id),
        engine::snapshot::OverlayXattrs::Trusted,
    )?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:<28} {:>10.1} {secs:>10.2} {:>9.1}",
        "builder unpack gzip",
        desc.size as f64 / 1e6,
        tar_bytes / 1e6 / secs
    );
    std::fs::create_dir(scratch.path().join("tarx"))?;
    let start = Instant::now();
    run_shell(&format!(
        "tar --numeric-owner -xzf '{}' -C '{}'",
        blob.display(),
        scratch.path().join("tarx").display()
    ))?;
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{:<28} {:>10.1} {secs:>10.2} {:>9.1}",
        "tar -xzf",
        desc.size as f64 / 1e6,
        tar_bytes / 1e6 / secs
    );

    for (name, pipeline) in [
        ("tar -c | gzip -6", "gzip -6"),
        ("tar -c | zstd -3", "zstd -3 -q -T1"),
        ("tar -c | cat", "cat"),
    ] {
        let start = Instant::now();
        let out = run_shell(&format!(
            "tar -C '{}' -cf - . | {pipeline} | wc -c",
            dir.display()
        ))?;
        let secs = start.elapsed().as_secs_f64();
        let size: f64 = out.trim().parse()?;
        println!(
            "{name:<28} {:>10.1} {secs:>10.2} {:>9.1}",
            size / 1e6,
            tar_bytes / 1e6 / secs
        );
    }
    Ok(())
}

fn run_shell(cmd: &str) -> Result<String, Box<dyn std::error::Error>> {
    let out = Command::new("sh").arg("-c").arg(cmd).output()?;
    if !out.status.success() {
        return Err(format!("{cmd}: {}", String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(String::from_utf8(out.stdout)?)
}
