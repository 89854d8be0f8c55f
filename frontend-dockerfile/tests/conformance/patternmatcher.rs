//! (data set runner; filled in with the dockerignore matcher)
use crate::SetResult;
use std::path::Path;

pub fn cases(_dir: &Path) -> Option<SetResult> {
    None
}
