//! `ci-admin import-legacy` as an operator runs it: a database of the Python prototype (written
//! here as its code writes it) is imported twice into ours, then the real `ci-server` and `ci`
//! show its users what they had: their keys, their jobs, their logs. No controller or Docker.

#[path = "support/client.rs"]
mod support;

use std::path::Path;
use std::process::Command;

use chrono::{DateTime, NaiveDateTime, Utc};
use ci_tests::ci_common::api::JobView;
use ci_tests::ci_common::JobStatus;
use ci_tests::{bin, client, Proc, Server, WAIT};
use sha2::{Digest, Sha256};
use sqlx::sqlite::SqliteConnectOptions;
use support::{run, CiEnv};

const ADA: &str = "3b0f6d2e-8c1a-4e55-9d7b-0a1b2c3d4e5f";
const BOB: &str = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
const PASSED: &str = "a1a1a1a1-0000-4000-8000-000000000001";
const FAILED: &str = "a1a1a1a1-0000-4000-8000-000000000002";
const UNFINISHED: &str = "a1a1a1a1-0000-4000-8000-000000000003";
const BOBS: &str = "b2b2b2b2-0000-4000-8000-000000000001";

/// The log of the passed job as its user saw it, line by line.
const PASSED_LOG: [&str; 6] = [
    "============================= test session starts ==============================",
    "collected 2 items",
    "tests/test_ünïcode.py::test_grüße PASSED                                  [ 50%]",
    "tests/test_ünïcode.py::test_emoji ✓ PASSED                                [100%]",
    "",
    "============================== 2 passed in 0.02s ===============================",
];
const FAILED_LOG: [&str; 2] = ["E       assert 1 == 2", "1 failed in 0.01s"];

/// A key as the prototype made them: `ci_` + 40 URL-safe base64 characters, no checksum.
fn prototype_key() -> String {
    const URL_SAFE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let random = [
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    ];
    let body: String = random
        .iter()
        .flat_map(|u| u.as_bytes().to_vec())
        .take(38)
        .map(|b| URL_SAFE[usize::from(b) % 64] as char)
        .collect();
    format!("ci_-_{body}")
}

fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes the prototype's database: its schema and rows exactly as its repository stores them
/// (aware isoformat times for users and keys, naive UTC ones for jobs and events, 0/1
/// booleans, log data with its newline).
async fn write_prototype_db(path: &Path, active_key: &str, revoked_key: &str) {
    let pool = sqlx::SqlitePool::connect_with(
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true),
    )
    .await
    .unwrap();
    let passed_events: Vec<String> = [
        format!("{}\n", PASSED_LOG[0]),
        format!("{}\n", PASSED_LOG[1]),
        // One event may carry several lines.
        format!("{}\n{}\n", PASSED_LOG[2], PASSED_LOG[3]),
        format!("{}\n", PASSED_LOG[4]),
        format!("{}\n", PASSED_LOG[5]),
    ]
    .iter()
    .map(|data| {
        format!(
            "('{PASSED}', 'log', '{}', NULL, '2025-10-13T09:00:01.250000')",
            data.replace('\'', "''")
        )
    })
    .collect();
    let sql = format!(
        "CREATE TABLE users (
             id TEXT PRIMARY KEY, name TEXT NOT NULL, email TEXT UNIQUE NOT NULL,
             created_at TEXT NOT NULL, is_active INTEGER NOT NULL DEFAULT 1);
         CREATE TABLE api_keys (
             id TEXT PRIMARY KEY, user_id TEXT NOT NULL, key_hash TEXT UNIQUE NOT NULL, name TEXT,
             created_at TEXT NOT NULL, last_used_at TEXT, is_active INTEGER NOT NULL DEFAULT 1,
             FOREIGN KEY (user_id) REFERENCES users(id) ON DELETE CASCADE);
         CREATE TABLE jobs (
             id TEXT PRIMARY KEY, status TEXT NOT NULL, success INTEGER, start_time TEXT,
             end_time TEXT, container_id TEXT, zip_file_path TEXT, user_id TEXT,
             FOREIGN KEY (user_id) REFERENCES users(id));
         CREATE TABLE events (
             id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, type TEXT NOT NULL,
             data TEXT, success INTEGER, timestamp TEXT NOT NULL,
             FOREIGN KEY (job_id) REFERENCES jobs(id) ON DELETE CASCADE);

         INSERT INTO users (id, name, email, created_at, is_active) VALUES
             ('{ADA}', 'Ada Lovelace', 'ada@example.com', '2025-10-12T09:15:02.123456+00:00', 1),
             ('{BOB}', 'Bob', 'bob@example.com', '2025-10-12T09:20:00+00:00', 1);
         INSERT INTO api_keys (id, user_id, key_hash, name, created_at, last_used_at, is_active)
         VALUES
             ('5d6e7f80-1a2b-4c3d-8e4f-5a6b7c8d9e0f', '{ADA}', '{active}', 'laptop',
              '2025-10-12T09:16:00.000100+00:00', '2025-10-14T08:00:00.500000+00:00', 1),
             ('6d6e7f80-1a2b-4c3d-8e4f-5a6b7c8d9e0f', '{ADA}', '{revoked}', 'old laptop',
              '2025-10-12T09:17:00+00:00', NULL, 0);
         INSERT INTO jobs (id, status, success, start_time, end_time, container_id, zip_file_path,
                           user_id) VALUES
             ('{UNFINISHED}', 'running', NULL, '2025-10-13T11:00:00', NULL, 'c3', NULL, '{ADA}'),
             ('{FAILED}', 'completed', 0, '2025-10-13T10:00:00', '2025-10-13T10:00:09.250000',
              'c2', NULL, '{ADA}'),
             ('{PASSED}', 'completed', 1, '2025-10-13T09:00:00.000001',
              '2025-10-13T09:00:05.500000', 'c1', NULL, '{ADA}'),
             ('{BOBS}', 'completed', 1, '2025-10-13T09:30:00', '2025-10-13T09:30:02', 'c4', NULL,
              '{BOB}');
         INSERT INTO events (job_id, type, data, success, timestamp) VALUES
             {passed},
             ('{PASSED}', 'complete', NULL, 1, '2025-10-13T09:00:05.400000'),
             ('{FAILED}', 'log', '{failed_0}\n', NULL, '2025-10-13T10:00:08'),
             ('{FAILED}', 'log', '{failed_1}\n', NULL, '2025-10-13T10:00:08.000500'),
             ('{FAILED}', 'complete', NULL, 0, '2025-10-13T10:00:09'),
             ('{UNFINISHED}', 'log', 'collecting ...\n', NULL, '2025-10-13T11:00:01');",
        active = sha256_hex(active_key),
        revoked = sha256_hex(revoked_key),
        passed = passed_events.join(",\n"),
        failed_0 = FAILED_LOG[0],
        failed_1 = FAILED_LOG[1],
    );
    sqlx::raw_sql(&sql).execute(&pool).await.unwrap();
    pool.close().await;
}

/// `ci-admin --db-path DB ARGS`, to completion.
fn admin(db: &Path, args: &[&str]) -> ci_tests::Output {
    let mut cmd = Command::new(bin("ci-admin"));
    cmd.arg("--db-path")
        .arg(db)
        .args(args)
        .env_remove("CI_DB_PATH");
    Proc::spawn("ci-admin", cmd).finish(WAIT)
}

/// A naive isoformat time of the prototype's (UTC).
fn utc(naive: &str) -> DateTime<Utc> {
    NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S%.f")
        .unwrap()
        .and_utc()
}

