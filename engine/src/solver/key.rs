//! Cache keys: what makes two steps the same step.
//!
//! A step's key is blake3 over:
//! - its kind and its own definition: the op's canonical JSON (instruction, flags, env including the
//!   build args it can see, user, workdir, shell-wrapped argv, mounts, network, security) and the
//!   platform. Proxy build args are left out (the graph already strips them), secrets never enter
//!   (only their ids are in the op);
//! - the keys of its inputs, in order (so a change above a step changes its key);
//! - for a COPY/ADD from a build context, the digest of what the copy writes
//!   (`fileops::plan::CopyPlan::digest`: the same resolution the copy executes), by destination
//!   path: type, mode as written, owner when kept, link target, content, hardlinks; never mtime;
//! - for a RUN bind or cache mount of a build context, the checksum of the entries below the
//!   mounted path (see `source::context`): path, type, permission bits, uid/gid, size, link
//!   target, bytes;
//! - for an image source, the resolved manifest digest (the reference text alone is not enough:
//!   `alpine:3` moves).
//!
//! A metadata-only step (`Op::Config`) has its input's key: the filesystem is unchanged, so a LABEL
//! edit re-runs nothing below it.

use crate::graph::{Op, Platform};
use cache::keys::CacheKey;

/// Incrementally builds a [`CacheKey`]; every field is length-prefixed so concatenations cannot
/// collide.
pub struct KeyBuilder(blake3::Hasher);

impl KeyBuilder {
    /// Starts a key for a step of the given kind (`exec`, `file`, `image`, ...).
    pub fn new(kind: &str) -> Self {
        let mut h = blake3::Hasher::new();
        h.update(b"builder-key-v1\0");
        let mut k = KeyBuilder(h);
        k.field(kind.as_bytes());
        k
    }

    /// Adds one field.
    pub fn field(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds an input's key.
    pub fn input(&mut self, key: &CacheKey) -> &mut Self {
        self.field(&key.0)
    }

    /// The finished key.
    pub fn finish(&self) -> CacheKey {
        CacheKey(*self.0.finalize().as_bytes())
    }
}

/// The digest of a step's own definition (its op and platform, not its inputs), hex.
pub fn definition_digest(op: &Op, platform: &Platform) -> String {
    // Serializing plain data with no maps cannot fail; fall back to Debug text just in case.
    let op = op.identity();
    let bytes =
        serde_json::to_vec(&(&*op, platform)).unwrap_or_else(|_| format!("{op:?}").into_bytes());
    blake3::hash(&bytes).to_hex().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_length_prefixed() {
        let a = KeyBuilder::new("x").field(b"ab").field(b"c").finish();
        let b = KeyBuilder::new("x").field(b"a").field(b"bc").finish();
        assert_ne!(a, b);
        let c = KeyBuilder::new("x").field(b"ab").field(b"c").finish();
        assert_eq!(a, c);
    }
}
