//! One module per group of `builder` subcommands.
pub mod build;

pub mod graph;
pub mod images;
pub mod parse;
pub mod template;
