//! The solver: cache keys, reuse, and parallel execution of the build graph.

pub mod progress;
pub mod reason;
