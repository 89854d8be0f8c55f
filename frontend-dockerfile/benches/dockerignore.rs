//! `cargo bench -p frontend-dockerfile --bench dockerignore`: how fast context paths are checked
//! against a typical `.dockerignore`, stateless (every ancestor re-checked) and as a walk that
//! carries each directory's match info to its children. Prints nanoseconds per path.
use frontend_dockerfile::dockerignore::{DockerIgnore, MatchInfo};
use std::hint::black_box;
use std::time::Instant;

const IGNORE: &str = "\
.git
**/node_modules
**/*.log
!logs/keep.log
target/
dist/**
*.tmp
**/__pycache__
.env*
docs/*.md
!docs/README.md
";

/// A synthetic tree: 20 top-level dirs x 10 subdirs x 50 files, with some ignored names mixed in.
fn tree() -> Vec<(Vec<String>, String)> {
    let tops = [
        "src",
        "lib",
        "target",
        "docs",
        "logs",
        "node_modules",
        "pkg",
        "dist",
        "tests",
        "app",
    ];
    let mut out = Vec::new();
    for (t, top) in tops.iter().cycle().take(20).enumerate() {
        let top = format!("{top}{t}");
        for s in 0..10 {
            let sub = if s % 4 == 0 {
                "node_modules".to_string()
            } else {
                format!("mod{s}")
            };
            for f in 0..50 {
                let ext = ["rs", "log", "tmp", "md", "py"][f % 5];
                out.push((
                    vec![top.clone(), format!("{top}/{sub}")],
                    format!("{top}/{sub}/file{f}.{ext}"),
                ));
            }
        }
    }
    out
}

fn main() {
    let ignore = DockerIgnore::parse(IGNORE.as_bytes()).expect("valid patterns");
    let paths = tree();
    let n = paths.len();

    let start = Instant::now();
    let mut excluded = 0usize;
    for _ in 0..5 {
        for (_, path) in &paths {
            excluded += ignore
                .matcher()
                .matches_or_parent_matches(black_box(path))
                .unwrap_or(false) as usize;
        }
    }
    let stateless = start.elapsed().as_nanos() as f64 / (5 * n) as f64;

    let start = Instant::now();
    let mut walked = 0usize;
    for _ in 0..5 {
        // Directory infos are computed once per directory, as a walker would.
        let mut cache: std::collections::HashMap<String, MatchInfo> =
            std::collections::HashMap::new();
        for (dirs, path) in &paths {
            let mut info = MatchInfo::default();
            for d in dirs {
                info = match cache.get(d) {
                    Some(i) => i.clone(),
                    None => {
                        let v = ignore.is_excluded(d, Some(&info)).expect("usable patterns");
                        cache.insert(d.clone(), v.info.clone());
                        v.info
                    }
                };
            }
            walked += ignore
                .is_excluded(black_box(path), Some(&info))
                .map(|v| v.excluded)
                .unwrap_or(false) as usize;
        }
    }
    let walk = start.elapsed().as_nanos() as f64 / (5 * n) as f64;

    assert_eq!(excluded, walked, "walk and stateless checks disagree");
    println!("dockerignore: {n} paths, {} excluded", excluded / 5);
    println!("  stateless matches_or_parent_matches: {stateless:.0} ns/path");
    println!("  walk with parent MatchInfo:          {walk:.0} ns/path");
}
