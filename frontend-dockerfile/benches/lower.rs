//! `cargo bench -p frontend-dockerfile --bench lower`: parse, and parse + lower, every real-world
//! Dockerfile of the conformance corpus (default target, linux/amd64), and print the throughput
//! in MB/s of Dockerfile text and the time per file.
//!
//! Method: the corpus is read into memory once; each pass processes every file; one warm-up pass
//! is discarded, then the best of `ROUNDS` timed passes is reported (best, not mean, to filter
//! out noise from other processes on a shared machine).

use frontend_dockerfile::lower::{lower, LowerOptions};
use frontend_dockerfile::parser::parse;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROUNDS: usize = 10;

fn corpus_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("BUILDER_CONFORMANCE_DIR") {
        return Some(PathBuf::from(dir).join("real-world"));
    }
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/conformance/real-world"))
        .find(|d| d.is_dir())
}

fn collect(dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    paths.sort();
    for p in paths {
        if p.is_dir() {
            collect(&p, out);
        } else if p.extension().is_some_and(|x| x == "Dockerfile") {
            if let Ok(text) = std::fs::read_to_string(&p) {
                out.push(text);
            }
        }
    }
}

fn best_of(mut pass: impl FnMut()) -> Duration {
    pass();
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            pass();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn main() {
    let Some(dir) = corpus_dir() else {
        eprintln!("conformance corpus not found: set BUILDER_CONFORMANCE_DIR");
        return;
    };
    let mut files = Vec::new();
    collect(&dir, &mut files);
    let bytes: usize = files.iter().map(String::len).sum();
    let opts = LowerOptions {
        platform: Some("linux/amd64".parse().expect("valid platform")),
        build_platform: Some("linux/amd64".parse().expect("valid platform")),
        ..LowerOptions::default()
    };
    let parse_time = best_of(|| {
        for f in &files {
            let _ = black_box(parse(black_box(f)));
        }
    });
    let mut vertices = 0;
    let full_time = best_of(|| {
        vertices = 0;
        for f in &files {
            if let Ok(df) = parse(black_box(f)) {
                if let Ok(l) = lower(&df, &opts) {
                    vertices += l.definition.len();
                }
            }
        }
    });
    let mb = bytes as f64 / 1e6;
    let report = |what: &str, t: Duration| {
        println!(
            "{what:<14} {:>8.2} MB/s  {:>8.1} µs/file  ({} files, {:.2} MB, {:.1} ms/pass)",
            mb / t.as_secs_f64(),
            t.as_secs_f64() * 1e6 / files.len() as f64,
            files.len(),
            mb,
            t.as_secs_f64() * 1e3
        );
    };
    report("parse", parse_time);
    report("parse+lower", full_time);
    println!("{vertices} vertices per pass");
}
