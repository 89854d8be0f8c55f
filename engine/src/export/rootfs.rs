//! The flattened root filesystem of an image: `-o type=tar` (one tar) and `-o type=local`
//! (a directory).
//!
//! Layers are applied in order with OCI whiteout semantics, in process, in two passes over the
//! layer tars: the first decides which entry wins for every path (a later entry replaces an
//! earlier one; `.wh.NAME` deletes NAME and everything below it from lower layers;
//! `.wh..wh..opq` hides everything below its directory from lower layers; a non-directory
//! replaces a directory with all its contents), the second copies the winners out in layer
//! order, so parents come before children and hardlink targets before links. Whiteout entries
//! are never emitted.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cache::{ContentStore, Digest};

use super::{io_err, ExportError};
use crate::image::{open_layer, Image};

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// (layer index, entry index within the layer)
type Position = (usize, u64);

/// Writes the flattened root filesystem of `image` as one tar.
pub fn write_rootfs_tar<W: Write>(
    cas: &ContentStore,
    image: &Image,
    out: W,
) -> Result<W, ExportError> {
    let layers: Vec<Digest> = image
        .manifest
        .layers
        .iter()
        .map(|d| d.digest.clone())
        .collect();
    flatten_layers(cas, &layers, out)
}

/// Unpacks the flattened root filesystem of `image` into `dest` (created if missing).
/// Ownership and extended attributes are kept when running as root.
pub fn unpack_rootfs(cas: &ContentStore, image: &Image, dest: &Path) -> Result<(), ExportError> {
    let scratch_dir = cas.root().join("tmp");
    let scratch =
        tempfile::tempfile_in(&scratch_dir).map_err(io_err("create temp file in", &scratch_dir))?;
    let mut scratch = write_rootfs_tar(cas, image, io::BufWriter::new(scratch))?
        .into_inner()
        .map_err(|e| io_err("write", &scratch_dir)(e.into_error()))?;
    scratch
        .seek(io::SeekFrom::Start(0))
        .map_err(io_err("seek", &scratch_dir))?;
    std::fs::create_dir_all(dest).map_err(io_err("create directory", dest))?;
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let mut ar = tar::Archive::new(io::BufReader::new(&mut scratch));
    ar.set_preserve_permissions(true);
    ar.set_preserve_mtime(true);
    ar.set_preserve_ownerships(root);
    ar.set_unpack_xattrs(root);
    ar.set_overwrite(true);
    ar.unpack(dest)
        .map_err(io_err("unpack rootfs into", dest))?;
    if root {
        // The `tar` crate skips xattrs whose value holds a newline (see `parse_pax`); set
        // those from our own reading of the records.
        scratch
            .seek(io::SeekFrom::Start(0))
            .map_err(io_err("seek", &scratch_dir))?;
        let mut ar = tar::Archive::new(io::BufReader::new(scratch));
        for_each_member(&mut ar, |_, m| {
            for (key, value) in &m.pax {
                let Some(name) = key.strip_prefix(b"SCHILY.xattr.") else {
                    continue;
                };
                if !value.contains(&b'\n') {
                    continue;
                }
                if let Some(rel) = normalise(&m.path) {
                    let target = dest.join(OsStr::from_bytes(&rel));
                    xattr::set(&target, OsStr::from_bytes(name), value)?;
                }
            }
            Ok(())
        })
        .map_err(io_err("set xattrs in", dest))?;
    }
    Ok(())
}

/// Applies the layer blobs `layers` (bottom first) and writes the result as one tar.
pub fn flatten_layers<W: Write>(
    cas: &ContentStore,
    layers: &[Digest],
    out: W,
) -> Result<W, ExportError> {
    let winners = decide_winners(cas, layers)?;
    let mut b = tar::Builder::new(out);
    for (i, layer) in layers.iter().enumerate() {
        let lerr = |e: io::Error| io_err("read layer", &cas.path(layer))(e);
        let mut ar = tar::Archive::new(open_layer(cas, layer)?);
        for_each_member(&mut ar, |j, mut m| {
            let Some(path) = normalise(&m.path) else {
                return Ok(());
            };
            if winners.get(&path) != Some(&(i, j)) {
                return Ok(());
            }
            let link = match m.entry.header().entry_type() {
                tar::EntryType::Link => match m.link.as_deref().and_then(normalise) {
                    // A hardlink whose target was deleted or replaced above has nothing to
                    // point at; drop it rather than emit a dangling link.
                    Some(target) if winners.get(&target).is_some_and(|p| *p <= (i, j)) => {
                        Some(target)
                    }
                    _ => return Ok(()),
                },
                tar::EntryType::Symlink => m.link.clone(),
                _ => None,
            };
            emit(&mut b, &mut m, &path, link.as_deref()).map_err(|e| {
                let path = Path::new(OsStr::from_bytes(&path));
                io::Error::new(
                    e.kind(),
                    format!("write rootfs entry {}: {e}", path.display()),
                )
            })
        })
        .map_err(lerr)?;
    }
    b.into_inner()
        .map_err(io_err("write", Path::new("<rootfs tar>")))
}

