//! What the `ci` binaries share: identifiers, the job state machine, the wire types of the HTTP
//! API and its SSE stream, API keys, (feature `db`) the SQLite database layer, and (feature
//! `testing`, for tests only) helpers that every crate's tests share.

pub mod api;
pub mod archive;
pub mod cache;
pub mod config;
pub mod git;
pub mod ids;
pub mod job;
pub mod keys;
pub mod outbound;
pub mod policy;
pub mod project;
pub mod results;
pub mod secrets;
pub mod step;
pub mod tasks;
pub mod webhooks;

#[cfg(feature = "db")]
pub mod db;

#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use ids::{ApiKeyId, DeliveryId, JobId, TeamId, UserId, WebhookId};
pub use job::{EventKind, JobStatus, LogStream};
pub use step::StepState;
