//! fileops (in progress).
