//! Why a step ran instead of coming from the cache.
//!
//! Every miss carries a [`MissReason`] with the old and new values where they exist, so progress can
//! print a sentence and `--metadata-file` can carry the same fact as JSON
//! (`{"kind": "arg_changed", "name": "X", "old": "1", "new": "2"}`).

use cache::records::{StepInputs, StepReport};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The cause of a cache miss.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MissReason {
    /// `--no-cache`, or `--no-cache-filter` naming this step's stage.
    NoCache,
    /// No earlier build of this target to compare with, and the key is not in the cache.
    NoPreviousRecord,
    /// The step did not exist in the previous build of this target.
    NewStep,
    /// The instruction text changed.
    InstructionChanged { old: String, new: String },
    /// A build argument the step can see changed value.
    ArgChanged {
        name: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// A context file the step reads changed (or appeared, or went away).
    FileChanged {
        path: String,
        old: Option<String>,
        new: Option<String>,
    },
    /// The base image resolved to another digest.
    BaseImageChanged { old: String, new: String },
    /// A step this one depends on missed, so this one's input changed.
    ParentMissed { parent: String },
    /// The step's definition changed in a way other than its text (env, user, platform, mounts...).
    DefinitionChanged,
    /// The key is the same as last time, but its result is no longer in the cache (collected,
    /// or the previous build was interrupted).
    Evicted,
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "<unset>".into());
        match self {
            MissReason::NoCache => write!(f, "cache disabled (--no-cache)"),
            MissReason::NoPreviousRecord => write!(f, "no previous build record"),
            MissReason::NewStep => write!(f, "new step"),
            MissReason::InstructionChanged { old, new } => {
                write!(f, "instruction changed: `{old}` → `{new}`")
            }
            MissReason::ArgChanged { name, old, new } => {
                write!(f, "ARG {name} changed ({} → {})", opt(old), opt(new))
            }
            MissReason::FileChanged { path, old, new } => match (old, new) {
                (None, Some(_)) => write!(f, "file {path} added"),
                (Some(_), None) => write!(f, "file {path} removed"),
                (Some(o), Some(n)) => write!(f, "file {path} {}", what_changed(o, n)),
                (None, None) => write!(f, "file {path} changed"),
            },
            MissReason::BaseImageChanged { old, new } => {
                write!(
                    f,
                    "base image digest changed ({} → {})",
                    short(old),
                    short(new)
                )
            }
            MissReason::ParentMissed { parent } => write!(f, "parent step missed: {parent}"),
            MissReason::DefinitionChanged => write!(f, "step definition changed"),
            MissReason::Evicted => write!(f, "cache entry no longer present"),
        }
    }
}

