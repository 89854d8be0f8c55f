//! Cache export and import (`--cache-to`, `--cache-from`).
//!
//! Every backend sits behind [`CacheBackend`]; the local one writes an OCI image layout
//! directory: `oci-layout`, `blobs/sha256/<hex>` and an `index.json` whose one manifest (media
//! type [`CACHE_MANIFEST_MEDIA_TYPE`]) maps cache keys to the layers of their step records.
//! Export is incremental: a blob already in the destination is never written again, and the new
//! `index.json` replaces the old one atomically (blobs of earlier exports stay until the
//! directory is removed). Import copies the records and the blobs the root lacks into the root,
//! each blob verified against its digest, so a hit after import behaves like any other hit.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cas::{CasError, ContentStore};
use crate::descriptor::Descriptor;
use crate::digest::Digest;
use crate::keys::{CacheKey, KeyStore, KeyStoreError, LayerRef, StepRecord};
use crate::lock::RootDir;

/// Media type of the cache manifest (the key → layers map).
pub const CACHE_MANIFEST_MEDIA_TYPE: &str = "application/vnd.builder.cache.manifest.v1+json";
/// Media type of the tar of cache-mount contents.
pub const MOUNTS_MEDIA_TYPE: &str = "application/vnd.builder.cache.mounts.v1.tar";
const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";

/// Errors of cache export and import; I/O errors name their path.
#[derive(Debug, thiserror::Error)]
pub enum CacheTransferError {
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The `--cache-to`/`--cache-from` value is malformed.
    #[error("{0}")]
    Spec(String),
    /// The backend is not available yet.
    #[error("{0}")]
    Unsupported(String),
    /// A remote cache (a registry) could not be read or written.
    #[error("cache {reference}: {message}")]
    Remote {
        /// The cache's reference.
        reference: String,
        /// What went wrong.
        message: String,
    },
    /// The cache directory is not a cache export.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The root's content store failed.
    #[error(transparent)]
    Cas(#[from] CasError),
    /// The root's key store failed.
    #[error(transparent)]
    Keys(#[from] KeyStoreError),
}

fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> CacheTransferError + 'a {
    move |source| CacheTransferError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Which steps an export covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// The steps whose results are in the final image (BuildKit's default).
    #[default]
    Min,
    /// Every step of the build, intermediate stages included.
    Max,
}

/// A parsed `--cache-to` / `--cache-from` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheSpec {
    /// `type=local,dest=DIR` or `type=local,src=DIR`.
    Local {
        /// The directory.
        dir: PathBuf,
        /// Which steps (export only).
        mode: CacheMode,
        /// Whether cache-mount contents travel too.
        mounts: bool,
    },
    /// `type=registry,ref=NAME[,mode=min|max]`: the backend lives in the registry crate.
    Registry {
        /// The cache image reference.
        reference: String,
        /// Which steps (export only).
        mode: CacheMode,
    },
}

impl CacheSpec {
    /// Parses `type=local,dest=DIR[,mode=min|max][,mounts=true]` (export) or
    /// `type=local,src=DIR[,mounts=true]` (import); a bare path means `type=local`.
    pub fn parse(text: &str, export: bool) -> Result<CacheSpec, CacheTransferError> {
        let flag = if export { "--cache-to" } else { "--cache-from" };
        let bad = |m: String| CacheTransferError::Spec(format!("{flag} {text:?}: {m}"));
        let mut kind = None;
        let mut dir = None;
        let mut reference = None;
        let mut mode = CacheMode::Min;
        let mut mounts = false;
        for field in text.split(',') {
            match field.split_once('=') {
                Some(("type", v)) => kind = Some(v.to_string()),
                Some(("dest", v)) if export => dir = Some(PathBuf::from(v)),
                Some(("src", v)) if !export => dir = Some(PathBuf::from(v)),
                Some(("ref", v)) => reference = Some(v.to_string()),
                Some(("mode", "min")) => mode = CacheMode::Min,
                Some(("mode", "max")) => mode = CacheMode::Max,
                Some(("mode", v)) => return Err(bad(format!("mode={v}: expected min or max"))),
                Some(("mounts", v)) => {
                    mounts = match v {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => return Err(bad(format!("mounts={v}: expected true or false"))),
                    }
                }
                None if kind.is_none() && dir.is_none() && !field.is_empty() => {
                    kind = Some("local".into());
                    dir = Some(PathBuf::from(field));
                }
                _ => return Err(bad(format!("unknown field {field:?}"))),
            }
        }
        match kind.as_deref() {
            Some("local") => {
                let key = if export { "dest" } else { "src" };
                let dir = dir.ok_or_else(|| bad(format!("type=local needs {key}=DIR")))?;
                Ok(CacheSpec::Local { dir, mode, mounts })
            }
            Some("registry") => Ok(CacheSpec::Registry {
                reference: reference.unwrap_or_default(),
                mode,
            }),
            Some(other) => Err(bad(format!("unknown type {other:?}: expected local"))),
            None => Err(bad("missing type=local".into())),
        }
    }

