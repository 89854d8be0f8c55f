//! Consistency check of a root: every blob matches its digest, every key record and image names
//! only blobs that exist, every snapshot under its final name is a whole directory. Leftovers of
//! killed processes (temp files, `.unpack-*` directories) are listed apart: they break nothing
//! and the next garbage collection removes them.

use std::fs;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::digest::Digest;
use crate::keys::KeyStore;
use crate::lock::RootDir;
use crate::usage::{Inventory, UsageError};

/// One thing wrong in a root.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// A blob's content does not match its name.
    BadBlob {
        /// The name.
        digest: String,
        /// What the content hashes to (or the read error).
        actual: String,
    },
    /// A key record file that cannot be read as a record.
    CorruptRecord {
        /// The file.
        path: PathBuf,
    },
    /// A key record names a blob that is not in the store.
    RecordMissingBlob {
        /// The cache key (hex).
        key: String,
        /// The missing blob.
        blob: String,
    },
    /// An image needs a blob that is not in the store.
    ImageMissingBlob {
        /// The image's manifest digest.
        image: String,
        /// The missing blob.
        blob: String,
    },
    /// Something under a snapshot's final name that is not a whole snapshot directory.
    BadSnapshot {
        /// The path.
        path: PathBuf,
        /// Why.
        why: String,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::BadBlob { digest, actual } => {
                write!(f, "blob {digest} does not match its content ({actual})")
            }
            Problem::CorruptRecord { path } => {
                write!(f, "cache record {} is not readable", path.display())
            }
            Problem::RecordMissingBlob { key, blob } => {
                write!(f, "cache record {key} needs missing blob {blob}")
            }
            Problem::ImageMissingBlob { image, blob } => {
                write!(f, "image {image} needs missing blob {blob}")
            }
            Problem::BadSnapshot { path, why } => {
                write!(f, "snapshot {}: {why}", path.display())
            }
        }
    }
}

/// The outcome of a check.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CheckReport {
    /// What is wrong.
    pub problems: Vec<Problem>,
    /// Leftovers of killed processes (harmless; removed by the next collection).
    pub leftovers: Vec<PathBuf>,
    /// What repair removed (empty without repair).
    pub repaired: Vec<String>,
    /// Blobs verified.
    pub blobs: usize,
    /// Key records checked.
    pub records: usize,
    /// Images checked.
    pub images: usize,
    /// Snapshots checked.
    pub snapshots: usize,
}

impl CheckReport {
    /// Whether nothing is wrong (leftovers do not count).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Errors that stop a check.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The inventory could not be taken.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// A repair could not remove something.
    #[error("repair: remove {path}: {source}")]
    Repair {
        /// What could not be removed.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Checks `root`. With `repair` (call only under the exclusive root lock) bad blobs, corrupt
/// records, records missing blobs and bad snapshots are removed; images missing blobs are only
/// reported (they need a pull or a rebuild).
pub fn check(root: &RootDir, repair: bool) -> Result<CheckReport, CheckError> {
    let inv = Inventory::take(root)?;
    let mut report = CheckReport {
        blobs: inv.blobs.len(),
        records: inv.keys.len() + inv.bad_keys.len(),
        images: inv.images.per_image.len(),
        ..Default::default()
    };
    let blob_dir = crate::layout::blob_dir(root.path());
    let bad: Vec<(Digest, String)> = inv
        .blobs
        .keys()
        .collect::<Vec<_>>()
        .par_iter()
        .filter_map(|d| {
            let path = blob_dir.join(d.hex());
            match fs::File::open(&path).and_then(Digest::of_reader) {
                Ok(actual) if actual == **d => None,
                Ok(actual) => Some(((*d).clone(), actual.to_string())),
                Err(e) => Some(((*d).clone(), format!("unreadable: {e}"))),
            }
        })
        .collect();
    let bad_set: std::collections::HashSet<Digest> = bad.iter().map(|b| b.0.clone()).collect();
    for (d, actual) in bad {
        report.problems.push(Problem::BadBlob {
            digest: d.to_string(),
            actual,
        });
        if repair {
            remove(&blob_dir.join(d.hex()), &mut report)?;
        }
    }
    report
        .leftovers
        .extend(inv.stray_blob_files.iter().cloned());
    report.leftovers.extend(inv.temp_files.iter().cloned());
    let present = |d: &Digest| inv.blobs.contains_key(d) && !bad_set.contains(d);

    for path in &inv.bad_keys {
        report
            .problems
            .push(Problem::CorruptRecord { path: path.clone() });
        if repair {
            remove(path, &mut report)?;
        }
    }
    let keys = KeyStore::open(root.path()).map_err(UsageError::from)?;
    for k in &inv.keys {
        let missing: Vec<&Digest> = k
            .record
            .layers
            .iter()
            .filter(|l| !present(&l.digest))
            .map(|l| &l.digest)
            .collect();
        for blob in &missing {
            report.problems.push(Problem::RecordMissingBlob {
                key: k.key.to_hex(),
                blob: blob.to_string(),
            });
        }
        if repair && !missing.is_empty() {
            keys.remove(&k.key).map_err(UsageError::from)?;
            report
                .repaired
                .push(format!("removed cache record {}", k.key));
        }
    }
    for (image, blob) in &inv.images.missing {
        report.problems.push(Problem::ImageMissingBlob {
            image: image.to_string(),
            blob: blob.to_string(),
        });
    }
    for (image, blobs) in &inv.images.per_image {
        for d in blobs.iter().filter(|d| bad_set.contains(*d)) {
            report.problems.push(Problem::ImageMissingBlob {
                image: image.to_string(),
                blob: d.to_string(),
            });
        }
    }

    let snap_dir = root.snapshots_dir().join("sha256");
    if let Ok(entries) = fs::read_dir(&snap_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
            if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
                report.snapshots += 1;
                let why = if !is_dir {
                    Some("not a directory".to_string())
                } else if fs::read_dir(&path).is_err() {
                    Some("unreadable".to_string())
                } else {
                    None
                };
                if let Some(why) = why {
                    report.problems.push(Problem::BadSnapshot {
                        path: path.clone(),
                        why,
                    });
                    if repair {
                        remove(&path, &mut report)?;
                    }
                }
            } else if name.ends_with(".lock") {
                // Per-snapshot unpack locks: kept while the snapshot may be unpacked again.
            } else {
                report.leftovers.push(path);
            }
        }
    }
    if let Ok(entries) = fs::read_dir(root.tmp_dir()) {
        report.leftovers.extend(entries.flatten().map(|e| e.path()));
    }
    Ok(report)
}

