//! The image documents every crate reads and writes: media types, the image manifest and the
//! index (OCI, and Docker schema 2 / manifest list, which share the JSON shapes). One definition
//! for the store, the engine's exporters and loaders, and the registry client.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::descriptor::Descriptor;

/// The media types of image documents and layers.
pub mod media_types {
    /// OCI image manifest.
    pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// OCI image index.
    pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// OCI image config.
    pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
    /// OCI uncompressed layer.
    pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
    /// OCI gzip layer.
    pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
    /// OCI zstd layer.
    pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
    /// Docker schema2 manifest.
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
    /// Docker manifest list.
    pub const DOCKER_MANIFEST_LIST: &str =
        "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker image config.
    pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
    /// Docker gzip layer.
    pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
    /// Docker uncompressed layer.
    pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";

    /// Whether `mt` names a single-platform manifest.
    pub fn is_manifest(mt: &str) -> bool {
        mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
    }

    /// Whether `mt` names an index / manifest list.
    pub fn is_index(mt: &str) -> bool {
        mt == OCI_INDEX || mt == DOCKER_MANIFEST_LIST
    }
}

/// An image (or artifact) manifest: a config blob and an ordered list of layer blobs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// Always 2.
    pub schema_version: u32,
    /// The manifest's own media type, when the document states it (Docker always does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type, for non-image artifacts (the registry build cache).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The config blob.
    pub config: Descriptor,
    /// Layer blobs, bottom first (`null` reads as none).
    #[serde(default, deserialize_with = "null_as_default")]
    pub layers: Vec<Descriptor>,
    /// The manifest this one refers to (referrers API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index / manifest list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// Always 2.
    pub schema_version: u32,
    /// The index's own media type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// Artifact type, for non-image artifacts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// The manifests (`null` reads as none).
    #[serde(default, deserialize_with = "null_as_default")]
    pub manifests: Vec<Descriptor>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Index {
    /// An OCI index of `manifests`.
    pub fn new(manifests: Vec<Descriptor>) -> Self {
        Index {
            schema_version: 2,
            media_type: Some(media_types::OCI_INDEX.to_string()),
            artifact_type: None,
            manifests,
            annotations: None,
        }
    }
}

/// Serde helper: a `null` list (or map) reads as empty, as Docker writes some.
pub fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}
