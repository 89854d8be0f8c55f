//! One module per group of `builder` subcommands.
pub mod parse;
