//! One module per group of `builder` subcommands.
pub mod lint;
pub mod parse;
