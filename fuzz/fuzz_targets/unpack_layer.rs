//! Fuzzes layer unpacking (tar, possibly compressed → snapshot directory): no input may panic,
//! change anything outside the snapshot being made (a sibling snapshot, files next to the
//! store, their times, modes, owners, link counts and xattrs included), or leave a directory
//! under the final name or a temporary directory behind when it fails.
//!
//! Input: the layer blob. Runs as root (overlay whiteouts are device nodes and trusted xattrs).
#![no_main]

use builder_fuzz::{assert_unchanged, tree_state, work_base};
use engine::snapshot::{unpack_layer_limited, OverlayXattrs};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static BASE: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let base = BASE.get_or_init(work_base).path();
    // <base>/{canary,sibling/}, <base>/<work>/{blob,snaps/sibling/keep,snaps/layer}: from the
    // temporary directory the layer is unpacked into, `..` is the store, `../../..` the base.
    let work = tempfile::tempdir_in(base).unwrap();
    let blob = work.path().join("blob");
    std::fs::write(&blob, data).unwrap();
    let snaps = work.path().join("snaps");
    std::fs::create_dir_all(snaps.join("sibling/x")).unwrap();
    std::fs::write(snaps.join("sibling/keep"), b"keep").unwrap();
    let dest = snaps.join("layer");
    let lock = snaps.join("layer.lock");
    let state = || {
        tree_state(
            base,
            &dest,
            std::slice::from_ref(&lock),
            std::slice::from_ref(&snaps),
        )
    };
    let before = state();

    let result = unpack_layer_limited(&blob, &dest, None, OverlayXattrs::Trusted, 16 << 20);

    assert_unchanged(&before, &state());
    if result.is_err() {
        assert!(!dest.exists(), "a failed unpack left {dest:?}");
    }
});
