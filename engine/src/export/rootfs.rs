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
//!
//! Entries are placed where extracting the layers puts them: a parent that is a symlink made by
//! a layer is resolved inside the image, so `abs -> /etc` then `abs/cron.d/job` is emitted as
//! `etc/cron.d/job`, and no entry of the output lies below a symlink entry of it (BuildKit's tar
//! exporter walks the mounted rootfs, so it also writes the tree the build saw). A tar written
//! here cannot make whoever extracts it write outside their directory.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{self, Read, Seek, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use cache::{ContentStore, Digest};

use super::{io_err, ExportError};
use crate::fileops::archive::{
    extract_tar, whiteout, ExtractOptions, Ownership, Whiteout, WhiteoutMode,
};
use crate::fileops::root::{Root, Walk};
use crate::image::{open_layer, Image};

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
///
/// Written through a [`Root`] of `dest` with parents walked [`Walk::Beneath`]: no entry of the
/// flattened tree lies below a symlink of it, so a symlink on an entry's way (one the image
/// contains, or one already in `dest`) is an error, never a way out or a detour.
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
    let root = Root::new(dest).map_err(|e| io_err("open directory", dest)(e.into()))?;
    let privileged = rustix::process::geteuid().is_root();
    let opts = ExtractOptions {
        // The flattened tree holds no whiteouts: a `.wh.` name here is no entry of the image.
        whiteouts: WhiteoutMode::Reject,
        ownership: if privileged {
            Ownership::Headers
        } else {
            Ownership::Extractor
        },
        parents: Walk::Beneath,
        limit: u64::MAX,
    };
    extract_tar(io::BufReader::new(scratch), &root, &opts)
        .map_err(|e| io_err("unpack rootfs into", dest)(io::Error::other(e)))
}

