//! Image references as the registry client uses them.
//!
//! The project has one reference type, [`cache::Reference`], which normalises names the way
//! Docker does (`alpine` is `docker.io/library/alpine:latest`, `localhost:5000/x` names a
//! registry). This module re-exports it and adds what only the distribution API needs: which
//! host serves a registry domain, and what to put in a `/v2/<name>/manifests/<ref>` URL.

pub use cache::reference::{Reference, ReferenceError, DEFAULT_TAG};

/// The registry host Docker Hub references normalise to.
pub const DOCKER_HUB_DOMAIN: &str = cache::reference::DEFAULT_DOMAIN;
/// The host that actually serves the Docker Hub distribution API.
pub const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
/// The key Docker uses for Docker Hub in `config.json`.
pub const DOCKER_HUB_CONFIG_KEY: &str = "https://index.docker.io/v1/";

/// Parses and normalises an image reference the way `docker pull` does (`latest` is filled in
/// when neither tag nor digest is given).
pub fn parse_reference(input: &str) -> Result<Reference, ReferenceError> {
    Reference::parse(input)
}

/// What the distribution API needs from a reference beyond its name.
pub trait RegistryReference {
    /// The host (and port) serving the distribution API for this reference's registry.
    fn api_host(&self) -> &str;

    /// What to ask the registry for: the digest when pinned, else the tag.
    fn manifest_reference(&self) -> String;
}

impl RegistryReference for Reference {
    fn api_host(&self) -> &str {
        registry_api_host(self.domain())
    }

    fn manifest_reference(&self) -> String {
        match (self.digest(), self.tag()) {
            (Some(digest), _) => digest.to_string(),
            (None, Some(tag)) => tag.to_string(),
            (None, None) => DEFAULT_TAG.to_string(),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_is_served_by_its_api_host() {
        let r = parse_reference("alpine").unwrap();
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(r.repository(), "docker.io/library/alpine");
        assert_eq!(r.path(), "library/alpine");
        let r = parse_reference("ghcr.io/o/r/deep:v1").unwrap();
        assert_eq!(r.api_host(), "ghcr.io");
        let r = parse_reference("localhost:5000/x").unwrap();
        assert_eq!((r.domain(), r.path()), ("localhost:5000", "x"));
        assert_eq!(r.tag(), Some("latest"));
    }

    #[test]
    fn manifest_reference_prefers_the_digest() {
        let hex = "a".repeat(64);
        let r = parse_reference(&format!("host.example/x:tag@sha256:{hex}")).unwrap();
        assert_eq!(r.tag(), Some("tag"));
        assert_eq!(r.manifest_reference(), format!("sha256:{hex}"));
        let r = parse_reference("host.example/x:tag").unwrap();
        assert_eq!(r.manifest_reference(), "tag");
        let r = Reference::parse_exact("host.example/x").unwrap();
        assert_eq!(r.manifest_reference(), "latest");
    }

    #[test]
    fn rejects_invalid_names() {
        for bad in [
            "",
            "Alpine",
            "x/-bad",
            "x:-tag",
            "x@sha256:123",
            "bad_host:5000/x",
        ] {
            assert!(parse_reference(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
