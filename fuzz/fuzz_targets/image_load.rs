//! Fuzzes reading images: image config, manifest and index JSON (engine::image), and `load` of
//! a docker-archive or OCI-layout tar (engine::export::load) or of an OCI layout directory. No
//! input may panic or write outside the store; whatever a load accepts must read back from the
//! store.
//!
//! Input: byte 0 picks the reader (0 config, 1 manifest, 2 index, 3 archive, 4 the archive
//! extracted to a directory and loaded from there); the rest is the document or the archive.
#![no_main]

use builder_fuzz::{assert_unchanged, tree_state, work_base};
use cache::{ContentStore, ImageStore, Platform};
use engine::export::{load_archive, load_oci_layout_dir};
use engine::fileops::archive::{self, ExtractOptions, Ownership, WhiteoutMode};
use engine::fileops::root::{Root, Walk};
use engine::image::{read_image, select_manifest, ImageConfig, Index, Manifest};
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

static BASE: OnceLock<tempfile::TempDir> = OnceLock::new();

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok(config) = serde_json::from_slice::<ImageConfig>(rest) {
                let _ = serde_json::to_vec(&config).unwrap();
            }
        }
        1 => {
            if let Ok(manifest) = serde_json::from_slice::<Manifest>(rest) {
                let _ = serde_json::to_vec(&manifest).unwrap();
            }
        }
        2 => {
            if let Ok(index) = serde_json::from_slice::<Index>(rest) {
                for p in ["linux/amd64", "linux/arm64/v8", "windows/amd64"] {
                    let _ = select_manifest(&index, &Platform::parse(p).unwrap());
                }
            }
        }
        mode => {
            let base = BASE.get_or_init(work_base).path();
            let work = tempfile::tempdir_in(base).unwrap();
            let store_dir = work.path().join("store");
            std::fs::create_dir_all(&store_dir).unwrap();
            let layout = work.path().join("layout");
            std::fs::create_dir_all(&layout).unwrap();
            if mode == 4 {
                let opts = ExtractOptions {
                    whiteouts: WhiteoutMode::Reject,
                    ownership: Ownership::Headers,
                    parents: Walk::InRoot,
                    limit: 16 << 20,
                };
                let Ok((_, reader)) = engine::compression::decompress(std::io::BufReader::new(rest)) else {
                    return;
                };
                let root = Root::new(&layout).unwrap();
                let _ = archive::extract_tar(
                    archive::LimitedReader::new(reader, opts.limit),
                    &root,
                    &opts,
                );
            }
            let before = tree_state(base, &store_dir, &[], &[]);
            let cas = ContentStore::open(&store_dir).unwrap();
            let store = ImageStore::open(store_dir.join("images")).unwrap();
            let loaded = if mode == 3 {
                load_archive(&cas, &store, rest)
            } else {
                load_oci_layout_dir(&cas, &store, &layout)
            };
            if let Ok(loaded) = loaded {
                for image in loaded {
                    read_image(&cas, &image.manifest.digest, &Platform::host())
                        .expect("a loaded image reads back");
                }
            }
            assert_unchanged(&before, &tree_state(base, &store_dir, &[], &[]));
        }
    }
});
