//! `builder load`: docker-archives (`docker save` output: `manifest.json` with `<id>/layer.tar`
//! directories, or the newer layout whose `manifest.json` points into `blobs/sha256/`) and OCI
//! layouts (as a tar or a directory) into the content store, with names into the image store.
//!
//! The pre-1.10 format (only `repositories` and `<id>/json` chains) is read too.
//!
//! The archive is read in one pass: blobs stream straight into the content store (checked
//! against their file names under `blobs/sha256/`), small metadata files stay in memory,
//! symlinks and hardlinks are remembered and followed. Every layer's diff id is checked
//! against the config before the image is recorded. Names come from `RepoTags`, or from the
//! `io.containerd.image.name` / `org.opencontainers.image.ref.name` annotations of an OCI index.

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::Path;

use cache::{ContentStore, Descriptor, Digest, ImageRecord, ImageStore, Platform, Reference};
use serde::Deserialize;

use super::oci::{CONTAINERD_NAME_ANNOTATION, REF_NAME_ANNOTATION};
use super::{io_err, ExportError};
use crate::compression::decompress;
use crate::fileops::archive::{expansion_limit, LimitedReader};
use crate::fileops::root::open_file_beneath;
use crate::image::{layer_diff_id, media_types, read_image, ImageConfig, Index, Manifest};

const MAX_METADATA: u64 = 16 << 20;

/// An image that `load` put into the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadedImage {
    /// Its manifest.
    pub manifest: Descriptor,
    /// Its id (config digest).
    pub config: Digest,
    /// The names now pointing at it.
    pub names: Vec<Reference>,
}

enum Item {
    Bytes(Vec<u8>),
    Blob(Digest, u64),
    Link(String),
}

#[derive(Default)]
struct Collected {
    items: BTreeMap<String, Item>,
}

impl Collected {
    fn resolve(&self, path: &str) -> Result<&Item, ExportError> {
        let mut p =
            normalise(path).ok_or_else(|| ExportError::BadArchive(format!("bad path {path:?}")))?;
        for _ in 0..16 {
            match self.items.get(&p) {
                Some(Item::Link(target)) => p = target.clone(),
                Some(item) => return Ok(item),
                None => {
                    return Err(ExportError::BadArchive(format!(
                        "archive has no file {path:?}"
                    )))
                }
            }
        }
        Err(ExportError::BadArchive(format!(
            "too many links resolving {path:?}"
        )))
    }

    fn has(&self, path: &str) -> bool {
        self.resolve(path).is_ok()
    }

    fn bytes(&self, cas: &ContentStore, path: &str) -> Result<Vec<u8>, ExportError> {
        match self.resolve(path)? {
            Item::Bytes(b) => Ok(b.clone()),
            Item::Blob(d, _) => Ok(cas.read(d)?),
            Item::Link(_) => Err(ExportError::BadArchive(format!("unresolved link {path:?}"))),
        }
    }

    fn blob(&self, cas: &ContentStore, path: &str) -> Result<(Digest, u64), ExportError> {
        match self.resolve(path)? {
            Item::Bytes(b) => Ok((cas.put_bytes(b)?, b.len() as u64)),
            Item::Blob(d, s) => Ok((d.clone(), *s)),
            Item::Link(_) => Err(ExportError::BadArchive(format!("unresolved link {path:?}"))),
        }
    }

    /// Stores one regular file: OCI blobs checked against their names, metadata in memory,
    /// anything else (layer tars) into the content store.
    fn add_file(
        &mut self,
        cas: &ContentStore,
        path: String,
        size: u64,
        data: impl Read,
    ) -> Result<(), ExportError> {
        let base = path.rsplit('/').next().unwrap_or(&path);
        let expected = path
            .strip_prefix("blobs/sha256/")
            .and_then(|hex| Digest::from_hex(hex).ok());
        let is_metadata = expected.is_none()
            && size <= MAX_METADATA
            && (base.ends_with(".json")
                || matches!(base, "json" | "VERSION" | "repositories" | "oci-layout"));
        let item = if is_metadata {
            let mut buf = Vec::with_capacity(size as usize);
            let mut data = data;
            data.read_to_end(&mut buf)
                .map_err(io_err("read archive entry", Path::new(&path)))?;
            Item::Bytes(buf)
        } else if let Some(d) = expected.clone().filter(|d| cas.has(d)) {
            // Already stored: the archive's copy is never used, so skip writing it.
            let mut data = data;
            io::copy(&mut data, &mut io::sink())
                .map_err(io_err("read archive entry", Path::new(&path)))?;
            let n = cas.size(&d)?;
            Item::Blob(d, n)
        } else {
            let (d, n) = cas.put_reader(data, expected.as_ref())?;
            Item::Blob(d, n)
        };
        self.items.insert(path, item);
        Ok(())
    }
}

