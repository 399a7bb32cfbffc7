//! The sink: a job's lines and notices, batched and handed to the writer task; a log past its
//! cap keeps its head and its tail.

use std::time::Duration;

use ci_common::db::events::NewEvent;
use ci_common::db::jobs::LogProgress;
use ci_common::db::Db;
use ci_common::JobId;
use tokio::time::Instant;

use crate::error::JobError;

use super::cap::{CappedLog, LogCap};
use super::mask::Masker;
use super::parser::{Cursor, LogLine};
use super::writer::{PendingWrite, Writer};

/// A batch is handed to the writer when it has this many lines...
pub const BATCH_LINES: usize = 1000;
/// ...or this many bytes of text...
pub const BATCH_BYTES: usize = 1 << 20;
/// ...or when its first line has waited this long.
pub const BATCH_DELAY: Duration = Duration::from_millis(25);

/// Collects a job's events into batches and hands them to a writer task, so the log is read
/// while the previous batch commits. The queue to the writer is bounded: a slow database
/// slows the reader down instead of filling memory. [`LogSink::sync`] (and `end_of_log`)
/// wait until everything handed over is committed and report the writer's error, if any.
pub struct LogSink {
    writer: Writer,
    batch: Vec<NewEvent>,
    batch_bytes: usize,
    progress: LogProgress,
    first_pending: Option<Instant>,
    /// The log's head and tail (past its cap).
    log: CappedLog,
    latest_cursor: Option<Cursor>,
    /// The job's secret values, masked in every line.
    masker: Masker,
}

impl LogSink {
    /// A sink for a job that already stored `lines` lines of `bytes` bytes. Starts its writer
    /// task (which ends when the sink is dropped, after writing what it was given).
    pub fn new(
        db: impl Into<Db>,
        job: JobId,
        epoch: i64,
        cap: LogCap,
        lines: u64,
        bytes: u64,
    ) -> Self {
        Self {
            writer: Writer::spawn(db.into(), job, epoch),
            batch: Vec::with_capacity(BATCH_LINES),
            batch_bytes: 0,
            progress: LogProgress::default(),
            first_pending: None,
            log: CappedLog::new(cap, lines, bytes),
            latest_cursor: None,
            masker: Masker::default(),
        }
    }

    /// Masks these values in every line pushed from now on (the job's secret variables).
    pub fn mask(&mut self, masker: Masker) {
        self.masker = masker;
    }

    /// Adds a line to the batch, or (past the head of a capped log) to the kept tail.
    pub fn push_line(&mut self, line: LogLine) {
        let event = NewEvent::log(line.stream, line.ts, self.masker.mask(line.text));
        if let Some(event) = self.log.admit(event) {
            let len = event.text.len();
            self.progress.lines += 1;
            self.progress.bytes += len as i64;
            self.batch_bytes += len;
            self.batch.push(event);
            self.first_pending.get_or_insert_with(Instant::now);
        }
    }

    /// Records how far the log has been read, once the lines before it are pushed.
    pub fn set_cursor(&mut self, cursor: &Cursor) {
        if !self.log.is_truncating() {
            self.progress.cursor = Some(cursor.stored());
            self.first_pending.get_or_insert_with(Instant::now);
        }
        match &mut self.latest_cursor {
            Some(latest) => latest.clone_from(cursor),
            None => self.latest_cursor = Some(cursor.clone()),
        }
    }

    /// Whether the batch is full and should be handed over now.
    pub fn is_full(&self) -> bool {
        self.batch.len() >= BATCH_LINES || self.batch_bytes >= BATCH_BYTES
    }

    /// When the pending batch must be handed over at the latest.
    pub fn deadline(&self) -> Option<Instant> {
        self.first_pending.map(|t| t + BATCH_DELAY)
    }

    /// Hands a notice (after every line pushed before it) to the writer at once.
    pub async fn notice(&mut self, text: impl Into<String>) -> Result<(), JobError> {
        self.batch.push(NewEvent::notice(text));
        self.flush().await
    }

