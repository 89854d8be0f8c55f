//! The image config of a stage, folded along its chain of vertices.
//!
//! The config is kept as JSON (`serde_json::Value`) in the OCI image-config shape so that fields of
//! a base image we do not model (or that later versions add) pass through untouched.

use super::plan::Planned;
use crate::graph::{
    ConfigChange, Definition, HistoryEntry, Op, Platform, VertexId, HISTORY_COMMENT,
};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The PATH BuildKit gives a stage that starts from scratch.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The config of an empty (`FROM scratch`) image for `platform`: BuildKit's empty image, with
/// the default PATH and `/` as working directory.
pub fn scratch_config(platform: &Platform) -> Value {
    let mut v = json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "config": { "Env": [DEFAULT_PATH], "WorkingDir": "/" },
        "rootfs": { "type": "layers", "diff_ids": [] },
        "history": [],
    });
    if let Some(variant) = &platform.variant {
        v["variant"] = json!(variant);
    }
    v
}

fn container_config(config: &mut Value) -> &mut Map<String, Value> {
    if !config.get("config").is_some_and(Value::is_object) {
        config["config"] = json!({});
    }
    config["config"]
        .as_object_mut()
        .expect("config.config was just made an object")
}

/// The `Env` of a config as `(name, value)` pairs.
pub fn env_of(config: &Value) -> Vec<(String, String)> {
    config["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
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
/// and written back once by [`Folder::finish`]: applying each `ENV` to the JSON (parse the
/// whole `Env` array, merge, serialise it again) made a stage of n ENV lines cost n² .
pub struct Folder {
    config: Value,
    env: Option<IndexedEnv>,
}

/// An env list and the position of each name in it.
type IndexedEnv = (Vec<(String, String)>, HashMap<String, usize>);

impl Folder {
    /// Starts from `config`.
    pub fn new(config: Value) -> Folder {
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
    pub fn config_mut(&mut self) -> &mut Value {
        &mut self.config
    }

    /// The folded config.
    pub fn finish(mut self) -> Value {
        if let Some((env, _)) = self.env.take() {
            set_env(&mut self.config, &env);
        }
        self.config
    }
}

fn set_env(config: &mut Value, env: &[(String, String)]) {
    let list: Vec<Value> = env.iter().map(|(k, v)| json!(format!("{k}={v}"))).collect();
    container_config(config).insert("Env".into(), Value::Array(list));
}

/// Sets a list field; an empty list leaves the field out, as the image config's `omitempty`
/// does (`CMD []` gives no `Cmd`, not `"Cmd": []`).
fn set_list(cfg: &mut Map<String, Value>, field: &str, args: &[String]) {
    if args.is_empty() {
        cfg.remove(field);
    } else {
        cfg.insert(field.into(), json!(args));
    }
}

fn add_to_set(config: &mut Value, field: &str, keys: &[String]) {
    let cfg = container_config(config);
    let entry = cfg.entry(field).or_insert_with(|| json!({}));
    if !entry.is_object() {
        *entry = json!({});
    }
    let map = entry.as_object_mut().expect("set field is an object");
    for k in keys {
        map.insert(k.clone(), json!({}));
    }
}

/// Applies one metadata change to a config.
pub fn apply_change(config: &mut Value, change: &ConfigChange) {
    match change {
        ConfigChange::Env(vars) => {
            let mut env = env_of(config);
            merge_env(&mut env, vars);
            set_env(config, &env);
        }
        ConfigChange::Arg(_) => {}
        ConfigChange::Label(labels) => {
            let cfg = container_config(config);
            let entry = cfg.entry("Labels").or_insert_with(|| json!({}));
            if !entry.is_object() {
                *entry = json!({});
            }
            let map = entry.as_object_mut().expect("labels is an object");
            for (k, v) in labels {
                map.insert(k.clone(), json!(v));
            }
        }
        ConfigChange::Cmd(args) => set_list(container_config(config), "Cmd", args),
        ConfigChange::Entrypoint { args, reset_cmd } => {
            let cfg = container_config(config);
            set_list(cfg, "Entrypoint", args);
            if *reset_cmd {
                cfg.remove("Cmd");
            }
        }
        ConfigChange::Workdir(dir) => {
            // An absolute one as written (BuildKit keeps `/srv/app/` so); a relative one joined
            // to the current one and cleaned.
            let dir = if dir.starts_with('/') {
                dir.clone()
            } else {
                let current = config["config"]["WorkingDir"].as_str().unwrap_or("/");
                resolve_workdir(current, dir)
            };
            container_config(config).insert("WorkingDir".into(), json!(dir));
        }
        ConfigChange::User(user) => {
            container_config(config).insert("User".into(), json!(user));
        }
        ConfigChange::Expose(ports) => add_to_set(config, "ExposedPorts", ports),
        ConfigChange::Volume(vols) => add_to_set(config, "Volumes", vols),
        ConfigChange::StopSignal(sig) => {
            container_config(config).insert("StopSignal".into(), json!(sig));
        }
        ConfigChange::Healthcheck(h) => {
            let mut hc = Map::new();
            hc.insert("Test".into(), json!(h.test));
            if h.interval > 0 {
                hc.insert("Interval".into(), json!(h.interval));
            }
            if h.timeout > 0 {
                hc.insert("Timeout".into(), json!(h.timeout));
            }
            if h.start_period > 0 {
                hc.insert("StartPeriod".into(), json!(h.start_period));
            }
            if h.start_interval > 0 {
                hc.insert("StartInterval".into(), json!(h.start_interval));
            }
            if h.retries > 0 {
                hc.insert("Retries".into(), json!(h.retries));
            }
            container_config(config).insert("Healthcheck".into(), Value::Object(hc));
        }
        ConfigChange::Shell(shell) => {
            container_config(config).insert("Shell".into(), json!(shell));
        }
        ConfigChange::Onbuild(trigger) => {
            let cfg = container_config(config);
            let entry = cfg.entry("OnBuild").or_insert_with(|| json!([]));
            if !entry.is_array() {
                *entry = json!([]);
            }
            entry
                .as_array_mut()
                .expect("OnBuild is an array")
                .push(json!(trigger));
        }
        ConfigChange::ClearOnbuild => {
            container_config(config).remove("OnBuild");
        }
        ConfigChange::Maintainer(author) => {
            config["author"] = json!(author);
        }
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

/// Appends a history entry with its creation time (RFC 3339).
pub fn push_history(config: &mut Value, entry: &HistoryEntry, created: &str) {
    if !config.get("history").is_some_and(Value::is_array) {
        config["history"] = json!([]);
    }
    let mut h = json!({
        "created": created,
        "created_by": entry.created_by,
        "comment": HISTORY_COMMENT,
    });
    if entry.empty_layer {
        h["empty_layer"] = json!(true);
    }
    config["history"]
        .as_array_mut()
        .expect("history is an array")
        .push(h);
}

/// Formats seconds since the epoch as RFC 3339 UTC, as image configs store times.
pub fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The image config at `at`: the chain's source config with every metadata change and history
/// entry applied in order. `created` gives layer creation times of steps that ran or hit.
pub(super) fn fold_config(
    def: &Definition,
    planned: &HashMap<VertexId, Planned>,
    at: VertexId,
    created: &HashMap<VertexId, i64>,
    epoch: Option<i64>,
) -> Value {
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
    let mut last_time = config["created"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.timestamp())
        .unwrap_or(0);
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
            push_history(folder.config_mut(), entry, &rfc3339(clamp(last_time)));
        }
    }
    let mut config = folder.finish();
    config["created"] = Value::String(rfc3339(clamp(last_time)));
    config
}

/// The effective config at a vertex for running a step on it (no times needed).
pub(super) fn config_at(
    def: &Definition,
    planned: &HashMap<VertexId, Planned>,
    at: VertexId,
) -> Value {
    fold_config(def, planned, at, &HashMap::new(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_replaces_in_place_and_appends() {
        let mut c = scratch_config(&Platform::host());
        apply_change(
            &mut c,
            &ConfigChange::Env(vec![("A".into(), "1".into()), ("PATH".into(), "/x".into())]),
        );
        assert_eq!(c["config"]["Env"], json!(["PATH=/x", "A=1"]));
    }

    #[test]
    fn scratch_has_buildkit_empty_image_defaults() {
        let c = scratch_config(&Platform::host());
        assert_eq!(c["config"]["WorkingDir"], "/");
        assert_eq!(c["config"]["Env"], json!([DEFAULT_PATH]));
    }

    #[test]
    fn workdir_resolves_relative_paths() {
        let mut c = scratch_config(&Platform::host());
        apply_change(&mut c, &ConfigChange::Workdir("/app".into()));
        apply_change(&mut c, &ConfigChange::Workdir("src/../lib".into()));
        assert_eq!(c["config"]["WorkingDir"], "/app/lib");
        // An absolute one is kept as written; what follows it is joined and cleaned.
        apply_change(&mut c, &ConfigChange::Workdir("/srv/app/".into()));
        assert_eq!(c["config"]["WorkingDir"], "/srv/app/");
        apply_change(&mut c, &ConfigChange::Workdir("./x/".into()));
        assert_eq!(c["config"]["WorkingDir"], "/srv/app/x");
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
        assert!(c["config"].get("Cmd").is_none());
        assert_eq!(c["config"]["Entrypoint"], json!(["/bin/sh"]));
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
        assert!(c["config"].get("Cmd").is_none());
        assert!(c["config"].get("Entrypoint").is_none());
    }
}