fn normalise(p: &str) -> Option<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

fn join_relative(entry_path: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return normalise(target);
    }
    let dir = entry_path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    normalise(&format!("{dir}/{target}"))
}

/// Loads a docker-archive or OCI layout tar (optionally compressed) from `input`.
pub fn load_archive(
    cas: &ContentStore,
    store: &ImageStore,
    input: impl Read,
) -> Result<Vec<LoadedImage>, ExportError> {
    let (_, reader) = decompress(io::BufReader::with_capacity(256 * 1024, input))
        .map_err(io_err("read", Path::new("<archive>")))?;
    // A compressed archive that expands without end would fill the content store.
    let limit = expansion_limit(cas.root()).map_err(|e| ExportError::BadArchive(e.to_string()))?;
    let mut ar = tar::Archive::new(LimitedReader::new(reader, limit));
    let mut c = Collected::default();
    let rerr = io_err("read archive", Path::new("<archive>"));
    for entry in ar.entries().map_err(rerr)? {
        let entry = entry.map_err(io_err("read archive", Path::new("<archive>")))?;
        let raw = entry.path_bytes();
        let Some(path) = std::str::from_utf8(&raw).ok().and_then(normalise) else {
            continue;
        };
        match entry.header().entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                c.add_file(cas, path, size, entry)?;
            }
            tar::EntryType::Symlink => {
                if let Some(t) = entry
                    .link_name_bytes()
                    .and_then(|t| String::from_utf8(t.into_owned()).ok())
                {
                    if let Some(target) = join_relative(&path, &t) {
                        c.items.insert(path, Item::Link(target));
                    }
                }
            }
            tar::EntryType::Link => {
                if let Some(t) = entry
                    .link_name_bytes()
                    .and_then(|t| String::from_utf8(t.into_owned()).ok())
                {
                    if let Some(target) = normalise(&t) {
                        c.items.insert(path, Item::Link(target));
                    }
                }
            }
            _ => {}
        }
    }
    ingest(cas, store, &c)
}

/// Loads an OCI layout (or an unpacked docker-archive) from a directory.
///
/// Nothing outside `dir` is read: the walk does not follow symlinks, a symlink inside the layout
/// is recorded as a link and resolved among the layout's own files (as in an archive), and every
/// file is opened relative to `dir` with no symlink followed on the way
/// ([`open_file_beneath`]), so a link or a directory swapped for one cannot lead out.
pub fn load_oci_layout_dir(
    cas: &ContentStore,
    store: &ImageStore,
    dir: &Path,
) -> Result<Vec<LoadedImage>, ExportError> {
    ingest(cas, store, &collect_dir(cas, dir)?)
}

/// Stores the images of the OCI layout `dir` without giving them the names its index carries
/// (their `names` are what the index says): `--build-context NAME=oci-layout://DIR` reads an
/// image from a layout without adding names to the store, as BuildKit. Read as
/// [`load_oci_layout_dir`] reads.
pub fn import_oci_layout_dir(
    cas: &ContentStore,
    store: &ImageStore,
    dir: &Path,
) -> Result<Vec<LoadedImage>, ExportError> {
    let c = collect_dir(cas, dir)?;
    if !c.has("index.json") {
        return Err(ExportError::BadArchive(
            "not an OCI layout (no index.json)".to_string(),
        ));
    }
    ingest_oci(cas, store, &c, false)
}

/// The files of `dir`, blobs written to `cas`, reading nothing outside it.
fn collect_dir(cas: &ContentStore, dir: &Path) -> Result<Collected, ExportError> {
    let mut c = Collected::default();
    for entry in walkdir::WalkDir::new(dir).follow_links(false) {
        let entry = entry.map_err(|e| {
            let p = e.path().unwrap_or(dir).to_path_buf();
            io_err("walk", &p)(e.into())
        })?;
        let ft = entry.file_type();
        if entry.depth() == 0 || !(ft.is_file() || ft.is_symlink()) {
            continue;
        }
        let Ok(rel_path) = entry.path().strip_prefix(dir) else {
            continue;
        };
        let Some(rel) = rel_path.to_str().and_then(normalise) else {
            continue;
        };
        if ft.is_symlink() {
            let target =
                std::fs::read_link(entry.path()).map_err(io_err("read link", entry.path()))?;
            if let Some(target) = target.to_str().and_then(|t| join_relative(&rel, t)) {
                c.items.insert(rel, Item::Link(target));
            }
            continue;
        }
        let f = open_file_beneath(dir, rel_path).map_err(io_err("open", entry.path()))?;
        let size = f.metadata().map_err(io_err("stat", entry.path()))?.len();
        c.add_file(cas, rel, size, io::BufReader::new(f))?;
    }
    Ok(c)
}

