//! The build engine: it knows build graphs, not Dockerfiles.
//!
//! [`graph`] is the DAG a frontend produces; [`solver`] computes cache keys and schedules the
//! vertices that miss on tokio; [`executor`] runs RUN steps in a sandbox; [`snapshot`] unpacks
//! layers into read-only directories; [`fileops`] implements COPY/ADD through one rooted-path type;
//! [`layer`] turns a diff directory into an OCI layer; [`image`] holds configs, manifests and
//! history; [`export`] writes images to the local store, OCI/docker archives and directories;
//! [`container`] runs an image's command in the same sandbox (`builder run`).

pub mod compression;
pub mod container;
pub mod executor;
pub mod export;
pub mod fileops;
pub mod graph;
pub mod image;
pub mod layer;
pub mod snapshot;
pub mod solver;
pub mod source;
pub mod userdb;
pub mod worker;
