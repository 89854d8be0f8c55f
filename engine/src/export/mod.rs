//! Exporters: write an image from the content store as an OCI archive, a docker-archive, a
//! flattened rootfs tar or a directory; and the reverse, loading archives into the store.
//!
//! Each format is its own module behind one entry point, [`export`], driven by an
//! [`ExportSpec`] parsed from `-o type=...,dest=...`. Archive outputs are deterministic: entries
//! in a fixed order, mtime 0, uid/gid 0. Files are written to a temp file next to the
//! destination and renamed, so a failed export leaves no half-written archive.

mod docker;
mod load;
mod oci;
mod rootfs;

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use cache::{
    CasError, ContentStore, Descriptor, Digest, ImageRecord, ImageStore, ImageStoreError,
    Reference, ReferenceError,
};

use crate::image::{Image, ImageError};

pub use docker::write_docker_archive;
pub use load::{import_oci_layout_dir, load_archive, load_oci_layout_dir, LoadedImage};
pub use oci::{
    write_oci_archive, write_oci_layout_dir, CONTAINERD_NAME_ANNOTATION, REF_NAME_ANNOTATION,
};
pub use rootfs::{flatten_layers, unpack_rootfs, write_rootfs_tar};

/// Errors of exporting and loading.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// The content store failed.
    #[error(transparent)]
    Cas(#[from] CasError),
    /// The image store failed.
    #[error(transparent)]
    ImageStore(#[from] ImageStoreError),
    /// A name in an archive is not a valid reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A filesystem or stream operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or stream involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An input archive is malformed.
    #[error("invalid archive: {0}")]
    BadArchive(String),
    /// The `-o` specification is malformed.
    #[error("invalid output specification {spec:?}: {reason}")]
    BadSpec {
        /// The specification.
        spec: String,
        /// What is wrong.
        reason: String,
    },
    /// A layer's content does not match the diff id its config lists.
    #[error("layer {layer} has diff id {actual}, but the config lists {expected}")]
    DiffIdMismatch {
        /// The layer blob.
        layer: Digest,
        /// The config's diff id.
        expected: Digest,
        /// The computed diff id.
        actual: Digest,
    },
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ExportError + 'a {
    move |source| ExportError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// An image to export together with the names to record for it.
#[derive(Clone, Debug)]
pub struct NamedImage {
    /// The image (as read by [`crate::image::read_image`]).
    pub image: Image,
    /// The names it is exported under (RepoTags, `org.opencontainers.image.ref.name`).
    pub names: Vec<Reference>,
}

/// The output formats of `-o type=...`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportKind {
    /// An OCI image layout in a tar (`type=oci`).
    Oci,
    /// A docker-archive that `docker load` accepts (`type=docker`).
    Docker,
    /// The flattened root filesystem as one tar (`type=tar`).
    Tar,
    /// The flattened root filesystem in a directory (`type=local`).
    Local,
}

/// Where an export goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// Standard output (`dest=-`).
    Stdout,
    /// A file or directory.
    Path(PathBuf),
}

/// A parsed `-o` value: `type=oci,dest=out.tar[,name=app:1]`, or a bare path (`type=local`).
/// `type=oci,tar=false,dest=DIR` writes an OCI layout directory instead of a tar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSpec {
    /// The format.
    pub kind: ExportKind,
    /// Where it goes.
    pub dest: Destination,
    /// Extra names from `name=a,name=b` (in addition to `-t`).
    pub names: Vec<String>,
    /// Other attributes, kept for exporters that grow options.
    pub attrs: BTreeMap<String, String>,
}