fn ingest(
    cas: &ContentStore,
    store: &ImageStore,
    c: &Collected,
) -> Result<Vec<LoadedImage>, ExportError> {
    if c.has("manifest.json") {
        ingest_docker(cas, store, c)
    } else if c.has("index.json") {
        ingest_oci(cas, store, c, true)
    } else if c.has("repositories") {
        ingest_legacy(cas, store, c)
    } else {
        Err(ExportError::BadArchive(
            "neither a docker-archive (manifest.json) nor an OCI layout (index.json)".to_string(),
        ))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

fn ingest_docker(
    cas: &ContentStore,
    store: &ImageStore,
    c: &Collected,
) -> Result<Vec<LoadedImage>, ExportError> {
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&c.bytes(cas, "manifest.json")?)
        .map_err(|e| ExportError::BadArchive(format!("manifest.json: {e}")))?;
    let mut loaded = Vec::new();
    for e in entries {
        let config_bytes = c.bytes(cas, &e.config)?;
        let layers = e
            .layers
            .iter()
            .map(|p| c.blob(cas, p))
            .collect::<Result<Vec<_>, _>>()?;
        let names = e
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        loaded.push(record_image(
            cas,
            store,
            &e.config,
            config_bytes,
            layers,
            names,
        )?);
    }
    Ok(loaded)
}

/// Checks every layer's diff id against the config, writes an OCI manifest and records the
/// image under `names`.
fn record_image(
    cas: &ContentStore,
    store: &ImageStore,
    what: &str,
    config_bytes: Vec<u8>,
    layer_blobs: Vec<(Digest, u64)>,
    names: Vec<Reference>,
) -> Result<LoadedImage, ExportError> {
    let config: ImageConfig = serde_json::from_slice(&config_bytes)
        .map_err(|err| ExportError::BadArchive(format!("{what}: {err}")))?;
    if config.rootfs.diff_ids.len() != layer_blobs.len() {
        return Err(ExportError::BadArchive(format!(
            "{what} lists {} diff ids but the archive has {} layers",
            config.rootfs.diff_ids.len(),
            layer_blobs.len()
        )));
    }
    let config_digest = cas.put_bytes(&config_bytes)?;
    let mut layers = Vec::new();
    for ((digest, size), diff_id) in layer_blobs.into_iter().zip(&config.rootfs.diff_ids) {
        let (actual, compression) = layer_diff_id(cas, &digest)?;
        if &actual != diff_id {
            return Err(ExportError::DiffIdMismatch {
                layer: digest,
                expected: diff_id.clone(),
                actual,
            });
        }
        let media_type = compression.oci_layer_media_type().ok_or_else(|| {
            ExportError::BadArchive(format!(
                "layer {digest} is compressed with {compression:?}, which image layers cannot use"
            ))
        })?;
        layers.push(Descriptor::new(media_type, digest, size));
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(media_types::OCI_MANIFEST.to_string()),
        artifact_type: None,
        subject: None,
        config: Descriptor::new(
            media_types::OCI_CONFIG,
            config_digest.clone(),
            config_bytes.len() as u64,
        ),
        layers,
        annotations: None,
    };
    let manifest_bytes = serde_json::to_vec(&manifest)
        .map_err(|err| ExportError::BadArchive(format!("serialise manifest: {err}")))?;
    let md = cas.put_bytes(&manifest_bytes)?;
    let desc = Descriptor::new(media_types::OCI_MANIFEST, md, manifest_bytes.len() as u64);
    store.put_and_tag(
        ImageRecord::new(desc.clone(), config_digest.clone()),
        &names,
    )?;
    Ok(LoadedImage {
        manifest: desc,
        config: config_digest,
        names,
    })
}

/// The pre-1.10 docker-archive: no `manifest.json`; `repositories` maps names to a top layer
/// id, each `<id>/json` is a v1 image description with a `parent`, each `<id>/layer.tar` a layer.
/// The config is rebuilt the way Docker does it: the top v1 JSON without the v1 chain fields,
/// plus `rootfs` (the layers' diff ids, root first) and one history entry per layer.
fn ingest_legacy(
    cas: &ContentStore,
    store: &ImageStore,
    c: &Collected,
) -> Result<Vec<LoadedImage>, ExportError> {
    let repos: BTreeMap<String, BTreeMap<String, String>> =
        serde_json::from_slice(&c.bytes(cas, "repositories")?)
            .map_err(|e| ExportError::BadArchive(format!("repositories: {e}")))?;
    let mut tops: BTreeMap<String, Vec<Reference>> = BTreeMap::new();
    for (repo, tags) in &repos {
        for (tag, id) in tags {
            let name = Reference::parse(&format!("{repo}:{tag}"))?;
            tops.entry(id.clone()).or_default().push(name);
        }
    }
    let mut loaded = Vec::new();
    for (top, names) in tops {
        let mut chain: Vec<serde_json::Map<String, serde_json::Value>> = Vec::new();
        let mut ids = Vec::new();
        let mut next = Some(top.clone());
        while let Some(id) = next {
            if ids.contains(&id) || ids.len() > 1000 {
                return Err(ExportError::BadArchive(format!(
                    "layer {id} has a parent loop"
                )));
            }
            let json: serde_json::Map<String, serde_json::Value> =
                serde_json::from_slice(&c.bytes(cas, &format!("{id}/json"))?)
                    .map_err(|e| ExportError::BadArchive(format!("{id}/json: {e}")))?;
            next = json
                .get("parent")
                .and_then(|p| p.as_str())
                .filter(|p| !p.is_empty())
                .map(str::to_string);
            ids.push(id);
            chain.push(json);
        }
        ids.reverse();
        chain.reverse();
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        let mut history = Vec::new();
        for (id, json) in ids.iter().zip(&chain) {
            let (digest, size) = c.blob(cas, &format!("{id}/layer.tar"))?;
            diff_ids.push(serde_json::Value::String(
                layer_diff_id(cas, &digest)?.0.to_string(),
            ));
            layers.push((digest, size));
            let cmd = json
                .get("container_config")
                .and_then(|cc| cc.get("Cmd"))
                .and_then(|c| c.as_array())
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let mut h = serde_json::Map::new();
            for key in ["created", "author", "comment"] {
                if let Some(v) = json
                    .get(key)
                    .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()))
                {
                    h.insert(key.to_string(), v.clone());
                }
            }
            if !cmd.is_empty() {
                h.insert("created_by".to_string(), serde_json::Value::String(cmd));
            }
            history.push(serde_json::Value::Object(h));
        }
        let mut config = chain.pop().unwrap_or_default();
        for key in ["id", "parent", "Size", "parent_id", "layer_id", "throwaway"] {
            config.remove(key);
        }
        config.insert(
            "rootfs".into(),
            serde_json::json!({ "type": "layers", "diff_ids": diff_ids }),
        );
        config.insert("history".into(), serde_json::Value::Array(history));
        let config_bytes = serde_json::to_vec(&config)
            .map_err(|e| ExportError::BadArchive(format!("serialise config: {e}")))?;
        loaded.push(record_image(
            cas,
            store,
            &format!("{top}/json"),
            config_bytes,
            layers,
            names,
        )?);
    }
    Ok(loaded)
}