/// Applies the layer blobs `layers` (bottom first) and writes the result as one tar.
pub fn flatten_layers<W: Write>(
    cas: &ContentStore,
    layers: &[Digest],
    out: W,
) -> Result<W, ExportError> {
    let winners = decide_winners(cas, layers)?;
    // Position → where the entry lands (its parents resolved) and its resolved hardlink target.
    let by_position: HashMap<Position, (&[u8], Option<&[u8]>)> = winners
        .iter()
        .map(|(path, w)| (w.pos, (path.as_slice(), w.hardlink.as_deref())))
        .collect();
    let mut b = tar::Builder::new(out);
    for (i, layer) in layers.iter().enumerate() {
        let lerr = |e: io::Error| io_err("read layer", &cas.path(layer))(e);
        let mut ar = tar::Archive::new(open_layer(cas, layer)?);
        for_each_member(&mut ar, |j, mut m| {
            let pos = (i, j);
            let Some(&(path, hardlink)) = by_position.get(&pos) else {
                return Ok(());
            };
            let link = match m.entry.header().entry_type() {
                tar::EntryType::Link => match hardlink {
                    // A hardlink whose target was deleted or replaced above has nothing to
                    // point at; drop it rather than emit a dangling link.
                    Some(target) if winners.get(target).is_some_and(|w| w.pos <= pos) => {
                        Some(target.to_vec())
                    }
                    _ => return Ok(()),
                },
                tar::EntryType::Symlink => m.link.clone(),
                _ => None,
            };
            emit(&mut b, &mut m, path, link.as_deref()).map_err(|e| {
                let path = Path::new(OsStr::from_bytes(path));
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

/// The entry that provides a path of the flattened tree.
struct Winner {
    /// Which entry.
    pos: Position,
    /// What the entry is, as far as resolving paths through it goes.
    kind: Kind,
    /// For a hardlink: its target, resolved as the extractor resolves it.
    hardlink: Option<Vec<u8>>,
}

#[derive(Clone, PartialEq, Eq)]
enum Kind {
    Dir,
    Symlink(Vec<u8>),
    Other,
}

/// Symlinks followed in one resolution before giving up (as [`crate::fileops::root`]).
const MAX_SYMLINKS: usize = 40;

/// Decides which entry provides each path, each under the path where layer extraction puts it:
/// the parents of an entry are resolved through the symlinks the layers made so far, re-rooted
/// in the image as [`crate::fileops::archive::extract_tar`] does (`abs -> /etc` then
/// `abs/cron.d/job` is `etc/cron.d/job`). So no path of the flattened tree lies below a
/// symlink of it, and extracting the tar anywhere cannot write through one.
fn decide_winners(
    cas: &ContentStore,
    layers: &[Digest],
) -> Result<BTreeMap<Vec<u8>, Winner>, ExportError> {
    let mut winners: BTreeMap<Vec<u8>, Winner> = BTreeMap::new();
    for (i, layer) in layers.iter().enumerate() {
        let lerr = |e: io::Error| io_err("read layer", &cas.path(layer))(e);
        let mut ar = tar::Archive::new(open_layer(cas, layer)?);
        // A bad entry ends the walk with its error, kept aside from the reader's I/O errors.
        let mut failure: Option<ExportError> = None;
        for_each_member(&mut ar, |j, m| {
            let Some(literal) = normalise(&m.path) else {
                return Ok(()); // the root directory itself
            };
            let bad = |why: String| {
                ExportError::BadArchive(format!(
                    "layer {layer}: entry {:?}: {why}",
                    String::from_utf8_lossy(&literal)
                ))
            };
            let mut fail = |e: ExportError| {
                failure = Some(e);
                io::Error::other("bad layer entry")
            };
            let path = resolve_parent(&winners, &literal).map_err(|e| fail(bad(e)))?;
            let (dir, base) = match path.iter().rposition(|b| *b == b'/') {
                Some(k) => (&path[..k], &path[k + 1..]),
                None => (&b""[..], &path[..]),
            };
            match whiteout(base).map_err(|e| fail(bad(e.to_string())))? {
                Whiteout::None => {}
                Whiteout::Meta => return Ok(()),
                Whiteout::Opaque => {
                    remove_below(&mut winners, dir, Some(i));
                    return Ok(());
                }
                Whiteout::Hide(name) => {
                    let mut target = dir.to_vec();
                    if !target.is_empty() {
                        target.push(b'/');
                    }
                    target.extend_from_slice(name);
                    if winners.get(&target).is_some_and(|w| w.pos.0 < i) {
                        winners.remove(&target);
                    }
                    remove_below(&mut winners, &target, Some(i));
                    return Ok(());
                }
            }
            let kind = match m.entry.header().entry_type() {
                t if t.is_dir() => Kind::Dir,
                tar::EntryType::Symlink => Kind::Symlink(m.link.clone().unwrap_or_default()),
                _ => Kind::Other,
            };
            let hardlink = match m.entry.header().entry_type() {
                tar::EntryType::Link => m
                    .link
                    .as_deref()
                    .and_then(normalise)
                    .map(|t| resolve_parent(&winners, &t))
                    .transpose()
                    .map_err(|e| fail(bad(e)))?,
                _ => None,
            };
            if kind != Kind::Dir {
                // Whatever the layer, nothing stays below a non-directory: extraction removes
                // a directory (and all it holds) that a file or a symlink replaces.
                remove_below(&mut winners, &path, None);
            }
            winners.insert(
                path,
                Winner {
                    pos: (i, j),
                    kind,
                    hardlink,
                },
            );
            Ok(())
        })
        .map_err(|e| failure.take().unwrap_or_else(|| lerr(e)))?;
    }
    Ok(winners)
}

/// Resolves the parent directories of `path` (normalised, relative) through the symlinks in
/// `winners`, as if the image root were `/`; the final component is kept as it is.
fn resolve_parent(winners: &BTreeMap<Vec<u8>, Winner>, path: &[u8]) -> Result<Vec<u8>, String> {
    fn components_rev(p: &[u8]) -> impl Iterator<Item = &[u8]> {
        p.split(|b| *b == b'/')
            .filter(|c| !c.is_empty() && *c != b".")
            .rev()
    }
    let mut resolved: Vec<u8> = Vec::new();
    let mut pending: Vec<Vec<u8>> = components_rev(path).map(<[u8]>::to_vec).collect();
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        if comp == b".." {
            let cut = resolved.iter().rposition(|b| *b == b'/').unwrap_or(0);
            resolved.truncate(cut);
            continue;
        }
        let len = resolved.len();
        if len > 0 {
            resolved.push(b'/');
        }
        resolved.extend_from_slice(&comp);
        if pending.is_empty() {
            break; // the final component is never followed
        }
        match winners.get(&resolved).map(|w| &w.kind) {
            Some(Kind::Symlink(target)) => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err("too many levels of symbolic links".to_string());
                }
                resolved.truncate(len);
                if target.starts_with(b"/") {
                    resolved.clear();
                }
                pending.extend(components_rev(target).map(<[u8]>::to_vec));
            }
            Some(Kind::Other) => {
                return Err(format!(
                    "{:?} is not a directory",
                    String::from_utf8_lossy(&resolved)
                ))
            }
            Some(Kind::Dir) | None => {}
        }
    }
    Ok(resolved)
}

/// Removes every path strictly below `dir`; with `Some(layer)`, only those from layers before
/// `layer` (what a whiteout hides).
fn remove_below(winners: &mut BTreeMap<Vec<u8>, Winner>, dir: &[u8], layer: Option<usize>) {
    let mut prefix = dir.to_vec();
    if !prefix.is_empty() {
        prefix.push(b'/');
    }
    let doomed: Vec<Vec<u8>> = winners
        .range(prefix.clone()..)
        .take_while(|(k, _)| k.starts_with(&prefix))
        .filter(|(_, w)| layer.is_none_or(|l| w.pos.0 < l))
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

    fn winner(kind: Kind) -> Winner {
        Winner {
            pos: (0, 0),
            kind,
            hardlink: None,
        }
    }

    #[test]
    fn parents_resolve_through_symlinks_inside_the_image() {
        let mut w = BTreeMap::new();
        w.insert(b"abs".to_vec(), winner(Kind::Symlink(b"/etc".to_vec())));
        w.insert(
            b"up".to_vec(),
            winner(Kind::Symlink(b"../../../x".to_vec())),
        );
        w.insert(b"d".to_vec(), winner(Kind::Dir));
        w.insert(b"d/rel".to_vec(), winner(Kind::Symlink(b"../abs".to_vec())));
        w.insert(b"f".to_vec(), winner(Kind::Other));
        w.insert(b"loop".to_vec(), winner(Kind::Symlink(b"loop".to_vec())));
        let r = |p: &[u8]| resolve_parent(&w, p).map(|v| String::from_utf8(v).unwrap());
        assert_eq!(r(b"abs/cron.d/job").unwrap(), "etc/cron.d/job");
        assert_eq!(r(b"up/y").unwrap(), "x/y");
        assert_eq!(
            r(b"d/rel/z").unwrap(),
            "etc/z",
            "a chain of links, relative then absolute"
        );
        assert_eq!(
            r(b"abs").unwrap(),
            "abs",
            "the final component is not followed"
        );
        assert!(r(b"f/x").unwrap_err().contains("not a directory"));
        assert!(r(b"loop/x").unwrap_err().contains("symbolic links"));
    }
}
