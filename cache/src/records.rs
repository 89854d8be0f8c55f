//! Build records: what each build did, step by step.
//!
//! The solver writes one [`BuildRecord`] per build under `records-v1/<target id>/`. The next build
//! of the same target reads the latest one to explain every miss against it (old and new values);
//! `builder lint` reads them all to rank lines by how often they missed and what that cost.
//! Records are written to a temporary file and renamed, so a killed build leaves none or a whole one.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the versioned directory holding build records.
pub const RECORDS_DIR: &str = crate::layout::Bucket::Records.dir_name();

/// How many records to keep per target; older ones are removed when a new one is written.
pub const KEEP_PER_TARGET: usize = 50;

/// The inputs of one step that can explain a miss, kept so the next build can compare.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepInputs {
    /// Digest of the step's own definition (instruction, flags, env, mounts...).
    pub definition: String,
    /// The instruction as written, for "instruction changed" messages.
    pub instruction: String,
    /// Build-arg values the step can see.
    pub args: BTreeMap<String, String>,
    /// Content digest of each context file the step reads, by path.
    pub files: BTreeMap<String, String>,
    /// Resolved base image digest, for image sources.
    pub base_digest: Option<String>,
    /// Cache keys of the step's inputs, in order.
    pub parents: Vec<String>,
}

/// One step of a build as it ran.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// The step's name as progress shows it (`[build 2/4] RUN make`).
    pub name: String,
    /// Stage the step belongs to.
    pub stage: String,
    /// First Dockerfile line of the step (0 when it has none).
    pub line: usize,
    /// Last Dockerfile line of the step.
    pub end_line: usize,
    /// True when the result came from the cache.
    pub cached: bool,
    /// Why the step ran (null when cached): a tagged object with `kind` and, where they exist,
    /// `old`/`new` values.
    pub reason: serde_json::Value,
    /// Wall time of the step in milliseconds.
    pub duration_ms: u64,
    /// The step's cache key (hex).
    pub key: String,
    /// The inputs that explain the key.
    pub inputs: StepInputs,
    /// The index of the entry the step wrote in the built image's config history, when the step
    /// is part of the image (not of another stage): what `history` joins its rows on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<usize>,
}

/// Everything one build recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildRecord {
    /// Identifies the (Dockerfile, target) pair the build was for.
    pub target_id: String,
    /// The Dockerfile path as given.
    pub dockerfile: String,
    /// The build target (stage name or empty for the last stage).
    pub target: String,
    /// Start time, milliseconds since the epoch.
    pub started_ms: u64,
    /// Whole build duration in milliseconds.
    pub duration_ms: u64,
    /// Whether the build succeeded.
    pub success: bool,
    /// The steps, in the order they finished.
    pub steps: Vec<StepReport>,
    /// The id (config digest) of the image the build stored, once it is stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

/// Errors of the record store.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode build record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// The build-record directory of a cache root.
#[derive(Debug, Clone)]
pub struct RecordStore {
    dir: PathBuf,
}

/// A stable identifier for a (Dockerfile, target) pair: the hex blake3 of both.
pub fn target_id(dockerfile: &Path, target: &str) -> String {
    let abs = fs::canonicalize(dockerfile).unwrap_or_else(|_| dockerfile.to_path_buf());
    let mut h = blake3::Hasher::new();
    h.update(abs.to_string_lossy().as_bytes());
    h.update(b"\0");
    h.update(target.as_bytes());
    h.finalize().to_hex()[..32].to_string()
}

impl RecordStore {
    /// Opens (creating if needed) the record store under `root`.
    pub fn open(root: &Path) -> Result<Self, RecordError> {
        let dir = root.join(RECORDS_DIR);
        fs::create_dir_all(&dir).map_err(|source| RecordError::Io {
            action: "create",
            path: dir.clone(),
            source,
        })?;
        Ok(RecordStore { dir })
    }

