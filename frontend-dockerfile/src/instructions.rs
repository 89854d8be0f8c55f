//! instructions (in progress).
