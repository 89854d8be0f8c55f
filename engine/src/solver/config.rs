//! The image config of a stage, folded along its chain of vertices.
//!
//! The config is the typed [`ImageConfig`] of [`crate::image`]: fields of a base image it does
//! not model (or that later versions add) ride along in its `extra` maps untouched.

use super::plan::Planned;
use crate::graph::{
    ConfigChange, Definition, HistoryEntry, Op, Platform, VertexId, HISTORY_COMMENT,
};
use crate::image::{ContainerConfig, HealthConfig, History, ImageConfig, RootFs};
use chrono::{DateTime, Utc};
use std::collections::HashMap;

/// The PATH BuildKit gives a stage that starts from scratch.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The config of an empty (`FROM scratch`) image for `platform`: BuildKit's empty image, with
/// the default PATH and `/` as working directory.
pub fn scratch_config(platform: &Platform) -> ImageConfig {
    ImageConfig {
        architecture: platform.architecture.clone(),
        os: platform.os.clone(),
        variant: platform.variant.clone(),
        config: Some(ContainerConfig {
            env: Some(vec![DEFAULT_PATH.to_string()]),
            working_dir: Some("/".to_string()),
            ..Default::default()
        }),
        rootfs: RootFs::default(),
        ..Default::default()
    }
}

/// The container config of `config`, made (empty) when it has none.
fn container_config(config: &mut ImageConfig) -> &mut ContainerConfig {
    config.config.get_or_insert_default()
}

