//! Image references normalised the way Docker does: `alpine` is
//! `docker.io/library/alpine:latest`, `localhost:5000/app` is `localhost:5000/app:latest`.
//!
//! Shared by the image store (names are stored normalised) and the registry client (which needs
//! the domain and repository path). Grammar from the distribution reference format:
//! `[domain/]path[:tag][@digest]`; the first component is a domain only if it contains `.` or
//! `:`, is `localhost`, or has upper-case letters.

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The registry Docker Hub names are normalised to.
pub const DEFAULT_DOMAIN: &str = "docker.io";
/// The tag assumed when a reference names neither tag nor digest.
pub const DEFAULT_TAG: &str = "latest";
const LEGACY_DOMAIN: &str = "index.docker.io";
const OFFICIAL_PREFIX: &str = "library/";
const MAX_NAME_LEN: usize = 255;

/// Why a string is not an image reference.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    /// Empty input.
    #[error("invalid reference format: empty reference")]
    Empty,
    /// Upper-case letters in the repository path.
    #[error("invalid reference format: repository name {0:?} must be lowercase")]
    Uppercase(String),
    /// A 64-hex-digit string, which is an image id, not a name.
    #[error("invalid repository name {0:?}: cannot specify 64-byte hexadecimal strings")]
    HexName(String),
    /// The repository path does not match the grammar.
    #[error("invalid reference format: bad repository name {0:?}")]
    BadPath(String),
    /// The domain does not match the grammar.
    #[error("invalid reference format: bad registry domain {0:?}")]
    BadDomain(String),
    /// The tag does not match `[\w][\w.-]{0,127}`.
    #[error("invalid reference format: bad tag {0:?}")]
    BadTag(String),
    /// The name is longer than 255 characters.
    #[error("invalid reference format: repository name {0:?} is longer than 255 characters")]
    TooLong(String),
    /// The `@digest` part is not a digest.
    #[error("invalid reference format: {0}")]
    BadDigest(#[from] DigestError),
}

