//! The manifest formats the client reads and writes: OCI image manifest and index, Docker
//! schema 2 manifest and manifest list (same JSON shapes, different media types), and the
//! platform choice an index requires.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// OCI image manifest media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// OCI image index media type.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema 2 manifest media type.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker manifest list media type.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image config media type.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// Docker image config media type.
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
/// OCI gzip layer media type.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Docker gzip layer media type.
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The `Accept` header value for manifest requests: every format this client understands.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// Whether a media type is a list of manifests (OCI index or Docker manifest list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether a media type is a single image manifest (OCI or Docker schema 2).
pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// A content descriptor: what a blob is, its digest and size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// The blob's media type.
    pub media_type: String,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
    /// Alternative download locations (foreign layers); kept, not used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform of a manifest listed in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// The artifact type of a manifest listed in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor with just media type, digest and size.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
            urls: Vec::new(),
            annotations: BTreeMap::new(),
            platform: None,
            artifact_type: None,
        }
    }

    /// The descriptor of `bytes` under `media_type`.
    pub fn of_bytes(media_type: impl Into<String>, bytes: &[u8]) -> Descriptor {
        Descriptor::new(media_type, Digest::of_bytes(bytes), bytes.len() as u64)
    }
}

/// An image (or artifact) manifest: a config blob and an ordered list of layer blobs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// Media type, when the document states it (Docker always does, OCI usually).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type for non-image artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// The layer blobs, base first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (referrers API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// An OCI index or Docker manifest list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// Media type, when the document states it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type for non-image artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The listed manifests.
    pub manifests: Vec<Descriptor>,
    /// Free-form annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The platform type shared with the image store.
pub use cache::Platform;

/// The entry of an index that best fits `wanted` (see [`Platform::rank`]), first listed among
/// equals.
pub fn select_manifest<'a>(
    wanted: &Platform,
    manifests: &'a [Descriptor],
) -> Option<&'a Descriptor> {
    wanted.select(manifests.iter().map(|d| (d.platform.as_ref(), d)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(platform: &str, byte: u8) -> Descriptor {
        let mut d = Descriptor::of_bytes(OCI_MANIFEST, &[byte]);
        d.platform = Platform::parse(platform).ok();
        d
    }

    #[test]
    fn selects_platform_with_variant_rules() {
        let list = vec![
            listed("linux/arm/v6", 1),
            listed("linux/arm/v7", 2),
            listed("linux/arm64/v8", 3),
            listed("linux/amd64", 4),
            listed("windows/amd64", 5),
        ];
        let pick = |p: &str| {
            select_manifest(&Platform::parse(p).unwrap(), &list).map(|d| d.digest.clone())
        };
        assert_eq!(pick("linux/amd64"), Some(list[3].digest.clone()));
        assert_eq!(pick("linux/arm64"), Some(list[2].digest.clone()));
        assert_eq!(pick("linux/arm/v7"), Some(list[1].digest.clone()));
        assert_eq!(pick("linux/arm/v6"), Some(list[0].digest.clone()));
        assert_eq!(pick("linux/s390x"), None);
        let only_v6 = vec![listed("linux/arm/v6", 1)];
        assert!(select_manifest(&Platform::parse("linux/arm/v7").unwrap(), &only_v6).is_some());
        assert!(select_manifest(&Platform::parse("linux/arm/v5").unwrap(), &only_v6).is_none());
        let amd_v1 = vec![listed("linux/amd64/v1", 1)];
        assert!(select_manifest(&Platform::parse("linux/amd64").unwrap(), &amd_v1).is_some());
    }

    #[test]
    fn docker_and_oci_manifests_parse() {
        let json = format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}","config":{{"mediaType":"{DOCKER_CONFIG}","size":2,"digest":"{}"}},"layers":[]}}"#,
            Digest::of_bytes(b"{}")
        );
        let m: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(m.config.size, 2);
        assert!(is_manifest(m.media_type.as_deref().unwrap()));
    }
}