/// The `Env` of a config as `(name, value)` pairs.
pub fn env_of(config: &ImageConfig) -> Vec<(String, String)> {
    config
        .config
        .as_ref()
        .and_then(|c| c.env.as_ref())
        .map(|a| {
            a.iter()
                .map(|kv| match kv.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (kv.to_string(), String::new()),
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Sets or replaces variables in an env list, keeping first-seen order (Docker's behaviour).
/// Linear in the sizes of both lists (an index, not a search per change).
pub fn merge_env(env: &mut Vec<(String, String)>, changes: &[(String, String)]) {
    if changes.is_empty() {
        return;
    }
    let mut index = env_index(env);
    merge_indexed(env, &mut index, changes);
}

/// Name → position of its first occurrence in `env`.
fn env_index(env: &[(String, String)]) -> HashMap<String, usize> {
    let mut index = HashMap::with_capacity(env.len());
    for (i, (k, _)) in env.iter().enumerate() {
        index.entry(k.clone()).or_insert(i);
    }
    index
}

fn merge_indexed(
    env: &mut Vec<(String, String)>,
    index: &mut HashMap<String, usize>,
    changes: &[(String, String)],
) {
    for (k, v) in changes {
        match index.get(k) {
            Some(&i) => env[i].1 = v.clone(),
            None => {
                index.insert(k.clone(), env.len());
                env.push((k.clone(), v.clone()));
            }
        }
    }
}

/// Applies a chain of changes to one config. The env is kept as an indexed list while folding
/// and written back once by [`Folder::finish`]: rebuilding the whole `Env` list for each `ENV`
/// made a stage of n ENV lines cost n².
pub struct Folder {
    config: ImageConfig,
    env: Option<IndexedEnv>,
}

/// An env list and the position of each name in it.
type IndexedEnv = (Vec<(String, String)>, HashMap<String, usize>);

impl Folder {
    /// Starts from `config`.
    pub fn new(config: ImageConfig) -> Folder {
        Folder { config, env: None }
    }

    /// Applies one change.
    pub fn apply(&mut self, change: &ConfigChange) {
        match change {
            ConfigChange::Env(vars) => {
                let (env, index) = self.env.get_or_insert_with(|| {
                    let env = env_of(&self.config);
                    let index = env_index(&env);
                    (env, index)
                });
                merge_indexed(env, index, vars);
            }
            other => apply_change(&mut self.config, other),
        }
    }

    /// The config for changes that do not touch `Env` (history, creation time).
    pub fn config_mut(&mut self) -> &mut ImageConfig {
        &mut self.config
    }

    /// The folded config.
    pub fn finish(mut self) -> ImageConfig {
        if let Some((env, _)) = self.env.take() {
            set_env(&mut self.config, &env);
        }
        self.config
    }
}

fn set_env(config: &mut ImageConfig, env: &[(String, String)]) {
    container_config(config).env = Some(env.iter().map(|(k, v)| format!("{k}={v}")).collect());
}

/// A list field's new value; an empty list leaves the field out, as the image config's
/// `omitempty` does (`CMD []` gives no `Cmd`, not `"Cmd": []`).
fn list(args: &[String]) -> Option<Vec<String>> {
    (!args.is_empty()).then(|| args.to_vec())
}

/// Adds `keys` to a set field (`ExposedPorts`, `Volumes`: each key maps to `{}`).
fn add_to_set(
    set: &mut Option<std::collections::BTreeMap<String, serde_json::Value>>,
    keys: &[String],
) {
    let set = set.get_or_insert_default();
    for k in keys {
        set.insert(k.clone(), serde_json::Value::Object(serde_json::Map::new()));
    }
}

/// A duration in nanoseconds as the image config stores it (0 = not set).
fn nanos(ns: u64) -> Option<i64> {
    (ns > 0).then(|| i64::try_from(ns).unwrap_or(i64::MAX))
}

/// Applies one metadata change to a config.
pub fn apply_change(config: &mut ImageConfig, change: &ConfigChange) {
    match change {
        ConfigChange::Env(vars) => {
            let mut env = env_of(config);
            merge_env(&mut env, vars);
            set_env(config, &env);
        }
        ConfigChange::Arg(_) => {}
        ConfigChange::Label(labels) => {
            let map = container_config(config).labels.get_or_insert_default();
            for (k, v) in labels {
                map.insert(k.clone(), v.clone());
            }
        }
        ConfigChange::Cmd(args) => container_config(config).cmd = list(args),
        ConfigChange::Entrypoint { args, reset_cmd } => {
            let cfg = container_config(config);
            cfg.entrypoint = list(args);
            if *reset_cmd {
                cfg.cmd = None;
            }
        }
        ConfigChange::Workdir(dir) => {
            // An absolute one as written (BuildKit keeps `/srv/app/` so); a relative one joined
            // to the current one and cleaned.
            let dir = if dir.starts_with('/') {
                dir.clone()
            } else {
                let current = config
                    .config
                    .as_ref()
                    .and_then(|c| c.working_dir.as_deref())
                    .unwrap_or("/");
                resolve_workdir(current, dir)
            };
            container_config(config).working_dir = Some(dir);
        }
        ConfigChange::User(user) => container_config(config).user = Some(user.clone()),
        ConfigChange::Expose(ports) => {
            add_to_set(&mut container_config(config).exposed_ports, ports)
        }
        ConfigChange::Volume(vols) => add_to_set(&mut container_config(config).volumes, vols),
        ConfigChange::StopSignal(sig) => container_config(config).stop_signal = Some(sig.clone()),
        ConfigChange::Healthcheck(h) => {
            container_config(config).healthcheck = Some(HealthConfig {
                test: Some(h.test.clone()),
                interval: nanos(h.interval),
                timeout: nanos(h.timeout),
                start_period: nanos(h.start_period),
                start_interval: nanos(h.start_interval),
                retries: (h.retries > 0).then_some(i64::from(h.retries)),
            });
        }
        ConfigChange::Shell(shell) => container_config(config).shell = Some(shell.clone()),
        ConfigChange::Onbuild(trigger) => container_config(config)
            .on_build
            .get_or_insert_default()
            .push(trigger.clone()),
        ConfigChange::ClearOnbuild => container_config(config).on_build = None,
        ConfigChange::Maintainer(author) => config.author = Some(author.clone()),
    }
}

/// Resolves a WORKDIR against the current one (relative paths join; the result is clean).
pub fn resolve_workdir(current: &str, dir: &str) -> String {
    let joined = if dir.starts_with('/') {
        dir.to_string()
    } else {
        format!("{}/{}", current.trim_end_matches('/'), dir)
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

/// Appends a history entry with its creation time.
pub fn push_history(config: &mut ImageConfig, entry: &HistoryEntry, created: DateTime<Utc>) {
    config.history.push(History {
        created: Some(created),
        created_by: Some(entry.created_by.clone()),
        author: None,
        comment: Some(HISTORY_COMMENT.to_string()),
        empty_layer: entry.empty_layer.then_some(true),
    });
}

/// Seconds since the epoch as the UTC time image configs store (whole seconds).
pub fn utc_time(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// The image config at `at`: the chain's source config with every metadata change and history
/// entry applied in order. `created` gives layer creation times of steps that ran or hit.
pub(super) fn fold_config(
    def: &Definition,
    planned: &HashMap<VertexId, Planned>,
    at: VertexId,
    created: &HashMap<VertexId, i64>,
    epoch: Option<i64>,
) -> ImageConfig {
    let chain = def.chain(at);
    let config = chain
        .first()
        .and_then(|v| planned.get(v))
        .and_then(|p| p.base_config.clone())
        .unwrap_or_else(|| scratch_config(&Platform::host()));
    let clamp = |t: i64| match epoch {
        Some(e) if t > e || t == 0 => e,
        _ => t,
    };
    let mut last_time = config.created.map_or(0, |d| d.timestamp());
    let mut folder = Folder::new(config);
    for v in chain {
        let Some(vertex) = def.vertex(v) else {
            continue;
        };
        if let Op::Config(change) = &vertex.op {
            folder.apply(change);
        }
        if let Some(t) = created.get(&v) {
            last_time = last_time.max(*t);
        }
        if let Some(entry) = &vertex.history {
            push_history(folder.config_mut(), entry, utc_time(clamp(last_time)));
        }
    }
    let mut config = folder.finish();
    config.created = Some(utc_time(clamp(last_time)));
    config
}

/// The effective config at a vertex for running a step on it (no times needed).
pub(super) fn config_at(
    def: &Definition,
    planned: &HashMap<VertexId, Planned>,
    at: VertexId,
) -> ImageConfig {
    fold_config(def, planned, at, &HashMap::new(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(c: &ImageConfig) -> &ContainerConfig {
        c.config.as_ref().expect("a container config")
    }

    fn strings(items: &[&str]) -> Option<Vec<String>> {
        Some(items.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn env_replaces_in_place_and_appends() {
        let mut c = scratch_config(&Platform::host());
        apply_change(
            &mut c,
            &ConfigChange::Env(vec![("A".into(), "1".into()), ("PATH".into(), "/x".into())]),
        );
        assert_eq!(container(&c).env, strings(&["PATH=/x", "A=1"]));
    }

    #[test]
    fn scratch_has_buildkit_empty_image_defaults() {
        let c = scratch_config(&Platform::host());
        assert_eq!(container(&c).working_dir.as_deref(), Some("/"));
        assert_eq!(container(&c).env, strings(&[DEFAULT_PATH]));
    }

    #[test]
    fn workdir_resolves_relative_paths() {
        let mut c = scratch_config(&Platform::host());
        let workdir = |c: &ImageConfig| container(c).working_dir.clone().unwrap_or_default();
        apply_change(&mut c, &ConfigChange::Workdir("/app".into()));
        apply_change(&mut c, &ConfigChange::Workdir("src/../lib".into()));
        assert_eq!(workdir(&c), "/app/lib");
        // An absolute one is kept as written; what follows it is joined and cleaned.
        apply_change(&mut c, &ConfigChange::Workdir("/srv/app/".into()));
        assert_eq!(workdir(&c), "/srv/app/");
        apply_change(&mut c, &ConfigChange::Workdir("./x/".into()));
        assert_eq!(workdir(&c), "/srv/app/x");
    }

    #[test]
    fn entrypoint_resets_cmd_when_asked() {
        let mut c = scratch_config(&Platform::host());
        apply_change(&mut c, &ConfigChange::Cmd(vec!["x".into()]));
        apply_change(
            &mut c,
            &ConfigChange::Entrypoint {
                args: vec!["/bin/sh".into()],
                reset_cmd: true,
            },
        );
        assert_eq!(container(&c).cmd, None);
        assert_eq!(container(&c).entrypoint, strings(&["/bin/sh"]));
    }

    #[test]
    fn empty_cmd_and_entrypoint_are_left_out() {
        let mut c = scratch_config(&Platform::host());
        apply_change(&mut c, &ConfigChange::Cmd(vec!["x".into()]));
        apply_change(&mut c, &ConfigChange::Cmd(vec![]));
        apply_change(
            &mut c,
            &ConfigChange::Entrypoint {
                args: vec![],
                reset_cmd: false,
            },
        );
        let json = serde_json::to_value(&c).unwrap();
        assert!(json["config"].get("Cmd").is_none());
        assert!(json["config"].get("Entrypoint").is_none());
    }

    #[test]
    fn unmodelled_fields_of_a_base_pass_through() {
        let base: ImageConfig = serde_json::from_str(
            r#"{"architecture":"amd64","os":"linux","docker_version":"20.10.5",
              "config":{"Hostname":"h","Cmd":null,"Labels":null,"Volumes":{"/v":{}}},
              "rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let mut c = base.clone();
        apply_change(&mut c, &ConfigChange::Label(vec![("a".into(), "b".into())]));
        apply_change(&mut c, &ConfigChange::Volume(vec!["/w".into()]));
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["docker_version"], "20.10.5");
        assert_eq!(json["config"]["Hostname"], "h");
        assert_eq!(json["config"]["Labels"], serde_json::json!({"a": "b"}));
        assert_eq!(
            json["config"]["Volumes"],
            serde_json::json!({"/v": {}, "/w": {}})
        );
        assert!(json["config"].get("Cmd").is_none());
    }
}
