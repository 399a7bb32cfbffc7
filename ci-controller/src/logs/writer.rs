//! The writer task: stores what the sink hands it, fenced by the lease epoch, while the log is
//! read on.

use ci_common::db::events::{self, NewEvent};
use ci_common::db::jobs::{self, LogProgress};
use ci_common::db::{lease, DbError, SqlitePool};
use ci_common::JobId;
use tokio::sync::{mpsc, oneshot};

/// Batches waiting for the writer (beyond that, reading the log waits for the database).
pub(super) const WRITER_QUEUE: usize = 6;
/// A writer that is behind commits what is waiting in one transaction of up to this many
/// lines (or bytes).
pub(super) const WRITE_MAX_LINES: usize = 8000;
const WRITE_MAX_BYTES: usize = 8 << 20;

/// A finished batch on its way to the writer: events, and the job's counters and cursor that
/// go with them (the cursor covers exactly the lines of this and earlier batches).
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) events: Vec<NewEvent>,
    pub(super) progress: LogProgress,
}

impl Batch {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.progress == LogProgress::default()
    }

    /// Appends a later batch: its events after ours, its counters added, its cursor wins.
    fn absorb(&mut self, later: Batch) {
        if self.events.is_empty() {
            self.events = later.events;
        } else {
            self.events.extend(later.events);
        }
        let (mine, theirs) = (&mut self.progress, later.progress);
        mine.lines += theirs.lines;
        mine.bytes += theirs.bytes;
        mine.dropped_lines += theirs.dropped_lines;
        mine.dropped_bytes += theirs.dropped_bytes;
        if theirs.cursor.is_some() {
            mine.cursor = theirs.cursor;
        }
    }
}

pub(super) enum ToWriter {
    Batch(Batch),
    /// Answered once everything sent before it is committed.
    Sync(oneshot::Sender<()>),
}

/// Writes batches as they come, each in one `BEGIN IMMEDIATE` transaction fenced by the lease
/// epoch. When it is behind, everything waiting (up to [`WRITE_MAX_LINES`]) goes into one
/// transaction. Ends at the first error (the sink then reports it) or when the sink is gone.
pub(super) async fn write_batches(
    pool: SqlitePool,
    job: JobId,
    epoch: i64,
    mut rx: mpsc::Receiver<ToWriter>,
) -> Result<(), DbError> {
    let mut acks = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut batch = Batch::default();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                ToWriter::Batch(b) => batch.absorb(b),
                ToWriter::Sync(ack) => acks.push(ack),
            }
            if acks.is_empty()
                && batch.events.len() < WRITE_MAX_LINES
                && batch_bytes(&batch) < WRITE_MAX_BYTES
            {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit(&pool, job, epoch, &batch).await?;
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    Ok(())
}

fn batch_bytes(batch: &Batch) -> usize {
    batch.events.iter().map(|e| e.text.len()).sum()
}

async fn commit(pool: &SqlitePool, job: JobId, epoch: i64, batch: &Batch) -> Result<(), DbError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut tx, epoch).await?;
    if !batch.events.is_empty() {
        events::append(&mut tx, job, &batch.events).await?;
    }
    jobs::record_log_progress(&mut tx, job, &batch.progress).await?;
    tx.commit().await?;
    Ok(())
}
