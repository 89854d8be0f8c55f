//! OCI image layout in a tar (`-o type=oci`): `oci-layout`, `index.json`, `blobs/sha256/*`.
//!
//! Names go into the index the way BuildKit and containerd write them: the tag in
//! `org.opencontainers.image.ref.name` (what `skopeo oci-archive:x.tar:TAG` and `umoci
//! --image dir:TAG` select by) and the full name in `io.containerd.image.name`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use cache::{ContentStore, Descriptor};

use super::{append_blob, append_dir, append_file, blobs_of, io_err, ExportError, NamedImage};
use crate::image::Index;

/// Annotation holding the tag (OCI image layout).
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
/// Annotation holding the full image name (containerd).
pub const CONTAINERD_NAME_ANNOTATION: &str = "io.containerd.image.name";

/// Writes `images` as an OCI layout tar to `out`; returns `out`.
pub fn write_oci_archive<W: Write>(
    cas: &ContentStore,
    images: &[NamedImage],
    out: W,
) -> Result<W, ExportError> {
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
    let layout = br#"{"imageLayoutVersion":"1.0.0"}"#;

    let mut b = tar::Builder::new(out);
    let werr = |p: &'static str| io_err("write archive entry", Path::new(p));
    append_file(&mut b, "oci-layout", layout.len() as u64, &layout[..])
        .map_err(werr("oci-layout"))?;
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
