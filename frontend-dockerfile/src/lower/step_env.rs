//! [`StepEnv`]: the environment a stage's steps see, as BuildKit keeps it in the build state.
//!
//! It is not the image config's `Env`. ENV instructions and ARGs that have a value both assign
//! to it, and the last assignment wins whichever instruction made it (an `ARG V=2` after
//! `ENV V=1` gives RUN steps `V=2`, while the image keeps `V=1`). A variable's position is that
//! of its last assignment, which is the order a RUN step's process receives its environment in.
//! A stage built on another starts with that stage's step environment, ARG values included,
//! with its image config's `Env` applied over it again ([`ConfigEnv`]): an ENV wins over an ARG
//! of the same name from there on.

use std::collections::HashMap;

/// Variables in the order of their last assignment; O(1) lookup and assignment.
#[derive(Debug, Clone, Default)]
pub(crate) struct StepEnv {
    /// Assignments in order; a reassigned variable leaves a hole (`None`) where it was.
    slots: Vec<Option<(String, String)>>,
    /// Name → its slot.
    index: HashMap<String, usize>,
}

impl StepEnv {
    /// An environment holding `vars` in order (a base image's `Env`).
    pub(crate) fn from_vars(vars: Vec<(String, String)>) -> StepEnv {
        let mut env = StepEnv::default();
        for (k, v) in vars {
            env.set(k, v);
        }
        env
    }

    /// Assigns `value` to `name`, which moves to the end.
    pub(crate) fn set(&mut self, name: String, value: String) {
        if let Some(old) = self.index.insert(name.clone(), self.slots.len()) {
            self.slots[old] = None;
        }
        self.slots.push(Some((name, value)));
        // Keep holes from outnumbering variables, so memory stays linear in the variables.
        if self.slots.len() > 2 * self.index.len() + 16 {
            self.compact();
        }
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        let slot = *self.index.get(name)?;
        self.slots[slot].as_ref().map(|(_, v)| v.as_str())
    }

    /// The variables in order, as a RUN step's process gets them.
    pub(crate) fn to_vec(&self) -> Vec<(String, String)> {
        self.slots.iter().flatten().cloned().collect()
    }

    fn compact(&mut self) {
        self.slots.retain(Option::is_some);
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some((k, _)) = slot {
                self.index.insert(k.clone(), i);
            }
        }
    }
}

/// The image config's `Env` as ENV instructions leave it: a variable set again keeps its place
/// (Docker's `addEnv`). A stage built on another applies it over the step environment it
/// inherits, as BuildKit does when a stage starts.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConfigEnv {
    vars: Vec<(String, String)>,
    /// Name → position in `vars`.
    index: HashMap<String, usize>,
}

impl ConfigEnv {
    pub(crate) fn from_vars(vars: Vec<(String, String)>) -> ConfigEnv {
        let mut env = ConfigEnv::default();
        for (k, v) in vars {
            env.set(k, v);
        }
        env
    }

    /// Sets `name`, in place when it is already there.
    pub(crate) fn set(&mut self, name: String, value: String) {
        match self.index.get(&name) {
            Some(&i) => self.vars[i].1 = value,
            None => {
                self.index.insert(name.clone(), self.vars.len());
                self.vars.push((name, value));
            }
        }
    }

    pub(crate) fn contains(&self, name: &str) -> bool {
        self.index.contains_key(name)
    }

    /// The variables in config order.
    pub(crate) fn vars(&self) -> &[(String, String)] {
        &self.vars
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> StepEnv {
        StepEnv::from_vars(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_reassigned_variable_moves_to_the_end_with_its_new_value() {
        let mut e = env(&[("PATH", "/bin"), ("A", "1"), ("B", "2")]);
        e.set("A".into(), "3".into());
        let order: Vec<(String, String)> = e.to_vec();
        assert_eq!(
            order,
            vec![
                ("PATH".to_string(), "/bin".to_string()),
                ("B".to_string(), "2".to_string()),
                ("A".to_string(), "3".to_string()),
            ]
        );
        assert_eq!(e.get("A"), Some("3"));
        assert_eq!(e.get("C"), None);
    }

    #[test]
    fn the_config_env_keeps_a_reset_variable_in_place() {
        let mut c = ConfigEnv::from_vars(vec![("A".into(), "1".into()), ("B".into(), "2".into())]);
        c.set("A".into(), "3".into());
        c.set("C".into(), "4".into());
        let names: Vec<&str> = c.vars().iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["A", "B", "C"]);
        assert_eq!(c.vars()[0].1, "3");
        assert!(c.contains("C"));
    }

    #[test]
    fn many_reassignments_keep_order_and_lookups_after_compaction() {
        let mut e = env(&[("X", "0"), ("Y", "0")]);
        for i in 0..1000 {
            e.set("X".into(), i.to_string());
        }
        assert_eq!(e.get("X"), Some("999"));
        assert_eq!(e.get("Y"), Some("0"));
        assert!(e.slots.len() <= 2 * e.index.len() + 17);
        let names: Vec<String> = e.to_vec().into_iter().map(|(k, _)| k).collect();
        assert_eq!(names, vec!["Y", "X"]);
    }
}
