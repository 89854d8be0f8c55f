//! docker-archive (`-o type=docker`, `builder save --format docker`): the format `docker load`
//! reads. `manifest.json` lists each image's config file, RepoTags and layer tars; `repositories`
//! maps names to the top layer for older readers. Layers are written uncompressed (as `docker
//! save` does), each in `<diff id hex>/layer.tar` with `VERSION` and a v1 `json` beside it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Seek, Write};
use std::path::Path;

use cache::digest::HashingWriter;
use cache::ContentStore;
use serde::Serialize;

use super::{append_blob, append_file, io_err, ExportError, NamedImage};
use crate::compression::{decompress, Compression};

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct ManifestEntry {
    config: String,
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Writes `images` as a docker-archive to `out`; returns `out`.
pub fn write_docker_archive<W: Write>(
    cas: &ContentStore,
    images: &[NamedImage],
    out: W,
) -> Result<W, ExportError> {
    let mut b = tar::Builder::new(out);
    let mut written: BTreeSet<String> = BTreeSet::new();
    let mut manifest = Vec::new();
    let mut repositories: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for named in images {
        let image = &named.image;
        let config_path = format!("{}.json", image.id().hex());
        if written.insert(config_path.clone()) {
            append_blob(&mut b, cas, image.id(), &config_path)?;
        }
        let mut layer_paths = Vec::new();
        let mut parent: Option<String> = None;
        for layer in image.layers() {
            let dir = layer.diff_id.hex().to_string();
            let path = format!("{dir}/layer.tar");
            if written.insert(dir.clone()) {
                append_uncompressed_layer(
                    &mut b,
                    cas,
                    &layer.descriptor.digest,
                    &layer.diff_id,
                    &path,
                )?;
                let version = b"1.0";
                append_file(
                    &mut b,
                    &format!("{dir}/VERSION"),
                    version.len() as u64,
                    &version[..],
                )
                .map_err(io_err("write archive entry", Path::new(&dir)))?;
                let mut v1 = serde_json::json!({ "id": dir, "created": "1970-01-01T00:00:00Z" });
                if let Some(p) = &parent {
                    v1["parent"] = serde_json::Value::String(p.clone());
                }
                let v1 = v1.to_string();
                append_file(
                    &mut b,
                    &format!("{dir}/json"),
                    v1.len() as u64,
                    v1.as_bytes(),
                )
                .map_err(io_err("write archive entry", Path::new(&dir)))?;
            }
            parent = Some(dir);
            layer_paths.push(path);
        }
        let tags: Vec<String> = named
            .names
            .iter()
            .filter(|n| n.tag().is_some())
            .map(|n| n.familiar())
            .collect();
        for n in named.names.iter() {
            if let (Some(tag), Some(top)) = (n.tag(), &parent) {
                repositories
                    .entry(n.familiar_repository())
                    .or_default()
                    .insert(tag.to_string(), top.clone());
            }
        }
        manifest.push(ManifestEntry {
            config: config_path,
            repo_tags: (!tags.is_empty()).then_some(tags),
            layers: layer_paths,
        });
    }
    let manifest = serde_json::to_vec(&manifest)
        .map_err(|e| ExportError::BadArchive(format!("serialise manifest.json: {e}")))?;
    append_file(
        &mut b,
        "manifest.json",
        manifest.len() as u64,
        &manifest[..],
    )
    .map_err(io_err("write archive entry", Path::new("manifest.json")))?;
    if !repositories.is_empty() {
        let repos = serde_json::to_vec(&repositories)
            .map_err(|e| ExportError::BadArchive(format!("serialise repositories: {e}")))?;
        append_file(&mut b, "repositories", repos.len() as u64, &repos[..])
            .map_err(io_err("write archive entry", Path::new("repositories")))?;
    }
    b.into_inner()
        .map_err(io_err("write archive entry", Path::new("<archive end>")))
}

/// Appends a layer as an uncompressed tar, checking its diff id on the way.
fn append_uncompressed_layer<W: Write>(
    b: &mut tar::Builder<W>,
    cas: &ContentStore,
    blob: &cache::Digest,
    diff_id: &cache::Digest,
    path: &str,
) -> Result<(), ExportError> {
    let blob_path = cas.path(blob);
    let f = cas.open_blob(blob)?;
    let (compression, mut reader) = decompress(io::BufReader::with_capacity(256 * 1024, f))
        .map_err(io_err("read", &blob_path))?;
    if compression == Compression::None {
        if blob != diff_id {
            return Err(ExportError::DiffIdMismatch {
                layer: blob.clone(),
                expected: diff_id.clone(),
                actual: blob.clone(),
            });
        }
        return append_blob(b, cas, blob, path);
    }
    // The tar header needs the size first: decompress into a scratch file, hashing as we go.
    let scratch = tempfile::tempfile_in(cas.root().join("tmp"))
        .map_err(io_err("create temp file in", cas.root()))?;
    let mut hw = HashingWriter::new(scratch);
    io::copy(&mut reader, &mut hw).map_err(io_err("decompress", &blob_path))?;
    let (mut scratch, actual, size) = hw.finish();
    if &actual != diff_id {
        return Err(ExportError::DiffIdMismatch {
            layer: blob.clone(),
            expected: diff_id.clone(),
            actual,
        });
    }
    scratch
        .seek(io::SeekFrom::Start(0))
        .map_err(io_err("seek", &blob_path))?;
    append_file(b, path, size, scratch).map_err(io_err("write archive entry", Path::new(path)))
}
