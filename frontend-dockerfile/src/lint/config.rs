//! Lint configuration: rule severities and ignores, from `.builder-lint.toml` or from the `[lint]`
//! table of a project config file.
//!
//! ```toml
//! ignore = ["DL3008", "StageNameCasing"]
//! failure-threshold = "warning"
//! [severity]
//! DL3059 = "style"
//! BL1004 = "off"     # same as ignoring it
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{rules, Severity};

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Toml {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path}: severity of `{rule}`: {message}")]
    Severity {
        path: PathBuf,
        rule: String,
        message: String,
    },
}

/// Severities, ignores and the exit threshold.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LintConfig {
    /// Rule ids or names never reported.
    pub ignore: Vec<String>,
    /// Per-rule severity overrides (keys are ids or names).
    pub severity: BTreeMap<String, Severity>,
    /// Findings at or above this severity make `builder lint` exit non-zero.
    pub failure_threshold: Option<Severity>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawConfig {
    #[serde(default)]
    ignore: Vec<String>,
    #[serde(default)]
    severity: BTreeMap<String, String>,
    failure_threshold: Option<String>,
}

#[derive(Deserialize)]
struct ProjectConfig {
    lint: Option<toml::Value>,
}

/// The names of the files [`LintConfig::discover`] looks for, in order.
pub const CONFIG_FILE: &str = ".builder-lint.toml";
/// A project config file whose `[lint]` table is read when no [`CONFIG_FILE`] exists.
pub const PROJECT_CONFIG_FILE: &str = "builder.toml";

impl LintConfig {
    /// Reads `.builder-lint.toml` (the whole file) or `builder.toml` (its `[lint]` table) from `dir`;
    /// the default configuration when neither exists.
    pub fn discover(dir: &Path) -> Result<Self, ConfigError> {
        let own = dir.join(CONFIG_FILE);
        if own.is_file() {
            return Self::from_file(&own);
        }
        let project = dir.join(PROJECT_CONFIG_FILE);
        if project.is_file() {
            let text = read(&project)?;
            let parsed: ProjectConfig =
                toml::from_str(&text).map_err(|source| ConfigError::Toml {
                    path: project.clone(),
                    source,
                })?;
            return match parsed.lint {
                Some(table) => {
                    let raw: RawConfig = table.try_into().map_err(|source| ConfigError::Toml {
                        path: project.clone(),
                        source,
                    })?;
                    Self::from_raw(raw, &project)
                }
                None => Ok(Self::default()),
            };
        }
        Ok(Self::default())
    }

    /// Reads a lint config file (the format of `.builder-lint.toml`).
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = read(path)?;
        let raw: RawConfig = toml::from_str(&text).map_err(|source| ConfigError::Toml {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_raw(raw, path)
    }

    fn from_raw(raw: RawConfig, path: &Path) -> Result<Self, ConfigError> {
        let mut config = LintConfig {
            ignore: raw.ignore,
            ..Default::default()
        };
        for (rule, sev) in raw.severity {
            if sev.eq_ignore_ascii_case("off")
                || sev.eq_ignore_ascii_case("ignore")
                || sev.eq_ignore_ascii_case("none")
            {
                config.ignore.push(rule);
                continue;
            }
            let parsed = sev.parse().map_err(|message| ConfigError::Severity {
                path: path.to_path_buf(),
                rule: rule.clone(),
                message,
            })?;
            config.severity.insert(rule, parsed);
        }
        if let Some(t) = raw.failure_threshold {
            config.failure_threshold =
                Some(t.parse().map_err(|message| ConfigError::Severity {
                    path: path.to_path_buf(),
                    rule: "failure-threshold".into(),
                    message,
                })?);
        }
        Ok(config)
    }

    /// True when the rule with id `id` is ignored by this configuration.
    pub fn is_ignored(&self, id: &str) -> bool {
        self.ignore.iter().any(|p| rules::matches(p, id))
    }

    /// The configured severity for rule `id`, if overridden.
    pub fn severity_of(&self, id: &str) -> Option<Severity> {
        self.severity
            .iter()
            .find(|(p, _)| p.as_str() != "all" && rules::matches(p, id))
            .map(|(_, s)| *s)
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_file_and_project_table() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(PROJECT_CONFIG_FILE),
            "[lint]\nignore = [\"DL3008\", \"ConsecutiveRuns\"]\nfailure-threshold = \"error\"\n[lint.severity]\nDL3047 = \"style\"\nBL1004 = \"off\"\n",
        )
        .unwrap();
        let c = LintConfig::discover(dir.path()).unwrap();
        assert!(c.is_ignored("DL3008"));
        assert!(c.is_ignored("BL1004"));
        assert!(c.is_ignored("DL3059"), "names match as well as ids");
        assert_eq!(c.severity_of("DL3047"), Some(Severity::Style));
        assert_eq!(c.failure_threshold, Some(Severity::Error));

        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "severity = { StageNameCasing = \"error\" }\n",
        )
        .unwrap();
        let c = LintConfig::discover(dir.path()).unwrap();
        assert!(
            !c.is_ignored("DL3008"),
            "the own file wins over the project table"
        );
        assert_eq!(c.severity_of("StageNameCasing"), Some(Severity::Error));

        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "severity = { X = \"loud\" }\n",
        )
        .unwrap();
        assert!(matches!(
            LintConfig::discover(dir.path()),
            Err(ConfigError::Severity { .. })
        ));
    }
}
