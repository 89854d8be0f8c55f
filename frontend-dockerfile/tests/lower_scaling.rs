//! Lowering a Dockerfile and folding its image config grow linearly with the number of
//! instructions. Judged by counting heap allocations (deterministic, unlike time): four times
//! the instructions must cost about four times the allocations, not sixteen. Copying every
//! variable for each instruction (expansion) and re-parsing the whole `Env` for each `ENV`
//! (config folding) both made this quadratic.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use engine::graph::Op;
use engine::solver::config::{scratch_config, Folder};
use frontend_dockerfile::lower::{lower, LowerOptions};
use frontend_dockerfile::parser::parse;

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A stage of `n` instructions: ARGs, ENVs using them, LABELs using those, USERs.
fn dockerfile(n: usize) -> String {
    let mut s = String::from("FROM scratch\n");
    for i in 0..n {
        let j = i - i % 4;
        s.push_str(&match i % 4 {
            0 => format!("ARG A{j}=v{j}\n"),
            1 => format!("ENV E{j}=${{A{j}}}\n"),
            2 => format!("LABEL l{j}=$E{j}\n"),
            _ => format!("USER u{}\n", i % 7),
        });
    }
    s
}

/// Allocations made by lowering `n` instructions and folding the target's config.
fn allocations(n: usize) -> usize {
    let text = dockerfile(n);
    let df = parse(&text).unwrap();
    let opts = LowerOptions {
        platform: Some("linux/amd64".parse().unwrap()),
        build_platform: Some("linux/amd64".parse().unwrap()),
        ..LowerOptions::default()
    };
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let lowered = lower(&df, &opts).unwrap();
    let def = &lowered.definition;
    let mut folder = Folder::new(scratch_config(&"linux/amd64".parse().unwrap()));
    for v in def.chain(def.target().unwrap()) {
        if let Some(Op::Config(change)) = def.vertex(v).map(|x| &x.op) {
            folder.apply(change);
        }
    }
    let config = folder.finish();
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(
        config.config.and_then(|c| c.env).unwrap().len(),
        n / 4 + 1,
        "every ENV (and PATH) is in the folded config"
    );
    after - before
}

#[test]
fn lowering_and_config_folding_grow_linearly_with_instructions() {
    let small = allocations(2_000);
    let large = allocations(8_000);
    let ratio = large as f64 / small as f64;
    eprintln!("allocations: 2,000 instructions {small}, 8,000 {large}, ratio {ratio:.2}");
    assert!(
        ratio < 6.0,
        "4x the instructions cost {ratio:.1}x the allocations (quadratic would be ~16x)"
    );
}