    /// Hands the pending batch to the writer; waits only while the writer's queue is full.
    /// Fails if the writer has stopped on an error (with that error).
    pub async fn flush(&mut self) -> Result<(), JobError> {
        self.first_pending = None;
        if self.batch.is_empty() && self.progress == LogProgress::default() {
            return Ok(());
        }
        let pending = PendingWrite {
            events: std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_LINES)),
            progress: std::mem::take(&mut self.progress),
        };
        self.batch_bytes = 0;
        self.writer.write(pending).await
    }

    /// Hands over the pending batch and waits until everything handed over is committed.
    pub async fn sync(&mut self) -> Result<(), JobError> {
        self.flush().await?;
        self.writer.sync().await
    }

    /// The container's log is complete: writes what is pending, and for a truncated log one
    /// "log truncated" notice followed by the kept tail, and waits until all of it is stored.
    pub async fn end_of_log(&mut self) -> Result<(), JobError> {
        if self.log.end(&mut self.batch, &mut self.progress) {
            // The tail's lines end where the log was read up to.
            self.progress.cursor = self.latest_cursor.as_ref().map(Cursor::stored);
        }
        self.sync().await
    }

    /// Forgets the cursor of the previous container (a new phase starts a new log).
    pub fn new_container(&mut self) {
        self.latest_cursor = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use ci_common::db::{events, jobs, lease, users, SqlitePool};
    use ci_common::{EventKind, LogStream};

    use crate::logs::parser::parse_ts;
    use crate::logs::writer::{WRITER_QUEUE, WRITE_MAX_LINES};

    struct Db {
        _dir: tempfile::TempDir,
        pool: SqlitePool,
        epoch: i64,
        job: JobId,
        /// The job's events before the sink's (from the claim).
        base: i64,
    }

    async fn db() -> Db {
        let (dir, pool) = ci_common::testing::temp_db().await;
        let epoch = lease::acquire(&pool, "test").await.unwrap().epoch;
        let user = users::create(&pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        jobs::create(&pool, user.id, "test", b"zip").await.unwrap();
        let job = jobs::claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
            .unwrap()
            .id;
        let base = events::last_seq(&pool, job).await.unwrap();
        Db {
            base,
            _dir: dir,
            pool,
            epoch,
            job,
        }
    }

    fn sink(d: &Db, cap: LogCap) -> LogSink {
        LogSink::new(d.pool.clone(), d.job, d.epoch, cap, 0, 0)
    }

    fn ts_of(i: usize) -> String {
        format!(
            "2024-05-01T10:00:{:02}.{:09}Z",
            i / 1_000_000,
            i % 1_000_000
        )
    }

    /// Pushes lines `0..n` with their cursors the way `follow` does.
    async fn feed(sink: &mut LogSink, range: std::ops::Range<usize>) {
        for i in range {
            let ts = ts_of(i);
            sink.push_line(LogLine {
                stream: LogStream::Stdout,
                ts: parse_ts(&ts).unwrap(),
                text: format!("line {i}"),
            });
            sink.set_cursor(&Cursor::Time { ts, count: 1 });
            if sink.is_full() {
                sink.flush().await.unwrap();
            }
        }
    }

    async fn stored(d: &Db) -> Vec<events::EventRow> {
        events::list_after(&d.pool, d.job, d.base, 1_000_000)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn batches_are_stored_in_order_with_their_cursor_once_drained() {
        let d = db().await;
        let mut sink = sink(&d, LogCap { lines: 0, bytes: 0 });
        sink.notice("running tests").await.unwrap();
        let n = 25 * BATCH_LINES + 7;
        feed(&mut sink, 0..n).await;
        sink.end_of_log().await.unwrap();
        let rows = stored(&d).await;
        assert_eq!(rows.len(), n + 1);
        assert_eq!(rows[0].text, "running tests");
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(row.seq, d.base + i as i64 + 1, "gap-free");
        }
        for (i, row) in rows[1..].iter().enumerate() {
            assert_eq!(row.kind, EventKind::Log);
            assert_eq!(row.text, format!("line {i}"));
        }
        let job = jobs::get(&d.pool, d.job).await.unwrap().unwrap();
        assert_eq!(job.log_lines, n as i64);
        assert_eq!(job.log_cursor.as_deref(), Some(ts_of(n - 1).as_str()));
        assert_eq!(job.log_cursor_skip, 1);
    }

    #[tokio::test]
    async fn a_pending_batch_is_stored_within_the_delay_without_a_full_batch() {
        let d = db().await;
        let mut sink = sink(&d, LogCap { lines: 0, bytes: 0 });
        feed(&mut sink, 0..3).await;
        let deadline = sink.deadline().expect("lines are pending");
        assert!(deadline <= Instant::now() + BATCH_DELAY);
        tokio::time::sleep_until(deadline).await;
        sink.flush().await.unwrap();
        // Handed over, not waited for: the writer stores it on its own.
        let wait = async {
            while stored(&d).await.len() < 3 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("stored without end_of_log");
    }

    #[tokio::test]
    async fn a_lost_lease_stops_the_writer_and_every_later_call_reports_it() {
        let d = db().await;
        let mut sink = sink(&d, LogCap { lines: 0, bytes: 0 });
        feed(&mut sink, 0..10).await;
        sink.sync().await.unwrap();
        lease::acquire(&d.pool, "another").await.unwrap();
        feed(&mut sink, 10..20).await;
        let err = sink.end_of_log().await.unwrap_err();
        assert!(
            matches!(err, JobError::LeaseLost(e) if e == d.epoch),
            "{err:?}"
        );
        sink.notice("more").await.unwrap_err();
        let err = sink.sync().await.unwrap_err();
        assert!(err.is_lease_lost(), "{err:?}");
        assert_eq!(stored(&d).await.len(), 10, "nothing after the takeover");
    }

    #[tokio::test]
    async fn a_slow_database_holds_the_reader_back_after_a_few_batches() {
        let d = db().await;
        let mut sink = sink(&d, LogCap { lines: 0, bytes: 0 });
        // Another connection holds the write lock (a write that adds nothing, not committed):
        // the writer waits on it.
        let mut blocker = d.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        jobs::record_log_progress(&mut blocker, d.job, &LogProgress::default())
            .await
            .unwrap();
        let mut handed = 0;
        let stuck = loop {
            feed(
                &mut sink,
                handed * BATCH_LINES..(handed + 1) * BATCH_LINES - 1,
            )
            .await;
            sink.push_line(LogLine {
                stream: LogStream::Stdout,
                ts: Utc::now(),
                text: "x".into(),
            });
            match tokio::time::timeout(Duration::from_millis(200), sink.flush()).await {
                Ok(result) => result.unwrap(),
                Err(_) => break handed,
            }
            handed += 1;
            // Queued, plus what the writer took at once into its waiting transaction.
            let bound = WRITER_QUEUE + WRITE_MAX_LINES / BATCH_LINES + 1;
            assert!(handed <= bound, "the queue is bounded");
        };
        assert!(stuck >= WRITER_QUEUE, "a few batches are queued first");
        blocker.rollback().await.unwrap();
        sink.end_of_log().await.unwrap();
    }

    #[tokio::test]
    async fn a_capped_log_keeps_head_notice_and_tail_through_the_writer() {
        let d = db().await;
        let mut sink = sink(
            &d,
            LogCap {
                lines: 3000,
                bytes: 0,
            },
        );
        feed(&mut sink, 0..10_000).await;
        sink.end_of_log().await.unwrap();
        let rows = stored(&d).await;
        assert_eq!(rows.len(), 3001);
        assert_eq!(rows[1499].text, "line 1499");
        assert!(rows[1500].text.starts_with("log truncated: 7000 lines"));
        assert_eq!(rows[1501].text, "line 8500");
        assert_eq!(rows[3000].text, "line 9999");
        let job = jobs::get(&d.pool, d.job).await.unwrap().unwrap();
        assert_eq!((job.log_lines, job.dropped_lines), (3000, 7000));
        assert_eq!(job.log_cursor.as_deref(), Some(ts_of(9999).as_str()));
    }
}
