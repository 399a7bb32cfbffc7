//! The `job_events` table: a job's log lines, notices, status changes and final result, numbered
//! `seq` = 1, 2, 3, ... without gaps. Appends happen inside a write transaction that orders
//! them (see [`append`]), which makes "last seq + 1" safe.

use chrono::{DateTime, Utc};
use sqlx::QueryBuilder;

use super::jobs::{self, LogProgress};
use super::{changes, lease, on_exec, BeginWrite as _, DbError, Exec};
use crate::api::{Outcome, StepView, StreamEvent};
use crate::results::TestSummary;
use crate::{EventKind, JobId, JobStatus, LogStream};

/// Rows per INSERT statement (7 parameters each, well under SQLite's limit).
const ROWS_PER_STATEMENT: usize = 500;

/// An event about to be written; its seq is assigned by [`append`].
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub kind: EventKind,
    pub stream: Option<LogStream>,
    pub ts: DateTime<Utc>,
    pub text: String,
    /// JSON details (status and complete events).
    pub data: Option<String>,
}

impl NewEvent {
    pub fn log(stream: LogStream, ts: DateTime<Utc>, text: impl Into<String>) -> Self {
        Self {
            kind: EventKind::Log,
            stream: Some(stream),
            ts,
            text: text.into(),
            data: None,
        }
    }

    pub fn notice(text: impl Into<String>) -> Self {
        Self {
            kind: EventKind::Notice,
            stream: None,
            ts: Utc::now(),
            text: text.into(),
            data: None,
        }
    }

    pub fn status(status: JobStatus, reason: Option<&str>) -> Self {
        let details = Outcome {
            reason: reason.map(str::to_owned),
            ..Outcome::new(status)
        };
        Self {
            kind: EventKind::Status,
            stream: None,
            ts: Utc::now(),
            text: status.as_str().to_owned(),
            data: Some(serde_json::to_string(&details).expect("outcome serializes")),
        }
    }

    /// A step started or ended (`text` is its name, `data` its [`StepView`]).
    pub fn step(step: &StepView, ts: DateTime<Utc>) -> Self {
        Self {
            kind: EventKind::Step,
            stream: None,
            ts,
            text: step.name.clone(),
            data: Some(serde_json::to_string(step).expect("a step serializes")),
        }
    }

    /// The job's test results.
    pub fn summary(summary: &TestSummary) -> Self {
        Self {
            kind: EventKind::Summary,
            stream: None,
            ts: Utc::now(),
            text: summary.counts.summary_line(),
            data: Some(serde_json::to_string(summary).expect("a summary serializes")),
        }
    }

    /// The two events that end a job: its final `status`, then `complete`.
    pub fn job_end(outcome: &Outcome) -> [Self; 2] {
        [
            Self::status(outcome.status, outcome.reason.as_deref()),
            Self::complete(outcome),
        ]
    }

    pub fn complete(outcome: &Outcome) -> Self {
        Self {
            kind: EventKind::Complete,
            stream: None,
            ts: Utc::now(),
            text: outcome.status.as_str().to_owned(),
            data: Some(serde_json::to_string(outcome).expect("outcome serializes")),
        }
    }
}

/// A stored event.
#[derive(Clone, Debug, PartialEq, sqlx::FromRow)]
pub struct EventRow {
    pub job_id: JobId,
    pub seq: i64,
    pub kind: EventKind,
    pub stream: Option<LogStream>,
    pub ts: DateTime<Utc>,
    pub text: String,
    pub data: Option<String>,
}

impl EventRow {
    /// The event as one line of the job's log (line number = `seq`), as the log views and
    /// `GET /api/v1/jobs/{id}/log` show it: a log line or notice as it was written, the other
    /// events as a short marker such as `== step test: passed (exit 0) ==` or `== job failed:
    /// tests failed ==`.
    pub fn line(&self) -> String {
        let with_reason = |what: String, reason: Option<&str>| match reason {
            Some(reason) => format!("== {what}: {reason} =="),
            None => format!("== {what} =="),
        };
        match self.to_stream_event() {
            StreamEvent::Log { data, .. } | StreamEvent::Notice { data, .. } => data,
            StreamEvent::Status { status, reason, .. } => {
                with_reason(format!("job {status}"), reason.as_deref())
            }
            StreamEvent::Step { step, .. } => {
                let exit = step
                    .exit_code
                    .map(|code| format!(" (exit {code})"))
                    .unwrap_or_default();
                with_reason(
                    format!("step {}: {}{exit}", step.name, step.state.as_str()),
                    step.reason.as_deref(),
                )
            }
            StreamEvent::Summary { .. } | StreamEvent::JobId { .. } => {
                format!("== {} ==", self.text)
            }
            StreamEvent::Complete { status, reason, .. } => {
                with_reason(format!("job {status}"), reason.as_deref())
            }
        }
    }