    /// The backend this spec names (local only: the registry backend, `registry::RegistryCache`,
    /// lives in the registry crate, which depends on this one).
    pub fn backend(&self) -> Result<Box<dyn CacheBackend>, CacheTransferError> {
        match self {
            CacheSpec::Local { dir, mounts, .. } => Ok(Box::new(LocalCache {
                dir: dir.clone(),
                mounts: *mounts,
            })),
            CacheSpec::Registry { .. } => Err(CacheTransferError::Unsupported(
                "type=registry caches are served by the registry crate (registry::RegistryCache)"
                    .into(),
            )),
        }
    }

    /// The export mode (min for import specs).
    pub fn mode(&self) -> CacheMode {
        match self {
            CacheSpec::Local { mode, .. } => *mode,
            CacheSpec::Registry { mode, .. } => *mode,
        }
    }
}

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Keys in the exported manifest.
    pub keys: usize,
    /// Blobs written because the destination lacked them.
    pub blobs_written: usize,
    /// Bytes of those blobs.
    pub bytes_written: u64,
    /// Blobs the destination already had.
    pub blobs_reused: usize,
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Keys in the cache manifest.
    pub keys: usize,
    /// Records written into the root (keys the root did not have).
    pub records_added: usize,
    /// Blobs copied into the root.
    pub blobs_copied: usize,
    /// Cache mounts restored.
    pub mounts_restored: usize,
}

/// A place build cache can be exported to and imported from.
pub trait CacheBackend {
    /// Exports `records` (and the cache mounts if the spec asked) from `root`.
    fn export(
        &self,
        root: &RootDir,
        records: &[(CacheKey, StepRecord)],
    ) -> Result<ExportReport, CacheTransferError>;
    /// Makes the exported keys available in `root`.
    fn import(&self, root: &RootDir) -> Result<ImportReport, CacheTransferError>;
}

/// The records of `keys` in `root` whose blobs are all present (unknown keys are skipped).
pub fn records_for(
    root: &RootDir,
    keys: &[CacheKey],
) -> Result<Vec<(CacheKey, StepRecord)>, CacheTransferError> {
    let store = KeyStore::open(root.path())?;
    let cas = root
        .content_store()
        .map_err(|e| CacheTransferError::Spec(e.to_string()))?;
    let mut out: Vec<(CacheKey, StepRecord)> = Vec::new();
    for key in keys {
        if out.iter().any(|(k, _)| k == key) {
            continue;
        }
        if let Some(r) = store.get(key, |d| cas.has(d))? {
            out.push((*key, r));
        }
    }
    Ok(out)
}

/// `mode=min`: only records whose layers are a prefix of the final image's layers (the steps the
/// final image is made of).
pub fn select_min(
    records: Vec<(CacheKey, StepRecord)>,
    final_layers: &[LayerRef],
) -> Vec<(CacheKey, StepRecord)> {
    records
        .into_iter()
        .filter(|(_, r)| {
            r.layers.len() <= final_layers.len()
                && r.layers
                    .iter()
                    .zip(final_layers)
                    .all(|(a, b)| a.digest == b.digest)
        })
        .collect()
}

