//! One module per group of `builder` subcommands.
pub mod build;
pub mod build_request;
pub mod cache;
pub mod check;
pub mod graph;
pub mod images;
pub mod lint;
pub mod login;
pub mod parse;
pub mod registry;
pub mod run;
pub mod template;
