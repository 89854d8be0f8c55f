//! lint (in progress).
