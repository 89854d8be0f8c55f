//! How a blob or an archive is compressed: one type for layers read from registries and
//! archives, layers we write, `ADD` archives and `builder load` input.
//!
//! Reading trusts the magic bytes, never the media type or the file name (media types lie more
//! often than magic). Writing a layer knows only the compressions OCI has media types for.

use std::io::{self, BufRead, Read};

/// A compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Plain (a tar as it is).
    None,
    /// gzip, one or more members; the default for layers we write (readable everywhere).
    #[default]
    Gzip,
    /// zstd, one or more frames.
    Zstd,
    /// bzip2 (`ADD` archives only).
    Bzip2,
    /// xz (`ADD` archives only).
    Xz,
}

impl Compression {
    /// Detects the compression from the magic number at the start of a stream.
    pub fn detect(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else {
            Compression::None
        }
    }

    /// The OCI media type of a layer compressed this way; `None` for the compressions OCI
    /// layers cannot use (bzip2, xz).
    pub fn oci_layer_media_type(self) -> Option<&'static str> {
        use cache::media_types;
        match self {
            Compression::None => Some(media_types::OCI_LAYER),
            Compression::Gzip => Some(media_types::OCI_LAYER_GZIP),
            Compression::Zstd => Some(media_types::OCI_LAYER_ZSTD),
            Compression::Bzip2 | Compression::Xz => None,
        }
    }

    /// Compresses one independent chunk (a whole gzip member or zstd frame) at `level` (gzip
    /// 0-9, default 6; zstd 1-22, default 3).
    pub fn compress_chunk(self, chunk: &[u8], level: Option<i32>) -> io::Result<Vec<u8>> {
        use std::io::Write;
        match self {
            Compression::Gzip => {
                let level = flate2::Compression::new(level.unwrap_or(6).clamp(0, 9) as u32);
                // GzBuilder's defaults (mtime 0, no name, OS "unknown") keep members
                // reproducible.
                let mut enc =
                    flate2::GzBuilder::new().write(Vec::with_capacity(chunk.len() / 3), level);
                enc.write_all(chunk)?;
                enc.finish()
            }
            Compression::Zstd => zstd::bulk::compress(chunk, level.unwrap_or(3)),
            Compression::None => Ok(chunk.to_vec()),
            Compression::Bzip2 | Compression::Xz => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("layers are written with gzip, zstd or no compression, not {self:?}"),
            )),
        }
    }
}

/// Wraps `input` in the decompressor its magic number calls for.
pub fn decompress<'a, R: BufRead + 'a>(
    mut input: R,
) -> io::Result<(Compression, Box<dyn Read + 'a>)> {
    let kind = Compression::detect(input.fill_buf()?);
    let reader: Box<dyn Read + 'a> = match kind {
        Compression::None => Box::new(input),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(input)?),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
        Compression::Xz => Box::new(xz2::bufread::XzDecoder::new_multi_decoder(input)),
    };
    Ok((kind, reader))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_compression_reads_back_and_is_detected() {
        let data = b"some tar bytes".repeat(100);
        for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let packed = c.compress_chunk(&data, None).unwrap();
            let (seen, mut r) = decompress(&packed[..]).unwrap();
            assert_eq!(seen, c);
            let mut out = Vec::new();
            r.read_to_end(&mut out).unwrap();
            assert_eq!(out, data);
            assert!(c.oci_layer_media_type().is_some());
        }
        assert!(Compression::Xz.compress_chunk(&data, None).is_err());
        assert_eq!(Compression::Bzip2.oci_layer_media_type(), None);
    }
}
