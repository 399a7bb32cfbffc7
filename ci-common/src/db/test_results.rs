//! The `test_results` table: each test's result per job and step, with the job's counts and its
//! `summary` event written in the same transaction.

use std::collections::HashMap;

use sqlx::{QueryBuilder, Sqlite, SqliteExecutor, SqlitePool};

use super::events::{self, NewEvent};
use super::{lease, DbError};
use crate::results::{
    Report, TestCounts, TestHistory, TestOutcome, TestResult, TestSummary, SLOWEST,
};
use crate::JobId;

/// Rows per INSERT statement (12 parameters each, well under SQLite's limit).
const ROWS_PER_STATEMENT: usize = 400;

/// Stores the test results of one attempt (the `test` step is attempt 1, its retries 2, 3, ...),
/// sets the job's counts and appends its `summary` event, in one transaction fenced by the lease
/// epoch. On a retry, a test that passes after failing is stored as `flaky`
/// ([`TestOutcome::after_retry`]), and the job's counts move each re-run test from its earlier
/// outcome to its new one, so they always count every test once, by its last attempt.
pub async fn store(
    pool: &SqlitePool,
    job: JobId,
    epoch: i64,
    step: &str,
    attempt: i64,
    report: &Report,
) -> Result<(), DbError> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    lease::check(&mut *tx, epoch).await?;
    let mut results = report.results.clone();
    let mut counts = report.summary.counts.clone();
    if attempt > 1 {
        let before = outcomes_of_attempt(&mut *tx, job, attempt - 1).await?;
        counts = self::counts(&mut *tx, job).await?.unwrap_or_default();
        for result in &mut results {
            if let Some(earlier) = before.get(&result.nodeid) {
                result.outcome = result.outcome.after_retry(*earlier);
                counts.remove(*earlier);
            }
            counts.add(result.outcome, result.duration_ms as f64);
        }
    }
    for (chunk_index, chunk) in results.chunks(ROWS_PER_STATEMENT).enumerate() {
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
    let json = serde_json::to_string(&counts).expect("counts serialize");
    sqlx::query("UPDATE jobs SET test_counts = ? WHERE id = ?")
        .bind(json)
        .bind(job)
        .execute(&mut *tx)
        .await?;
    let summary = TestSummary {
        counts,
        slowest: slowest(&mut *tx, job).await?,
        ..report.summary.clone()
    };
    events::append(&mut tx, job, &[NewEvent::summary(&summary)]).await?;
    tx.commit().await?;
    Ok(())
}

/// The outcome of every test of one attempt of a job, by node id.
async fn outcomes_of_attempt(
    ex: impl SqliteExecutor<'_>,
    job: JobId,
    attempt: i64,
) -> Result<HashMap<String, TestOutcome>, DbError> {
    Ok(
        sqlx::query_as("SELECT nodeid, outcome FROM test_results WHERE job_id = ? AND attempt = ?")
            .bind(job)
            .bind(attempt)
            .fetch_all(ex)
            .await?
            .into_iter()
            .collect(),
    )
}

/// The node ids of the tests that failed or errored on one attempt of a job, in the order they
/// ran: what a retry runs again.
pub async fn failed_in_attempt(
    ex: impl SqliteExecutor<'_>,
    job: JobId,
    attempt: i64,
) -> Result<Vec<String>, DbError> {
    Ok(sqlx::query_scalar(
        "SELECT nodeid FROM test_results WHERE job_id = ? AND attempt = ?
           AND outcome IN ('failed', 'error') ORDER BY step, idx",
    )
    .bind(job)
    .bind(attempt)
    .fetch_all(ex)
    .await?)
}

/// The job's slowest tests, slowest first (a test run more than once counts with its slowest
/// run).
async fn slowest(ex: impl SqliteExecutor<'_>, job: JobId) -> Result<Vec<(String, i64)>, DbError> {
    Ok(sqlx::query_as(
        "SELECT nodeid, MAX(duration_ms) AS ms FROM test_results WHERE job_id = ?
         GROUP BY nodeid ORDER BY ms DESC, nodeid LIMIT ?",
    )
    .bind(job)
    .bind(SLOWEST as i64)
    .fetch_all(ex)
    .await?)
}

/// Which results a listing holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempts {
    /// Each test once, from its last attempt (what decided the job).
    Last,
    /// Every attempt of every test, earlier attempts first.
    All,
}

