//! What a build is asked to do, as typed values: the CLI parses flags into a [`BuildRequest`]
//! once, before any work, so a typo fails fast and the build never re-parses text.

use crate::BuildError;
use cache::export::CacheSpec;
use engine::export::ExportSpec;
use engine::graph::Platform;
use engine::layer::LayerOptions;
use engine::source::context::PathFilter;
use engine::worker::Secret;
use frontend_dockerfile::dockerignore::DockerIgnore;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Where the Dockerfile comes from.
#[derive(Debug, Clone)]
pub enum DockerfileInput {
    /// `CONTEXT/Dockerfile`.
    Default,
    /// `-f FILE`.
    File(PathBuf),
    /// `-f -`: the text was read from standard input.
    Text(String),
}

impl DockerfileInput {
    /// The Dockerfile's path (as shown in messages and build records) and its text.
    pub fn read(&self, context: &Path) -> Result<(PathBuf, String), BuildError> {
        let path = match self {
            DockerfileInput::Text(text) => return Ok((PathBuf::from("Dockerfile"), text.clone())),
            DockerfileInput::Default => context.join("Dockerfile"),
            DockerfileInput::File(path) => path.clone(),
        };
        let bytes = std::fs::read(&path).map_err(|source| BuildError::ReadDockerfile {
            path: path.clone(),
            source,
        })?;
        Ok((path, String::from_utf8_lossy(&bytes).into_owned()))
    }
}

/// One `-o` value.
#[derive(Debug, Clone)]
pub enum Output {
    /// A file, directory or stream output (`type=oci|docker|tar|local`).
    Export(ExportSpec),
    /// A registry push (`type=registry,name=...`, or `type=image,...,push=true`).
    Registry(Vec<cache::Reference>),
}

impl Output {
    /// Parses an `-o` value.
    pub fn parse(spec: &str) -> Result<Output, BuildError> {
        if let Some(names) = registry_names(spec)? {
            return Ok(Output::Registry(names));
        }
        ExportSpec::parse(spec)
            .map(Output::Export)
            .map_err(BuildError::Export)
    }
}

