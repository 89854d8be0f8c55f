//! What lint knows about the build context: whether it has a `.dockerignore`, which top-level
//! entries it holds, and which paths the ignore file excludes.

use std::path::{Path, PathBuf};

use crate::dockerignore::{DockerIgnore, IgnoreFileError};
use engine::source::context::{self as walk, ContextSnapshot, IncludeAll};

/// A summary of the build context directory, read once by the caller.
#[derive(Debug, Clone, Default)]
pub struct ContextInfo {
    /// The context directory.
    pub root: PathBuf,
    /// The ignore rules, if the context has an ignore file (`<Dockerfile>.dockerignore` or
    /// `.dockerignore`).
    pub ignore: Option<DockerIgnore>,
    /// Names of the entries directly in the context root (`.git`, `src`, `package.json`, ...).
    pub top_level: Vec<String>,
    /// The context as the build walks it (what the ignore file leaves visible), for resolving
    /// COPY/ADD sources exactly as the build does.
    pub snapshot: Option<ContextSnapshot>,
}

/// Directories whose presence in a context without an ignore file is worth a warning.
pub const HEAVY_DIRS: &[&str] = &[
    ".git",
    ".hg",
    ".svn",
    "node_modules",
    "target",
    "__pycache__",
    ".venv",
    "venv",
    ".tox",
    ".gradle",
    "build",
    "dist",
    ".next",
    ".terraform",
    ".pytest_cache",
    ".mypy_cache",
    "coverage",
];

/// Why the context could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error("reading build context {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Ignore(#[from] IgnoreFileError),
    #[error("walking build context: {0}")]
    Walk(#[from] walk::ContextError),
}

impl ContextInfo {
    /// Reads the context at `root`; `dockerfile` decides which ignore file applies, as BuildKit
    /// does (`<Dockerfile>.dockerignore` beside it first).
    pub fn read(root: &Path, dockerfile: &Path) -> Result<Self, ContextError> {
        let mut top_level = Vec::new();
        let entries = std::fs::read_dir(root).map_err(|source| ContextError::Read {
            path: root.to_path_buf(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| ContextError::Read {
                path: root.to_path_buf(),
                source,
            })?;
            top_level.push(entry.file_name().to_string_lossy().into_owned());
        }
        top_level.sort();
        let ignore = DockerIgnore::load_for_dockerfile(root, dockerfile)?;
        let ignore = ignore.source().is_some().then_some(ignore);
        let snapshot = match &ignore {
            Some(rules) => ContextSnapshot::walk(root, rules)?,
            None => ContextSnapshot::walk(root, &IncludeAll)?,
        };
        Ok(ContextInfo {
            root: root.to_path_buf(),
            ignore,
            top_level,
            snapshot: Some(snapshot),
        })
    }

    /// True when the context root holds `name` (a relative path).
    pub fn has(&self, name: &str) -> bool {
        if name.contains('/') {
            return self.root.join(name).exists();
        }
        self.top_level.iter().any(|n| n == name)
    }

    /// True when the ignore file excludes `path` (relative to the context root). Sources with
    /// wildcards are judged by their literal prefix only when that prefix is excluded.
    pub fn is_ignored(&self, path: &str) -> bool {
        let Some(ignore) = &self.ignore else {
            return false;
        };
        let clean = path
            .trim_start_matches("./")
            .trim_start_matches('/')
            .trim_end_matches('/');
        if clean.is_empty() || clean == "." {
            return false;
        }
        ignore
            .matcher()
            .matches_or_parent_matches(clean)
            .unwrap_or(false)
    }
}