/// A job's results in the order the tests finished (attempt by attempt), only those with
/// `outcome` if given, `limit` of them after the first `offset`.
pub async fn list(
    ex: impl SqliteExecutor<'_>,
    job: JobId,
    outcome: Option<TestOutcome>,
    attempts: Attempts,
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
            i64,
        ),
    >(
        "SELECT r.nodeid, r.file, r.line, r.outcome, r.duration_ms, r.message, r.longrepr,
                r.longrepr_chars, r.attempt
         FROM test_results r
         WHERE r.job_id = ?1 AND (?2 IS NULL OR r.outcome = ?2)
           AND (?5 OR r.attempt = (SELECT MAX(l.attempt) FROM test_results l
                                   WHERE l.job_id = r.job_id AND l.nodeid = r.nodeid))
         ORDER BY r.attempt, r.step, r.idx LIMIT ?3 OFFSET ?4",
    )
    .bind(job)
    .bind(outcome)
    .bind(limit)
    .bind(offset)
    .bind(attempts == Attempts::All)
    .fetch_all(ex)
    .await?
    .into_iter()
    .map(
        |(nodeid, file, line, outcome, duration_ms, message, longrepr, longrepr_chars, attempt)| {
            TestResult {
                nodeid,
                file,
                line,
                outcome,
                duration_ms,
                message,
                longrepr,
                longrepr_chars,
                attempt,
                history: None,
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

/// How many of a user's recent jobs of the same project the job belongs to.
pub const HISTORY_RUNS: i64 = 20;

/// How often each of `nodeids` failed (on any attempt) in the last `runs` jobs with results of
/// the same user and project as `job`, up to and including it. Tests that did not run in those
/// jobs are left out.
pub async fn history(
    ex: impl SqliteExecutor<'_>,
    job: JobId,
    nodeids: &[String],
    runs: i64,
) -> Result<HashMap<String, TestHistory>, DbError> {
    if nodeids.is_empty() {
        return Ok(HashMap::new());
    }
    let ids = serde_json::to_string(nodeids).expect("strings serialize");
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "WITH this AS (SELECT user_id, project, num FROM jobs WHERE id = ?1),
              recent AS (SELECT j.id FROM jobs j, this
                         WHERE j.user_id = this.user_id AND j.project IS this.project
                           AND j.num <= this.num AND j.test_counts IS NOT NULL
                         ORDER BY j.num DESC LIMIT ?2)
         SELECT r.nodeid, COUNT(DISTINCT r.job_id),
                COUNT(DISTINCT CASE WHEN r.outcome IN ('failed', 'error') THEN r.job_id END)
         FROM test_results r JOIN recent ON r.job_id = recent.id
         WHERE r.nodeid IN (SELECT value FROM json_each(?3))
         GROUP BY r.nodeid",
    )
    .bind(job)
    .bind(runs)
    .bind(ids)
    .fetch_all(ex)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(nodeid, runs, failed)| {
            (
                nodeid,
                TestHistory {
                    failed: failed as u64,
                    runs: runs as u64,
                },
            )
        })
        .collect())
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

        let failed = list(
            &pool,
            job.id,
            Some(TestOutcome::Failed),
            Attempts::Last,
            100,
            0,
        )
        .await
        .unwrap();
        assert_eq!(failed.len(), 10);
        assert_eq!(failed[0].nodeid, "t.py::test_7");
        let page = list(&pool, job.id, None, Attempts::Last, 10, 995)
            .await
            .unwrap();
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

    fn report(tests: &[(&str, &str)]) -> Report {
        let lines: String = tests
            .iter()
            .map(|(nodeid, outcome)| {
                format!(
                    "{{\"type\": \"test\", \"nodeid\": \"{nodeid}\", \"outcome\": \"{outcome}\", \"duration\": 0.002}}\n"
                )
            })
            .collect();
        read_report(lines.as_bytes(), &ReportCaps::default()).unwrap()
    }

    #[tokio::test]
    async fn a_retry_turns_tests_that_pass_into_flaky_and_counts_each_test_once() {
        let (_dir, pool) = temp_db().await;
        let (job, epoch) = claimed_job_with_steps(&pool).await;
        let first = report(&[
            ("t.py::a", "passed"),
            ("t.py::b", "failed"),
            ("t.py::c", "error"),
            ("t.py::d", "failed"),
            ("t.py::e", "skipped"),
        ]);
        store(&pool, job.id, epoch, "test", 1, &first)
            .await
            .unwrap();
        assert_eq!(
            failed_in_attempt(&pool, job.id, 1).await.unwrap(),
            ["t.py::b", "t.py::c", "t.py::d"]
        );
        let second = report(&[
            ("t.py::b", "passed"),
            ("t.py::c", "passed"),
            ("t.py::d", "failed"),
        ]);
        store(&pool, job.id, epoch, "retry-1", 2, &second)
            .await
            .unwrap();
        let counts = counts(&pool, job.id).await.unwrap().unwrap();
        assert_eq!(counts.total(), 5, "{counts:?}");
        assert_eq!(counts.get(TestOutcome::Flaky), 2);
        assert_eq!(counts.get(TestOutcome::Failed), 1);
        assert_eq!(counts.get(TestOutcome::Error), 0);
        assert_eq!(counts.get(TestOutcome::Passed), 1);
        assert_eq!(counts.get(TestOutcome::Skipped), 1);

        let last = list(&pool, job.id, None, Attempts::Last, 100, 0)
            .await
            .unwrap();
        let seen: Vec<_> = last
            .iter()
            .map(|r| (r.nodeid.as_str(), r.outcome, r.attempt))
            .collect();
        assert_eq!(
            seen,
            [
                ("t.py::a", TestOutcome::Passed, 1),
                ("t.py::e", TestOutcome::Skipped, 1),
                ("t.py::b", TestOutcome::Flaky, 2),
                ("t.py::c", TestOutcome::Flaky, 2),
                ("t.py::d", TestOutcome::Failed, 2),
            ]
        );
        let all = list(&pool, job.id, None, Attempts::All, 100, 0)
            .await
            .unwrap();
        assert_eq!(all.len(), 8, "every attempt is kept");
        let failed = list(
            &pool,
            job.id,
            Some(TestOutcome::Failed),
            Attempts::Last,
            100,
            0,
        )
        .await
        .unwrap();
        assert_eq!(failed.len(), 1);

        let history = history(
            &pool,
            job.id,
            &["t.py::b".into(), "t.py::a".into(), "t.py::zzz".into()],
            HISTORY_RUNS,
        )
        .await
        .unwrap();
        assert_eq!(history["t.py::b"], TestHistory { failed: 1, runs: 1 });
        assert_eq!(history["t.py::a"], TestHistory { failed: 0, runs: 1 });
        assert!(!history.contains_key("t.py::zzz"));
        assert_eq!(history["t.py::b"].to_string(), "failed 1 of the last run");
    }
}
