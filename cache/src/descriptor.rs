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
    /// Alternative locations of the blob (foreign layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
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
        }
    }

    /// The value of one annotation, if present.
    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// The platform an image runs on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// CPU architecture in Go's naming (`amd64`, `arm64` ...).
    pub architecture: String,
    /// Operating system (`linux`).
    pub os: String,
    /// CPU variant (`v8`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// OS version (Windows only).
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

impl Platform {
    /// The platform of the running machine, in Go's naming.
    pub fn host() -> Platform {
        let architecture = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        Platform {
            architecture: architecture.to_string(),
            os: "linux".to_string(),
            variant: None,
            os_version: None,
        }
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