/// The cache manifest document.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheManifest {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType")]
    media_type: String,
    keys: BTreeMap<String, StepRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mounts: Option<Descriptor>,
}

/// The local directory backend.
#[derive(Debug, Clone)]
pub struct LocalCache {
    /// The OCI layout directory.
    pub dir: PathBuf,
    /// Whether cache-mount contents travel too.
    pub mounts: bool,
}

impl LocalCache {
    fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(d.hex())
    }

    /// Copies `src` into the destination under `digest` unless it is there already.
    fn put_blob(
        &self,
        digest: &Digest,
        src: &Path,
        report: &mut ExportReport,
    ) -> Result<(), CacheTransferError> {
        let dest = self.blob_path(digest);
        let size = fs::metadata(src).map_err(io_err("stat", src))?.len();
        if fs::metadata(&dest).is_ok_and(|m| m.len() == size) {
            report.blobs_reused += 1;
            return Ok(());
        }
        let dir = self.dir.join("blobs/sha256");
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .map_err(io_err("create temp file in", &dir))?;
        let mut from = fs::File::open(src).map_err(io_err("open", src))?;
        io::copy(&mut from, tmp.as_file_mut()).map_err(io_err("copy", src))?;
        tmp.as_file().sync_all().map_err(io_err("fsync", &dest))?;
        tmp.persist(&dest)
            .map_err(|e| io_err("rename into", &dest)(e.error))?;
        report.blobs_written += 1;
        report.bytes_written += size;
        Ok(())
    }

    fn put_bytes(
        &self,
        bytes: &[u8],
        report: &mut ExportReport,
    ) -> Result<Digest, CacheTransferError> {
        let digest = Digest::of_bytes(bytes);
        let dest = self.blob_path(&digest);
        if dest.is_file() {
            report.blobs_reused += 1;
            return Ok(digest);
        }
        write_atomic(&dest, bytes)?;
        report.blobs_written += 1;
        report.bytes_written += bytes.len() as u64;
        Ok(digest)
    }

    fn read_manifest(&self) -> Result<CacheManifest, CacheTransferError> {
        let index_path = self.dir.join("index.json");
        let bytes = fs::read(&index_path).map_err(io_err("read", &index_path))?;
        let format = |message: String| CacheTransferError::Format {
            path: index_path.clone(),
            message,
        };
        let index: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
        let desc = index["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| serde_json::from_value::<Descriptor>(m.clone()).ok())
            .find(|m| m.media_type == CACHE_MANIFEST_MEDIA_TYPE)
            .ok_or_else(|| format(format!("no {CACHE_MANIFEST_MEDIA_TYPE} manifest")))?;
        let path = self.blob_path(&desc.digest);
        let bytes = fs::read(&path).map_err(io_err("read", &path))?;
        if Digest::of_bytes(&bytes) != desc.digest {
            return Err(CacheTransferError::Format {
                path,
                message: "cache manifest does not match its digest".into(),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| CacheTransferError::Format {
            path,
            message: e.to_string(),
        })
    }
}

fn write_atomic(dest: &Path, bytes: &[u8]) -> Result<(), CacheTransferError> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err("create temp file in", dir))?;
    tmp.write_all(bytes).map_err(io_err("write", dest))?;
    tmp.as_file().sync_all().map_err(io_err("fsync", dest))?;
    tmp.persist(dest)
        .map_err(|e| io_err("rename into", dest)(e.error))?;
    Ok(())
}

/// Tars the cache mounts of `root` (lock files left out) into a temp file under the root's
/// `tmp/`. Headers are deterministic so unchanged contents give the same digest.
fn tar_mounts(root: &RootDir) -> Result<tempfile::NamedTempFile, CacheTransferError> {
    let tmp_dir = root.tmp_dir();
    let file = tempfile::Builder::new()
        .prefix("mounts-")
        .tempfile_in(&tmp_dir)
        .map_err(io_err("create temp file in", &tmp_dir))?;
    let mounts = root.mounts_dir();
    let mut builder = tar::Builder::new(file.reopen().map_err(io_err("open", file.path()))?);
    builder.mode(tar::HeaderMode::Deterministic);
    builder.follow_symlinks(false);
    let mut names: Vec<_> = fs::read_dir(&mounts)
        .map_err(io_err("read directory", &mounts))?
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let path = mounts.join(&name);
        builder
            .append_dir_all(&name, &path)
            .map_err(io_err("archive", &path))?;
    }
    builder.finish().map_err(io_err("archive", &mounts))?;
    Ok(file)
}

