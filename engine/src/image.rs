//! Image documents: the config (OCI plus the Docker fields), manifest and index, history entries,
//! and helpers to write an image into the content store and read it back.
//!
//! Why hand-written serde types rather than `oci-spec`: the OCI config type has no place for the
//! Docker fields a Dockerfile sets and `docker inspect` shows (`Healthcheck`, `OnBuild`, `Shell`,
//! `ArgsEscaped`), and reading configs written by Docker needs tolerance for `null` lists and
//! unknown fields (kept in `extra` so nothing is lost). The field names and media types follow
//! the OCI image spec and Docker's image spec v1.2; Docker schema2 manifests and manifest lists
//! are read as their OCI equivalents (same shape, other media types).

use std::collections::BTreeMap;
use std::io::{self, BufReader, Read};

use cache::{CasError, ContentStore, Descriptor, Digest, Platform};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::compression::{decompress, Compression};
use cache::manifest::null_as_default;
pub use cache::manifest::{media_types, Index, Manifest};

/// Errors reading or writing image documents.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The content store failed.
    #[error(transparent)]
    Cas(#[from] CasError),
    /// A document is not valid JSON of the expected shape.
    #[error("invalid {what} {digest}: {source}")]
    Json {
        /// Which document (manifest, config, index).
        what: &'static str,
        /// Its digest.
        digest: Digest,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A document could not be serialised.
    #[error("serialise {what}: {source}")]
    Serialise {
        /// Which document.
        what: &'static str,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// A media type this project cannot handle.
    #[error("unsupported media type {media_type:?} for {digest}")]
    UnsupportedMediaType {
        /// The media type.
        media_type: String,
        /// The blob.
        digest: Digest,
    },
    /// An index has no manifest for the wanted platform.
    #[error("index {index} has no manifest for {os}/{architecture}")]
    NoMatchingPlatform {
        /// The index.
        index: Digest,
        /// Wanted OS.
        os: String,
        /// Wanted architecture.
        architecture: String,
    },
    /// The config's diff ids and the manifest's layers disagree.
    #[error("image {manifest} has {layers} layers but its config lists {diff_ids} diff ids")]
    LayerCountMismatch {
        /// The manifest.
        manifest: Digest,
        /// Number of layers in the manifest.
        layers: usize,
        /// Number of diff ids in the config.
        diff_ids: usize,
    },
    /// Reading a layer failed.
    #[error("read layer {digest}: {source}")]
    LayerIo {
        /// The layer blob.
        digest: Digest,
        /// The error.
        source: io::Error,
    },
}

/// The image configuration (`application/vnd.oci.image.config.v1+json`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// When the image was created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// Who made it (`MAINTAINER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// CPU architecture (`amd64`).
    #[serde(default)]
    pub architecture: String,
    /// Operating system (`linux`).
    #[serde(default)]
    pub os: String,
    /// CPU variant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The runtime defaults for containers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<ContainerConfig>,
    /// The layer diff ids, bottom first.
    #[serde(default)]
    pub rootfs: RootFs,
    /// One entry per Dockerfile step, oldest first.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
    /// Fields this project does not interpret (`docker_version`, `container_config` ...).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// The runtime defaults of a container (`config` in the image config; Docker's field names).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    /// `USER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// `EXPOSE`: `"80/tcp" → {}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
    /// `ENV`, as `K=V`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<String>>,
    /// `ENTRYPOINT`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    /// `CMD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `VOLUME`: `"/data" → {}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volumes: Option<BTreeMap<String, serde_json::Value>>,
    /// `WORKDIR`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    /// `LABEL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// `STOPSIGNAL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    /// Docker: whether `Cmd`/`Entrypoint` are already escaped (Windows shell form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// Docker: `HEALTHCHECK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<HealthConfig>,
    /// Docker: `ONBUILD` triggers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    /// Docker: `SHELL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    /// Fields this project does not interpret (`Hostname`, `Image` ... from Docker).
    #[serde(flatten)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// Docker's `HEALTHCHECK` settings; durations in nanoseconds as Docker stores them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["NONE"]`, `["CMD", ...]` or `["CMD-SHELL", cmd]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<Vec<String>>,
    /// `--interval`, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<i64>,
    /// `--timeout`, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
    /// `--start-period`, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<i64>,
    /// `--start-interval`, ns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_interval: Option<i64>,
    /// `--retries`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<i64>,
}

/// The layer list of an image config.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Digests of the uncompressed layer tars, bottom first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff_ids: Vec<Digest>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".to_string(),
            diff_ids: Vec::new(),
        }
    }
}

/// One build step in the image history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// When the step ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<DateTime<Utc>>,
    /// The instruction (`RUN /bin/sh -c make # buildkit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// Who.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// True when the step produced no layer (ENV, CMD ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
}

