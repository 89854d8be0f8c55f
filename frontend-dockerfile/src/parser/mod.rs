//! Dockerfile text → AST, with BuildKit's grammar exactly (see `ast` for the node shape).

pub mod ast;
