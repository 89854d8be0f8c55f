//! export (in progress).