fn decide_winners(
    cas: &ContentStore,
    layers: &[Digest],
) -> Result<BTreeMap<Vec<u8>, Position>, ExportError> {
    let mut winners: BTreeMap<Vec<u8>, Position> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        let lerr = |e: io::Error| io_err("read layer", &cas.path(layer))(e);
        let mut ar = tar::Archive::new(open_layer(cas, layer)?);
        for_each_member(&mut ar, |j, m| {
            let Some(path) = normalise(&m.path) else {
                return Ok(()); // the root directory itself
            };
            let (dir, base) = match path.iter().rposition(|b| *b == b'/') {
                Some(k) => (&path[..k], &path[k + 1..]),
                None => (&b""[..], &path[..]),
            };
            if base == OPAQUE_MARKER {
                remove_below(&mut winners, dir, i);
                return Ok(());
            }
            if let Some(name) = base.strip_prefix(WHITEOUT_PREFIX) {
                let mut target = dir.to_vec();
                if !target.is_empty() {
                    target.push(b'/');
                }
                target.extend_from_slice(name);
                if winners.get(&target).is_some_and(|p| p.0 < i) {
                    winners.remove(&target);
                }
                remove_below(&mut winners, &target, i);
                return Ok(());
            }
            if !m.entry.header().entry_type().is_dir() {
                remove_below(&mut winners, &path, i);
            }
            winners.insert(path, (i, j));
            Ok(())
        })
        .map_err(lerr)?;
    }
    Ok(winners)
}

/// Removes every path strictly below `dir` that came from a layer before `layer`.
fn remove_below(winners: &mut BTreeMap<Vec<u8>, Position>, dir: &[u8], layer: usize) {
    let mut prefix = dir.to_vec();
    if !prefix.is_empty() {
        prefix.push(b'/');
    }
    let doomed: Vec<Vec<u8>> = winners
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(_, p)| p.0 < layer)
        .map(|(k, _)| k.clone())
        .collect();
    for k in doomed {
        winners.remove(&k);
    }
}

/// `./a//b/` → `a/b`; `None` for the root itself. `..` is resolved as if the root were `/`
/// (`../../x` and `/x` are both `x`), as layer extraction and BuildKit do, so the flattened tree
/// is the one a build saw.
fn normalise(raw: &[u8]) -> Option<Vec<u8>> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for c in raw.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    (!parts.is_empty()).then(|| parts.join(&b'/'))
}

/// One member of a layer tar, with what the extension headers before it say about it.
struct Member<'a, R: Read> {
    entry: tar::Entry<'a, R>,
    /// Its path: from a PAX `path` record, a GNU long name, or the header.
    path: Vec<u8>,
    /// Its link target, found the same way.
    link: Option<Vec<u8>>,
    /// Its PAX records, in order.
    pax: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Parses the records of a PAX extended header by their length prefixes. (The `tar` crate
/// splits records at newlines, so an xattr value holding one reads as "malformed pax
/// extension"; POSIX lengths make such values legal, and layers carry them.)
fn parse_pax(data: &[u8]) -> io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed pax extension");
    let mut out = Vec::new();
    let mut rest = data;
    while !rest.is_empty() && rest.iter().any(|b| *b != 0) {
        let sp = rest.iter().position(|b| *b == b' ').ok_or_else(bad)?;
        let len: usize = std::str::from_utf8(&rest[..sp])
            .ok()
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?;
        if len <= sp + 1 || len > rest.len() || rest[len - 1] != b'\n' {
            return Err(bad());
        }
        let record = &rest[sp + 1..len - 1];
        let eq = record.iter().position(|b| *b == b'=').ok_or_else(bad)?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        rest = &rest[len..];
    }
    Ok(out)
}

