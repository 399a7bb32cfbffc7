//! Retention: deleting jobs that ended long ago with everything they own (events, steps, test
//! results, blobs, uploads, webhook deliveries), for `ci-controller --retain` and
//! `ci-admin prune`. Off unless asked for.
//!
//! A job's events, test results and blob chunks go first, a few hundred rows per statement
//! ([`EVENTS_PER_STATEMENT`], [`RESULTS_PER_STATEMENT`], [`CHUNKS_PER_STATEMENT`]), each
//! statement a short write transaction of its own; then the job's row, whose deletion cascades
//! to the rest. After each deleting statement the prune waits [`PAUSE_FACTOR`] times as long as
//! the statement took, so that it holds SQLite's write lock at most a third of the time: a
//! running job's log writer that finds the lock taken sleeps in SQLite's busy handler (1, 2, 5,
//! 10 ms, ...) and would, against statements run back to back, keep waking while the next one
//! holds it. On PostgreSQL, whose writers do not wait for each other, the pauses leave the disk
//! and the CPU to the running jobs the same way. `ci-bench --only prune-latency` measures it (a
//! running job's log latency while `ci-admin prune` deletes a million events; see
//! `docs/benchmarks.md`). A job is deleted only once it has ended; what the queue and the
//! running jobs need is never touched.

use std::future::Future;
use std::time::Instant;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::{on_exec, timestamp, Db, DbError};
use crate::JobId;

/// Event rows deleted per statement (about a millisecond's work on SQLite).
pub const EVENTS_PER_STATEMENT: i64 = 500;

/// Test results deleted per statement.
pub const RESULTS_PER_STATEMENT: i64 = 500;

/// Blob chunks (up to 256 KiB each) deleted per statement.
pub const CHUNKS_PER_STATEMENT: i64 = 4;

/// After each deleting statement, the prune pauses this many times as long as the statement
/// took (the lock is then free at least two thirds of the time).
pub const PAUSE_FACTOR: u32 = 2;

/// Which jobs go: those that ended more than `older_than` ago, but for each user's `keep_last`
/// newest jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub older_than: Duration,
    pub keep_last: u32,
}

/// What a prune removed (or, dry, would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub jobs: u64,
    pub events: u64,
    /// The jobs' ids, oldest first.
    pub job_ids: Vec<JobId>,
}

/// Up to `limit` jobs `rule` removes at `now`, oldest first.
pub async fn candidates(
    db: &Db,
    rule: Rule,
    now: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<JobId>, DbError> {
    let cutoff = timestamp(now - rule.older_than);
    Ok(on_exec!(db.exec(), |e| sqlx::query_scalar(
        "SELECT j.id FROM jobs j
         WHERE j.finished_at IS NOT NULL AND j.finished_at < $1
           AND j.status NOT IN ('queued', 'running')
           AND (SELECT COUNT(*) FROM jobs k WHERE k.user_id = j.user_id AND k.num > j.num) >= $2
         ORDER BY j.num LIMIT $3",
    )
    .bind(cutoff)
    .bind(i64::from(rule.keep_last))
    .bind(limit)
    .fetch_all(e)
    .await?))
}

/// Deletes one ended job and everything it owns, in batches; returns how many of its events
/// went. A job that has not ended is left alone (0).
pub async fn delete_job(db: &Db, id: JobId) -> Result<u64, DbError> {
    let ended: bool = on_exec!(db.exec(), |e| {
        sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM jobs WHERE id = $1 AND status NOT IN ('queued', 'running'))"
    )
    .bind(id)
    .fetch_one(e)
    .await?
    });
    if !ended {
        return Ok(0);
    }
    let events = delete_batches(
        db,
        id,
        "DELETE FROM job_events WHERE job_id = $1 AND seq IN (
             SELECT seq FROM job_events WHERE job_id = $1 ORDER BY seq LIMIT $2)",
        EVENTS_PER_STATEMENT,
    )
    .await?;
    delete_batches(
        db,
        id,
        "DELETE FROM test_results WHERE job_id = $1 AND (step, idx) IN (
             SELECT step, idx FROM test_results WHERE job_id = $1 LIMIT $2)",
        RESULTS_PER_STATEMENT,
    )
    .await?;
    delete_batches(
        db,
        id,
        "DELETE FROM blob_chunks WHERE job_id = $1 AND (name, idx) IN (
             SELECT name, idx FROM blob_chunks WHERE job_id = $1 LIMIT $2)",
        CHUNKS_PER_STATEMENT,
    )
    .await?;
    paced(async {
        on_exec!(db.exec(), |e| sqlx::query(
            "DELETE FROM jobs WHERE id = $1 AND status NOT IN ('queued', 'running')"
        )
        .bind(id)
        .execute(e)
        .await
        .map(drop)?);
        Ok(())
    })
    .await?;
    Ok(events)
}

