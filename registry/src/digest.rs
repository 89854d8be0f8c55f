//! Content digests (`sha256:<64 hex>`): the identity of every blob and manifest the client moves.
//!
//! The project has one digest type, the content store's; the client re-exports it so that a
//! digest read from a registry is the same value that names the blob in the local store.

pub use cache::digest::{Digest, DigestError};
