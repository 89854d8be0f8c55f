//! Fuzzes reading images: image config, manifest and index JSON (engine::image), and `load` of
//! a docker-archive or OCI-layout tar (engine::export::load). No input may panic; whatever a
//! load accepts must be readable back from the store.
//!
//! Input: byte 0 picks the reader; the rest is the document or the archive.
#![no_main]

use cache::{ContentStore, ImageStore, Platform};
use engine::export::load_archive;
use engine::image::{read_image, select_manifest, ImageConfig, Index, Manifest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = serde_json::from_slice::<ImageConfig>(rest);
        }
        1 => {
            let _ = serde_json::from_slice::<Manifest>(rest);
        }
        2 => {
            if let Ok(index) = serde_json::from_slice::<Index>(rest) {
                for p in ["linux/amd64", "linux/arm64/v8", "windows/amd64"] {
                    let _ = select_manifest(&index, &Platform::parse(p).unwrap());
                }
            }
        }
        _ => {
            let work = tempfile::tempdir().unwrap();
            let cas = ContentStore::open(work.path()).unwrap();
            let store = ImageStore::open(work.path().join("images")).unwrap();
            if let Ok(loaded) = load_archive(&cas, &store, rest) {
                for image in loaded {
                    read_image(&cas, &image.manifest.digest, &Platform::host())
                        .expect("a loaded image reads back");
                }
            }
        }
    }
});
