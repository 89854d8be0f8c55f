//! The Dockerfile frontend: text in, build graph out.
//!
//! Three steps, three modules, as BuildKit does it: [`parser`] turns text into an AST that keeps
//! byte spans and line numbers; [`instructions`] turns AST nodes into typed, validated
//! instructions (expanding words with [`shell`]); [`lower`] turns stages into an
//! [`engine::graph::Definition`]. [`dockerignore`] decides which context files a build may see,
//! and [`lint`] reads the same AST to give advice.
//!
//! Invariant: nothing here touches the disk beyond reading the Dockerfile and `.dockerignore`.

pub mod dockerignore;
pub mod instructions;
pub mod lint;
pub mod lower;
pub mod parser;
pub mod shell;
