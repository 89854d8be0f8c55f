//! The client's error type: every variant names the registry and, where there is one, the
//! repository and blob or manifest involved.

use crate::auth::AuthError;
use crate::digest::{Digest, DigestError};
use crate::reference::ReferenceError;
use crate::store::StoreError;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The image reference is malformed.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Credentials could not be read or written.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The local blob store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The local image store (names and records) failed.
    #[error(transparent)]
    ImageStore(#[from] cache::ImageStoreError),
    /// The HTTP client could not be built (TLS set-up).
    #[error("cannot set up the HTTP client: {0}")]
    ClientSetup(#[source] reqwest::Error),
    /// The registry could not be reached, or the connection broke, on every attempt.
    #[error("registry {registry} unreachable while {what} (gave up after {attempts} attempts): {message}")]
    Unreachable {
        registry: String,
        what: String,
        attempts: u32,
        message: String,
    },
    /// The registry answered with an unexpected status.
    #[error("registry {registry} answered {status} while {what}{}", if message.is_empty() { String::new() } else { format!(": {message}") })]
    Status {
        registry: String,
        what: String,
        status: u16,
        message: String,
    },
    /// The registry refused the credentials, or there were none and it requires some.
    #[error("authentication to {registry} failed while {what}: {message}")]
    Unauthorized {
        registry: String,
        what: String,
        message: String,
    },
    /// The manifest or tag does not exist.
    #[error("{reference}: not found in registry {registry}")]
    NotFound { registry: String, reference: String },
    /// Downloaded content does not hash to its digest; nothing of it was kept.
    #[error(
        "registry {registry} sent corrupt content for {what}: expected {expected}, got {actual}"
    )]
    DigestMismatch {
        registry: String,
        what: String,
        expected: Digest,
        actual: Digest,
    },
    /// Downloaded content has the wrong length; nothing of it was kept.
    #[error("registry {registry} sent {actual} bytes for {what}, expected {expected}")]
    SizeMismatch {
        registry: String,
        what: String,
        expected: u64,
        actual: u64,
    },
    /// A manifest is not valid JSON of the expected shape.
    #[error("invalid manifest {what} from {registry}: {message}")]
    InvalidManifest {
        registry: String,
        what: String,
        message: String,
    },
    /// The manifest's media type is not one this client handles.
    #[error("unsupported manifest media type `{media_type}` for {reference}")]
    UnsupportedMediaType {
        reference: String,
        media_type: String,
    },
    /// An index lists no manifest for the wanted platform.
    #[error("no manifest for platform {wanted} in {reference} (available: {})", if available.is_empty() { "none".to_string() } else { available.join(", ") })]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: Vec<String>,
    },
    /// The registry sent a malformed header or digest.
    #[error("registry {registry} sent an invalid {what}: {message}")]
    Protocol {
        registry: String,
        what: String,
        message: String,
    },
    /// A digest in a manifest is malformed.
    #[error(transparent)]
    Digest(#[from] DigestError),
}
