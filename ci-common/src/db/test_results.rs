//! The `test_results` table: each test's result per job and step, with the job's counts and its
//! `summary` event written in the same transaction.

use std::collections::HashMap;

use sqlx::QueryBuilder;

use super::events::{self, NewEvent};
use super::{changes, lease, on_exec, BeginWrite as _, DbError, Exec};
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
///
/// Storing an attempt again replaces its rows. PostgreSQL's text cannot hold a NUL character
/// (SQLite's can): there each NUL of a result's texts is stored as U+FFFD
/// ([`super::stored_text`]), as [`events::append`] does.
pub async fn store(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    epoch: i64,
    step: &str,
    attempt: i64,
    report: &Report,
) -> Result<(), DbError> {
    let ex = ex.into();
    let postgres = ex.is_postgres();
    let text = |t| super::stored_text(postgres, t);
    on_exec!(ex, |e| {
        let mut tx = e.begin_write().await?;
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
            // The builder's backend is the connection's, inferred from `execute`. An upsert
            // (both backends' syntax) where SQLite alone has INSERT OR REPLACE.
            let mut insert = QueryBuilder::new(
                "INSERT INTO test_results (job_id, step, attempt, idx, nodeid, file, line, \
                 outcome, duration_ms, message, longrepr, longrepr_chars) ",
            );
            insert.push_values(chunk.iter().enumerate(), |mut row, (i, result)| {
                row.push_bind(job)
                    .push_bind(step)
                    .push_bind(attempt)
                    .push_bind((chunk_index * ROWS_PER_STATEMENT + i) as i64)
                    .push_bind(text(&result.nodeid))
                    .push_bind(result.file.as_deref().map(text))
                    .push_bind(result.line)
                    .push_bind(result.outcome)
                    .push_bind(result.duration_ms)
                    .push_bind(text(&result.message))
                    .push_bind(text(&result.longrepr))
                    .push_bind(result.longrepr_chars);
            });
            insert.push(
                " ON CONFLICT (job_id, step, idx) DO UPDATE SET attempt = excluded.attempt, \
                 nodeid = excluded.nodeid, file = excluded.file, line = excluded.line, \
                 outcome = excluded.outcome, duration_ms = excluded.duration_ms, \
                 message = excluded.message, longrepr = excluded.longrepr, \
                 longrepr_chars = excluded.longrepr_chars",
            );
            insert.build().execute(&mut *tx).await?;
        }
        let json = serde_json::to_string(&counts).expect("counts serialize");
        sqlx::query("UPDATE jobs SET test_counts = $1 WHERE id = $2")
            .bind(json)
            .bind(job)
            .execute(&mut *tx)
            .await?;
        let summary = TestSummary {
            counts,
            slowest: slowest(&mut *tx, job).await?,
            ..report.summary.clone()
        };
        events::append(&mut *tx, job, &[NewEvent::summary(&summary)]).await?;
        changes::notify(&mut *tx).await?;
        tx.commit().await?;
    });
    Ok(())
}

/// The outcome of every test of one attempt of a job, by node id.
async fn outcomes_of_attempt(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    attempt: i64,
) -> Result<HashMap<String, TestOutcome>, DbError> {
    let rows: Vec<(String, TestOutcome)> = on_exec!(ex, |e| sqlx::query_as(
        "SELECT nodeid, outcome FROM test_results WHERE job_id = $1 AND attempt = $2"
    )
    .bind(job)
    .bind(attempt)
    .fetch_all(e)
    .await?);
    Ok(rows.into_iter().collect())
}

/// The node ids of the tests that failed or errored on one attempt of a job, in the order they
/// ran: what a retry runs again.
pub async fn failed_in_attempt(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    attempt: i64,
) -> Result<Vec<String>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT nodeid FROM test_results WHERE job_id = $1 AND attempt = $2
           AND outcome IN ('failed', 'error') ORDER BY step, idx",
    )
    .bind(job)
    .bind(attempt)
    .fetch_all(e)
    .await?))
}

/// The job's slowest tests, slowest first (a test run more than once counts with its slowest
/// run).
async fn slowest(ex: impl Into<Exec<'_>>, job: JobId) -> Result<Vec<(String, i64)>, DbError> {
    Ok(on_exec!(ex, |e| sqlx::query_as(
        "SELECT nodeid, MAX(duration_ms) AS ms FROM test_results WHERE job_id = $1
         GROUP BY nodeid ORDER BY ms DESC, nodeid LIMIT $2",
    )
    .bind(job)
    .bind(SLOWEST as i64)
    .fetch_all(e)
    .await?))
}