/// What differs between two recorded descriptions of a file (`file mode=644 content=...`, as
/// the solver records a copied entry): its type, mode, owner, content or link target.
fn what_changed(old: &str, new: &str) -> String {
    let field = |d: &str, name: &str| -> Option<String> {
        if name == "type" {
            return d.split(' ').next().map(str::to_string);
        }
        let prefix = format!("{name}=");
        let start = d.find(&format!(" {prefix}"))? + 1 + prefix.len();
        // The link target is last and may hold spaces.
        let rest = &d[start..];
        Some(if name == "link" {
            rest.to_string()
        } else {
            rest.split(' ').next().unwrap_or("").to_string()
        })
    };
    if !old.contains(' ') || !new.contains(' ') {
        return "content changed".to_string();
    }
    if field(old, "type") != field(new, "type") {
        return format!(
            "type changed ({} → {})",
            field(old, "type").unwrap_or_default(),
            field(new, "type").unwrap_or_default()
        );
    }
    let mut parts = Vec::new();
    for (name, label) in [
        ("content", "content changed"),
        ("mode", "mode changed"),
        ("owner", "owner changed"),
        ("link", "link target changed"),
    ] {
        let (o, n) = (field(old, name), field(new, name));
        if o != n {
            parts.push(match (name, o, n) {
                ("mode" | "owner" | "link", Some(o), Some(n)) => format!("{label} ({o} → {n})"),
                _ => label.to_string(),
            });
        }
    }
    if parts.is_empty() {
        "changed".to_string()
    } else {
        parts.join(", ")
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// Explains why a step with `now` inputs missed, given the same step's report from the previous
/// build (if any). `parent_missed` names a parent that missed in this build, if one did.
///
/// Order matters: the step's own changes come first (they are the root cause at that line);
/// a parent's miss explains the rest.
pub fn explain(
    previous: Option<&StepReport>,
    now: &StepInputs,
    now_key: &str,
    parent_missed: Option<&str>,
    had_any_previous: bool,
) -> MissReason {
    if !had_any_previous {
        return MissReason::NoPreviousRecord;
    }
    let Some(prev) = previous else {
        if let Some(parent) = parent_missed {
            return MissReason::ParentMissed {
                parent: parent.to_string(),
            };
        }
        return MissReason::NewStep;
    };
    let old = &prev.inputs;
    if let (Some(o), Some(n)) = (&old.base_digest, &now.base_digest) {
        if o != n {
            return MissReason::BaseImageChanged {
                old: o.clone(),
                new: n.clone(),
            };
        }
    }
    let arg_names = old.args.keys().chain(now.args.keys());
    for name in arg_names {
        let (o, n) = (old.args.get(name), now.args.get(name));
        if o != n {
            return MissReason::ArgChanged {
                name: name.clone(),
                old: o.cloned(),
                new: n.cloned(),
            };
        }
    }
    if old.instruction != now.instruction {
        return MissReason::InstructionChanged {
            old: old.instruction.clone(),
            new: now.instruction.clone(),
        };
    }
    let paths = old.files.keys().chain(now.files.keys());
    for path in paths {
        let (o, n) = (old.files.get(path), now.files.get(path));
        if o != n {
            return MissReason::FileChanged {
                path: path.clone(),
                old: o.cloned(),
                new: n.cloned(),
            };
        }
    }
    if old.definition != now.definition {
        return MissReason::DefinitionChanged;
    }
    if let Some(parent) = parent_missed {
        return MissReason::ParentMissed {
            parent: parent.to_string(),
        };
    }
    if old.parents != now.parents {
        return MissReason::ParentMissed {
            parent: "an input step".to_string(),
        };
    }
    if prev.key == now_key {
        return MissReason::Evicted;
    }
    MissReason::DefinitionChanged
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn report(inputs: StepInputs) -> StepReport {
        StepReport {
            name: "[1/2] RUN x".into(),
            stage: "0".into(),
            line: 2,
            end_line: 2,
            cached: false,
            reason: serde_json::Value::Null,
            duration_ms: 1,
            key: "k".into(),
            inputs,
            history: None,
        }
    }

    #[test]
    fn arg_change_names_the_arg_with_values() {
        let old = StepInputs {
            args: BTreeMap::from([("X".to_string(), "1".to_string())]),
            ..Default::default()
        };
        let mut new = old.clone();
        new.args.insert("X".into(), "2".into());
        let reason = explain(Some(&report(old)), &new, "k2", None, true);
        assert_eq!(
            reason,
            MissReason::ArgChanged {
                name: "X".into(),
                old: Some("1".into()),
                new: Some("2".into())
            }
        );
        assert_eq!(reason.to_string(), "ARG X changed (1 → 2)");
        let json = serde_json::to_value(&reason).unwrap();
        assert_eq!(json["kind"], "arg_changed");
    }

    #[test]
    fn file_change_beats_parent_miss() {
        let mut old = StepInputs::default();
        old.files.insert("src/a.rs".into(), "aa".into());
        let mut new = old.clone();
        new.files.insert("src/a.rs".into(), "bb".into());
        let reason = explain(Some(&report(old)), &new, "k", Some("[1/2] FROM"), true);
        assert!(matches!(reason, MissReason::FileChanged { ref path, .. } if path == "src/a.rs"));
    }

    #[test]
    fn file_change_says_what_changed() {
        let changed = |o: &str, n: &str| {
            MissReason::FileChanged {
                path: "a".into(),
                old: Some(o.into()),
                new: Some(n.into()),
            }
            .to_string()
        };
        assert_eq!(
            changed("file mode=644 content=aa", "file mode=755 content=aa"),
            "file a mode changed (644 → 755)"
        );
        assert_eq!(
            changed("file mode=644 content=aa", "file mode=644 content=bb"),
            "file a content changed"
        );
        assert_eq!(
            changed("symlink mode=777 link=x y", "symlink mode=777 link=z"),
            "file a link target changed (x y → z)"
        );
        assert_eq!(
            changed("file mode=644 content=aa", "dir mode=755"),
            "file a type changed (file → dir)"
        );
    }

    #[test]
    fn same_key_missing_is_evicted() {
        let inputs = StepInputs::default();
        let reason = explain(Some(&report(inputs.clone())), &inputs, "k", None, true);
        assert_eq!(reason, MissReason::Evicted);
        assert_eq!(
            explain(None, &inputs, "k", None, false),
            MissReason::NoPreviousRecord
        );
    }
}
