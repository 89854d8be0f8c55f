//! Fuzzes `ADD` archive extraction (a tar, possibly compressed, into a directory): no input may
//! panic or change anything outside the destination (metadata included), and `.wh.` names are
//! always refused.
//!
//! Input: byte 0 picks the ownership mode (keep the archive's ids, or force 1000:1000); the rest
//! is the archive.
#![no_main]

use builder_fuzz::{assert_unchanged, tree_state, work_base};
use engine::fileops::archive::{self, ExtractOptions, Ownership, WhiteoutMode};
use engine::fileops::root::{Root, Walk};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static BASE: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&mode, archive_bytes)) = data.split_first() else {
        return;
    };
    let base = BASE.get_or_init(work_base).path();
    // <base>/{canary,sibling/}, <base>/<work>/ctx/{keep,dest/}.
    let work = tempfile::tempdir_in(base).unwrap();
    let dest = work.path().join("ctx/dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(work.path().join("ctx/keep"), b"keep").unwrap();
    let before = tree_state(base, &dest, &[], &[]);

    let root = Root::new(&dest).unwrap();
    let opts = ExtractOptions {
        whiteouts: WhiteoutMode::Reject,
        ownership: if mode & 1 == 1 {
            Ownership::Fixed(1000, 1000)
        } else {
            Ownership::Headers
        },
        parents: Walk::InRoot,
        limit: 16 << 20,
    };
    if let Ok((_, reader)) = engine::compression::decompress(std::io::BufReader::new(archive_bytes)) {
        let reader = archive::LimitedReader::new(reader, opts.limit);
        let _ = archive::extract_tar(reader, &root, &opts);
    }

    assert_unchanged(&before, &tree_state(base, &dest, &[], &[]));
    for entry in walkdir::WalkDir::new(&dest).min_depth(1) {
        let entry = entry.unwrap();
        assert!(
            !entry.file_name().as_encoded_bytes().starts_with(b".wh."),
            "a whiteout name was written: {:?}",
            entry.path()
        );
    }
});
