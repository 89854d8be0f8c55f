//! OCI distribution client: reference normalisation, auth, and pull/push that move only the blobs
//! the other side lacks.
//!
//! What it owns: talking to registries (`/v2/` API, Docker Hub included), Docker's credentials
//! (`config.json`, credential helpers), and the per-blob decisions of a transfer. What it
//! promises: every downloaded blob is verified against its digest before it becomes visible in
//! the [`BlobStore`] (a bad blob leaves nothing behind); a push uploads no blob the registry
//! already holds; failures name the registry and the blob or manifest involved.
//!
//! It does not own local storage: callers pass any [`BlobStore`] (the project's content store, or
//! [`DirBlobStore`]).

pub mod auth;
pub mod client;
pub mod digest;
pub mod error;
pub mod manifest;
pub mod progress;
pub mod pull;
pub mod push;
pub mod reference;
mod session;
pub mod store;

pub use client::{
    normalize_registry, parse_insecure_registries, Client, ClientOptions, INSECURE_REGISTRIES_ENV,
};
pub use digest::Digest;
pub use error::RegistryError;
pub use manifest::{Descriptor, Index, Manifest, Platform};
pub use progress::{no_progress, Progress, ProgressEvent};
pub use pull::{FetchedManifest, PulledArtifact, PulledImage};
pub use push::{BlobPush, PushOptions, PushedManifest};
pub use reference::{parse_reference, Reference, ReferenceError};
pub use store::{BlobIngest, BlobReader, BlobStore, DirBlobStore, StoreError};
