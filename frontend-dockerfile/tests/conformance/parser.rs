//! (data set runners; filled in with the parser)
use crate::SetResult;
use std::path::Path;

pub fn testfiles(_dir: &Path) -> Option<SetResult> {
    None
}
pub fn negative(_dir: &Path) -> Option<SetResult> {
    None
}
pub fn line_numbers(_dir: &Path) -> Option<SetResult> {
    None
}
pub fn heredoc(_dir: &Path) -> Option<SetResult> {
    None
}
