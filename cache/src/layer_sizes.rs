//! The content size of each layer, by diffID: what `images` and `history` show, counted as Docker
//! counts a layer (the bytes of its regular files), which needs the layer decompressed once. A
//! diffID names the uncompressed content, so a stored size never goes stale.

use crate::layout::Bucket;
use crate::Digest;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// The memo of layer content sizes under a root.
#[derive(Debug, Clone)]
pub struct LayerSizes {
    dir: PathBuf,
}

impl LayerSizes {
    /// Opens the memo of the root at `root`.
    pub fn open(root: &Path) -> io::Result<LayerSizes> {
        let dir = Bucket::LayerSizes.path(root);
        std::fs::create_dir_all(&dir)?;
        Ok(LayerSizes { dir })
    }

    fn path(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    /// The stored size of the layer `diff_id`, if it was computed before.
    pub fn get(&self, diff_id: &Digest) -> Option<u64> {
        std::fs::read_to_string(self.path(diff_id))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Stores the size of the layer `diff_id` (written whole or not at all).
    pub fn put(&self, diff_id: &Digest, size: u64) -> io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(&self.dir)?;
        write!(tmp, "{size}")?;
        tmp.persist(self.path(diff_id)).map_err(|e| e.error)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_trip_by_diff_id() {
        let dir = tempfile::tempdir().unwrap();
        let memo = LayerSizes::open(dir.path()).unwrap();
        let d = Digest::of_bytes(b"layer");
        assert_eq!(memo.get(&d), None);
        memo.put(&d, 1234).unwrap();
        assert_eq!(LayerSizes::open(dir.path()).unwrap().get(&d), Some(1234));
    }
}