impl ExportSpec {
    /// Parses an `-o` value.
    pub fn parse(spec: &str) -> Result<ExportSpec, ExportError> {
        let bad = |reason: &str| ExportError::BadSpec {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if spec.is_empty() {
            return Err(bad("empty"));
        }
        if !spec.contains('=') {
            let dest = if spec == "-" {
                Destination::Stdout
            } else {
                Destination::Path(PathBuf::from(spec))
            };
            let kind = if spec == "-" {
                ExportKind::Tar
            } else {
                ExportKind::Local
            };
            return Ok(ExportSpec {
                kind,
                dest,
                names: Vec::new(),
                attrs: BTreeMap::new(),
            });
        }
        let mut kind = None;
        let mut dest = None;
        let mut names = Vec::new();
        let mut attrs = BTreeMap::new();
        for field in spec.split(',') {
            let (k, v) = field
                .split_once('=')
                .ok_or_else(|| bad(&format!("{field:?} is not key=value")))?;
            match k.trim() {
                "type" => {
                    kind = Some(match v {
                        "oci" => ExportKind::Oci,
                        "docker" => ExportKind::Docker,
                        "tar" => ExportKind::Tar,
                        "local" => ExportKind::Local,
                        other => {
                            return Err(bad(&format!(
                                "unknown type {other:?} (want oci, docker, tar or local)"
                            )))
                        }
                    })
                }
                "dest" => {
                    dest = Some(if v == "-" {
                        Destination::Stdout
                    } else {
                        Destination::Path(PathBuf::from(v))
                    })
                }
                "name" => names.extend(v.split(';').filter(|s| !s.is_empty()).map(str::to_string)),
                other => {
                    attrs.insert(other.to_string(), v.to_string());
                }
            }
        }
        let kind = kind.ok_or_else(|| bad("missing type="))?;
        let dest = dest.ok_or_else(|| bad("missing dest="))?;
        if kind == ExportKind::Local && dest == Destination::Stdout {
            return Err(bad("type=local needs a directory, not dest=-"));
        }
        Ok(ExportSpec {
            kind,
            dest,
            names,
            attrs,
        })
    }
}

/// Writes `images` as `spec` says. `type=tar` and `type=local` take the first image only;
/// names from `name=` in the spec are added to the first image.
pub fn export(
    cas: &ContentStore,
    images: &[NamedImage],
    spec: &ExportSpec,
) -> Result<(), ExportError> {
    let mut images = images.to_vec();
    let Some(first) = images.first_mut() else {
        return Err(ExportError::BadArchive("nothing to export".to_string()));
    };
    for n in &spec.names {
        let r = Reference::parse(n)?;
        if !first.names.contains(&r) {
            first.names.push(r);
        }
    }
    let images = &images[..];
    let first = &images[0];
    match spec.kind {
        ExportKind::Local => match &spec.dest {
            Destination::Path(dir) => unpack_rootfs(cas, &first.image, dir),
            Destination::Stdout => Err(ExportError::BadSpec {
                spec: "type=local,dest=-".into(),
                reason: "type=local needs a directory".into(),
            }),
        },
        ExportKind::Oci => match (&spec.dest, spec.attrs.get("tar").map(String::as_str)) {
            (Destination::Path(dir), Some("false")) => write_oci_layout_dir(cas, images, dir),
            (dest, _) => write_to(dest, |w| write_oci_archive(cas, images, w).map(drop)),
        },
        ExportKind::Docker => write_to(&spec.dest, |w| {
            write_docker_archive(cas, images, w).map(drop)
        }),
        ExportKind::Tar => write_to(&spec.dest, |w| {
            write_rootfs_tar(cas, &first.image, w).map(drop)
        }),
    }
}

/// Records `image` in the local image store under `names` (the default `type=image` export of
/// a build). Returns the images the names pointed at before, which may now be dangling.
pub fn store_image(
    store: &ImageStore,
    image: &Image,
    names: &[Reference],
) -> Result<Vec<Digest>, ExportError> {
    let record = ImageRecord::new(image.manifest_descriptor.clone(), image.id().clone());
    Ok(store.put_and_tag(record, names)?)
}

/// Runs `f` on stdout or on a temp file that replaces `dest` only when `f` succeeds.
pub fn write_to(
    dest: &Destination,
    f: impl FnOnce(&mut dyn Write) -> Result<(), ExportError>,
) -> Result<(), ExportError> {
    match dest {
        Destination::Stdout => {
            let stdout = io::stdout();
            let mut lock = io::BufWriter::new(stdout.lock());
            f(&mut lock)?;
            lock.flush().map_err(io_err("write", Path::new("<stdout>")))
        }
        Destination::Path(path) => {
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                _ => PathBuf::from("."),
            };
            let tmp = tempfile::Builder::new()
                .prefix(".builder-export-")
                .tempfile_in(&parent)
                .map_err(io_err("create temp file in", &parent))?;
            let mut w = io::BufWriter::new(tmp);
            f(&mut w)?;
            let tmp = w
                .into_inner()
                .map_err(|e| io_err("write", path)(e.into_error()))?;
            tmp.as_file().sync_all().map_err(io_err("fsync", path))?;
            tmp.persist(path)
                .map_err(|e| io_err("rename into", path)(e.error))?;
            Ok(())
        }
    }
}