fn remove(path: &std::path::Path, report: &mut CheckReport) -> Result<(), CheckError> {
    let result = if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        fs::remove_dir_all(path)
    } else {
        fs::remove_file(path)
    };
    match result {
        Ok(()) => {
            report.repaired.push(format!("removed {}", path.display()));
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CheckError::Repair {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{CacheKey, LayerRef, StepRecord};

    #[test]
    fn finds_bad_blobs_and_dangling_records_and_repairs_them() {
        let dir = tempfile::tempdir().unwrap();
        let root = RootDir::open(dir.path()).unwrap();
        let cas = root.content_store().unwrap();
        let good = cas.put_bytes(b"good").unwrap();
        let damaged = cas.put_bytes(b"will be damaged").unwrap();
        fs::write(cas.path(&damaged), b"flipped").unwrap();
        let keys = KeyStore::open(root.path()).unwrap();
        let layer = |d: &Digest| LayerRef {
            digest: d.clone(),
            diff_id: d.clone(),
            size: 1,
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
        };
        let record = |d: &Digest| StepRecord {
            layers: vec![layer(d)],
            duration_ms: 1,
            created: 1,
        };
        let ok_key = CacheKey([1; 32]);
        let bad_key = CacheKey([2; 32]);
        keys.put(&ok_key, &record(&good)).unwrap();
        keys.put(&bad_key, &record(&damaged)).unwrap();
        fs::create_dir_all(root.snapshots_dir().join("sha256/.unpack-x")).unwrap();
        // A key writer killed before its rename: a leftover, not a corrupt record.
        fs::create_dir_all(root.keys_dir().join("01")).unwrap();
        fs::write(root.keys_dir().join("01/.tmpAbC"), b"{").unwrap();
        fs::write(
            root.snapshots_dir().join("sha256").join("ab".repeat(32)),
            b"",
        )
        .unwrap();

        let report = check(&root, false).unwrap();
        assert!(!report.is_clean());
        let kinds: Vec<String> = report
            .problems
            .iter()
            .map(|p| {
                serde_json::to_value(p).unwrap()["kind"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            kinds,
            vec!["bad_blob", "record_missing_blob", "bad_snapshot"],
            "{:?}",
            report.problems
        );
        assert_eq!(report.leftovers.len(), 2, "{:?}", report.leftovers);

        let repaired = check(&root, true).unwrap();
        assert_eq!(repaired.repaired.len(), 3, "{:?}", repaired.repaired);
        let again = check(&root, false).unwrap();
        assert!(again.is_clean(), "{:?}", again.problems);
        assert_eq!(keys.entries().len(), 1);
    }
}
