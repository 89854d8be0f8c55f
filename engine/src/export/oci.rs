//! OCI image layout in a tar (`-o type=oci`): `oci-layout`, `index.json`, `blobs/sha256/*`.
//!
//! Names go into the index the way BuildKit and containerd write them: the tag in
//! `org.opencontainers.image.ref.name` (what `skopeo oci-archive:x.tar:TAG` and `umoci
//! --image dir:TAG` select by) and the full name in `io.containerd.image.name`.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::Path;

use cache::{ContentStore, Descriptor};

use super::{append_blob, append_dir, append_file, blobs_of, io_err, ExportError, NamedImage};
use crate::image::Index;

/// Annotation holding the tag (OCI image layout).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Annotation holding the full image name (containerd).
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

const LAYOUT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// The `index.json` bytes and every blob to include, in a stable order.
fn index_and_blobs(
    cas: &ContentStore,
    images: &[NamedImage],
) -> Result<(Vec<u8>, Vec<Descriptor>), ExportError> {
    let mut index_entries = Vec::new();
    let mut blobs: Vec<Descriptor> = Vec::new();
    for named in images {
        let desc = Descriptor::new(
            named.image.manifest_descriptor.media_type.clone(),
            named.image.manifest_descriptor.digest.clone(),
            named.image.manifest_descriptor.size,
        );
        blobs_of(&desc, cas, &mut blobs)?;
        if named.names.is_empty() {
            index_entries.push(desc.clone());
        }
        for name in &named.names {
            let mut d = desc.clone();
            let mut ann = BTreeMap::new();
            ann.insert(CONTAINERD_NAME_ANNOTATION.to_string(), name.to_string());
            if let Some(tag) = name.tag() {
                ann.insert(REF_NAME_ANNOTATION.to_string(), tag.to_string());
            }
            d.annotations = Some(ann);
            index_entries.push(d);
        }
    }
    let index = serde_json::to_vec(&Index::new(index_entries))
        .map_err(|e| ExportError::BadArchive(format!("serialise index.json: {e}")))?;
    Ok((index, blobs))
}

/// Writes `images` as an OCI layout tar to `out`; returns `out`.
pub fn write_oci_archive<W: Write>(
    cas: &ContentStore,
    images: &[NamedImage],
    out: W,
) -> Result<W, ExportError> {
    let (index, blobs) = index_and_blobs(cas, images)?;
    let mut b = tar::Builder::new(out);
    let werr = |p: &'static str| io_err("write archive entry", Path::new(p));
    append_file(&mut b, "oci-layout", LAYOUT.len() as u64, LAYOUT).map_err(werr("oci-layout"))?;
    append_file(&mut b, "index.json", index.len() as u64, &index[..])
        .map_err(werr("index.json"))?;
    append_dir(&mut b, "blobs/").map_err(werr("blobs/"))?;
    append_dir(&mut b, "blobs/sha256/").map_err(werr("blobs/sha256/"))?;
    for d in &blobs {
        append_blob(
            &mut b,
            cas,
            &d.digest,
            &format!("blobs/sha256/{}", d.digest.hex()),
        )?;
    }
    b.into_inner().map_err(werr("<archive end>"))
}

/// Writes `images` as an OCI layout directory (`-o type=oci,tar=false,dest=DIR`). Blobs are
/// hard-linked from the store where possible, else copied; `index.json` is written last and
/// atomically, naming exactly `images`.
pub fn write_oci_layout_dir(
    cas: &ContentStore,
    images: &[NamedImage],
    dir: &Path,
) -> Result<(), ExportError> {
    let (index, blobs) = index_and_blobs(cas, images)?;
    let blob_dir = dir.join("blobs").join("sha256");
    fs::create_dir_all(&blob_dir).map_err(io_err("create directory", &blob_dir))?;
    for d in &blobs {
        let target = blob_dir.join(d.digest.hex());
        if target.exists() {
            continue;
        }
        let src = cas.path(&d.digest);
        if fs::hard_link(&src, &target).is_err() {
            let tmp = blob_dir.join(format!(".tmp-{}", d.digest.hex()));
            fs::copy(&src, &tmp).map_err(io_err("copy blob to", &tmp))?;
            fs::rename(&tmp, &target).map_err(io_err("rename into", &target))?;
        }
    }
    for (name, bytes) in [("oci-layout", LAYOUT), ("index.json", &index[..])] {
        let path = dir.join(name);
        let tmp = dir.join(format!(".tmp-{name}"));
        fs::write(&tmp, bytes).map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(io_err("rename into", &path))?;
    }
    Ok(())
}
