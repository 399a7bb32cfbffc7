//! A job's output on its way into `job_events`: [`LogParser`] turns Docker's timestamped log
//! messages into lines (split when too long, lossy UTF-8, `\r\n` handled) and tracks the resume
//! cursor; [`LogSink`] batches them for a writer task that stores them, fenced by the lease
//! epoch, while the log is read on; the sink keeps the head and the tail of a log that goes past
//! its cap.
//!
//! - `parser.rs`: Docker log messages into [`LogLine`]s, and the resume [`Cursor`];
//! - `cap.rs`: the [`LogCap`], and how a log past it keeps its head and its tail;
//! - `mask.rs`: the [`Masker`] that hides a job's secret variables in its lines;
//! - `sink.rs`: the [`LogSink`] the runner pushes lines and notices into;
//! - `writer.rs`: the task that stores the sink's batches, and the sink's handle to it.

mod cap;
mod mask;
mod parser;
mod sink;
mod writer;

pub use cap::LogCap;
pub use mask::{Masker, MASK};
pub use parser::{Cursor, LogLine, LogParser, DOCKER_PIECE_BYTES};
pub use sink::{LogSink, BATCH_BYTES, BATCH_DELAY, BATCH_LINES};