/// Deletes rows of `job` with `statement` (`$1` the job, `$2` at most how many rows), one paced
/// statement after another, until one deletes fewer than `per_statement`; returns how many went.
async fn delete_batches(
    db: &Db,
    job: JobId,
    statement: &'static str,
    per_statement: i64,
) -> Result<u64, DbError> {
    let mut deleted = 0;
    loop {
        let n = paced(async {
            Ok(on_exec!(db.exec(), |e| sqlx::query(statement)
                .bind(job)
                .bind(per_statement)
                .execute(e)
                .await?
                .rows_affected()))
        })
        .await?;
        deleted += n;
        if n < per_statement as u64 {
            return Ok(deleted);
        }
    }
}

/// Runs one deleting statement, then pauses [`PAUSE_FACTOR`] times as long as it took.
async fn paced<T>(statement: impl Future<Output = Result<T, DbError>>) -> Result<T, DbError> {
    let started = Instant::now();
    let out = statement.await?;
    tokio::time::sleep(started.elapsed() * PAUSE_FACTOR).await;
    Ok(out)
}

/// Removes every job `rule` selects at `now` (or, `dry`, only says which), oldest first.
pub async fn prune(db: &Db, rule: Rule, now: DateTime<Utc>, dry: bool) -> Result<Pruned, DbError> {
    let mut pruned = Pruned::default();
    if dry {
        pruned.job_ids = candidates(db, rule, now, i64::MAX).await?;
        pruned.jobs = pruned.job_ids.len() as u64;
        for id in &pruned.job_ids {
            let n: i64 = on_exec!(db.exec(), |e| sqlx::query_scalar(
                "SELECT COUNT(*) FROM job_events WHERE job_id = $1"
            )
            .bind(id)
            .fetch_one(e)
            .await?);
            pruned.events += n as u64;
        }
        return Ok(pruned);
    }
    loop {
        let ids = candidates(db, rule, now, 100).await?;
        if ids.is_empty() {
            break;
        }
        for id in ids {
            pruned.events += delete_job(db, id).await?;
            pruned.jobs += 1;
            pruned.job_ids.push(id);
        }
    }
    Ok(pruned)
}

/// How an SQLite database's file is used: its pages, and how many of them are free (left by
/// deleted rows, such as a prune's, and reused by new rows before the file grows).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Space {
    pub page_size: u64,
    pub pages: u64,
    pub free_pages: u64,
}

impl Space {
    /// The database's size in bytes: the file's, once the WAL is checkpointed.
    pub fn bytes(&self) -> u64 {
        self.pages * self.page_size
    }

    /// Bytes of free pages.
    pub fn free_bytes(&self) -> u64 {
        self.free_pages * self.page_size
    }
}

