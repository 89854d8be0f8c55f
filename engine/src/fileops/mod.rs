//! fileops (being written).
pub mod archive;
pub mod pattern;
pub mod root;
