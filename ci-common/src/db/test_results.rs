//! The `test_results` table: each test's result per job and step, with the job's counts and its
//! `summary` event written in the same transaction.

use sqlx::{QueryBuilder, Sqlite, SqliteExecutor, SqlitePool};

use super::events::{self, NewEvent};
use super::{lease, DbError};
use crate::results::{Report, TestCounts, TestOutcome, TestResult};
use crate::JobId;

/// Rows per INSERT statement (12 parameters each, well under SQLite's limit).
const ROWS_PER_STATEMENT: usize = 400;

/// Stores a step's test results, sets the job's counts and appends its `summary` event, in one
/// transaction fenced by the lease epoch.
pub async fn store(
    pool: &SqlitePool,
    job: JobId,
    epoch: i64,
    step: &str,
    attempt: i64,
    report: &Report,
) -> Result<(), DbError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut tx, epoch).await?;
    for (chunk_index, chunk) in report.results.chunks(ROWS_PER_STATEMENT).enumerate() {
        let mut insert: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT OR REPLACE INTO test_results (job_id, step, attempt, idx, nodeid, file, line, \
             outcome, duration_ms, message, longrepr, longrepr_chars) ",
        );
        insert.push_values(chunk.iter().enumerate(), |mut row, (i, result)| {
            row.push_bind(job)
                .push_bind(step)
                .push_bind(attempt)
                .push_bind((chunk_index * ROWS_PER_STATEMENT + i) as i64)
                .push_bind(&result.nodeid)
                .push_bind(&result.file)
                .push_bind(result.line)
                .push_bind(result.outcome)
                .push_bind(result.duration_ms)
                .push_bind(&result.message)
                .push_bind(&result.longrepr)
                .push_bind(result.longrepr_chars);
        });
        insert.build().execute(&mut *tx).await?;
    }
    let counts = serde_json::to_string(&report.summary.counts).expect("counts serialize");
    sqlx::query("UPDATE jobs SET test_counts = ? WHERE id = ?")
        .bind(counts)
        .bind(job)
        .execute(&mut *tx)
        .await?;
    events::append(&mut tx, job, &[NewEvent::summary(&report.summary)]).await?;
    tx.commit().await?;
    Ok(())
}

/// A job's results in the order the tests finished (all steps), only those with `outcome` if
/// given, `limit` of them after the first `offset`.
pub async fn list(
    ex: impl SqliteExecutor<'_>,
    job: JobId,
    outcome: Option<TestOutcome>,
    limit: i64,
    offset: i64,
) -> Result<Vec<TestResult>, DbError> {
    Ok(sqlx::query_as::<
        _,
        (
            String,
            Option<String>,
            Option<i64>,
            TestOutcome,
            i64,
            String,
            String,
            i64,
        ),
    >(
        "SELECT r.nodeid, r.file, r.line, r.outcome, r.duration_ms, r.message, r.longrepr,
                r.longrepr_chars
         FROM test_results r JOIN job_steps s ON s.job_id = r.job_id AND s.name = r.step
         WHERE r.job_id = ?1 AND (?2 IS NULL OR r.outcome = ?2)
         ORDER BY s.position, r.attempt, r.idx LIMIT ?3 OFFSET ?4",
    )
    .bind(job)
    .bind(outcome)
    .bind(limit)
    .bind(offset)
    .fetch_all(ex)
    .await?
    .into_iter()
    .map(
        |(nodeid, file, line, outcome, duration_ms, message, longrepr, longrepr_chars)| {
            TestResult {
                nodeid,
                file,
                line,
                outcome,
                duration_ms,
                message,
                longrepr,
                longrepr_chars,
            }
        },
    )
    .collect())
}

/// A job's counts, once its results are collected.
pub async fn counts(
    ex: impl SqliteExecutor<'_>,
    job: JobId,
) -> Result<Option<TestCounts>, DbError> {
    let json: Option<Option<String>> =
        sqlx::query_scalar("SELECT test_counts FROM jobs WHERE id = ?")
            .bind(job)
            .fetch_optional(ex)
            .await?;
    Ok(json.flatten().and_then(|j| serde_json::from_str(&j).ok()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::{read_report, ReportCaps};
    use crate::testing::{claimed_job_with_steps, temp_db};
    use crate::EventKind;

    #[tokio::test]
    async fn results_are_stored_listed_by_outcome_and_counted_with_a_summary_event() {
        let (_dir, pool) = temp_db().await;
        let (job, epoch) = claimed_job_with_steps(&pool).await;
        let mut lines = String::new();
        for i in 0..1000 {
            let outcome = if i % 100 == 7 { "failed" } else { "passed" };
            lines.push_str(&format!(
                "{{\"type\": \"test\", \"nodeid\": \"t.py::test_{i}\", \"outcome\": \"{outcome}\", \"duration\": 0.001}}\n"
            ));
        }
        let report = read_report(lines.as_bytes(), &ReportCaps::default()).unwrap();
        store(&pool, job.id, epoch, "test", 1, &report)
            .await
            .unwrap();

        let failed = list(&pool, job.id, Some(TestOutcome::Failed), 100, 0)
            .await
            .unwrap();
        assert_eq!(failed.len(), 10);
        assert_eq!(failed[0].nodeid, "t.py::test_7");
        let page = list(&pool, job.id, None, 10, 995).await.unwrap();
        assert_eq!(page.len(), 5);
        assert_eq!(page[4].nodeid, "t.py::test_999");
        let counts = counts(&pool, job.id).await.unwrap().unwrap();
        assert_eq!(counts.get(TestOutcome::Passed), 990);
        assert_eq!(counts.failures(), 10);
        let events = events::list_after(&pool, job.id, 0, 10).await.unwrap();
        assert_eq!(events.last().unwrap().kind, EventKind::Summary);
        // Another epoch cannot write.
        lease::acquire(&pool, "other").await.unwrap();
        let err = store(&pool, job.id, epoch, "test", 1, &report)
            .await
            .unwrap_err();
        assert!(matches!(err, DbError::LeaseLost(_)), "{err:?}");
    }
}