/// Which results a listing holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attempts {
    /// Each test once, from its last attempt (what decided the job).
    Last,
    /// Every attempt of every test, earlier attempts first.
    All,
}

/// A stored result as [`list`] reads it.
type ResultRow = (
    String,
    Option<String>,
    Option<i64>,
    TestOutcome,
    i64,
    String,
    String,
    i64,
    i64,
);

/// A job's results in the order the tests finished (attempt by attempt), only those with
/// `outcome` if given, `limit` of them after the first `offset`.
pub async fn list(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    outcome: Option<TestOutcome>,
    attempts: Attempts,
    limit: i64,
    offset: i64,
) -> Result<Vec<TestResult>, DbError> {
    let rows: Vec<ResultRow> = on_exec!(ex, |e| sqlx::query_as(
        "SELECT r.nodeid, r.file, r.line, r.outcome, r.duration_ms, r.message, r.longrepr,
                r.longrepr_chars, r.attempt
         FROM test_results r
         WHERE r.job_id = $1 AND ($2 IS NULL OR r.outcome = $2)
           AND ($5 OR r.attempt = (SELECT MAX(l.attempt) FROM test_results l
                                   WHERE l.job_id = r.job_id AND l.nodeid = r.nodeid))
         ORDER BY r.attempt, r.step, r.idx LIMIT $3 OFFSET $4",
    )
    .bind(job)
    .bind(outcome)
    .bind(limit)
    .bind(offset)
    .bind(attempts == Attempts::All)
    .fetch_all(e)
    .await?);
    Ok(rows
        .into_iter()
        .map(
            |(
                nodeid,
                file,
                line,
                outcome,
                duration_ms,
                message,
                longrepr,
                longrepr_chars,
                attempt,
            )| TestResult {
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
            },
        )
        .collect())
}

/// A job's counts, once its results are collected.
pub async fn counts(ex: impl Into<Exec<'_>>, job: JobId) -> Result<Option<TestCounts>, DbError> {
    let json: Option<Option<String>> = on_exec!(ex, |e| sqlx::query_scalar(
        "SELECT test_counts FROM jobs WHERE id = $1"
    )
    .bind(job)
    .fetch_optional(e)
    .await?);
    Ok(json.flatten().and_then(|j| serde_json::from_str(&j).ok()))
}

/// How many of a user's recent jobs of the same project the job belongs to.
pub const HISTORY_RUNS: i64 = 20;

