//! Fuzzes `ADD` archive extraction (a tar, possibly compressed, into a directory): no input may
//! panic or write outside the destination, and `.wh.` names are always refused.
//!
//! Input: byte 0 picks the ownership mode (keep the archive's ids, or force 1000:1000); the rest
//! is the archive.
#![no_main]

use engine::fileops::archive::{self, ExtractOptions, WhiteoutMode};
use engine::fileops::root::Root;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, archive_bytes)) = data.split_first() else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("ctx/dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(work.path().join("ctx/keep"), b"keep").unwrap();
    let root = Root::new(&dest).unwrap();
    let opts = ExtractOptions {
        whiteouts: WhiteoutMode::Reject,
        chown: (mode & 1 == 1).then_some((1000, 1000)),
        limit: 16 << 20,
    };
    let Ok((_, reader)) = engine::compression::decompress(std::io::BufReader::new(archive_bytes)) else {
        return;
    };
    let reader = archive::LimitedReader::new(reader, opts.limit);
    let _ = archive::extract_tar(reader, &root, &opts);
    assert_eq!(
        std::fs::read(work.path().join("ctx/keep")).unwrap(),
        b"keep"
    );
    for entry in walkdir::WalkDir::new(work.path()).min_depth(1) {
        let entry = entry.unwrap();
        let p = entry.path();
        assert!(
            p.starts_with(&dest)
                || p == work.path().join("ctx")
                || p == work.path().join("ctx/keep"),
            "written outside: {p:?}"
        );
        if p.starts_with(&dest) {
            assert!(
                !entry.file_name().as_encoded_bytes().starts_with(b".wh."),
                "a whiteout name was written: {p:?}"
            );
        }
    }
});
