//! `ADD <url>`: download to the destination, verify `--checksum`, mode 0600, name from the URL.

use super::copy::{io_err, mkdir_all};
use super::root::Root;
use super::FileOpError;
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The file name Docker derives from a URL: the last non-empty segment of its path, decoded.
/// (Hand-written decoding: three lines, not worth a direct dependency.)
pub(super) fn file_name_from_url(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let last = parsed
        .path_segments()?
        .rfind(|s| !s.is_empty())?
        .to_string();
    let decoded = percent_decode(&last);
    (!decoded.is_empty() && decoded != "." && decoded != "..").then_some(decoded)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(v) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).replace('/', "_")
}

#[allow(clippy::too_many_arguments)]
pub(super) fn download(
    op: &'static str,
    root: &Root,
    url: &str,
    checksum: Option<&str>,
    dest_rel: &Path,
    into_dir: bool,
    owner: (u32, u32),
    dir_mode: u32,
) -> Result<(), FileOpError> {
    let fail = |message: String| FileOpError::Download {
        op,
        url: url.to_string(),
        message,
    };
    let expected = match checksum {
        None => None,
        Some(c) => match c.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Some(hex.to_ascii_lowercase())
            }
            _ => {
                return Err(fail(format!(
                    "unsupported --checksum {c:?} (expected sha256:<64 hex digits>)"
                )))
            }
        },
    };
    let target_rel = {
        let dest_host = root
            .resolve(dest_rel)
            .map_err(|source| FileOpError::Root { op, source })?;
        let is_dir = std::fs::metadata(&dest_host)
            .map(|m| m.is_dir())
            .unwrap_or(false);
        if into_dir || is_dir {
            let name = file_name_from_url(url)
                .ok_or_else(|| fail("cannot determine a file name from the URL".into()))?;
            dest_rel.join(name)
        } else {
            dest_rel.to_path_buf()
        }
    };
    if let Some(parent) = target_rel.parent() {
        mkdir_all(op, root, parent, owner, dir_mode)?;
    }

    let response = reqwest::blocking::get(url).map_err(|e| fail(e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        return Err(fail(format!("server returned {status}")));
    }
    let last_modified = response
        .headers()
        .get(reqwest::header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| chrono::DateTime::parse_from_rfc2822(v).ok())
        .map(|t| t.timestamp());

    // Path-based for now: the download goes to a temporary file in the destination directory
    // (the `tempfile` crate takes a path) and is renamed into place.
    let host = root
        .resolve_parent(&target_rel)
        .map_err(|source| FileOpError::Root { op, source })?;
    let dir = host.parent().unwrap_or(Path::new("/"));
    let mut tmp = tempfile::Builder::new()
        .prefix(".download-")
        .tempfile_in(dir)
        .map_err(io_err(op, "creating temporary file in", dir))?;
    let mut hasher = Sha256::new();
    let mut body = response;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = body.read(&mut buf).map_err(|e| fail(e.to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .map_err(io_err(op, "writing", &host))?;
    }
    let actual = hex::encode(hasher.finalize());
    if let Some(expected) = expected {
        if expected != actual {
            return Err(FileOpError::ChecksumMismatch {
                op,
                url: url.to_string(),
                expected: format!("sha256:{expected}"),
                actual: format!("sha256:{actual}"),
            });
        }
    }
    if std::fs::symlink_metadata(&host).is_ok() {
        super::archive::remove_existing(&host).map_err(|e| FileOpError::Io {
            op,
            what: "replacing",
            path: host.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    }
    let file = tmp.persist_noclobber(&host).map_err(|e| FileOpError::Io {
        op,
        what: "creating",
        path: host.clone(),
        source: e.error,
    })?;
    drop(file);
    std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o600)).map_err(io_err(
        op,
        "setting mode of",
        &host,
    ))?;
    std::os::unix::fs::lchown(&host, Some(owner.0), Some(owner.1)).map_err(io_err(
        op,
        "changing owner of",
        &host,
    ))?;
    if let Some(t) = last_modified {
        let t = filetime::FileTime::from_unix_time(t, 0);
        filetime::set_file_times(&host, t, t).map_err(io_err(op, "setting times of", &host))?;
    }
    Ok(())
}
