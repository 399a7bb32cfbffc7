//! `ci-admin db copy`: an SQLite database that real jobs filled (through the real controller
//! and Docker) moves into a real PostgreSQL database, every table of the schema with it, the
//! values unchanged; a target that is not empty is refused, leaving it as it was.

#[path = "support/controller.rs"]
mod support;

use std::process::{Command, Output};

use chrono::{DateTime, Utc};
use ci_common::db::{audit, jobs, sessions};
use ci_common::JobStatus;
use ci_tests::postgres::{self, Postgres};
use ci_tests::{bin, Controller, TestDb};
use support::*;

fn admin(args: &[&str]) -> Output {
    Command::new(bin("ci-admin"))
        .args(args)
        .env_remove(ci_common::config::DB_PATH_ENV)
        .output()
        .expect("run ci-admin")
}

/// Every table of the SQLite schema, with its rows.
async fn sqlite_counts(db: &TestDb) -> Vec<(String, i64)> {
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' \
         AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations' ORDER BY name",
    )
    .fetch_all(db.sqlite_pool())
    .await
    .unwrap();
    let mut counts = Vec::new();
    for table in tables {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{table}\""))
            .fetch_one(db.sqlite_pool())
            .await
            .unwrap();
        counts.push((table, rows));
    }
    counts
}