/// The names a registry output pushes to; `None` when `spec` is not a registry push.
fn registry_names(spec: &str) -> Result<Option<Vec<cache::Reference>>, BuildError> {
    let mut kind = None;
    let mut push = false;
    let mut names = Vec::new();
    for field in spec.split(',') {
        match field.split_once('=') {
            Some(("type", v)) => kind = Some(v.trim()),
            Some(("name", v)) => names.extend(v.split(';').filter(|s| !s.is_empty())),
            Some(("push", v)) => push = v.trim() == "true",
            _ => {}
        }
    }
    let is_push = match kind {
        Some("registry") => true,
        Some("image") => push,
        _ => false,
    };
    if !is_push {
        return Ok(None);
    }
    if names.is_empty() {
        return Err(BuildError::Request(format!(
            "-o {spec}: a registry output needs name=REGISTRY/REPOSITORY[:TAG]"
        )));
    }
    names
        .into_iter()
        .map(|n| {
            cache::Reference::parse(n).map_err(|source| BuildError::BadName {
                name: n.to_string(),
                source,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// What a `--build-context NAME=...` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildContext {
    /// `NAME=DIR`: a local directory, read like the main context (with its own `.dockerignore`).
    Dir(PathBuf),
    /// `NAME=docker-image://REF`: an image, from the local store or the registry.
    Image(String),
    /// `NAME=oci-layout://DIR[@sha256:...]`: the image of an OCI layout directory (the one
    /// with that manifest digest, or its only one).
    OciLayout {
        dir: PathBuf,
        digest: Option<cache::Digest>,
    },
}

impl BuildContext {
    /// Parses the value of `--build-context NAME=VALUE` (the part after `NAME=`).
    pub fn parse(value: &str) -> Result<BuildContext, BuildError> {
        if let Some(reference) = value.strip_prefix("docker-image://") {
            engine::graph::normalize_image_reference(reference).map_err(|source| {
                BuildError::BadName {
                    name: reference.to_string(),
                    source,
                }
            })?;
            return Ok(BuildContext::Image(reference.to_string()));
        }
        if let Some(rest) = value.strip_prefix("oci-layout://") {
            let (dir, digest) = match rest.rsplit_once('@') {
                Some((dir, digest)) => {
                    let digest = digest.parse().map_err(|_| {
                        BuildError::Request(format!(
                            "--build-context {value:?}: {digest:?} is not a sha256:... digest"
                        ))
                    })?;
                    (dir, Some(digest))
                }
                None => (rest, None),
            };
            let dir = PathBuf::from(dir);
            if !dir.join("index.json").is_file() {
                return Err(BuildError::Request(format!(
                    "--build-context {value:?}: {} is not an OCI layout (no index.json)",
                    dir.display()
                )));
            }
            return Ok(BuildContext::OciLayout { dir, digest });
        }
        if let Some((scheme, _)) = value.split_once("://") {
            return Err(BuildError::Request(format!(
                "--build-context {value:?}: {scheme}:// is not supported (give a directory, \
                 docker-image://REF or oci-layout://DIR@DIGEST)"
            )));
        }
        let dir = PathBuf::from(value);
        if !dir.is_dir() {
            return Err(BuildError::Request(format!(
                "--build-context {value:?}: not a directory"
            )));
        }
        Ok(BuildContext::Dir(std::path::absolute(&dir).unwrap_or(dir)))
    }
}

/// Everything one build needs to know.
#[derive(Clone)]
pub struct BuildRequest {
    /// The build context directory.
    pub context: PathBuf,
    /// The Dockerfile.
    pub dockerfile: DockerfileInput,
    /// `-t`: names for the image.
    pub tags: Vec<cache::Reference>,
    /// `--build-arg`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the stage to build (`None`: the last).
    pub target: Option<String>,
    /// `--platform` (`None`: this machine's).
    pub platform: Option<Platform>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--no-cache-filter`: stages whose steps always run.
    pub no_cache_filter: HashSet<String>,
    /// `--pull`: ask the registry for newer base images.
    pub pull: bool,
    /// `--push`: push to every `-t` name.
    pub push: bool,
    /// `-o` outputs.
    pub outputs: Vec<Output>,
    /// `--load`: load the image into the local Docker engine (`DOCKER_HOST`, else
    /// `unix:///var/run/docker.sock`), as `docker build --load` does.
    pub load: bool,
    /// `--secret`s by id.
    pub secrets: HashMap<String, Secret>,
    /// How layers are written (compression and level, `SOURCE_DATE_EPOCH`).
    pub layer: LayerOptions,
    /// `--cache-from`.
    pub cache_from: Vec<CacheSpec>,
    /// `--cache-to`.
    pub cache_to: Vec<CacheSpec>,
    /// `--cache-max-size` in bytes (`0`: never collect after a build).
    pub cache_max_size: u64,
    /// The sandbox helper binary (`None`: this process's own executable, re-executed).
    pub helper: Option<PathBuf>,
    /// `--allow security.insecure`: `RUN --security=insecure` may leave the seccomp filter and
    /// keep every capability.
    pub allow_insecure: bool,
    /// `--network`: the network of `RUN` steps without `--network` of their own.
    pub network: engine::graph::NetworkMode,
    /// `--allow network.host`: steps may use the host's network (`--network host`,
    /// `RUN --network=host`).
    pub allow_network_host: bool,
    /// `--add-host`, `--shm-size`, `--ulimit`: what every `RUN` step gets besides its network.
    pub extra_hosts: Vec<engine::graph::ExtraHost>,
    /// `--shm-size` in bytes (0: the default, 64 MiB).
    pub shm_size: u64,
    /// `--ulimit`s.
    pub ulimits: Vec<engine::graph::Ulimit>,
    /// `--ssh`: agent sockets by id.
    pub ssh: HashMap<String, PathBuf>,
    /// `--build-context`s by name.
    pub named_contexts: BTreeMap<String, BuildContext>,
    /// `--label`: labels set on the image's config, over the Dockerfile's `LABEL`s (as Docker).
    pub labels: BTreeMap<String, String>,
}

impl BuildRequest {
    /// A request with defaults for everything but the context: `CONTEXT/Dockerfile`, the last
    /// stage, this platform, the cache on, gzip layers, no outputs beyond the store.
    pub fn new(context: impl Into<PathBuf>) -> BuildRequest {
        BuildRequest {
            context: context.into(),
            dockerfile: DockerfileInput::Default,
            tags: Vec::new(),
            build_args: BTreeMap::new(),
            target: None,
            platform: None,
            no_cache: false,
            no_cache_filter: HashSet::new(),
            pull: false,
            push: false,
            outputs: Vec::new(),
            load: false,
            secrets: HashMap::new(),
            layer: LayerOptions::default(),
            cache_from: Vec::new(),
            cache_to: Vec::new(),
            cache_max_size: 0,
            helper: None,
            allow_insecure: false,
            labels: BTreeMap::new(),
            network: engine::graph::NetworkMode::Default,
            allow_network_host: false,
            extra_hosts: Vec::new(),
            named_contexts: BTreeMap::new(),
            ssh: HashMap::new(),
            shm_size: 0,
            ulimits: Vec::new(),
        }
    }

    /// Checks what can be checked before any work: `--push` needs a name.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.network == engine::graph::NetworkMode::Host && !self.allow_network_host {
            return Err(BuildError::Request(
                "--network host needs the network.host entitlement: add --allow network.host"
                    .to_string(),
            ));
        }
        if self.push && self.tags.is_empty() {
            return Err(BuildError::Request(
                "--push needs a name to push to: give -t REGISTRY/REPOSITORY[:TAG]".to_string(),
            ));
        }
        Ok(())
    }

    /// Every name the build pushes to: the `-t` names with `--push`, and registry outputs'.
    pub(crate) fn push_targets(&self) -> Vec<cache::Reference> {
        let mut targets = Vec::new();
        if self.push {
            targets.extend(self.tags.iter().cloned());
        }
        for output in &self.outputs {
            if let Output::Registry(names) = output {
                targets.extend(names.iter().cloned());
            }
        }
        targets
    }
}

/// Lets the context walk ask the `.dockerignore` rules.
pub(crate) struct IgnoreFilter(pub(crate) DockerIgnore);

impl PathFilter for IgnoreFilter {
    fn is_excluded(&self, rel: &str) -> bool {
        self.0
            .matcher()
            .matches_or_parent_matches(rel)
            .unwrap_or(false)
    }
    fn must_descend(&self, rel_dir: &str) -> bool {
        self.0.could_match_inside(rel_dir)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(spec: &str) -> Option<Vec<String>> {
        match Output::parse(spec).unwrap() {
            Output::Registry(n) => Some(n.iter().map(|r| r.to_string()).collect()),
            Output::Export(_) => None,
        }
    }

    #[test]
    fn recognises_registry_outputs() {
        assert_eq!(
            names("type=registry,name=localhost:5000/app:1"),
            Some(vec!["localhost:5000/app:1".to_string()])
        );
        assert_eq!(
            names("type=image,name=r.example/a;r.example/b,push=true"),
            Some(vec![
                "r.example/a:latest".to_string(),
                "r.example/b:latest".to_string()
            ])
        );
        assert!(Output::parse("type=image,name=x").is_err()); // not a push, and not an export type
        assert_eq!(names("type=oci,dest=out.tar"), None);
        assert_eq!(names("out-dir"), None);
        assert!(Output::parse("type=registry").is_err());
    }

    #[test]
    fn push_without_a_name_is_refused_before_the_build() {
        let mut req = BuildRequest::new("/tmp");
        req.push = true;
        assert!(req.validate().is_err());
    }
}
