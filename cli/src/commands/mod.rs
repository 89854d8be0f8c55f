//! One module per group of `builder` subcommands.