    /// The JSON payload sent to clients as the SSE event's `data`.
    pub fn to_stream_event(&self) -> StreamEvent {
        let details = || -> Outcome {
            self.data
                .as_deref()
                .and_then(|json| serde_json::from_str(json).ok())
                .unwrap_or_else(|| Outcome::new(self.text.parse().unwrap_or(JobStatus::Error)))
        };
        match self.kind {
            EventKind::Log => StreamEvent::Log {
                seq: self.seq,
                data: self.text.clone(),
                stream: self.stream.unwrap_or(LogStream::Stdout),
                ts: self.ts,
            },
            EventKind::Notice => StreamEvent::Notice {
                seq: self.seq,
                data: self.text.clone(),
                ts: self.ts,
            },
            EventKind::Status => {
                let details = details();
                StreamEvent::Status {
                    seq: self.seq,
                    status: details.status,
                    reason: details.reason,
                    ts: self.ts,
                }
            }
            EventKind::Step => {
                let step = self
                    .data
                    .as_deref()
                    .and_then(|json| serde_json::from_str(json).ok())
                    .unwrap_or_else(|| StepView {
                        name: self.text.clone(),
                        position: 0,
                        state: crate::StepState::Error,
                        exit_code: None,
                        reason: None,
                        started_at: None,
                        finished_at: None,
                    });
                StreamEvent::Step {
                    seq: self.seq,
                    step,
                    ts: self.ts,
                }
            }
            EventKind::Summary => StreamEvent::Summary {
                seq: self.seq,
                summary: self
                    .data
                    .as_deref()
                    .and_then(|json| serde_json::from_str(json).ok())
                    .unwrap_or_default(),
                ts: self.ts,
            },
            EventKind::Complete => {
                let outcome = details();
                StreamEvent::Complete {
                    seq: self.seq,
                    success: outcome.status.success(),
                    status: outcome.status,
                    reason: outcome.reason,
                    exit_code: outcome.exit_code,
                    tests: outcome.tests,
                    ts: self.ts,
                }
            }
        }
    }
}

/// Appends events after the job's last one and returns the new last seq. Must run inside a
/// write transaction ([`super::BeginWrite`]) so that seqs are unique and gap-free: on SQLite the
/// transaction holds the database's write lock; on PostgreSQL, whose writers do not exclude
/// each other, the job's row is locked first (to the end of the transaction,
/// [`jobs::lock_row`]), so that two appends to one job wait for each other instead of reading
/// the same last seq.
///
/// The rows go in as one statement per [`ROWS_PER_STATEMENT`] on SQLite, and as one statement
/// over arrays (`UNNEST`) on PostgreSQL, whose server parses and plans that statement once
/// however many lines a batch holds.
///
/// PostgreSQL's text cannot hold a NUL character (SQLite's can): there each NUL of a text is
/// stored as U+FFFD ([`super::stored_text`]), as `ci-admin db copy` does.
pub async fn append(
    ex: impl Into<Exec<'_>>,
    job_id: JobId,
    events: &[NewEvent],
) -> Result<i64, DbError> {
    match ex.into() {
        Exec::SqlitePool(pool) => append_sqlite(&mut *pool.acquire().await?, job_id, events).await,
        Exec::Sqlite(conn) => append_sqlite(conn, job_id, events).await,
        Exec::PgPool(pool) => append_postgres(&mut *pool.acquire().await?, job_id, events).await,
        Exec::Postgres(conn) => append_postgres(conn, job_id, events).await,
    }
}

