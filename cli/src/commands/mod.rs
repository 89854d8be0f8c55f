//! One module per group of `builder` subcommands.
pub mod login;
pub mod parse;
