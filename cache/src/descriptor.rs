//! OCI content descriptors: what a manifest, index or name points at.
//!
//! Lives in the cache crate because the image store records descriptors, and the engine and the
//! registry client read and write them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// A typed pointer to a blob: media type, digest and size (OCI image-spec `descriptor.md`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is, e.g. `application/vnd.oci.image.manifest.v1+json`.
    pub media_type: String,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's length in bytes.
    pub size: u64,
    /// Free-form annotations (`org.opencontainers.image.ref.name` ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// The platform of the manifest this points at, in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Alternative locations of the blob (foreign layers); kept, not used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    /// The artifact type of a manifest listed in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with no annotations or platform.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Self {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            annotations: None,
            platform: None,
            urls: None,
            artifact_type: None,
        }
    }

    /// The descriptor of `bytes` under `media_type`.
    pub fn of_bytes(media_type: impl Into<String>, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::of_bytes(bytes), bytes.len() as u64)
    }

    /// The value of one annotation, if present.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// The platform an image runs on (OCI image-spec `image-index.md`), and how a host picks among
/// the platforms of an index. One type serves the image store, the build graph (which platform a
/// step builds for), the engine and the registry client, so `--platform` means the same to
/// `build` and `pull`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in Go's naming (`amd64`, `arm64`, `arm`).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// CPU variant (`v7` for arm, `v8` for arm64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows only).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    /// Required OS features.
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
}

impl Platform {
    /// A platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            architecture: architecture.to_string(),
            os: os.to_string(),
            variant: variant.map(str::to_string),
            os_version: None,
            os_features: Vec::new(),
        }
    }

    /// The platform of the running machine, in the names images use (normalised as
    /// [`Platform::parse`] normalises: arm64 without its implied `v8`).
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "x86" => ("386", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "powerpc64" => ("ppc64", None),
            "riscv64" => ("riscv64", None),
            "s390x" => ("s390x", None),
            "loongarch64" => ("loong64", None),
            "mips64" => ("mips64", None),
            other => (other, None),
        };
        Platform::new(std::env::consts::OS, arch, variant)
    }

    /// Parses `os/arch[/variant]`, normalising common aliases as containerd does (`x86_64` →
    /// `amd64`, `aarch64` → `arm64`, `arm64/v8` → `arm64`, `armhf` → `arm/v7`).
    pub fn parse(s: &str) -> Result<Platform, PlatformError> {
        let err = |reason: &str| PlatformError {
            input: s.to_string(),
            reason: reason.to_string(),
        };
        let parts: Vec<&str> = s.split('/').collect();
        if parts.len() < 2 || parts.len() > 3 {
            return Err(err("expected os/arch[/variant]"));
        }
        if parts.iter().any(|p| p.is_empty()) {
            return Err(err("empty component"));
        }
        let valid = |p: &str| {
            p.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        if !parts.iter().all(|p| valid(p)) {
            return Err(err(
                "components may hold only letters, digits, `_`, `-` and `.`",
            ));
        }
        let os = parts[0].to_ascii_lowercase();
        let mut variant = parts.get(2).map(|v| v.to_ascii_lowercase());
        let architecture = match parts[1].to_ascii_lowercase().as_str() {
            "x86_64" | "x86-64" | "amd64" => "amd64".to_string(),
            "aarch64" | "arm64" => {
                if variant.as_deref() == Some("v8") {
                    variant = None;
                }
                "arm64".to_string()
            }
            "armhf" => {
                variant = Some("v7".into());
                "arm".to_string()
            }
            "armel" => {
                variant = Some("v6".into());
                "arm".to_string()
            }
            "i386" | "386" => "386".to_string(),
            other => other.to_string(),
        };
        Ok(Platform::new(&os, &architecture, variant.as_deref()))
    }

    /// Variants of this platform's architecture an image may have and still run here, best
    /// first. An arm64 host runs `v8` or unspecified; an arm/v7 host also runs v6 and v5; amd64
    /// treats unspecified as `v1`.
    fn acceptable_variants(&self) -> Vec<Option<String>> {
        let own = self.variant.clone();
        let v = |s: &str| Some(s.to_string());
        match (self.architecture.as_str(), own.as_deref()) {
            ("arm64", None | Some("v8")) => vec![v("v8"), None],
            ("arm", Some("v8")) => vec![v("v8"), v("v7"), v("v6"), v("v5"), None],
            ("arm", None | Some("v7")) => vec![v("v7"), v("v6"), v("v5"), None],
            ("arm", Some("v6")) => vec![v("v6"), v("v5"), None],
            ("arm", Some("v5")) => vec![v("v5"), None],
            ("amd64", None | Some("v1")) => vec![None, v("v1")],
            ("amd64", Some(level)) => {
                // A vN host runs every level at or below N, the highest first.
                let n: u32 = level.trim_start_matches('v').parse().unwrap_or(1);
                let mut list: Vec<Option<String>> =
                    (2..=n).rev().map(|i| Some(format!("v{i}"))).collect();
                list.push(None);
                list.push(v("v1"));
                list
            }
            (_, None) => vec![None],
            (_, Some(variant)) => vec![v(variant), None],
        }
    }

    /// How well an index entry's platform suits this one: `None` when it cannot run here,
    /// otherwise lower is better. An entry without a platform is accepted last, as containerd
    /// does (OCI layouts often omit it).
    pub fn rank(&self, candidate: Option<&Platform>) -> Option<usize> {
        let variants = self.acceptable_variants();
        match candidate {
            None => Some(variants.len()),
            Some(p) if p.os != self.os || p.architecture != self.architecture => None,
            Some(p) => variants.iter().position(|v| *v == p.variant),
        }
    }

    /// The best-suited of `candidates` (each with its platform), the first listed among equals.
    pub fn select<'a, T>(
        &self,
        candidates: impl IntoIterator<Item = (Option<&'a Platform>, T)>,
    ) -> Option<T> {
        candidates
            .into_iter()
            .filter_map(|(p, item)| Some((self.rank(p)?, item)))
            .min_by_key(|(rank, _)| *rank)
            .map(|(_, item)| item)
    }
}

