//! What the crates' tests share: fixtures that start real servers ([`dockerd`], [`registry`]),
//! and [`Need`], the one rule for a test that cannot run on every machine.
//!
//! # Tests that cannot run here
//!
//! A test that needs root or a tool says so twice:
//!
//! ```text
//! #[test]
//! #[cfg_attr(missing_root, ignore = "needs root (overlay mounts)")]
//! fn builds_as_root() {
//!     test_support::require(&[Need::Root]);
//!     ...
//! }
//! ```
//!
//! The crate's build script ([`emit_cfgs`]) sets `missing_root`, `missing_skopeo`, ... for what this
//! machine lacks, so the test is reported as ignored, with its reason, instead of passing
//! without running. When the `CI` environment variable is set the build script sets none of
//! them: every test runs, and [`require`] fails the ones whose needs are missing, because a
//! skipped test that passes in CI hides missing coverage.

pub mod dockerd;
pub mod need;
pub mod registry;

pub use need::{emit_cfgs, require, Need};
