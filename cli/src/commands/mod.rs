//! One module per group of `builder` subcommands.

pub mod images;
pub mod parse;
pub mod graph;
pub mod template;