impl History {
    /// A history entry for a step.
    pub fn new(
        created: Option<DateTime<Utc>>,
        created_by: impl Into<String>,
        empty_layer: bool,
    ) -> Self {
        History {
            created,
            created_by: Some(created_by.into()),
            author: None,
            comment: None,
            empty_layer: empty_layer.then_some(true),
        }
    }

    /// Whether the entry has no layer.
    pub fn is_empty_layer(&self) -> bool {
        self.empty_layer == Some(true)
    }
}

/// A layer as the image writer needs it: the blob's descriptor and its diff id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// The (possibly compressed) blob.
    pub descriptor: Descriptor,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
}

/// An image read from (or just written to) the content store.
#[derive(Clone, Debug, PartialEq)]
pub struct Image {
    /// The manifest's descriptor (the image's identity in the store).
    pub manifest_descriptor: Descriptor,
    /// The manifest.
    pub manifest: Manifest,
    /// The config.
    pub config: ImageConfig,
}

impl Image {
    /// The image id: the config digest.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }

    /// The layers with their diff ids, bottom first.
    pub fn layers(&self) -> Vec<LayerInfo> {
        self.manifest
            .layers
            .iter()
            .zip(&self.config.rootfs.diff_ids)
            .map(|(d, id)| LayerInfo {
                descriptor: d.clone(),
                diff_id: id.clone(),
            })
            .collect()
    }
}

/// Writes `config` (its `rootfs` filled from `layers`) and an OCI manifest into the store.
/// The layer blobs must already be in the store.
pub fn write_image(
    cas: &ContentStore,
    config: &ImageConfig,
    layers: &[LayerInfo],
) -> Result<Image, ImageError> {
    let mut config = config.clone();
    config.rootfs = RootFs {
        kind: "layers".to_string(),
        diff_ids: layers.iter().map(|l| l.diff_id.clone()).collect(),
    };
    let config_bytes = serde_json::to_vec(&config).map_err(|source| ImageError::Serialise {
        what: "config",
        source,
    })?;
    let config_digest = cas.put_bytes(&config_bytes)?;
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_types::OCI_MANIFEST.to_string()),
        artifact_type: None,
        subject: None,
        config: Descriptor::new(
            media_types::OCI_CONFIG,
            config_digest,
            config_bytes.len() as u64,
        ),
        layers: layers.iter().map(|l| l.descriptor.clone()).collect(),
        annotations: None,
    };
    let manifest_bytes = serde_json::to_vec(&manifest).map_err(|source| ImageError::Serialise {
        what: "manifest",
        source,
    })?;
    let manifest_digest = cas.put_bytes(&manifest_bytes)?;
    Ok(Image {
        manifest_descriptor: Descriptor::new(
            media_types::OCI_MANIFEST,
            manifest_digest,
            manifest_bytes.len() as u64,
        ),
        manifest,
        config,
    })
}

/// Reads a JSON document from the store.
pub fn read_json<T: serde::de::DeserializeOwned>(
    cas: &ContentStore,
    digest: &Digest,
    what: &'static str,
) -> Result<T, ImageError> {
    let bytes = cas.read(digest)?;
    serde_json::from_slice(&bytes).map_err(|source| ImageError::Json {
        what,
        digest: digest.clone(),
        source,
    })
}

/// The media type a manifest-or-index blob declares (its `mediaType` field, or by shape).
pub fn sniff_document_type(cas: &ContentStore, digest: &Digest) -> Result<String, ImageError> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        config: Option<serde_json::Value>,
    }
    let p: Probe = read_json(cas, digest, "manifest")?;
    Ok(match (p.media_type, p.manifests, p.config) {
        (Some(mt), _, _) => mt,
        (None, Some(_), _) => media_types::OCI_INDEX.to_string(),
        (None, None, _) => media_types::OCI_MANIFEST.to_string(),
    })
}

/// Picks the manifest for `platform` from an index: same os/architecture, the best compatible
/// variant (see [`Platform::rank`]), an entry without a platform last.
pub fn select_manifest<'a>(index: &'a Index, platform: &Platform) -> Option<&'a Descriptor> {
    platform.select(
        index
            .manifests
            .iter()
            .filter(|d| media_types::is_manifest(&d.media_type))
            .map(|d| (d.platform.as_ref(), d)),
    )
}

