//! lower (in progress).
