//! Where a build's inputs come from: the build context (walked once per build, hashed only where a
//! step reads it) and, through the image store or a registry, base images.

pub mod context;
pub mod image;
