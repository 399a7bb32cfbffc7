//! A database's history, written fast: many jobs that ended long ago, each with its log, test
//! results and a report blob, for tests and benchmarks of retention (`ci-bench`'s "log latency
//! during a prune" fills a database with about a million events this way).
//!
//! The jobs are written straight as ended (never queued, so that a running controller does not
//! claim them) by their owner, one write transaction per job: the job's row, its log through
//! [`events::append`], its test results; then its blob through [`blobs::put`]. Both backends.

use chrono::{DateTime, Utc};

use crate::db::blobs::{self, BlobCaps};
use crate::db::events::{self, NewEvent};
use crate::db::{on_exec, BeginWrite as _, Db, DbError};
use crate::{JobId, LogStream, UserId};

/// What [`ended_jobs`] writes.
#[derive(Clone, Debug)]
pub struct EndedJobs {
    /// How many jobs.
    pub jobs: usize,
    /// Log lines of each job (about 90 bytes each, like a verbose pytest run's).
    pub events_per_job: usize,
    /// Rows of `test_results` of each job (all passed).
    pub results_per_job: usize,
    /// Size of each job's one blob, `reports/junit.xml` (0: none).
    pub blob_bytes: usize,
    /// When every one of them ended (and started: they took no time).
    pub finished_at: DateTime<Utc>,
}

/// Writes `spec.jobs` jobs of `user` that ended (passed) at `spec.finished_at`, with their logs,
/// results and blobs; returns their ids in the order they were written (oldest first by `num`).
pub async fn ended_jobs(
    db: &Db,
    user: UserId,
    spec: &EndedJobs,
) -> Result<Vec<JobId>, Box<dyn std::error::Error + Send + Sync>> {
    let at = crate::db::timestamp(spec.finished_at);
    let mut ids = Vec::with_capacity(spec.jobs);
    for j in 0..spec.jobs {
        let id = JobId::new();
        let lines: Vec<NewEvent> = (0..spec.events_per_job)
            .map(|i| NewEvent::log(LogStream::Stdout, at, line(j, i, spec.events_per_job)))
            .collect();
        let bytes: i64 = lines.iter().map(|e| e.text.len() as i64 + 1).sum();
        on_exec!(db.exec(), |e| {
            let mut tx = e.begin_write().await?;
            sqlx::query(
                "INSERT INTO jobs (id, user_id, task, status, created_at, started_at, finished_at,
                                   log_lines, log_bytes)
                 VALUES ($1, $2, 'test', 'passed', $3, $3, $3, $4, $5)",
            )
            .bind(id)
            .bind(user)
            .bind(at)
            .bind(spec.events_per_job as i64)
            .bind(bytes)
            .execute(&mut *tx)
            .await
            .map_err(DbError::from)?;
            events::append(&mut *tx, id, &lines).await?;
            let rows: Vec<usize> = (0..spec.results_per_job).collect();
            for chunk in rows.chunks(500) {
                let mut insert = sqlx::QueryBuilder::new(
                    "INSERT INTO test_results (job_id, step, attempt, idx, nodeid, file, line, \
                     outcome, duration_ms) ",
                );
                insert.push_values(chunk, |mut row, i| {
                    row.push_bind(id)
                        .push_bind("test")
                        .push_bind(1_i64)
                        .push_bind(*i as i64)
                        .push_bind(format!("tests/test_history_{j:04}.py::test_case_{i:06}"))
                        .push_bind(format!("tests/test_history_{j:04}.py"))
                        .push_bind(10 + *i as i64)
                        .push_bind("passed")
                        .push_bind((i % 50) as i64);
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(DbError::from)?;
            }
            tx.commit().await.map_err(DbError::from)?;
        });
        if spec.blob_bytes > 0 {
            let data = report(j, spec.blob_bytes);
            blobs::put(
                db,
                id,
                None,
                "reports/junit.xml",
                "application/xml",
                data.as_slice(),
                &BlobCaps::default(),
            )
            .await?;
        }
        ids.push(id);
    }
    Ok(ids)
}

/// Lets a database settle after a large write, so that what is measured next does not pay for
/// it: on PostgreSQL, `VACUUM (ANALYZE)` (visibility map and statistics for the new rows; the
/// autovacuum would otherwise start during the measurement) and a `CHECKPOINT` (the write-ahead
/// log of the fill flushed now rather than by the checkpointer later); on SQLite, a
/// `wal_checkpoint(TRUNCATE)` (the fill copied into the database file and the WAL emptied).
///
/// Errors: the database's, e.g. `CHECKPOINT` needs a superuser or `pg_checkpoint` member.
pub async fn settle(db: &Db) -> Result<(), DbError> {
    let statements: &[&str] = if db.exec().is_postgres() {
        &["VACUUM (ANALYZE)", "CHECKPOINT"]
    } else {
        &["PRAGMA wal_checkpoint(TRUNCATE)"]
    };
    for statement in statements {
        on_exec!(db.exec(), |e| {
            sqlx::query(statement)
                .execute(e)
                .await
                .map_err(DbError::from)?;
        });
    }
    Ok(())
}

/// The `i`-th of `n` log lines of the `j`-th job: a verbose pytest line, about 90 bytes.
fn line(j: usize, i: usize, n: usize) -> String {
    format!(
        "tests/test_history_{j:04}.py::test_case_{i:06} PASSED{:>36}",
        format!("[{:3}%]", (i + 1) * 100 / n.max(1))
    )
}

/// A JUnit-looking report of `size` bytes.
fn report(j: usize, size: usize) -> Vec<u8> {
    let mut text = format!("<testsuite name=\"history {j}\">\n");
    let mut k = 0;
    while text.len() < size {
        text.push_str(&format!(
            "  <testcase classname=\"tests.test_history_{j:04}\" name=\"test_case_{k:06}\"/>\n"
        ));
        k += 1;
    }
    text.truncate(size);
    text.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{jobs, retention, users};
    use crate::testing::backends;

    #[tokio::test]
    async fn ended_jobs_are_whole_old_and_what_a_prune_removes() {
        for backend in backends().await {
            let db = backend.db();
            let ada = users::create(&db, "Ada", "ada@example.com").await.unwrap();
            let spec = EndedJobs {
                jobs: 3,
                events_per_job: 700,
                results_per_job: 600,
                blob_bytes: 300 * 1024,
                finished_at: Utc::now() - chrono::Duration::days(40),
            };
            let ids = ended_jobs(&db, ada.id, &spec).await.unwrap();
            assert_eq!(ids.len(), 3, "{backend:?}");
            for id in &ids {
                let job = jobs::get(&db, *id).await.unwrap().unwrap();
                assert!(job.status.is_terminal(), "{backend:?}");
                assert_eq!(events::last_seq(&db, *id).await.unwrap(), 700);
                let blob = blobs::get_meta(&db, *id, "reports/junit.xml")
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!((blob.size, blob.chunks), (300 * 1024, 2));
            }
            let rule = retention::Rule {
                older_than: chrono::Duration::days(30),
                keep_last: 0,
            };
            let pruned = retention::prune(&db, rule, Utc::now(), false)
                .await
                .unwrap();
            assert_eq!((pruned.jobs, pruned.events), (3, 2100), "{backend:?}");
            assert_eq!(pruned.job_ids, ids);
        }
    }

    #[test]
    fn lines_are_about_ninety_bytes() {
        assert_eq!(line(7, 0, 2500).len(), line(7, 2499, 2500).len());
        assert!(
            (80..100).contains(&line(7, 0, 2500).len()),
            "{}",
            line(7, 0, 2500)
        );
        assert_eq!(report(1, 5000).len(), 5000);
    }
}