/// Calls `f` with each member of a layer tar and its index among members (extension headers
/// are not members). The archive is read raw: PAX records and GNU long names are applied here,
/// with [`parse_pax`].
fn for_each_member<R: Read>(
    ar: &mut tar::Archive<R>,
    mut f: impl FnMut(u64, Member<'_, R>) -> io::Result<()>,
) -> io::Result<()> {
    let mut pax: Option<Vec<(Vec<u8>, Vec<u8>)>> = None;
    let mut long_name: Option<Vec<u8>> = None;
    let mut long_link: Option<Vec<u8>> = None;
    let read_all = |entry: &mut tar::Entry<'_, R>| -> io::Result<Vec<u8>> {
        let mut d = Vec::new();
        entry.read_to_end(&mut d)?;
        while d.last() == Some(&0) {
            d.pop();
        }
        Ok(d)
    };
    let mut j = 0u64;
    for entry in ar.entries()?.raw(true) {
        let mut entry = entry?;
        let t = entry.header().entry_type();
        if t.is_pax_local_extensions() {
            pax = Some(parse_pax(&read_all(&mut entry)?)?);
            continue;
        }
        if t.is_pax_global_extensions() {
            continue;
        }
        if t.is_gnu_longname() {
            long_name = Some(read_all(&mut entry)?);
            continue;
        }
        if t.is_gnu_longlink() {
            long_link = Some(read_all(&mut entry)?);
            continue;
        }
        let records = pax.take().unwrap_or_default();
        let record = |key: &[u8]| {
            records
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let path = record(b"path")
            .or(long_name.take())
            .unwrap_or_else(|| entry.header().path_bytes().into_owned());
        let link = record(b"linkpath")
            .or(long_link.take())
            .or_else(|| entry.header().link_name_bytes().map(|l| l.into_owned()));
        long_name = None;
        long_link = None;
        f(
            j,
            Member {
                entry,
                path,
                link,
                pax: records,
            },
        )?;
        j += 1;
    }
    Ok(())
}

/// Copies one member to `b` under `path`, keeping PAX records (xattrs) other than the path
/// ones.
fn emit<W: Write, R: Read>(
    b: &mut tar::Builder<W>,
    m: &mut Member<'_, R>,
    path: &[u8],
    link: Option<&[u8]>,
) -> io::Result<()> {
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    for (key, value) in &m.pax {
        let key = String::from_utf8_lossy(key);
        if !matches!(&*key, "path" | "linkpath" | "size") {
            records.push((key.into_owned(), value.clone()));
        }
    }
    let entry = &mut m.entry;
    let mut h = entry.header().clone();
    let mut rel = path.to_vec();
    if h.entry_type().is_dir() {
        rel.push(b'/');
    }
    if records.is_empty() {
        let p = Path::new(OsStr::from_bytes(&rel));
        return match link {
            Some(target) => b.append_link(&mut h, p, Path::new(OsStr::from_bytes(target))),
            None => b.append_data(&mut h, p, entry),
        };
    }
    // With PAX records to keep, carry path and link in PAX too, so one extended header
    // describes the entry (no GNU long-name headers in between).
    records.push(("path".to_string(), rel.clone()));
    if let Some(t) = link {
        records.push(("linkpath".to_string(), t.to_vec()));
    }
    append_pax(b, &records)?;
    let old = h.as_old_mut();
    let n = rel.len().min(old.name.len() - 1);
    old.name.fill(0);
    old.name[..n].copy_from_slice(&rel[..n]);
    if let Some(t) = link {
        let n = t.len().min(old.linkname.len() - 1);
        old.linkname.fill(0);
        old.linkname[..n].copy_from_slice(&t[..n]);
    }
    h.set_cksum();
    b.append(&h, entry)
}

fn append_pax<W: Write>(b: &mut tar::Builder<W>, records: &[(String, Vec<u8>)]) -> io::Result<()> {
    let mut data = Vec::new();
    for (k, v) in records {
        // Each record is "<len> <key>=<value>\n" where <len> counts the whole record.
        let base = k.len() + v.len() + 3;
        let mut len = base + 1;
        while len != base + len.to_string().len() {
            len = base + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {k}=").as_bytes());
        data.extend_from_slice(v);
        data.push(b'\n');
    }
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::XHeader);
    h.set_path("././@PaxHeader")?;
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_cksum();
    b.append(&h, &data[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_records_are_read_by_length_so_values_may_hold_newlines() {
        let mut data = Vec::new();
        for (k, v) in [
            ("SCHILY.xattr.user.k", &b"line1\nline2"[..]),
            ("path", b"a/b"),
        ] {
            let base = k.len() + v.len() + 3;
            let mut len = base + 1;
            while len != base + len.to_string().len() {
                len = base + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {k}=").as_bytes());
            data.extend_from_slice(v);
            data.push(b'\n');
        }
        let records = parse_pax(&data).unwrap();
        assert_eq!(records[0].1, b"line1\nline2");
        assert_eq!(records[1], (b"path".to_vec(), b"a/b".to_vec()));
        assert!(parse_pax(b"99 path=x\n").is_err());
        // And through the flattening reader, with the xattr kept on the member.
        let mut b = tar::Builder::new(Vec::new());
        append_pax(
            &mut b,
            &[("SCHILY.xattr.user.k".to_string(), b"a\nb".to_vec())],
        )
        .unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(1);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "f", &b"x"[..]).unwrap();
        let bytes = b.into_inner().unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for_each_member(&mut ar, |j, m| {
            seen.push((j, m.path.clone(), m.pax.clone()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].1, b"f");
        assert_eq!(seen[0].2[0].1, b"a\nb");
    }

    #[test]
    fn normalises_paths() {
        assert_eq!(normalise(b"./a//b/"), Some(b"a/b".to_vec()));
        assert_eq!(normalise(b"/etc"), Some(b"etc".to_vec()));
        assert_eq!(normalise(b"./"), None);
        assert_eq!(normalise(b"a/../b"), Some(b"b".to_vec()));
        assert_eq!(normalise(b"../../x/y"), Some(b"x/y".to_vec()));
        assert_eq!(normalise(b".."), None);
    }
}