impl CacheBackend for LocalCache {
    fn export(
        &self,
        root: &RootDir,
        records: &[(CacheKey, StepRecord)],
    ) -> Result<ExportReport, CacheTransferError> {
        let cas: ContentStore = root
            .content_store()
            .map_err(|e| CacheTransferError::Spec(e.to_string()))?;
        let blobs = self.dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(io_err("create directory", &blobs))?;
        let mut report = ExportReport::default();
        let mut manifest = CacheManifest {
            schema_version: 2,
            media_type: CACHE_MANIFEST_MEDIA_TYPE.into(),
            keys: BTreeMap::new(),
            mounts: None,
        };
        let mut done = std::collections::HashSet::new();
        for (key, record) in records {
            for layer in &record.layers {
                let d = layer.digest.clone();
                if done.insert(d.clone()) {
                    self.put_blob(&d, &cas.path(&d), &mut report)?;
                }
            }
            manifest.keys.insert(key.to_hex(), record.clone());
        }
        if self.mounts {
            let tar = tar_mounts(root)?;
            let digest =
                Digest::of_reader(fs::File::open(tar.path()).map_err(io_err("read", tar.path()))?)
                    .map_err(io_err("read", tar.path()))?;
            let size = fs::metadata(tar.path())
                .map_err(io_err("stat", tar.path()))?
                .len();
            self.put_blob(&digest, tar.path(), &mut report)?;
            manifest.mounts = Some(Descriptor::new(MOUNTS_MEDIA_TYPE, digest, size));
        }
        report.keys = manifest.keys.len();
        let bytes = serde_json::to_vec(&manifest).map_err(|e| CacheTransferError::Format {
            path: self.dir.clone(),
            message: e.to_string(),
        })?;
        let digest = self.put_bytes(&bytes, &mut report)?;
        let mut desc = Descriptor::new(CACHE_MANIFEST_MEDIA_TYPE, digest, bytes.len() as u64);
        desc.annotations = Some(BTreeMap::from([(
            "org.opencontainers.image.ref.name".to_string(),
            "cache".to_string(),
        )]));
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [desc],
        });
        let layout = self.dir.join("oci-layout");
        if !layout.is_file() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index_bytes =
            serde_json::to_vec_pretty(&index).map_err(|e| CacheTransferError::Format {
                path: self.dir.clone(),
                message: e.to_string(),
            })?;
        write_atomic(&self.dir.join("index.json"), &index_bytes)?;
        Ok(report)
    }

    fn import(&self, root: &RootDir) -> Result<ImportReport, CacheTransferError> {
        let manifest = self.read_manifest()?;
        let cas = root
            .content_store()
            .map_err(|e| CacheTransferError::Spec(e.to_string()))?;
        let keys = KeyStore::open(root.path())?;
        let mut report = ImportReport {
            keys: manifest.keys.len(),
            ..Default::default()
        };
        for (hex, record) in &manifest.keys {
            let Some(key) = CacheKey::from_hex(hex) else {
                continue;
            };
            let has = |d: &Digest| cas.has(d);
            if keys.get(&key, has)?.is_some() {
                continue;
            }
            for layer in &record.layers {
                let d = layer.digest.clone();
                if cas.has(&d) {
                    continue;
                }
                let src = self.blob_path(&d);
                let f = fs::File::open(&src).map_err(io_err("open", &src))?;
                cas.put_reader(io::BufReader::new(f), Some(&d))?;
                report.blobs_copied += 1;
            }
            keys.put(&key, record)?;
            report.records_added += 1;
        }
        if let (true, Some(desc)) = (self.mounts, &manifest.mounts) {
            report.mounts_restored = self.restore_mounts(root, desc)?;
        }
        Ok(report)
    }
}