fn ingest_oci(
    cas: &ContentStore,
    store: &ImageStore,
    c: &Collected,
    tag: bool,
) -> Result<Vec<LoadedImage>, ExportError> {
    let index: Index = serde_json::from_slice(&c.bytes(cas, "index.json")?)
        .map_err(|e| ExportError::BadArchive(format!("index.json: {e}")))?;
    let mut by_manifest: BTreeMap<Digest, LoadedImage> = BTreeMap::new();
    let mut order = Vec::new();
    for desc in &index.manifests {
        if !cas.has(&desc.digest) {
            return Err(ExportError::BadArchive(format!(
                "index.json names {} but the archive lacks it",
                desc.digest
            )));
        }
        let image = read_image(cas, &desc.digest, &Platform::host())?;
        for blob in std::iter::once(&image.manifest.config).chain(&image.manifest.layers) {
            if !cas.has(&blob.digest) {
                return Err(ExportError::BadArchive(format!(
                    "the archive lacks blob {}",
                    blob.digest
                )));
            }
        }
        let name = match (
            desc.annotation(CONTAINERD_NAME_ANNOTATION),
            desc.annotation(REF_NAME_ANNOTATION),
        ) {
            (Some(full), _) => Some(Reference::parse(full)?),
            // A bare tag names no repository; only a full reference is a usable name.
            (None, Some(r)) if r.contains(['/', ':']) => Some(Reference::parse(r)?),
            _ => None,
        };
        let key = image.manifest_descriptor.digest.clone();
        let entry = by_manifest.entry(key.clone()).or_insert_with(|| {
            order.push(key);
            LoadedImage {
                manifest: image.manifest_descriptor.clone(),
                config: image.id().clone(),
                names: Vec::new(),
            }
        });
        if let Some(n) = name {
            if !entry.names.contains(&n) {
                entry.names.push(n);
            }
        }
    }
    let mut loaded = Vec::new();
    for key in order {
        if let Some(l) = by_manifest.remove(&key) {
            let record = ImageRecord::new(l.manifest.clone(), l.config.clone());
            if tag {
                store.put_and_tag(record, &l.names)?;
            } else {
                store.put(record)?;
            }
            loaded.push(l);
        }
    }
    Ok(loaded)
}
