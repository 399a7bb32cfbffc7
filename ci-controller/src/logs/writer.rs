//! The writer task: stores what the sink hands it, fenced by the lease epoch, while the log is
//! read on.

use ci_common::db::events::{self, NewEvent};
use ci_common::db::jobs::LogProgress;
use ci_common::db::{Db, DbError};
use ci_common::JobId;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::JobError;

/// Batches waiting for the writer (beyond that, reading the log waits for the database).
pub(super) const WRITER_QUEUE: usize = 6;
/// A writer that is behind commits what is waiting in one transaction of up to this many
/// lines (or bytes).
pub(super) const WRITE_MAX_LINES: usize = 8000;
const WRITE_MAX_BYTES: usize = 8 << 20;

/// What the writer is to store in one transaction: events, and the job's counters and cursor
/// that go with them (the cursor covers exactly the lines of this and earlier writes). The sink
/// hands one over per batch; a writer that is behind merges those waiting into one.
#[derive(Debug, Default)]
pub(super) struct PendingWrite {
    pub(super) events: Vec<NewEvent>,
    pub(super) progress: LogProgress,
}

impl PendingWrite {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.progress == LogProgress::default()
    }

    /// The bytes of text of its events.
    fn text_bytes(&self) -> usize {
        self.events.iter().map(|e| e.text.len()).sum()
    }

    /// Appends a later write: its events after ours, its counters added, its cursor wins.
    fn absorb(&mut self, later: PendingWrite) {
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

enum ToWriter {
    Write(PendingWrite),
    /// Answered once everything sent before it is committed.
    Sync(oneshot::Sender<()>),
}

/// Stores the sink's writes as they come, each in one transaction fenced by the lease epoch
/// ([`events::append_with_progress`]). When it is behind, everything waiting (up to
/// [`WRITE_MAX_LINES`]) goes into one transaction. Ends at the first error (the sink then
/// reports it) or when the sink is gone.
async fn write_batches(
    db: Db,
    job: JobId,
    epoch: i64,
    mut rx: mpsc::Receiver<ToWriter>,
) -> Result<(), DbError> {
    let mut acks = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut pending = PendingWrite::default();
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                ToWriter::Write(later) => pending.absorb(later),
                ToWriter::Sync(ack) => acks.push(ack),
            }
            if acks.is_empty()
                && pending.events.len() < WRITE_MAX_LINES
                && pending.text_bytes() < WRITE_MAX_BYTES
            {
                next = rx.try_recv().ok();
            }
        }
        if !pending.is_empty() {
            events::append_with_progress(&db, job, epoch, &pending.events, &pending.progress)
                .await?;
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
    Ok(())
}

/// The sink's end of its writer task: hands writes over and reports why the task stopped.
pub(super) struct Writer {
    epoch: i64,
    to_writer: Option<mpsc::Sender<ToWriter>>,
    task: Option<JoinHandle<Result<(), DbError>>>,
    /// The writer ended with `LeaseLost` (later calls report it again).
    lease_lost: bool,
}

impl Writer {
    /// Starts the writer task of a job (it ends when this handle is dropped, after writing
    /// what it was given).
    pub(super) fn spawn(db: Db, job: JobId, epoch: i64) -> Self {
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let task = tokio::spawn(write_batches(db, job, epoch, rx));
        Self {
            epoch,
            to_writer: Some(tx),
            task: Some(task),
            lease_lost: false,
        }
    }

    /// Hands a write over; waits only while the writer's queue is full. Fails if the writer
    /// has stopped on an error (with that error).
    pub(super) async fn write(&mut self, pending: PendingWrite) -> Result<(), JobError> {
        self.send(ToWriter::Write(pending)).await
    }

    /// Waits until everything handed over is committed.
    pub(super) async fn sync(&mut self) -> Result<(), JobError> {
        let (ack, done) = oneshot::channel();
        self.send(ToWriter::Sync(ack)).await?;
        match done.await {
            Ok(()) => Ok(()),
            Err(_) => Err(self.stopped().await),
        }
    }

    async fn send(&mut self, msg: ToWriter) -> Result<(), JobError> {
        let sent = match &self.to_writer {
            Some(tx) => tx.send(msg).await.is_ok(),
            None => false,
        };
        if sent {
            Ok(())
        } else {
            Err(self.stopped().await)
        }
    }

    /// Why the writer stopped (it only stops early on an error).
    async fn stopped(&mut self) -> JobError {
        self.to_writer = None;
        let ended = match self.task.take() {
            Some(task) => task.await,
            None => Ok(Ok(())),
        };
        match ended {
            Ok(Err(e)) => {
                let e = JobError::from(e);
                self.lease_lost = e.is_lease_lost();
                e
            }
            _ if self.lease_lost => JobError::LeaseLost(self.epoch),
            Ok(Ok(())) => {
                JobError::LogWriter("the log writer stopped after an earlier error".to_owned())
            }
            Err(join) => JobError::LogWriter(format!("the log writer failed: {join}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ci_common::LogStream;

    fn write(texts: &[&str], lines: i64, cursor: Option<&str>) -> PendingWrite {
        PendingWrite {
            events: texts
                .iter()
                .map(|t| NewEvent::log(LogStream::Stdout, chrono::Utc::now(), *t))
                .collect(),
            progress: LogProgress {
                lines,
                bytes: lines * 10,
                dropped_lines: 1,
                dropped_bytes: 2,
                cursor: cursor.map(|ts| (ts.to_owned(), 1)),
            },
        }
    }

    #[test]
    fn writes_waiting_together_become_one_in_order_with_the_last_cursor() {
        let mut pending = PendingWrite::default();
        assert!(pending.is_empty());
        pending.absorb(write(&["a", "b"], 2, Some("t1")));
        pending.absorb(write(&["c"], 1, Some("t2")));
        // A notice alone carries no cursor: the one before it stays.
        pending.absorb(write(&["notice"], 0, None));
        let texts: Vec<_> = pending.events.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["a", "b", "c", "notice"]);
        assert_eq!(pending.text_bytes(), 9);
        let p = &pending.progress;
        assert_eq!(
            (p.lines, p.bytes, p.dropped_lines, p.dropped_bytes),
            (3, 30, 3, 6)
        );
        assert_eq!(p.cursor, Some(("t2".to_owned(), 1)));
        assert!(!pending.is_empty());
    }
}