impl LocalCache {
    /// Unpacks the mounts tar into a scratch directory, then moves each mount the root lacks
    /// into `mounts-v1/`.
    fn restore_mounts(
        &self,
        root: &RootDir,
        desc: &Descriptor,
    ) -> Result<usize, CacheTransferError> {
        let src = self.blob_path(&desc.digest);
        let f = fs::File::open(&src).map_err(io_err("open", &src))?;
        let tmp_dir = root.tmp_dir();
        let scratch = tempfile::Builder::new()
            .prefix("mounts-")
            .tempdir_in(&tmp_dir)
            .map_err(io_err("create temp directory in", &tmp_dir))?;
        let mut archive = tar::Archive::new(io::BufReader::new(f));
        archive.set_preserve_permissions(true);
        archive
            .unpack(scratch.path())
            .map_err(io_err("unpack", &src))?;
        let mut n = 0;
        for entry in fs::read_dir(scratch.path())
            .map_err(io_err("read directory", scratch.path()))?
            .flatten()
        {
            let dest = root.mounts_dir().join(entry.file_name());
            if dest.exists() {
                continue;
            }
            if fs::rename(entry.path(), &dest).is_ok() {
                n += 1;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!(
            CacheSpec::parse("type=local,dest=/c,mode=max,mounts=true", true).unwrap(),
            CacheSpec::Local {
                dir: "/c".into(),
                mode: CacheMode::Max,
                mounts: true
            }
        );
        assert_eq!(
            CacheSpec::parse("type=local,src=/c", false).unwrap(),
            CacheSpec::Local {
                dir: "/c".into(),
                mode: CacheMode::Min,
                mounts: false
            }
        );
        assert!(CacheSpec::parse("type=local,src=/c", true).is_err());
        assert!(CacheSpec::parse("type=local,dest=/c,mode=all", true).is_err());
        let err = CacheSpec::parse("type=registry,ref=r/c", true)
            .unwrap()
            .backend()
            .err()
            .unwrap();
        assert_eq!(
            err.to_string(),
            "type=registry caches are served by the registry crate (registry::RegistryCache)"
        );
    }

    #[test]
    fn export_is_incremental_and_import_restores_records() {
        let a = tempfile::tempdir().unwrap();
        let root = RootDir::open(a.path().join("root")).unwrap();
        let cas = root.content_store().unwrap();
        let d = cas.put_bytes(b"layer bytes").unwrap();
        let record = StepRecord {
            layers: vec![LayerRef {
                digest: d.clone(),
                diff_id: d.clone(),
                size: 11,
                media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            }],
            duration_ms: 3,
            created: 4,
        };
        let key = CacheKey([9; 32]);
        KeyStore::open(root.path())
            .unwrap()
            .put(&key, &record)
            .unwrap();
        fs::create_dir_all(root.mounts_dir().join("m1")).unwrap();
        fs::write(root.mounts_dir().join("m1/file"), b"cached").unwrap();
        let backend = LocalCache {
            dir: a.path().join("export"),
            mounts: true,
        };
        let records = records_for(&root, &[key, key]).unwrap();
        assert_eq!(records.len(), 1);
        let first = backend.export(&root, &records).unwrap();
        assert_eq!(first.blobs_written, 3, "layer, mounts tar, manifest");
        let second = backend.export(&root, &records).unwrap();
        assert_eq!(second.blobs_written, 0);
        assert_eq!(second.blobs_reused, 3);

        let fresh = RootDir::open(a.path().join("fresh")).unwrap();
        let imported = backend.import(&fresh).unwrap();
        assert_eq!(imported.records_added, 1);
        assert_eq!(imported.blobs_copied, 1);
        assert_eq!(imported.mounts_restored, 1);
        let got = KeyStore::open(fresh.path())
            .unwrap()
            .get(&key, |_| true)
            .unwrap();
        assert_eq!(got, Some(record));
        assert_eq!(
            fs::read(fresh.mounts_dir().join("m1/file")).unwrap(),
            b"cached"
        );
        let again = backend.import(&fresh).unwrap();
        assert_eq!(again.records_added, 0);
    }
}
