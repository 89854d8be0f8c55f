//! Image references with Docker's normalisation: `alpine` is `docker.io/library/alpine:latest`,
//! `localhost:5000/x` names a registry, `host/x:tag@sha256:...` pins a digest.
//!
//! The grammar follows the distribution project's reference grammar (path components of lowercase
//! alphanumerics joined by `.`, `_`, `__` or dashes; tags of up to 128 word characters; names of at
//! most 255 characters), and the domain split follows `docker`'s rule: the part before the first
//! `/` is a registry when it contains `.` or `:`, is `localhost`, or has an uppercase letter.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex::Regex;

use crate::digest::{Digest, DigestError};

/// The registry host Docker Hub references normalise to.
pub const DOCKER_HUB_DOMAIN: &str = "docker.io";
/// The host that actually serves the Docker Hub distribution API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The key Docker uses for Docker Hub in `config.json`.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";
/// The tag a reference gets when it names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const MAX_NAME_LEN: usize = 255;

static PATH_COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$").expect("static regex"));
static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(?:(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$",
    )
    .expect("static regex")
});
static TAG: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[\w][\w.-]{0,127}$").expect("static regex"));
static HEX_ID: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-f0-9]{64}$").expect("static regex"));

/// Why a string is not a valid image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Nothing to parse.
    #[error("invalid reference format: empty reference")]
    Empty,
    /// A bare 64-hex string looks like an image id, not a name.
    #[error("invalid repository name `{0}`: cannot specify 64-byte hexadecimal strings")]
    HexIdentifier(String),
    /// Repository paths are lowercase only.
    #[error("invalid reference format: repository name `{0}` must be lowercase")]
    Uppercase(String),
    /// The registry part is not a host name, IPv6 literal or `host:port`.
    #[error("invalid reference format: invalid registry `{0}`")]
    InvalidDomain(String),
    /// A path component breaks the grammar (`[a-z0-9]` runs joined by `.`, `_`, `__`, `-`).
    #[error("invalid reference format: invalid repository path component `{component}` in `{reference}`")]
    InvalidPathComponent {
        component: String,
        reference: String,
    },
    /// The tag is not `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
    #[error("invalid reference format: invalid tag `{tag}` in `{reference}`")]
    InvalidTag { tag: String, reference: String },
    /// The part after `@` is not a digest.
    #[error("invalid reference format: {0}")]
    InvalidDigest(#[from] DigestError),
    /// The full name is over 255 characters.
    #[error("invalid reference format: repository name `{0}` is longer than 255 characters")]
    NameTooLong(String),
}

/// A fully normalised image reference: always has a registry and a repository, and a tag and/or
/// a digest.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry domain as written in names (`docker.io`, `localhost:5000`, `ghcr.io`).
    pub registry: String,
    /// Repository path inside the registry (`library/alpine`).
    pub repository: String,
    /// Tag, if any (`latest` is filled in when neither tag nor digest was given).
    pub tag: Option<String>,
    /// Pinned digest, if any; when present it wins over the tag for pulls.
    pub digest: Option<Digest>,
}

/// Parses and normalises an image reference the way `docker pull` does.
pub fn parse_reference(input: &str) -> Result<Reference, ReferenceError> {
    input.parse()
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        if input.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if HEX_ID.is_match(input) {
            return Err(ReferenceError::HexIdentifier(input.to_string()));
        }
        let (name_and_tag, digest) = match input.split_once('@') {
            Some((name, digest)) => (name, Some(digest.parse::<Digest>()?)),
            None => (input, None),
        };
        let (registry, remainder) = split_domain(name_and_tag);
        let (path, tag) = match remainder.rsplit_once(':') {
            Some((path, tag)) => (path, Some(tag)),
            None => (remainder, None),
        };
        if path.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(path.to_string()));
        }
        if !DOMAIN.is_match(&registry) {
            return Err(ReferenceError::InvalidDomain(registry));
        }
        for component in path.split('/') {
            if !PATH_COMPONENT.is_match(component) {
                return Err(ReferenceError::InvalidPathComponent {
                    component: component.to_string(),
                    reference: input.to_string(),
                });
            }
        }
        let repository = if registry == DOCKER_HUB_DOMAIN && !path.contains('/') {
            format!("library/{path}")
        } else {
            path.to_string()
        };
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::NameTooLong(format!(
                "{registry}/{repository}"
            )));
        }
        if let Some(tag) = tag {
            if !TAG.is_match(tag) {
                return Err(ReferenceError::InvalidTag {
                    tag: tag.to_string(),
                    reference: input.to_string(),
                });
            }
        }
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some(DEFAULT_TAG.to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }
}