fn log(lines: &[&str]) -> String {
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_imported_installation_keeps_its_keys_jobs_and_logs() {
    let dir = tempfile::tempdir().unwrap();
    let prototype = dir.path().join("ci_jobs.db");
    let ours = dir.path().join("ci.db");
    let (active_key, revoked_key) = (prototype_key(), prototype_key());
    write_prototype_db(&prototype, &active_key, &revoked_key).await;
    let untouched = std::fs::read(&prototype).unwrap();
    let proto_path = prototype.to_str().unwrap();

    let first = admin(&ours, &["import-legacy", proto_path]).expect_code(0);
    let lines = PASSED_LOG.len() + FAILED_LOG.len() + 1;
    assert_eq!(
        first.stdout,
        format!(
            "imported 2 users, 2 keys (1 revoked), 4 jobs ({lines} log lines, 1 unfinished, now \
             lost)\n"
        )
    );
    let second = admin(&ours, &["import-legacy", proto_path]).expect_code(0);
    assert_eq!(
        second.stdout,
        "nothing new to import: 2 users, 2 keys and 4 jobs were already there\n"
    );
    let third = admin(&ours, &["import-legacy", proto_path, "--json"]).expect_code(0);
    let counts: serde_json::Value = serde_json::from_str(&third.stdout).unwrap();
    assert_eq!(counts["changed"], false);
    assert_eq!(
        counts["jobs"],
        serde_json::json!({"imported": 0, "already_there": 4})
    );
    assert_eq!(counts["log_lines"], 0);
    assert_eq!(
        std::fs::read(&prototype).unwrap(),
        untouched,
        "the prototype's database is only read"
    );

    let server = Server::start(&ours);
    let env = CiEnv::new();
    let here = env.home.path();

    // Ada's key works as it did, and she sees her jobs (not Bob's), newest first.
    let out = run(env.ci(&server.url, &active_key, here, &["list", "--json"])).expect_code(0);
    let jobs: Vec<JobView> = serde_json::from_str(&out.stdout).unwrap();
    let seen: Vec<(String, JobStatus, bool)> = jobs
        .iter()
        .map(|j| (j.job_id.to_string(), j.status, j.success))
        .collect();
    assert_eq!(
        seen,
        [
            (UNFINISHED.to_owned(), JobStatus::Lost, false),
            (FAILED.to_owned(), JobStatus::Failed, false),
            (PASSED.to_owned(), JobStatus::Passed, true),
        ]
    );
    assert_eq!(jobs[0].reason.as_deref(), Some("imported unfinished"));
    assert_eq!(
        (jobs[2].created_at, jobs[2].start_time, jobs[2].end_time),
        (
            utc("2025-10-13T09:00:00.000001"),
            Some(utc("2025-10-13T09:00:00.000001")),
            Some(utc("2025-10-13T09:00:05.500000"))
        )
    );
    assert_eq!(
        (jobs[1].start_time, jobs[1].end_time),
        (
            Some(utc("2025-10-13T10:00:00")),
            Some(utc("2025-10-13T10:00:09.250000"))
        )
    );
    assert_eq!(jobs[2].log_lines, PASSED_LOG.len() as i64);

    // Its log replays line for line, non-ASCII included; the exit code follows the state.
    let passed = run(env.ci(&server.url, &active_key, here, &["wait", "--all", PASSED]));
    let passed = passed.expect_code(0);
    assert_eq!(passed.stdout, log(&PASSED_LOG));
    assert!(
        passed.stderr.contains(&format!("Job {PASSED} passed")),
        "{}",
        passed.stderr
    );
    let failed = run(env.ci(&server.url, &active_key, here, &["wait", "--all", FAILED]));
    let failed = failed.expect_code(1);
    assert_eq!(failed.stdout, log(&FAILED_LOG));
    let lost = run(env.ci(
        &server.url,
        &active_key,
        here,
        &["wait", "--all", UNFINISHED],
    ));
    let lost = lost.expect_code(1);
    assert_eq!(lost.stdout, "collecting ...\n");
    assert!(
        lost.stderr.contains("imported unfinished"),
        "{}",
        lost.stderr
    );

    // The key that was revoked in the prototype is refused as revoked; a mistyped prototype key
    // (no checksum to catch it) is unknown.
    let response = client()
        .get(server.at("/api/v1/jobs"))
        .bearer_auth(&revoked_key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "revoked_api_key", "{body}");
    let out = run(env.ci(&server.url, &revoked_key, here, &["list"])).expect_code(1);
    assert!(out.stderr.contains("was revoked"), "{}", out.stderr);

    let mut typo = active_key.clone().into_bytes();
    typo[20] = if typo[20] == b'x' { b'y' } else { b'x' };
    let response = client()
        .get(server.at("/api/v1/jobs"))
        .bearer_auth(String::from_utf8(typo).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "unknown_api_key", "{body}");
}

#[test]
fn a_file_that_is_not_a_prototype_database_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ci.db");
    let missing = dir.path().join("jobs.db");
    let out = admin(&ours, &["import-legacy", missing.to_str().unwrap()]).expect_code(1);
    assert!(
        out.stderr.starts_with("error: no file at "),
        "{}",
        out.stderr
    );
    assert!(
        !ours.exists(),
        "our database is not created for a failed import"
    );

    let text = dir.path().join("notes.txt");
    std::fs::write(
        &text,
        "certainly not an SQLite database, but long enough to tell\n",
    )
    .unwrap();
    let out = admin(&ours, &["import-legacy", text.to_str().unwrap()]).expect_code(1);
    assert!(
        out.stderr.contains("is not a database of the prototype")
            && out
                .stderr
                .contains("expected the Python prototype's SQLite database"),
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}