async fn append_sqlite(
    conn: &mut sqlx::SqliteConnection,
    job_id: JobId,
    events: &[NewEvent],
) -> Result<i64, DbError> {
    let mut seq = last_seq(&mut *conn, job_id).await?;
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        let mut insert = QueryBuilder::new(
            "INSERT INTO job_events (job_id, seq, kind, stream, ts, text, data) ",
        );
        insert.push_values(chunk, |mut row, event| {
            seq += 1;
            row.push_bind(job_id)
                .push_bind(seq)
                .push_bind(event.kind)
                .push_bind(event.stream)
                .push_bind(super::timestamp(event.ts))
                .push_bind(event.text.as_str())
                .push_bind(event.data.as_deref());
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(seq)
}

async fn append_postgres(
    conn: &mut sqlx::PgConnection,
    job_id: JobId,
    events: &[NewEvent],
) -> Result<i64, DbError> {
    jobs::lock_row(&mut *conn, job_id).await?;
    let seq = last_seq(&mut *conn, job_id).await?;
    if events.is_empty() {
        return Ok(seq);
    }
    let text = |t| super::stored_text(true, t);
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    let streams: Vec<Option<&str>> = events
        .iter()
        .map(|e| e.stream.map(LogStream::as_str))
        .collect();
    let times: Vec<DateTime<Utc>> = events.iter().map(|e| super::timestamp(e.ts)).collect();
    let texts: Vec<std::borrow::Cow<'_, str>> = events.iter().map(|e| text(&e.text)).collect();
    let data: Vec<Option<std::borrow::Cow<'_, str>>> =
        events.iter().map(|e| e.data.as_deref().map(text)).collect();
    let texts: Vec<&str> = texts.iter().map(|t| t.as_ref()).collect();
    let data: Vec<Option<&str>> = data.iter().map(|d| d.as_deref()).collect();
    sqlx::query(
        "INSERT INTO job_events (job_id, seq, kind, stream, ts, text, data) \
         SELECT $1, $2 + e.n, e.kind, e.stream, e.ts, e.text, e.data \
         FROM UNNEST($3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[]) \
         WITH ORDINALITY AS e (kind, stream, ts, text, data, n)",
    )
    .bind(job_id)
    .bind(seq)
    .bind(kinds)
    .bind(streams)
    .bind(times)
    .bind(texts)
    .bind(data)
    .execute(&mut *conn)
    .await?;
    Ok(seq + events.len() as i64)
}

/// Stores part of a job's log for the controller holding the lease `epoch`, in one write
/// transaction ([`super::BeginWrite`]): checks the lease (a controller that lost it writes
/// nothing and gets [`DbError::LeaseLost`]), appends `events` and adds `progress` to the job's
/// log counters and cursor, so the stored cursor never gets ahead of the stored lines.
pub async fn append_with_progress(
    ex: impl Into<Exec<'_>>,
    job_id: JobId,
    epoch: i64,
    events: &[NewEvent],
    progress: &LogProgress,
) -> Result<(), DbError> {
    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
        lease::check(&mut *tx, epoch).await?;
        if !events.is_empty() {
            append(&mut *tx, job_id, events).await?;
        }
        jobs::record_log_progress(&mut *tx, job_id, progress).await?;
        changes::notify(&mut *tx).await?;
        tx.commit().await?;
    });
    Ok(())
}

/// The job's last seq (0 when it has no events).
pub async fn last_seq(ex: impl Into<Exec<'_>>, job_id: JobId) -> Result<i64, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT COALESCE(MAX(seq), 0) FROM job_events WHERE job_id = $1"
    )
    .bind(job_id)
    .fetch_one(e)
    .await?))
}

/// Up to `limit` events with seq > `after`, in order.
pub async fn list_after(
    ex: impl Into<Exec<'_>>,
    job_id: JobId,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT job_id, seq, kind, stream, ts, text, data FROM job_events
         WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(job_id)
    .bind(after)
    .bind(limit)
    .fetch_all(e)
    .await?))
}

/// The events with `from <= seq <= to`, in order (at most `to - from + 1`).
pub async fn between(
    ex: impl Into<Exec<'_>>,
    job_id: JobId,
    from: i64,
    to: i64,
) -> Result<Vec<EventRow>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT job_id, seq, kind, stream, ts, text, data FROM job_events
         WHERE job_id = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq",
    )
    .bind(job_id)
    .bind(from)
    .bind(to)
    .fetch_all(e)
    .await?))
}

/// Up to `limit` of the program's own lines (`log` events) with seq > `after`, in order: the
/// raw log, page by page.
pub async fn log_lines_after(
    ex: impl Into<Exec<'_>>,
    job_id: JobId,
    after: i64,
    limit: i64,
) -> Result<Vec<(i64, String)>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT seq, text FROM job_events
         WHERE job_id = $1 AND seq > $2 AND kind = 'log' ORDER BY seq LIMIT $3",
    )
    .bind(job_id)
    .bind(after)
    .bind(limit)
    .fetch_all(e)
    .await?))
}

