//! layer (in progress).
