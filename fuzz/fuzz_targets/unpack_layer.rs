//! Fuzzes layer unpacking (tar, possibly compressed → snapshot directory): no input may panic,
//! write outside the snapshot being made, or touch a sibling snapshot; a failed unpack leaves
//! no directory under the final name.
//!
//! Input: the layer blob. Runs as root (overlay whiteouts are device nodes and trusted xattrs).
#![no_main]

use engine::snapshot::{unpack_layer_limited, OverlayXattrs};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let work = tempfile::tempdir().unwrap();
    let blob = work.path().join("blob");
    std::fs::write(&blob, data).unwrap();
    let snaps = work.path().join("a/b");
    std::fs::create_dir_all(snaps.join("sibling")).unwrap();
    std::fs::write(snaps.join("sibling/keep"), b"keep").unwrap();
    let dest = snaps.join("layer");
    let result = unpack_layer_limited(&blob, &dest, None, OverlayXattrs::Trusted, 16 << 20);
    assert_eq!(std::fs::read(snaps.join("sibling/keep")).unwrap(), b"keep");
    if result.is_err() {
        assert!(!dest.exists(), "a failed unpack left {dest:?}");
    }
    let allowed = |p: &Path| {
        p.starts_with(&dest)
            || [
                work.path().join("blob"),
                work.path().join("a"),
                snaps.clone(),
                snaps.join("sibling"),
                snaps.join("sibling/keep"),
                snaps.join("layer.lock"),
            ]
            .iter()
            .any(|a| a == p)
    };
    for entry in walkdir::WalkDir::new(work.path()).min_depth(1) {
        let entry = entry.unwrap();
        assert!(allowed(entry.path()), "written outside: {:?}", entry.path());
    }
});
