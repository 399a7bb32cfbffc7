//! What the `ci` binaries share: identifiers, the job state machine, the wire types of the HTTP
//! API and its SSE stream, API keys, and (feature `db`) the SQLite database layer.

pub mod api;
pub mod archive;
pub mod config;
pub mod ids;
pub mod job;
pub mod keys;
pub mod policy;
pub mod project;
pub mod step;

#[cfg(feature = "db")]
pub mod db;

pub use ids::{ApiKeyId, JobId, UserId};
pub use job::{EventKind, JobStatus, LogStream};
pub use step::StepState;