/// A normalised image reference.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `s`; adds the `latest` tag when neither tag nor digest is given.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let mut r = Reference::parse_exact(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_string());
        }
        Ok(r)
    }

    /// Parses and normalises `s` without adding a default tag.
    pub fn parse_exact(s: &str) -> Result<Reference, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (rest, Some(d.parse::<Digest>()?)),
            None => (s, None),
        };
        let (domain, remainder) = split_domain(rest);
        let (path, tag) = match remainder.rsplit_once(':') {
            Some((p, t)) => (p, Some(t)),
            None => (remainder, None),
        };
        if let Some(t) = tag {
            if !valid_tag(t) {
                return Err(ReferenceError::BadTag(t.to_string()));
            }
        }
        if path.len() == 64 && domain == DEFAULT_DOMAIN && Digest::from_hex(path).is_ok() {
            return Err(ReferenceError::HexName(path.to_string()));
        }
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(path.to_string()));
        }
        let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
            format!("{OFFICIAL_PREFIX}{path}")
        } else {
            path.to_string()
        };
        if !path.split('/').all(valid_path_component) {
            return Err(ReferenceError::BadPath(path));
        }
        if !valid_domain(&domain) {
            return Err(ReferenceError::BadDomain(domain));
        }
        if domain.len() + 1 + path.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(format!("{domain}/{path}")));
        }
        Ok(Reference {
            domain,
            path,
            tag: tag.map(str::to_string),
            digest,
        })
    }

    /// The registry domain (`docker.io`, `localhost:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// The repository path within the registry (`library/alpine`).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The tag, if any.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if any.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// The full repository name (`docker.io/library/alpine`).
    pub fn repository(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }

    /// The repository as Docker shows it (`alpine`, `user/app`, `localhost:5000/app`).
    pub fn familiar_repository(&self) -> String {
        if self.domain == DEFAULT_DOMAIN {
            match self.path.strip_prefix(OFFICIAL_PREFIX) {
                Some(rest) if !rest.contains('/') => rest.to_string(),
                _ => self.path.clone(),
            }
        } else {
            self.repository()
        }
    }

    /// The whole reference as Docker shows it (`alpine:latest`).
    pub fn familiar(&self) -> String {
        let mut s = self.familiar_repository();
        self.push_suffix(&mut s);
        s
    }

    /// The same repository with another tag (and no digest).
    pub fn with_tag(&self, tag: &str) -> Result<Reference, ReferenceError> {
        if !valid_tag(tag) {
            return Err(ReferenceError::BadTag(tag.to_string()));
        }
        Ok(Reference {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        })
    }

    /// The same repository pinned to `digest` (and no tag), as in RepoDigests.
    pub fn with_digest(&self, digest: Digest) -> Reference {
        Reference {
            tag: None,
            digest: Some(digest),
            ..self.clone()
        }
    }

    fn push_suffix(&self, s: &mut String) {
        if let Some(t) = &self.tag {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = &self.digest {
            s.push('@');
            s.push_str(&d.to_string());
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = self.repository();
        self.push_suffix(&mut s);
        f.write_str(&s)
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn split_domain(name: &str) -> (String, &str) {
    let (domain, rest) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.chars().any(|c| c.is_ascii_uppercase()) =>
        {
            (first.to_string(), rest)
        }
        _ => (DEFAULT_DOMAIN.to_string(), name),
    };
    if domain == LEGACY_DOMAIN {
        (DEFAULT_DOMAIN.to_string(), rest)
    } else {
        (domain, rest)
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// Host names (labels of letters, digits and inner dashes, dot-separated) or a bracketed IPv6
/// address, with an optional `:port`.
fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        match rest.split_once(']') {
            Some((ip, after)) => {
                if ip.is_empty() || !ip.chars().all(|c| c.is_ascii_hexdigit() || c == ':') {
                    return false;
                }
                match after {
                    "" => return true,
                    p => return p.strip_prefix(':').is_some_and(valid_port),
                }
            }
            None => return false,
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port {
        if !valid_port(p) {
            return false;
        }
    }
    !host.is_empty()
        && host.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_alphanumeric() || *x == b'-')
        })
}

fn valid_port(p: &str) -> bool {
    !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_table() {
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let cases: &[(&str, &str, &str)] = &[
            ("alpine", "docker.io/library/alpine:latest", "alpine:latest"),
            (
                "alpine:3.19",
                "docker.io/library/alpine:3.19",
                "alpine:3.19",
            ),
            (
                "library/alpine",
                "docker.io/library/alpine:latest",
                "alpine:latest",
            ),
            (
                "docker.io/alpine",
                "docker.io/library/alpine:latest",
                "alpine:latest",
            ),
            (
                "index.docker.io/library/alpine",
                "docker.io/library/alpine:latest",
                "alpine:latest",
            ),
            ("user/app:v1", "docker.io/user/app:v1", "user/app:v1"),
            (
                "docker.io/user/app",
                "docker.io/user/app:latest",
                "user/app:latest",
            ),
            (
                "localhost/app",
                "localhost/app:latest",
                "localhost/app:latest",
            ),
            (
                "localhost:5000/app:dev",
                "localhost:5000/app:dev",
                "localhost:5000/app:dev",
            ),
            (
                "quay.io/org/sub/app:1.0",
                "quay.io/org/sub/app:1.0",
                "quay.io/org/sub/app:1.0",
            ),
            (
                "registry.example.com:443/a_b/c-d__e.f",
                "registry.example.com:443/a_b/c-d__e.f:latest",
                "registry.example.com:443/a_b/c-d__e.f:latest",
            ),
            (
                "[::1]:5000/app",
                "[::1]:5000/app:latest",
                "[::1]:5000/app:latest",
            ),
            (
                "docker.io/library/a/b",
                "docker.io/library/a/b:latest",
                "library/a/b:latest",
            ),
        ];
        for (input, full, familiar) in cases {
            let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.to_string(), *full, "{input}");
            assert_eq!(r.familiar(), *familiar, "{input}");
            // Normalisation is idempotent.
            assert_eq!(Reference::parse(full).unwrap(), r, "{input}");
        }
        let pinned = Reference::parse(&format!("alpine@{d}")).unwrap();
        assert_eq!(pinned.tag(), None);
        assert_eq!(pinned.to_string(), format!("docker.io/library/alpine@{d}"));
        let both = Reference::parse(&format!("alpine:3@{d}")).unwrap();
        assert_eq!(both.tag(), Some("3"));
        assert_eq!(both.familiar(), format!("alpine:3@{d}"));
    }

    #[test]
    fn rejects_bad_references() {
        let bad = [
            "",
            "Alpine",
            "alpine:",
            "alpine:-tag",
            "a//b",
            "-a",
            "a-",
            "a..b",
            "alpine@sha256:abc",
            "alpine@md5:abc",
            "host:port/app",
            &"a".repeat(300),
            &"0123456789abcdef".repeat(4),
            "a:b:c",
            "UPPER.io/App",
        ];
        for input in bad {
            assert!(
                Reference::parse(input).is_err(),
                "{input:?} should be rejected"
            );
        }
        assert!(Reference::parse("UPPER.io/app").is_ok());
        assert!(
            Reference::parse("Registry/app").is_ok(),
            "upper-case first component is a domain"
        );
    }
}