/// How often each of `nodeids` failed (on any attempt) in the last `runs` jobs with results of
/// the same user and project as `job`, up to and including it. Tests that did not run in those
/// jobs are left out.
pub async fn history(
    ex: impl Into<Exec<'_>>,
    job: JobId,
    nodeids: &[String],
    runs: i64,
) -> Result<HashMap<String, TestHistory>, DbError> {
    if nodeids.is_empty() {
        return Ok(HashMap::new());
    }
    // The node ids go as one JSON array, which SQLite reads with json_each and PostgreSQL with
    // json_array_elements_text (neither has the other's); "the same project" holds for two
    // jobs without one too (SQLite's IS is PostgreSQL's IS NOT DISTINCT FROM).
    const SQLITE: &str = "WITH this AS (SELECT user_id, project, num FROM jobs WHERE id = $1),
              recent AS (SELECT j.id FROM jobs j, this
                         WHERE j.user_id = this.user_id AND j.project IS this.project
                           AND j.num <= this.num AND j.test_counts IS NOT NULL
                         ORDER BY j.num DESC LIMIT $2)
         SELECT r.nodeid, COUNT(DISTINCT r.job_id),
                COUNT(DISTINCT CASE WHEN r.outcome IN ('failed', 'error') THEN r.job_id END)
         FROM test_results r JOIN recent ON r.job_id = recent.id
         WHERE r.nodeid IN (SELECT value FROM json_each($3))
         GROUP BY r.nodeid";
    const POSTGRES: &str = "WITH this AS (SELECT user_id, project, num FROM jobs WHERE id = $1),
              recent AS (SELECT j.id FROM jobs j, this
                         WHERE j.user_id = this.user_id
                           AND j.project IS NOT DISTINCT FROM this.project
                           AND j.num <= this.num AND j.test_counts IS NOT NULL
                         ORDER BY j.num DESC LIMIT $2)
         SELECT r.nodeid, COUNT(DISTINCT r.job_id),
                COUNT(DISTINCT CASE WHEN r.outcome IN ('failed', 'error') THEN r.job_id END)
         FROM test_results r JOIN recent ON r.job_id = recent.id
         WHERE r.nodeid IN (SELECT value FROM json_array_elements_text(CAST($3 AS json)))
         GROUP BY r.nodeid";
    let ex = ex.into();
    let sql = if ex.is_postgres() { POSTGRES } else { SQLITE };
    // On PostgreSQL a NUL was stored as U+FFFD (see [`store`]), and its json cannot hold one.
    let ids = if ex.is_postgres() {
        let stored: Vec<String> = nodeids
            .iter()
            .map(|id| super::stored_text(true, id).into_owned())
            .collect();
        serde_json::to_string(&stored)
    } else {
        serde_json::to_string(nodeids)
    }
    .expect("strings serialize");
    let rows: Vec<(String, i64, i64)> = on_exec!(ex, |e| sqlx::query_as(sql)
        .bind(job)
        .bind(runs)
        .bind(&ids)
        .fetch_all(e)
        .await?);
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
    use crate::testing::{backends, job_with_lease, take_over_lease, Backend};
    use crate::EventKind;

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

    /// Another job of the user of `of` on `db`, of `project`, after it (plain SQL, as
    /// [`job_with_lease`] writes its job).
    async fn another_job(db: &Backend, of: JobId, project: Option<&str>) -> JobId {
        let id = JobId::new();
        on_exec!(db.exec(), |e| sqlx::query(
            "INSERT INTO jobs (id, user_id, project, created_at)
             SELECT $1, user_id, $2, $3 FROM jobs WHERE id = $4"
        )
        .bind(id)
        .bind(project)
        .bind(crate::db::now())
        .bind(of)
        .execute(e)
        .await
        .map(drop)
        .unwrap());
        id
    }

    #[tokio::test]
    async fn results_are_stored_listed_by_outcome_and_counted_with_a_summary_event_on_every_backend(
    ) {
        for db in backends().await {
            let (job, epoch) = job_with_lease(&db).await;
            let mut lines = String::new();
            for i in 0..1000 {
                let outcome = if i % 100 == 7 { "failed" } else { "passed" };
                let duration = if i == 123 { 2.5 } else { 0.001 };
                lines.push_str(&format!(
                    "{{\"type\": \"test\", \"nodeid\": \"t.py::test_{i}\", \"outcome\": \"{outcome}\", \"duration\": {duration}}}\n"
                ));
            }
            let full = read_report(lines.as_bytes(), &ReportCaps::default()).unwrap();
            store(db.exec(), job, epoch, "test", 1, &full)
                .await
                .unwrap();

            let failed = list(
                db.exec(),
                job,
                Some(TestOutcome::Failed),
                Attempts::Last,
                100,
                0,
            )
            .await
            .unwrap();
            assert_eq!(failed.len(), 10, "{db:?}");
            assert_eq!(failed[0].nodeid, "t.py::test_7", "{db:?}");
            let page = list(db.exec(), job, None, Attempts::Last, 10, 995)
                .await
                .unwrap();
            assert_eq!(page.len(), 5, "{db:?}");
            assert_eq!(page[4].nodeid, "t.py::test_999", "{db:?}");
            // What was stored reads back as the report had it.
            let all = list(db.exec(), job, None, Attempts::All, 2000, 0)
                .await
                .unwrap();
            let expected: Vec<TestResult> = full
                .results
                .iter()
                .map(|r| TestResult {
                    attempt: 1,
                    ..r.clone()
                })
                .collect();
            assert_eq!(all, expected, "{db:?}");
            let counts = counts(db.exec(), job).await.unwrap().unwrap();
            assert_eq!(counts.get(TestOutcome::Passed), 990, "{db:?}");
            assert_eq!(counts.failures(), 10, "{db:?}");
            let events = events::list_after(db.exec(), job, 0, 10).await.unwrap();
            assert_eq!(events.len(), 1, "{db:?}");
            let crate::api::StreamEvent::Summary { summary, .. } = events[0].to_stream_event()
            else {
                panic!("a summary event: {db:?}")
            };
            assert_eq!(events[0].kind, EventKind::Summary);
            assert_eq!(summary.counts, counts, "{db:?}");
            assert_eq!(
                summary.slowest[0],
                ("t.py::test_123".to_owned(), 2500),
                "{db:?}"
            );
            assert_eq!(summary.slowest.len(), SLOWEST.min(1000), "{db:?}");

            // Another epoch cannot write.
            take_over_lease(&db).await;
            let again = report(&[("t.py::test_7", "passed")]);
            let err = store(db.exec(), job, epoch, "retry-1", 2, &again)
                .await
                .unwrap_err();
            assert!(matches!(err, DbError::LeaseLost(_)), "{db:?}: {err:?}");
            assert_eq!(
                list(db.exec(), job, None, Attempts::All, 2000, 0)
                    .await
                    .unwrap()
                    .len(),
                1000,
                "{db:?}"
            );
            assert_eq!(events::last_seq(db.exec(), job).await.unwrap(), 1, "{db:?}");
        }
    }

    #[tokio::test]
    async fn a_retry_turns_tests_that_pass_into_flaky_and_counts_each_test_once_on_every_backend() {
        for db in backends().await {
            let (job, epoch) = job_with_lease(&db).await;
            let first = report(&[
                ("t.py::a", "passed"),
                ("t.py::b", "failed"),
                ("t.py::c", "error"),
                ("t.py::d", "failed"),
                ("t.py::e", "skipped"),
            ]);
            store(db.exec(), job, epoch, "test", 1, &first)
                .await
                .unwrap();
            assert_eq!(
                failed_in_attempt(db.exec(), job, 1).await.unwrap(),
                ["t.py::b", "t.py::c", "t.py::d"],
                "{db:?}"
            );
            let second = report(&[
                ("t.py::b", "passed"),
                ("t.py::c", "passed"),
                ("t.py::d", "failed"),
            ]);
            store(db.exec(), job, epoch, "retry-1", 2, &second)
                .await
                .unwrap();
            assert_eq!(
                failed_in_attempt(db.exec(), job, 2).await.unwrap(),
                ["t.py::d"],
                "{db:?}"
            );
            let counts = counts(db.exec(), job).await.unwrap().unwrap();
            assert_eq!(counts.total(), 5, "{db:?}: {counts:?}");
            assert_eq!(counts.get(TestOutcome::Flaky), 2, "{db:?}");
            assert_eq!(counts.get(TestOutcome::Failed), 1, "{db:?}");
            assert_eq!(counts.get(TestOutcome::Error), 0, "{db:?}");
            assert_eq!(counts.get(TestOutcome::Passed), 1, "{db:?}");
            assert_eq!(counts.get(TestOutcome::Skipped), 1, "{db:?}");

            let last = list(db.exec(), job, None, Attempts::Last, 100, 0)
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
                ],
                "{db:?}"
            );
            let all = list(db.exec(), job, None, Attempts::All, 100, 0)
                .await
                .unwrap();
            assert_eq!(all.len(), 8, "every attempt is kept: {db:?}");
            let failed = list(
                db.exec(),
                job,
                Some(TestOutcome::Failed),
                Attempts::Last,
                100,
                0,
            )
            .await
            .unwrap();
            assert_eq!(failed.len(), 1, "{db:?}");
            // Storing an attempt again replaces its rows.
            store(db.exec(), job, epoch, "retry-1", 2, &second)
                .await
                .unwrap();
            let again = list(db.exec(), job, None, Attempts::All, 100, 0)
                .await
                .unwrap();
            assert_eq!(again, all, "{db:?}");

            let history = history(
                db.exec(),
                job,
                &["t.py::b".into(), "t.py::a".into(), "t.py::zzz".into()],
                HISTORY_RUNS,
            )
            .await
            .unwrap();
            assert_eq!(
                history["t.py::b"],
                TestHistory { failed: 1, runs: 1 },
                "{db:?}"
            );
            assert_eq!(
                history["t.py::a"],
                TestHistory { failed: 0, runs: 1 },
                "{db:?}"
            );
            assert!(!history.contains_key("t.py::zzz"), "{db:?}");
            assert_eq!(history["t.py::b"].to_string(), "failed 1 of the last run");
        }
    }

    #[tokio::test]
    async fn history_counts_the_users_recent_jobs_of_the_same_project_on_every_backend() {
        for db in backends().await {
            let (first, epoch) = job_with_lease(&db).await;
            let b_failed = report(&[("t.py::a", "passed"), ("t.py::b", "failed")]);
            let b_passed = report(&[("t.py::a", "passed"), ("t.py::b", "passed")]);
            store(db.exec(), first, epoch, "test", 1, &b_failed)
                .await
                .unwrap();
            let second = another_job(&db, first, None).await;
            store(db.exec(), second, epoch, "test", 1, &b_passed)
                .await
                .unwrap();
            // Another project's job, and a job without results, do not count.
            let other = another_job(&db, first, Some("web")).await;
            store(db.exec(), other, epoch, "test", 1, &b_failed)
                .await
                .unwrap();
            let third = another_job(&db, first, None).await;
            let ids = ["t.py::b".to_owned(), "t.py::a".to_owned()];
            let seen = |h: HashMap<String, TestHistory>| {
                let mut seen: Vec<_> = h
                    .into_iter()
                    .map(|(id, h)| (id, h.failed, h.runs))
                    .collect();
                seen.sort();
                seen
            };
            let at_second = history(db.exec(), second, &ids, HISTORY_RUNS)
                .await
                .unwrap();
            assert_eq!(
                seen(at_second),
                [("t.py::a".into(), 0, 2), ("t.py::b".into(), 1, 2)],
                "{db:?}"
            );
            let at_third = history(db.exec(), third, &ids, HISTORY_RUNS).await.unwrap();
            assert_eq!(
                seen(at_third),
                [("t.py::a".into(), 0, 2), ("t.py::b".into(), 1, 2)],
                "{db:?}"
            );
            // Only jobs up to and including the one asked about, the last `runs` of them.
            let at_first = history(db.exec(), first, &ids, HISTORY_RUNS).await.unwrap();
            assert_eq!(
                seen(at_first),
                [("t.py::a".into(), 0, 1), ("t.py::b".into(), 1, 1)],
                "{db:?}"
            );
            let last_one = history(db.exec(), second, &ids, 1).await.unwrap();
            assert_eq!(
                seen(last_one),
                [("t.py::a".into(), 0, 1), ("t.py::b".into(), 0, 1)],
                "{db:?}"
            );
            let in_web = history(db.exec(), other, &ids, HISTORY_RUNS).await.unwrap();
            assert_eq!(
                in_web["t.py::b"],
                TestHistory { failed: 1, runs: 1 },
                "{db:?}"
            );
            assert!(history(db.exec(), second, &[], HISTORY_RUNS)
                .await
                .unwrap()
                .is_empty());
        }
    }

    #[tokio::test]
    async fn texts_read_back_as_stored_with_nul_kept_where_the_backend_can() {
        for db in backends().await {
            let (job, epoch) = job_with_lease(&db).await;
            let mut report = report(&[("t.py::ünï«»", "failed")]);
            report.results[0].message = "assert 'a\0b' == «ü»".to_owned();
            report.results[0].longrepr = "E   line one\nE   ☃ two\0".to_owned();
            store(db.exec(), job, epoch, "test", 1, &report)
                .await
                .unwrap();
            let stored = list(db.exec(), job, None, Attempts::Last, 10, 0)
                .await
                .unwrap();
            let nul = match db {
                Backend::Sqlite(_) => "\0",
                Backend::Postgres(_) => "\u{FFFD}",
            };
            assert_eq!(
                (
                    stored[0].nodeid.as_str(),
                    stored[0].message.clone(),
                    stored[0].longrepr.clone()
                ),
                (
                    "t.py::ünï«»",
                    format!("assert 'a{nul}b' == «ü»"),
                    format!("E   line one\nE   ☃ two{nul}")
                ),
                "{db:?}"
            );
            let history = history(db.exec(), job, &["t.py::ünï«»".into()], HISTORY_RUNS)
                .await
                .unwrap();
            assert_eq!(
                history["t.py::ünï«»"],
                TestHistory { failed: 1, runs: 1 },
                "{db:?}"
            );
        }
    }
}
