//! (data set runners; filled in with the parser)
use crate::SetResult;
use std::path::Path;

pub fn goldens(_dir: &Path) -> Option<SetResult> {
    None
}