/// Up to `limit` events with seq > `after` whose text contains `needle`, ignoring the case of
/// ASCII letters, in order.
pub async fn search(
    ex: impl Into<Exec<'_>>,
    job_id: JobId,
    needle: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<EventRow>, DbError> {
    // "Contains" is SQLite's instr and PostgreSQL's strpos (neither has the other's). Both
    // lower() only ASCII letters here: SQLite's always, PostgreSQL's under the column's
    // collation "C", which the needle is given too.
    const SQLITE: &str = "SELECT job_id, seq, kind, stream, ts, text, data FROM job_events
         WHERE job_id = $1 AND seq > $2 AND instr(lower(text), lower($3)) > 0
         ORDER BY seq LIMIT $4";
    const POSTGRES: &str = r#"SELECT job_id, seq, kind, stream, ts, text, data FROM job_events
         WHERE job_id = $1 AND seq > $2 AND strpos(lower(text), lower($3 COLLATE "C")) > 0
         ORDER BY seq LIMIT $4"#;
    let ex = ex.into();
    let sql = if ex.is_postgres() { POSTGRES } else { SQLITE };
    Ok(on_exec!(ex, |e| sqlx::query_as(sql)
        .bind(job_id)
        .bind(after)
        .bind(needle)
        .bind(limit)
        .fetch_all(e)
        .await?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::testing::temp_db;
    use crate::db::{jobs, lease, uploads, users};
    use crate::testing::{backends, job_with_lease, take_over_lease, Backend};

    /// `n` lines `{prefix} {i}` appended in one write transaction, as the controller's writer
    /// does; returns the last seq.
    async fn append_lines(db: &Backend, job: JobId, prefix: &str, n: usize) -> i64 {
        let lines: Vec<_> = (0..n)
            .map(|i| NewEvent::log(LogStream::Stdout, Utc::now(), format!("{prefix} {i}")))
            .collect();
        on_exec!(db.exec(), |e| {
            let mut tx = e.begin_write().await.unwrap();
            let last = append(&mut *tx, job, &lines).await.unwrap();
            tx.commit().await.unwrap();
            last
        })
    }

    #[tokio::test]
    async fn concurrent_appends_to_one_job_get_unique_gapless_seqs_on_every_backend() {
        for db in backends().await {
            let (job, _) = job_with_lease(&db).await;
            let db = std::sync::Arc::new(db);
            let writers: Vec<_> = (0..6)
                .map(|w| {
                    let db = db.clone();
                    tokio::spawn(async move {
                        for round in 0..5 {
                            append_lines(&db, job, &format!("w{w} r{round}"), 40).await;
                        }
                    })
                })
                .collect();
            for writer in writers {
                writer.await.unwrap();
            }
            let events = list_after(db.exec(), job, 0, 10_000).await.unwrap();
            let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, (1..=1200).collect::<Vec<_>>(), "{db:?}");
            // Each transaction's lines are consecutive: no writer's batch was interleaved.
            for batch in events.chunks(40) {
                let prefix = batch[0].text.rsplit_once(' ').unwrap().0;
                assert!(batch.iter().all(|e| e.text.starts_with(prefix)), "{db:?}");
            }
        }
    }

    #[tokio::test]
    async fn lines_read_back_by_range_raw_log_and_search_with_nul_kept_where_the_backend_can() {
        for db in backends().await {
            let (job, _) = job_with_lease(&db).await;
            assert_eq!(last_seq(db.exec(), job).await.unwrap(), 0);
            assert_eq!(append_lines(&db, job, "line", 1234).await, 1234);
            let odd = NewEvent::log(LogStream::Stderr, Utc::now(), "Ünïcode LINE 123 a\0b «»");
            on_exec!(db.exec(), |e| {
                let mut tx = e.begin_write().await.unwrap();
                append(&mut *tx, job, std::slice::from_ref(&odd))
                    .await
                    .unwrap();
                tx.commit().await.unwrap();
            });
            let last = list_after(db.exec(), job, 1234, 10).await.unwrap();
            let expected = match db {
                Backend::Sqlite(_) => "Ünïcode LINE 123 a\0b «»",
                Backend::Postgres(_) => "Ünïcode LINE 123 a\u{FFFD}b «»",
            };
            assert_eq!(
                (
                    last[0].seq,
                    last[0].stream,
                    last[0].ts,
                    last[0].text.as_str()
                ),
                (
                    1235,
                    Some(LogStream::Stderr),
                    crate::db::timestamp(odd.ts),
                    expected
                ),
                "{db:?}"
            );
            let range = between(db.exec(), job, 1, 2).await.unwrap();
            let lines: Vec<String> = range.iter().map(EventRow::line).collect();
            assert_eq!(lines, ["line 0", "line 1"]);
            let raw = log_lines_after(db.exec(), job, 1232, 10).await.unwrap();
            assert_eq!(raw.len(), 3);
            let found = search(db.exec(), job, "LINE 123", 0, 100).await.unwrap();
            let seqs: Vec<i64> = found.iter().map(|e| e.seq).collect();
            assert_eq!(seqs, [124, 1231, 1232, 1233, 1234, 1235], "{db:?}");
            // Only ASCII letters fold: "ü" does not find "Ü".
            assert!(search(db.exec(), job, "ünïcode", 0, 10)
                .await
                .unwrap()
                .is_empty());
        }
    }

    #[tokio::test]
    async fn events_of_an_unknown_job_are_refused_on_every_backend() {
        for db in backends().await {
            let (job, _) = job_with_lease(&db).await;
            let unknown = JobId::new();
            let line = [NewEvent::log(LogStream::Stdout, Utc::now(), "stray")];
            let err = on_exec!(db.exec(), |e| {
                let mut tx = e.begin_write().await.unwrap();
                append(&mut *tx, unknown, &line).await
            })
            .unwrap_err();
            assert!(matches!(err, DbError::Query(_)), "{err:?}");
            assert_eq!(last_seq(db.exec(), unknown).await.unwrap(), 0);
            assert_eq!(append_lines(&db, job, "known", 2).await, 2);
        }
    }

    #[tokio::test]
    async fn a_batch_under_a_lost_lease_writes_nothing_on_every_backend() {
        for db in backends().await {
            let (job, epoch) = job_with_lease(&db).await;
            let lines = [NewEvent::log(LogStream::Stdout, Utc::now(), "one")];
            let progress = LogProgress {
                lines: 1,
                bytes: 3,
                ..LogProgress::default()
            };
            append_with_progress(db.exec(), job, epoch, &lines, &progress)
                .await
                .unwrap();
            take_over_lease(&db).await;
            let err = append_with_progress(db.exec(), job, epoch, &lines, &progress)
                .await
                .unwrap_err();
            assert!(
                matches!(err, DbError::LeaseLost(e) if e == epoch),
                "{err:?}"
            );
            assert_eq!(last_seq(db.exec(), job).await.unwrap(), 1, "{db:?}");
        }
    }

    #[tokio::test]
    async fn a_job_lives_queued_running_failed_with_gapless_events() {
        let (_dir, pool) = temp_db().await;
        let user = users::create(&pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        let job = jobs::create(&pool, user.id, "test", b"zip bytes")
            .await
            .unwrap();
        assert_eq!(job.status, JobStatus::Queued);
        assert_eq!(
            uploads::get(&pool, job.id).await.unwrap().unwrap(),
            b"zip bytes"
        );

        let epoch = lease::acquire(&pool, "test").await.unwrap().epoch;
        let claimed = jobs::claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(claimed.id, job.id);
        assert_eq!(claimed.status, JobStatus::Running);
        assert!(jobs::claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
            .is_none());

        let lines: Vec<_> = (0..1234)
            .map(|i| NewEvent::log(LogStream::Stdout, Utc::now(), format!("line {i}")))
            .collect();
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        assert_eq!(append(&mut tx, job.id, &lines).await.unwrap(), 1235);
        tx.commit().await.unwrap();

        let outcome = Outcome::new(JobStatus::Failed).with_exit_code(1);
        assert!(jobs::finish(&pool, job.id, Some(epoch), &outcome)
            .await
            .unwrap());
        assert!(!jobs::finish(&pool, job.id, Some(epoch), &outcome)
            .await
            .unwrap());
        // The source is kept after the job (for `ci retry`), once however many jobs use it.
        assert_eq!(
            uploads::get(&pool, job.id).await.unwrap().unwrap(),
            b"zip bytes"
        );
        jobs::create(&pool, user.id, "test", b"zip bytes")
            .await
            .unwrap();
        assert_eq!(uploads::count(&pool).await.unwrap(), 1);

        let events = list_after(&pool, job.id, 0, 10_000).await.unwrap();
        let seqs: Vec<i64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=1237).collect::<Vec<_>>());
        assert!(matches!(
            events[0].to_stream_event(),
            StreamEvent::Status {
                status: JobStatus::Running,
                ..
            }
        ));
        assert!(
            matches!(&events[1].to_stream_event(), StreamEvent::Log { data, .. } if data == "line 0")
        );
        assert!(matches!(
            events.last().unwrap().to_stream_event(),
            StreamEvent::Complete {
                success: false,
                status: JobStatus::Failed,
                exit_code: Some(1),
                ..
            }
        ));
        assert_eq!(list_after(&pool, job.id, 1230, 100).await.unwrap().len(), 7);
        // Line views: a range by seq, the raw log, a search.
        let range = between(&pool, job.id, 1, 3).await.unwrap();
        let lines: Vec<String> = range.iter().map(EventRow::line).collect();
        assert_eq!(lines, ["== job running ==", "line 0", "line 1"]);
        assert!(between(&pool, job.id, 1238, 2000).await.unwrap().is_empty());
        let last = between(&pool, job.id, 1237, 1237).await.unwrap();
        assert_eq!(last[0].line(), "== job failed ==");
        let raw = log_lines_after(&pool, job.id, 0, 2).await.unwrap();
        assert_eq!(raw, [(2, "line 0".to_owned()), (3, "line 1".to_owned())]);
        assert_eq!(
            log_lines_after(&pool, job.id, 0, 10_000)
                .await
                .unwrap()
                .len(),
            1234
        );
        let found = search(&pool, job.id, "LINE 123", 0, 100).await.unwrap();
        let seqs: Vec<i64> = found.iter().map(|e| e.seq).collect();
        // "line 123", then "line 1230" to "line 1233".
        assert_eq!(seqs, [125, 1232, 1233, 1234, 1235]);
        let after = search(&pool, job.id, "line 123", 1232, 2).await.unwrap();
        assert_eq!(
            after.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1233, 1234]
        );
        let done = jobs::get(&pool, job.id).await.unwrap().unwrap();
        assert_eq!(done.status, JobStatus::Failed);
        assert!(done.finished_at.is_some());
    }

    #[tokio::test]
    async fn log_lines_and_their_progress_are_stored_together_and_only_under_the_lease() {
        let (_dir, pool) = temp_db().await;
        let user = users::create(&pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        jobs::create(&pool, user.id, "test", b"z").await.unwrap();
        let epoch = lease::acquire(&pool, "c").await.unwrap().epoch;
        let job = jobs::claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
            .unwrap();
        let base = last_seq(&pool, job.id).await.unwrap();
        let lines: Vec<_> = ["one", "two"]
            .iter()
            .map(|text| NewEvent::log(LogStream::Stdout, Utc::now(), *text))
            .collect();
        let progress = LogProgress {
            lines: 2,
            bytes: 6,
            dropped_lines: 1,
            dropped_bytes: 5,
            cursor: Some(("2024-05-01T10:00:00.000000001Z".into(), 2)),
        };
        append_with_progress(&pool, job.id, epoch, &lines, &progress)
            .await
            .unwrap();
        // Progress alone (a cursor past skipped messages) needs no events.
        let more = LogProgress {
            lines: 1,
            ..LogProgress::default()
        };
        append_with_progress(&pool, job.id, epoch, &[], &more)
            .await
            .unwrap();
        let stored = list_after(&pool, job.id, base, 100).await.unwrap();
        let texts: Vec<_> = stored.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["one", "two"]);
        assert_eq!(stored[0].seq, base + 1);
        let row = jobs::get(&pool, job.id).await.unwrap().unwrap();
        assert_eq!(
            (
                row.log_lines,
                row.log_bytes,
                row.dropped_lines,
                row.dropped_bytes
            ),
            (3, 6, 1, 5)
        );
        assert_eq!(
            row.log_cursor.as_deref(),
            Some("2024-05-01T10:00:00.000000001Z")
        );
        assert_eq!(row.log_cursor_skip, 2);

        // Another controller takes over: nothing more is written.
        lease::acquire(&pool, "other").await.unwrap();
        let err = append_with_progress(&pool, job.id, epoch, &lines, &progress)
            .await
            .unwrap_err();
        assert!(
            matches!(err, DbError::LeaseLost(e) if e == epoch),
            "{err:?}"
        );
        assert_eq!(list_after(&pool, job.id, base, 100).await.unwrap().len(), 2);
        assert_eq!(
            jobs::get(&pool, job.id).await.unwrap().unwrap().log_lines,
            3
        );
    }

    #[tokio::test]
    async fn a_controller_that_lost_its_lease_cannot_claim_or_finish() {
        let (_dir, pool) = temp_db().await;
        let user = users::create(&pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        jobs::create(&pool, user.id, "test", b"z").await.unwrap();
        let old = lease::acquire(&pool, "old").await.unwrap().epoch;
        let job = jobs::claim_next(&pool, old, "img", "local")
            .await
            .unwrap()
            .unwrap();
        let new = lease::acquire(&pool, "new").await.unwrap().epoch;
        assert!(new > old);
        jobs::create(&pool, user.id, "test", b"z").await.unwrap();
        assert!(matches!(
            jobs::claim_next(&pool, old, "img", "local").await,
            Err(DbError::LeaseLost(e)) if e == old
        ));
        let outcome = Outcome::new(JobStatus::Passed);
        assert!(jobs::finish(&pool, job.id, Some(old), &outcome)
            .await
            .is_err());
        assert!(lease::heartbeat(&pool, old).await.is_err());
        assert!(jobs::finish(&pool, job.id, Some(new), &outcome)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn cancelling_a_queued_job_ends_it_and_a_running_one_records_the_request() {
        let (_dir, pool) = temp_db().await;
        let ada = users::create(&pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        let bob = users::create(&pool, "Bob", "bob@example.com")
            .await
            .unwrap();
        let queued = jobs::create(&pool, ada.id, "test", b"z").await.unwrap();
        assert!(jobs::request_cancel(&pool, queued.id, bob.id)
            .await
            .unwrap()
            .is_none());
        let cancelled = jobs::request_cancel(&pool, queued.id, ada.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cancelled.status, JobStatus::Cancelled);
        let last = list_after(&pool, queued.id, 0, 10).await.unwrap();
        assert!(last.last().unwrap().to_stream_event().is_complete());

        let epoch = lease::acquire(&pool, "c").await.unwrap().epoch;
        let running = jobs::create(&pool, ada.id, "test", b"z").await.unwrap();
        jobs::claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
            .unwrap();
        let requested = jobs::request_cancel(&pool, running.id, ada.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(requested.status, JobStatus::Running);
        assert!(requested.cancel_requested_at.is_some());
        assert_eq!(
            jobs::cancel_requested(&pool).await.unwrap(),
            vec![running.id]
        );
    }

    #[tokio::test]
    async fn claims_are_fair_between_users_and_fifo_within_one() {
        let (_dir, pool) = temp_db().await;
        let ada = users::create(&pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        let bob = users::create(&pool, "Bob", "bob@example.com")
            .await
            .unwrap();
        let mut ada_jobs = Vec::new();
        for _ in 0..10 {
            ada_jobs.push(jobs::create(&pool, ada.id, "test", b"z").await.unwrap().id);
        }
        let epoch = lease::acquire(&pool, "c").await.unwrap().epoch;
        // Ada's first job runs (concurrency 1) while Bob queues his only job.
        let first = jobs::claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first.id, ada_jobs[0]);
        let bob_job = jobs::create(&pool, bob.id, "test", b"z").await.unwrap();
        let done = Outcome::new(JobStatus::Passed);
        jobs::finish(&pool, first.id, Some(epoch), &done)
            .await
            .unwrap();
        let mut order = Vec::new();
        while let Some(job) = jobs::claim_next(&pool, epoch, "img", "local")
            .await
            .unwrap()
        {
            order.push(job.id);
            jobs::finish(&pool, job.id, Some(epoch), &done)
                .await
                .unwrap();
        }
        let bob_at = order.iter().position(|id| *id == bob_job.id).unwrap();
        assert!(
            bob_at < 1,
            "Bob's job must run before Ada's 2nd and 3rd: {bob_at}"
        );
        let ada_order: Vec<_> = order.into_iter().filter(|id| *id != bob_job.id).collect();
        assert_eq!(ada_order, ada_jobs[1..].to_vec(), "FIFO within a user");
    }
}