/// Reads the image at `digest` (a manifest, or an index resolved for `platform`).
pub fn read_image(
    cas: &ContentStore,
    digest: &Digest,
    platform: &Platform,
) -> Result<Image, ImageError> {
    let mt = sniff_document_type(cas, digest)?;
    let size = cas.size(digest)?;
    if media_types::is_index(&mt) {
        let index: Index = read_json(cas, digest, "index")?;
        let chosen =
            select_manifest(&index, platform).ok_or_else(|| ImageError::NoMatchingPlatform {
                index: digest.clone(),
                os: platform.os.clone(),
                architecture: platform.architecture.clone(),
            })?;
        return read_image(cas, &chosen.digest.clone(), platform);
    }
    if !media_types::is_manifest(&mt) {
        return Err(ImageError::UnsupportedMediaType {
            media_type: mt,
            digest: digest.clone(),
        });
    }
    let manifest: Manifest = read_json(cas, digest, "manifest")?;
    let config: ImageConfig = read_json(cas, &manifest.config.digest, "config")?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(ImageError::LayerCountMismatch {
            manifest: digest.clone(),
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    Ok(Image {
        manifest_descriptor: Descriptor::new(mt, digest.clone(), size),
        manifest,
        config,
    })
}

/// Opens a layer blob as an uncompressed tar stream.
pub fn open_layer(cas: &ContentStore, digest: &Digest) -> Result<Box<dyn Read>, ImageError> {
    let f = BufReader::with_capacity(256 * 1024, cas.open_blob(digest)?);
    let (_, r) = decompress(f).map_err(|source| ImageError::LayerIo {
        digest: digest.clone(),
        source,
    })?;
    Ok(r)
}

/// A layer's size as Docker counts it (`docker images`, `docker history`): the bytes of its
/// regular files, read from the decompressed tar.
pub fn layer_content_size(cas: &ContentStore, digest: &Digest) -> Result<u64, ImageError> {
    let io_err = |source| ImageError::LayerIo {
        digest: digest.clone(),
        source,
    };
    let mut archive = tar::Archive::new(open_layer(cas, digest)?);
    let mut size = 0;
    for entry in archive.entries().map_err(io_err)? {
        let entry = entry.map_err(io_err)?;
        if entry.header().entry_type().is_file() {
            size += entry.header().size().map_err(io_err)?;
        }
    }
    Ok(size)
}

/// The diff id of a layer blob (sha256 of its uncompressed tar) and its compression.
pub fn layer_diff_id(
    cas: &ContentStore,
    digest: &Digest,
) -> Result<(Digest, Compression), ImageError> {
    let f = BufReader::with_capacity(256 * 1024, cas.open_blob(digest)?);
    let le = |source| ImageError::LayerIo {
        digest: digest.clone(),
        source,
    };
    let (c, r) = decompress(f).map_err(le)?;
    if c == Compression::None {
        return Ok((digest.clone(), c));
    }
    Ok((Digest::of_reader(r).map_err(le)?, c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let cas = ContentStore::open(dir.path()).unwrap();
        let layer = b"not really a tar but bytes";
        let ld = cas.put_bytes(layer).unwrap();
        let layers = vec![LayerInfo {
            descriptor: Descriptor::new(media_types::OCI_LAYER, ld.clone(), layer.len() as u64),
            diff_id: ld,
        }];
        let config = ImageConfig {
            architecture: "amd64".into(),
            os: "linux".into(),
            config: Some(ContainerConfig {
                cmd: Some(vec!["sh".into()]),
                healthcheck: Some(HealthConfig {
                    test: Some(vec!["CMD".into(), "true".into()]),
                    interval: Some(30_000_000_000),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            history: vec![History::new(None, "COPY x /", false)],
            ..Default::default()
        };
        let img = write_image(&cas, &config, &layers).unwrap();
        let back = read_image(&cas, &img.manifest_descriptor.digest, &Platform::host()).unwrap();
        assert_eq!(back, img);
        assert_eq!(back.layers(), layers);

        // An index resolves to its manifest.
        let mut d = img.manifest_descriptor.clone();
        d.platform = Some(Platform::host());
        let index = serde_json::to_vec(&Index::new(vec![d])).unwrap();
        let idx = cas.put_bytes(&index).unwrap();
        assert_eq!(read_image(&cas, &idx, &Platform::host()).unwrap(), img);
    }

    #[test]
    fn reads_docker_config_with_nulls_and_extras() {
        let json = r#"{"architecture":"amd64","os":"linux","docker_version":"20.10.5",
          "config":{"Hostname":"","Env":null,"Cmd":["sh"],"Labels":null,"OnBuild":null,"Image":"sha256:x"},
          "rootfs":{"type":"layers","diff_ids":null},"history":null,
          "created":"2024-01-02T03:04:05.123456789Z"}"#;
        let c: ImageConfig = serde_json::from_str(json).unwrap();
        assert_eq!(
            c.config.as_ref().unwrap().cmd.as_deref(),
            Some(&["sh".to_string()][..])
        );
        assert!(c.config.as_ref().unwrap().extra.contains_key("Hostname"));
        assert!(c.extra.contains_key("docker_version"));
        assert!(c.rootfs.diff_ids.is_empty());
    }
}