/// The pages of an SQLite database (`None` on PostgreSQL, whose tables keep their free space
/// for themselves: see `VACUUM` there).
pub async fn space(db: &Db) -> Result<Option<Space>, DbError> {
    let Db::Sqlite(pool) = db else {
        return Ok(None);
    };
    let mut conn = pool.acquire().await?;
    let mut read = [0_u64; 3];
    for (value, pragma) in read
        .iter_mut()
        .zip(["page_size", "page_count", "freelist_count"])
    {
        let v: i64 = sqlx::query_scalar(&format!("PRAGMA {pragma}"))
            .fetch_one(&mut *conn)
            .await?;
        *value = u64::try_from(v).unwrap_or(0);
    }
    let [page_size, pages, free_pages] = read;
    Ok(Some(Space {
        page_size,
        pages,
        free_pages,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::events::{self, NewEvent};
    use crate::db::{jobs, users};
    use crate::testing::backends;
    use crate::LogStream;

    #[tokio::test]
    async fn old_ended_jobs_go_whole_and_the_rest_stay_on_every_backend() {
        for backend in backends().await {
            let db = backend.db();
            let ada = users::create(&db, "Ada", "ada@example.com").await.unwrap();
            let mut ids = Vec::new();
            for i in 0..4 {
                let job = jobs::create(&db, ada.id, "test", format!("zip {i}").as_bytes())
                    .await
                    .unwrap();
                let lines: Vec<NewEvent> = (0..(EVENTS_PER_STATEMENT as usize + 5))
                    .map(|n| NewEvent::log(LogStream::Stdout, Utc::now(), format!("line {n}")))
                    .collect();
                events::append(&db, job.id, &lines).await.unwrap();
                ids.push(job.id);
            }
            // Jobs 0 and 1 ended long ago, job 2 just now, job 3 is still queued.
            let ended = |id: JobId, at: DateTime<Utc>| {
                let db = db.clone();
                async move {
                    on_exec!(db.exec(), |e| sqlx::query(
                        "UPDATE jobs SET status = 'passed', finished_at = $1 WHERE id = $2"
                    )
                    .bind(timestamp(at))
                    .bind(id)
                    .execute(e)
                    .await
                    .map(drop)
                    .unwrap());
                }
            };
            for id in &ids[..2] {
                ended(*id, Utc::now() - Duration::days(40)).await;
            }
            ended(ids[2], Utc::now()).await;
            let rule = Rule {
                older_than: Duration::days(30),
                keep_last: 0,
            };
            let dry = prune(&db, rule, Utc::now(), true).await.unwrap();
            assert_eq!(dry.job_ids, ids[..2], "{backend:?}");
            assert!(
                jobs::get(&db, ids[0]).await.unwrap().is_some(),
                "dry deletes nothing"
            );
            // Keeping each user's 3 newest keeps job 1.
            let kept = Rule {
                keep_last: 3,
                ..rule
            };
            assert_eq!(
                candidates(&db, kept, Utc::now(), 10).await.unwrap(),
                ids[..1]
            );
            let done = prune(&db, rule, Utc::now(), false).await.unwrap();
            assert_eq!(
                (done.jobs, done.events),
                (2, 2 * (EVENTS_PER_STATEMENT as u64 + 5))
            );
            for id in &ids[..2] {
                assert!(jobs::get(&db, *id).await.unwrap().is_none());
                assert_eq!(events::last_seq(&db, *id).await.unwrap(), 0);
            }
            for id in &ids[2..] {
                assert!(jobs::get(&db, *id).await.unwrap().is_some());
                assert_eq!(
                    events::last_seq(&db, *id).await.unwrap(),
                    EVENTS_PER_STATEMENT + 5
                );
            }
        }
    }

    /// SQLite's `auto_vacuum` is left at its default (none): a prune's pages go on the free
    /// list, and new rows take them before the file grows.
    #[tokio::test]
    async fn on_sqlite_the_pages_a_prune_frees_are_reused_before_the_file_grows() {
        use crate::testing::history::{ended_jobs, EndedJobs};
        let temp = crate::testing::TempDb::new().await;
        let db = Db::Sqlite(temp.pool.clone());
        let auto_vacuum: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
            .fetch_one(&temp.pool)
            .await
            .unwrap();
        assert_eq!(auto_vacuum, 0, "auto_vacuum = NONE");
        let ada = users::create(&db, "Ada", "ada@example.com").await.unwrap();
        let spec = EndedJobs {
            jobs: 4,
            events_per_job: 2_000,
            results_per_job: 600,
            blob_bytes: 300 * 1024,
            finished_at: Utc::now() - Duration::days(40),
        };
        ended_jobs(&db, ada.id, &spec).await.unwrap();
        let filled = space(&db).await.unwrap().unwrap();
        let rule = Rule {
            older_than: Duration::days(30),
            keep_last: 0,
        };
        assert_eq!(prune(&db, rule, Utc::now(), false).await.unwrap().jobs, 4);
        let pruned = space(&db).await.unwrap().unwrap();
        assert_eq!(
            pruned.pages, filled.pages,
            "a prune does not shrink the file"
        );
        assert!(
            pruned.free_pages > filled.pages * 9 / 10,
            "{pruned:?} after {filled:?}"
        );

        // As many jobs again (recent ones) go into the free pages: the file grows only once
        // none is left, and then by a few pages (random job ids split B-tree pages a little
        // differently each time).
        let again = EndedJobs {
            finished_at: Utc::now(),
            ..spec
        };
        ended_jobs(&db, ada.id, &again).await.unwrap();
        let refilled = space(&db).await.unwrap().unwrap();
        assert!(
            refilled.pages == pruned.pages || refilled.free_pages == 0,
            "{refilled:?} after {pruned:?}"
        );
        assert!(
            refilled.pages <= pruned.pages + pruned.pages / 20,
            "{refilled:?} after {pruned:?}"
        );
        assert!(refilled.free_pages < pruned.free_pages / 10, "{refilled:?}");
    }
}