/// A tar header for archive metadata and blobs: regular file, 0644, root-owned, mtime 0.
pub(crate) fn file_header(size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(size);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// Appends a directory entry (0755, root-owned, mtime 0).
pub(crate) fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(0o755);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_data(&mut h, path, io::empty())
}

/// Appends a file entry with the given content.
pub(crate) fn append_file<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    b.append_data(&mut file_header(size), path, data)
}

/// Appends a blob from the store at `blobs/sha256/<hex>`.
pub(crate) fn append_blob<W: Write>(
    b: &mut tar::Builder<W>,
    cas: &ContentStore,
    digest: &Digest,
    path: &str,
) -> Result<(), ExportError> {
    let size = cas.size(digest)?;
    let f = cas.open_blob(digest)?;
    append_file(b, path, size, f).map_err(io_err("write archive entry", Path::new(path)))
}

/// Every blob an image document refers to, the document first, in a stable order.
pub(crate) fn blobs_of(
    desc: &Descriptor,
    cas: &ContentStore,
    out: &mut Vec<Descriptor>,
) -> Result<(), ExportError> {
    use crate::image::{media_types, read_json, Index, Manifest};
    if out.iter().any(|d| d.digest == desc.digest) {
        return Ok(());
    }
    out.push(desc.clone());
    let mt = crate::image::sniff_document_type(cas, &desc.digest)?;
    if media_types::is_index(&mt) {
        let index: Index = read_json(cas, &desc.digest, "index")?;
        for m in &index.manifests {
            if cas.has(&m.digest) {
                blobs_of(m, cas, out)?;
            }
        }
    } else {
        let manifest: Manifest = read_json(cas, &desc.digest, "manifest")?;
        for d in std::iter::once(&manifest.config).chain(&manifest.layers) {
            if !out.iter().any(|x| x.digest == d.digest) {
                // Foreign layers may be absent by design; everything else must be present.
                if !cas.has(&d.digest) && d.urls.as_ref().is_some_and(|u| !u.is_empty()) {
                    continue;
                }
                out.push(d.clone());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_output_specs() {
        let s = ExportSpec::parse("type=oci,dest=out.tar").unwrap();
        assert_eq!(s.kind, ExportKind::Oci);
        assert_eq!(s.dest, Destination::Path("out.tar".into()));
        let s = ExportSpec::parse("type=docker,dest=-,name=a:1").unwrap();
        assert_eq!(
            (s.kind, s.dest, s.names),
            (
                ExportKind::Docker,
                Destination::Stdout,
                vec!["a:1".to_string()]
            )
        );
        assert_eq!(ExportSpec::parse("outdir").unwrap().kind, ExportKind::Local);
        assert_eq!(ExportSpec::parse("-").unwrap().kind, ExportKind::Tar);
        assert!(ExportSpec::parse("type=zip,dest=x").is_err());
        assert!(ExportSpec::parse("type=local,dest=-").is_err());
        assert!(ExportSpec::parse("type=oci").is_err());
        assert!(ExportSpec::parse("type=oci,dest").is_err());
    }
}