/// `t` at PostgreSQL's precision: SQLite keeps the nanoseconds the program wrote, PostgreSQL's
/// timestamps keep microseconds.
fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    chrono::DurationRound::duration_trunc(t, chrono::Duration::microseconds(1)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_filled_by_real_jobs_moves_to_postgres_whole() {
    ci_tests::require_docker();
    if !postgres::available() {
        return;
    }
    // Jobs as users run them: test results (with a failure), an install with a dependency
    // cache entry, artifacts of reports, sources, steps, events, the lease, the policy and
    // webhook deliveries.
    let db = TestDb::sqlite().await;
    let ada = db.user("Ada").await;
    let bob = db.user("Bob").await;
    // A webhook (its deliveries stay pending: the default rules refuse its URL, and nothing
    // leaves the machine).
    ci_common::db::webhooks::create(
        &db.pool,
        ada.id,
        "http://127.0.0.1:9/hook",
        "whsec_copy",
        &ci_common::webhooks::WebhookEvent::ALL,
    )
    .await
    .unwrap();
    let controller = Controller::start_with(&db, &[]);
    let results = queue(&db, ada.id, "results_mix").await;
    let cached = queue(&db, bob.id, "cache_greetkit").await;
    let results = finished(&db, results, JOB_WAIT).await;
    let cached = finished(&db, cached, JOB_WAIT).await;
    assert_eq!(results.status, JobStatus::Failed, "{:?}", results.reason);
    assert_eq!(cached.status, JobStatus::Passed, "{:?}", cached.reason);
    drop(controller);
    // A browser session, and a queued job from before sources were kept once per content (its
    // upload in the old table).
    let key = ci_common::db::api_keys::list(db.sqlite_pool(), Some(ada.id))
        .await
        .unwrap()
        .remove(0);
    sessions::create(
        db.sqlite_pool(),
        &key,
        chrono::Duration::days(1),
        Utc::now(),
    )
    .await
    .unwrap();
    let queued = jobs::create(db.sqlite_pool(), ada.id, "test", b"old zip")
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO job_uploads (job_id, archive, size, sha256, created_at) VALUES ($1, $2, 7, 'x', $3)",
    )
    .bind(queued.id)
    .bind(&b"old zip"[..])
    .bind(Utc::now())
    .execute(db.sqlite_pool())
    .await
    .unwrap();

    // A push trigger and a git credential (sealed with a key of this test).
    ci_common::db::triggers::create(
        db.sqlite_pool(),
        &ci_common::db::triggers::NewTrigger {
            user_id: ada.id,
            kind: ci_common::db::triggers::TriggerKind::Push,
            task: "test",
            git_url: "https://git.example.com/app.git",
            git_ref: Some("main"),
        },
    )
    .await
    .unwrap();
    let secrets = ci_common::secrets::SecretsKey::from_hex(&"5a".repeat(32)).unwrap();
    ci_common::db::git_credentials::set(
        db.sqlite_pool(),
        &secrets,
        ada.id,
        "git.example.com",
        "ada",
        "token",
    )
    .await
    .unwrap();
    // A team with a member and a secret variable.
    let team = ci_common::db::teams::create(db.sqlite_pool(), "platform")
        .await
        .unwrap();
    ci_common::db::teams::add_member(db.sqlite_pool(), team.id, bob.id)
        .await
        .unwrap();
    ci_common::db::secret_variables::set(
        db.sqlite_pool(),
        &secrets,
        ci_common::db::secret_variables::SecretOwner::Team(team.id),
        "PYPI_TOKEN",
        "pypi-token-value",
        "Bob",
    )
    .await
    .unwrap();

    // An audit entry (what ci-admin and the server write with each action).
    let entry = audit::Actor::admin("root")
        .entry(audit::Action::UserCreate, "user ada@example.com")
        .detail(serde_json::json!({ "name": "Ada" }));
    audit::record(db.sqlite_pool(), &entry).await.unwrap();

    // A table that nothing above fills is a table this test does not prove is copied.
    let before = sqlite_counts(&db).await;
    let empty: Vec<&String> = before
        .iter()
        .filter(|(_, rows)| *rows == 0)
        .map(|(t, _)| t)
        .collect();
    assert!(empty.is_empty(), "fill these tables above too: {empty:?}");

    let cluster = Postgres::shared();
    let url = cluster.fresh_database("copy_target");
    let from = format!("sqlite://{}", db.path.display());
    let out = admin(&["db", "copy", "--from", &from, "--to", &url, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let copied: Vec<(String, i64)> = report["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["table"].as_str().unwrap().to_owned(),
                t["rows"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut copied_sorted = copied.clone();
    copied_sorted.sort();
    assert_eq!(copied_sorted, before, "every table, every row");
    // Parents first: users before jobs before events.
    let at = |t: &str| copied.iter().position(|(n, _)| n == t).unwrap();
    assert!(at("users") < at("jobs") && at("jobs") < at("job_events"));

    let pg = sqlx::PgPool::connect(&url).await.unwrap();
    for (table, rows) in &before {
        let n: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM \"{table}\""))
            .fetch_one(&pg)
            .await
            .unwrap();
        assert_eq!(n, *rows, "{table} in PostgreSQL");
    }
    // Values, typed: every job's fields as the program reads them.
    type JobRow = (i64, String, String, bool, Option<DateTime<Utc>>, bool, i64);
    let select = "SELECT num, id, status, oom_killed, finished_at, use_cache, log_lines \
                  FROM jobs ORDER BY num";
    let mut sqlite_jobs: Vec<JobRow> = sqlx::query_as(select)
        .fetch_all(db.sqlite_pool())
        .await
        .unwrap();
    for job in &mut sqlite_jobs {
        job.4 = job.4.map(micros);
    }
    let pg_jobs: Vec<JobRow> = sqlx::query_as(select).fetch_all(&pg).await.unwrap();
    assert_eq!(sqlite_jobs, pg_jobs);
    assert!(sqlite_jobs.iter().any(|j| j.4.is_some() && j.6 > 0));
    // Every line of every log, byte for byte, in order.
    let events = "SELECT job_id, seq, kind, stream, ts, text, data FROM job_events \
                  ORDER BY job_id, seq";
    type EventRow = (
        String,
        i64,
        String,
        Option<String>,
        DateTime<Utc>,
        String,
        Option<String>,
    );
    let sqlite_events: Vec<EventRow> = sqlx::query_as(events)
        .fetch_all(db.sqlite_pool())
        .await
        .unwrap();
    let pg_events: Vec<EventRow> = sqlx::query_as(events).fetch_all(&pg).await.unwrap();
    // (Timestamps at PostgreSQL's precision; but for the NUL results_mix prints, which PostgreSQL's text cannot hold: it becomes
    // U+FFFD, and the report counts it.)
    let nul: Vec<EventRow> = sqlite_events
        .into_iter()
        .map(|mut e| {
            e.4 = micros(e.4);
            e.5 = e.5.replace('\0', "\u{FFFD}");
            e
        })
        .collect();
    assert_eq!(nul, pg_events);
    assert!(report["nul_replaced"].as_u64().unwrap() >= 1, "{report}");
    // Binary data: blob chunks and sources.
    let bytes = "SELECT data FROM blob_chunks ORDER BY job_id, name, idx";
    let sqlite_bytes: Vec<Vec<u8>> = sqlx::query_scalar(bytes)
        .fetch_all(db.sqlite_pool())
        .await
        .unwrap();
    let pg_bytes: Vec<Vec<u8>> = sqlx::query_scalar(bytes).fetch_all(&pg).await.unwrap();
    assert_eq!(sqlite_bytes, pg_bytes);
    let sources = "SELECT sha256, archive FROM sources ORDER BY sha256";
    let sqlite_sources: Vec<(String, Vec<u8>)> = sqlx::query_as(sources)
        .fetch_all(db.sqlite_pool())
        .await
        .unwrap();
    let pg_sources: Vec<(String, Vec<u8>)> = sqlx::query_as(sources).fetch_all(&pg).await.unwrap();
    assert_eq!(sqlite_sources, pg_sources);
    // A job added later is numbered after the copied ones.
    let num: i64 = sqlx::query_scalar(
        "INSERT INTO jobs (id, user_id, created_at) VALUES ('later', $1, now()) RETURNING num",
    )
    .bind(ada.id)
    .fetch_one(&pg)
    .await
    .unwrap();
    assert!(num > sqlite_jobs.last().unwrap().0, "{num}");
    // The audit log reads the same from both, and goes on numbering after the copied entries.
    let all = audit::AuditFilter::default();
    let sqlite_audit = audit::list(db.sqlite_pool(), &all).await.unwrap();
    assert_eq!(audit::list(&pg, &all).await.unwrap(), sqlite_audit);
    let next = audit::record(&pg, &entry).await.unwrap();
    assert!(next > sqlite_audit.last().unwrap().id, "{next}");

    // Copying again: the target is not empty; it is refused and left as it was.
    let again = admin(&["db", "copy", "--from", &from, "--to", &url]);
    assert!(!again.status.success());
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(
        err.contains("not empty") && err.contains("new, empty database"),
        "{err}"
    );
    let jobs_now: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs")
        .fetch_one(&pg)
        .await
        .unwrap();
    assert_eq!(jobs_now, sqlite_jobs.len() as i64 + 1);
}

#[test]
fn the_wrong_kinds_of_database_are_refused_saying_what_is_expected() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("sqlite://{}", dir.path().join("none.db").display());
    let out = admin(&[
        "db",
        "copy",
        "--from",
        &missing,
        "--to",
        "postgres://ci@127.0.0.1:1/ci",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("there is no SQLite database at"), "{err}");
    assert!(!dir.path().join("none.db").exists(), "nothing created");

    let out = admin(&[
        "db",
        "copy",
        "--from",
        "postgres://a@h/x",
        "--to",
        "postgres://a@h/y",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--from must be an SQLite database"), "{err}");

    let out = admin(&[
        "db",
        "copy",
        "--from",
        "mysql://root:pw@h/x",
        "--to",
        "postgres://a@h/y",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is not a database URL") && !err.contains("pw@"),
        "{err}"
    );
}
