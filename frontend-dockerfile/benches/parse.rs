//! `cargo bench -p frontend-dockerfile --bench parse`: parser throughput over the real-world
//! corpus (`$BUILDER_CONFORMANCE_DIR/real-world`, else `../shared/conformance/real-world`).
//!
//! Method: all files are read into memory once, parsed once as a warm-up, then parsed in
//! rounds for at least two seconds; the figure is total source bytes over wall time.

use frontend_dockerfile::parser;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn corpus_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("BUILDER_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/conformance"),
    };
    let dir = dir.join("real-world");
    dir.is_dir().then_some(dir)
}

fn load(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for repo in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        for entry in std::fs::read_dir(repo.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = entry.path();
            if p.to_string_lossy().ends_with(".Dockerfile") {
                if let Ok(bytes) = std::fs::read(&p) {
                    files.push(String::from_utf8_lossy(&bytes).into_owned());
                }
            }
        }
    }
    files
}

fn main() {
    let Some(dir) = corpus_dir() else {
        println!(
            "parse bench: real-world corpus not found (set BUILDER_CONFORMANCE_DIR); skipping"
        );
        return;
    };
    let files = load(&dir);
    let bytes: usize = files.iter().map(String::len).sum();
    let instructions: usize = files
        .iter()
        .filter_map(|f| parser::parse(f).ok())
        .map(|f| f.children.len())
        .sum();
    let mut rounds = 0u32;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        for f in &files {
            std::hint::black_box(parser::parse(std::hint::black_box(f)).ok());
        }
        rounds += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let total = bytes as f64 * f64::from(rounds);
    println!(
        "parse: {} files, {} KiB, {} instructions; {} rounds in {:.2}s: {:.1} MB/s, {:.0} files/s",
        files.len(),
        bytes / 1024,
        instructions,
        rounds,
        secs,
        total / secs / 1e6,
        files.len() as f64 * f64::from(rounds) / secs
    );
}
