//! Build-argument scoping, as BuildKit does it:
//!
//! - ARGs before the first FROM are *global*: visible to FROM lines only, unless a stage
//!   re-declares them (`ARG NAME` without a value takes the global value).
//! - A stage sees only the ARGs it declares, from the declaration on; `--build-arg` overrides a
//!   declared default; an ENV of the same name overrides an ARG in the stage.
//! - The platform args (`TARGETPLATFORM`, `BUILDARCH`, ...) are set automatically in the global
//!   scope; a stage must declare them (`ARG TARGETARCH`) to see them.
//! - The proxy args (`HTTP_PROXY`, `no_proxy`, ...) reach RUN steps when given with
//!   `--build-arg`, without a declaration, and stay out of the step's digest and history.

use engine::graph::Platform;
use std::collections::{BTreeMap, BTreeSet};

/// Build args that reach RUN steps without an ARG declaration.
pub const PROXY_ARGS: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The platform args set automatically in the global scope.
pub fn platform_args(target: &Platform, build: &Platform) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (prefix, p) in [("TARGET", target), ("BUILD", build)] {
        out.push((format!("{prefix}PLATFORM"), p.to_string()));
        out.push((format!("{prefix}OS"), p.os.clone()));
        out.push((format!("{prefix}ARCH"), p.architecture.clone()));
        out.push((
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ));
    }
    out
}

/// The values build args can take, and which of them were used.
#[derive(Debug, Clone)]
pub struct ArgValues {
    /// `--build-arg` values.
    pub build_args: BTreeMap<String, String>,
    /// The platform args.
    pub platform: Vec<(String, String)>,
    /// Global ARGs (before the first FROM) with their resolved values; `None` = declared unset.
    pub global: Vec<(String, Option<String>)>,
    /// Names of build args some reached declaration consumed.
    pub consumed: BTreeSet<String>,
}

impl ArgValues {
    /// Starts with the command-line build args and the platform args.
    pub fn new(build_args: BTreeMap<String, String>, platform: Vec<(String, String)>) -> Self {
        ArgValues {
            build_args,
            platform,
            global: Vec::new(),
            consumed: BTreeSet::new(),
        }
    }

    /// The variables FROM lines see: platform args, then global ARGs.
    pub fn global_env(&self) -> Vec<(String, String)> {
        let mut env = self.platform.clone();
        for (k, v) in &self.global {
            if let Some(v) = v {
                env.push((k.clone(), v.clone()));
            }
        }
        env
    }

    /// Resolves a global `ARG name[=default]`: a build arg wins over the default.
    pub fn declare_global(&mut self, name: &str, default: Option<String>) {
        let value = match self.build_args.get(name) {
            Some(v) => {
                self.consumed.insert(name.to_string());
                Some(v.clone())
            }
            None => default.or_else(|| self.platform_value(name)),
        };
        self.global.retain(|(k, _)| k != name);
        self.global.push((name.to_string(), value));
    }

    /// Resolves an `ARG name[=default]` inside a stage: a build arg wins; a bare declaration takes
    /// the global value, or the platform value for the platform args.
    pub fn declare_in_stage(&mut self, name: &str, default: Option<String>) -> Option<String> {
        if let Some(v) = self.build_args.get(name) {
            self.consumed.insert(name.to_string());
            return Some(v.clone());
        }
        if default.is_some() {
            return default;
        }
        if let Some((_, v)) = self.global.iter().rev().find(|(k, _)| k == name) {
            return v.clone();
        }
        self.platform_value(name)
    }

    fn platform_value(&self, name: &str) -> Option<String> {
        self.platform
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// The proxy build args given on the command line.
    pub fn proxy_env(&self) -> Vec<(String, String)> {
        self.build_args
            .iter()
            .filter(|(k, _)| PROXY_ARGS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Build args nobody consumed (proxy args excluded), for a warning.
    pub fn unconsumed(&self) -> Vec<String> {
        self.build_args
            .keys()
            .filter(|k| !self.consumed.contains(*k) && !PROXY_ARGS.contains(&k.as_str()))
            .cloned()
            .collect()
    }
}