/// Why a platform string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform `{input}`: {reason}")]
pub struct PlatformError {
    /// The rejected text.
    pub input: String,
    /// What was wrong with it.
    pub reason: String,
}

impl std::str::FromStr for Platform {
    type Err = PlatformError;

    fn from_str(s: &str) -> Result<Platform, PlatformError> {
        Platform::parse(s)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

/// The descriptors an OCI/Docker manifest or index document refers to (config, layers,
/// manifests, subject), without interpreting media types. Garbage collection uses this to walk
/// from image roots to every blob they keep alive.
pub fn referenced_descriptors(document: &[u8]) -> Result<Vec<Descriptor>, serde_json::Error> {
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        config: Option<Descriptor>,
        #[serde(default)]
        layers: Option<Vec<Descriptor>>,
        #[serde(default)]
        manifests: Option<Vec<Descriptor>>,
        #[serde(default)]
        subject: Option<Descriptor>,
    }
    let doc: Doc = serde_json::from_slice(document)?;
    let mut out = Vec::new();
    out.extend(doc.config);
    out.extend(doc.layers.unwrap_or_default());
    out.extend(doc.manifests.unwrap_or_default());
    out.extend(doc.subject);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_rank_as_a_host_would_pick_them() {
        let amd64 = Platform::parse("linux/amd64").unwrap();
        let p = |s: &str| Platform::parse(s).unwrap();
        assert_eq!(amd64.rank(Some(&p("linux/amd64"))), Some(0));
        assert_eq!(amd64.rank(Some(&p("linux/amd64/v1"))), Some(1));
        assert_eq!(
            amd64.rank(Some(&p("linux/amd64/v3"))),
            None,
            "needs a v3 host"
        );
        assert_eq!(amd64.rank(Some(&p("linux/arm64"))), None);
        assert_eq!(amd64.rank(None), Some(2), "no platform: accepted last");
        let list = [
            (None, "unlabelled"),
            (Some(p("linux/arm64/v8")), "arm64"),
            (Some(p("linux/amd64")), "amd64"),
        ];
        let pick = |host: &Platform| host.select(list.iter().map(|(p, n)| (p.as_ref(), *n)));
        assert_eq!(pick(&amd64), Some("amd64"));
        assert_eq!(pick(&p("linux/arm64")), Some("arm64"));
        assert_eq!(pick(&p("linux/s390x")), Some("unlabelled"));
        assert_eq!(p("linux/arm/v7").to_string(), "linux/arm/v7");
        assert!(Platform::parse("linux").is_err());
    }

    #[test]
    fn parse_normalises_aliases_for_build_and_pull_alike() {
        let p = |s: &str| Platform::parse(s).unwrap();
        assert_eq!(p("linux/aarch64/v8").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm/v7").variant.as_deref(), Some("v7"));
        assert_eq!(p("linux/x86_64"), p("linux/amd64"));
        assert_eq!(p("linux/armhf").to_string(), "linux/arm/v7");
        assert!(Platform::parse("linux//v7").is_err());
        assert!(Platform::parse("linux/amd64/v1/x").is_err());
        assert!(Platform::host().rank(Some(&Platform::host())) == Some(0));
    }

    #[test]
    fn finds_referenced_descriptors() {
        let d = |n: u8| Digest::of_bytes(&[n]);
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "config": {"mediaType": "c", "digest": d(1).to_string(), "size": 1},
            "layers": [{"mediaType": "l", "digest": d(2).to_string(), "size": 2}]
        });
        let got = referenced_descriptors(manifest.to_string().as_bytes()).unwrap();
        assert_eq!(
            got.iter().map(|x| x.digest.clone()).collect::<Vec<_>>(),
            vec![d(1), d(2)]
        );
        let index = serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "m", "digest": d(3).to_string(), "size": 3,
             "platform": {"architecture": "amd64", "os": "linux"}}]});
        let got = referenced_descriptors(index.to_string().as_bytes()).unwrap();
        assert_eq!(got[0].platform.as_ref().unwrap().architecture, "amd64");
        assert!(referenced_descriptors(b"not json").is_err());
    }
}