    /// Writes a record and trims the target's history to [`KEEP_PER_TARGET`].
    pub fn write(&self, record: &BuildRecord) -> Result<PathBuf, RecordError> {
        let dir = self.dir.join(&record.target_id);
        let io = |action, path: &Path, source| RecordError::Io {
            action,
            path: path.to_path_buf(),
            source,
        };
        fs::create_dir_all(&dir).map_err(|e| io("create", &dir, e))?;
        let path = dir.join(format!(
            "{:016}-{}.json",
            record.started_ms,
            std::process::id()
        ));
        let bytes = serde_json::to_vec_pretty(record)?;
        let mut tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| io("create", &dir, e))?;
        tmp.write_all(&bytes).map_err(|e| io("write", &path, e))?;
        tmp.persist(&path)
            .map_err(|e| io("rename", &path, e.error))?;
        let files = self.files(&record.target_id);
        if files.len() > KEEP_PER_TARGET {
            for old in &files[..files.len() - KEEP_PER_TARGET] {
                let _ = fs::remove_file(old);
            }
        }
        Ok(path)
    }

    fn files(&self, target_id: &str) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = fs::read_dir(self.dir.join(target_id))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        files
    }

    /// The records of one target, oldest first. Unreadable records are skipped.
    pub fn list(&self, target_id: &str) -> Vec<BuildRecord> {
        self.files(target_id)
            .iter()
            .filter_map(|p| fs::read(p).ok())
            .filter_map(|b| serde_json::from_slice(&b).ok())
            .collect()
    }

    /// The most recent successful-or-not record of a target.
    pub fn latest(&self, target_id: &str) -> Option<BuildRecord> {
        self.files(target_id)
            .iter()
            .rev()
            .filter_map(|p| fs::read(p).ok())
            .find_map(|b| serde_json::from_slice(&b).ok())
    }

    /// The most recent record of a build that stored the image `id` (`sha256:...`), of any
    /// target.
    pub fn for_image(&self, id: &str) -> Option<BuildRecord> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .flat_map(|target| self.list(&target))
            .filter(|r| r.image.as_deref() == Some(id))
            .max_by_key(|r| r.started_ms)
    }

    /// The cache keys (hex) of every step of the latest build of every target: what a plain
    /// `prune` keeps because the next build of that target will want it.
    pub fn recent_keys(&self) -> std::collections::BTreeSet<String> {
        fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .filter_map(|target| self.latest(&target))
            .flat_map(|record| record.steps.into_iter().map(|s| s.key))
            .collect()
    }

    /// Total bytes of all records (for `du`).
    pub fn disk_usage(&self) -> u64 {
        walkdir::WalkDir::new(&self.dir)
            .into_iter()
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(started: u64) -> BuildRecord {
        BuildRecord {
            target_id: "t".into(),
            dockerfile: "Dockerfile".into(),
            target: String::new(),
            started_ms: started,
            duration_ms: 1,
            success: true,
            steps: vec![],
            image: None,
        }
    }

    #[test]
    fn latest_is_the_newest_and_history_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::open(dir.path()).unwrap();
        for i in 0..(KEEP_PER_TARGET as u64 + 3) {
            store.write(&record(1000 + i)).unwrap();
        }
        assert_eq!(store.list("t").len(), KEEP_PER_TARGET);
        assert_eq!(
            store.latest("t").unwrap().started_ms,
            1000 + KEEP_PER_TARGET as u64 + 2
        );
        assert!(store.latest("other").is_none());
    }

    #[test]
    fn for_image_finds_the_newest_build_that_stored_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = RecordStore::open(dir.path()).unwrap();
        for (target, started, image) in [
            ("a", 1, "sha256:x"),
            ("b", 2, "sha256:x"),
            ("a", 3, "sha256:y"),
        ] {
            let mut r = record(started);
            r.target_id = target.into();
            r.image = Some(image.into());
            store.write(&r).unwrap();
        }
        assert_eq!(store.for_image("sha256:x").unwrap().started_ms, 2);
        assert_eq!(store.for_image("sha256:y").unwrap().target_id, "a");
        assert!(store.for_image("sha256:z").is_none());
    }
}
