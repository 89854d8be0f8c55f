//! solver (in progress).