/// Docker's domain split: the first path element is a registry when it looks like a host.
fn split_domain(name: &str) -> (String, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            let domain = if first == "index.docker.io" {
                DOCKER_HUB_DOMAIN
            } else {
                first
            };
            (domain.to_string(), rest)
        }
        _ => (DOCKER_HUB_DOMAIN.to_string(), name),
    }
}

impl Reference {
    /// `registry/repository`, the name without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host (and port) serving the distribution API for this reference's registry.
    pub fn api_host(&self) -> &str {
        registry_api_host(&self.registry)
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.clone(),
            (None, None) => DEFAULT_TAG.to_string(),
        }
    }

    /// The same repository with another tag and no digest.
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !TAG.is_match(tag) {
            return Err(ReferenceError::InvalidTag {
                tag: tag.to_string(),
                reference: self.to_string(),
            });
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to `digest` (the tag is kept for display).
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            digest: Some(digest),
            ..self.clone()
        }
    }
}

/// The host serving the distribution API for a registry domain (`docker.io` is served by
/// `registry-1.docker.io`).
pub fn registry_api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB_DOMAIN {
        DOCKER_HUB_API_HOST
    } else {
        registry
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        parse_reference(s).unwrap().to_string()
    }

    #[test]
    fn normalises_docker_hub_names() {
        assert_eq!(norm("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("docker.io/alpine"), "docker.io/library/alpine:latest");
        assert_eq!(
            norm("index.docker.io/library/alpine"),
            "docker.io/library/alpine:latest"
        );
        let r = parse_reference("alpine").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.name(), "docker.io/library/alpine");
    }

    #[test]
    fn recognises_registries() {
        let r = parse_reference("localhost:5000/x").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost:5000", "x")
        );
        assert_eq!(r.tag.as_deref(), Some("latest"));
        let r = parse_reference("localhost/x/y:1").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("localhost", "x/y")
        );
        let r = parse_reference("[::1]:5000/x").unwrap();
        assert_eq!(r.registry, "[::1]:5000");
        let r = parse_reference("ghcr.io/o/r/deep:v1").unwrap();
        assert_eq!(r.api_host(), "ghcr.io");
        // Without a slash a host:port is read as name:tag, as docker does.
        let r = parse_reference("localhost:5000").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/localhost:5000");
    }

    #[test]
    fn keeps_tag_and_digest() {
        let hex = "a".repeat(64);
        let r = parse_reference(&format!("host.example/x:tag@sha256:{hex}")).unwrap();
        assert_eq!(r.tag.as_deref(), Some("tag"));
        assert_eq!(r.manifest_reference(), format!("sha256:{hex}"));
        let r = parse_reference(&format!("alpine@sha256:{hex}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(
            r.to_string(),
            format!("docker.io/library/alpine@sha256:{hex}")
        );
    }

    #[test]
    fn rejects_invalid_names() {
        assert_eq!(parse_reference(""), Err(ReferenceError::Empty));
        assert!(matches!(
            parse_reference("Alpine"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            parse_reference("Host.example/Alpine"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            parse_reference(&"a".repeat(64)),
            Err(ReferenceError::HexIdentifier(_))
        ));
        assert!(matches!(
            parse_reference("x/-bad"),
            Err(ReferenceError::InvalidPathComponent { .. })
        ));
        assert!(matches!(
            parse_reference("x/a..b"),
            Err(ReferenceError::InvalidPathComponent { .. })
        ));
        assert!(matches!(
            parse_reference("x:-tag"),
            Err(ReferenceError::InvalidTag { .. })
        ));
        assert!(matches!(
            parse_reference("x@sha256:123"),
            Err(ReferenceError::InvalidDigest(_))
        ));
        assert!(matches!(
            parse_reference("bad_host:5000/x"),
            Err(ReferenceError::InvalidDomain(_))
        ));
        assert!(matches!(
            parse_reference(&format!("x/{}", "a".repeat(300))),
            Err(ReferenceError::NameTooLong(_))
        ));
        // Uppercase in the first element makes it a domain (docker's rule); lowercase path is fine.
        let r = parse_reference("Example.COM/app").unwrap();
        assert_eq!(r.registry, "Example.COM");
    }
}
