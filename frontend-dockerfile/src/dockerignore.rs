//! dockerignore (in progress).
