//! Helpers of the `server_*` tests: a server with extra flags and environment, a stand-in for the
//! controller that writes events exactly as it does, and a small project's archive (hand-made
//! archives come from `ci_common::testing`).
#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use ci_common::api::Outcome;
use ci_common::db::events::{self, NewEvent};
use ci_common::db::{jobs, lease, uploads, Db};
use ci_common::testing::zip_files;
use ci_common::{JobId, JobStatus, LogStream};
use ci_tests::{client, Server};

/// Time limit of one server test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(180);

/// Starts a `ci-server` with extra flags and environment variables.
pub fn start_server(db: impl ci_tests::DbArg, args: &[&str], envs: &[(&str, &Path)]) -> Server {
    let mut cmd = Server::command(db, args);
    for (key, value) in envs {
        cmd.env(key, value);
    }
    Server::spawn(cmd)
}

/// Writes to the database what the controller writes, the way it writes it.
pub struct FakeController {
    pub pool: Db,
    pub epoch: i64,
}

impl FakeController {
    pub async fn new(pool: &Db) -> Self {
        let epoch = lease::acquire(pool, "server-tests").await.unwrap().epoch;
        Self {
            pool: pool.clone(),
            epoch,
        }
    }

    /// Claims the next queued job (writes its `running` status event, seq 1).
    pub async fn claim(&self) -> JobId {
        jobs::claim_next(&self.pool, self.epoch, "test-image", "local")
            .await
            .unwrap()
            .expect("a queued job")
            .id
    }

    /// Appends log lines in one write transaction, as the controller's log writer does (which
    /// announces the change on PostgreSQL); returns the new last seq.
    pub async fn log(&self, job: JobId, lines: &[String]) -> i64 {
        let events: Vec<_> = lines
            .iter()
            .map(|l| NewEvent::log(LogStream::Stdout, chrono::Utc::now(), l.clone()))
            .collect();
        let progress = jobs::LogProgress::default();
        events::append_with_progress(&self.pool, job, self.epoch, &events, &progress)
            .await
            .unwrap();
        events::last_seq(&self.pool, job).await.unwrap()
    }

    /// Ends the job (its `status` and `complete` events).
    pub async fn finish(&self, job: JobId, status: JobStatus) {
        let mut outcome = Outcome::new(status);
        if status == JobStatus::Failed {
            outcome = outcome.with_exit_code(1);
        } else if status == JobStatus::Passed {
            outcome = outcome.with_exit_code(0);
        }
        assert!(jobs::finish(&self.pool, job, Some(self.epoch), &outcome)
            .await
            .unwrap());
    }
}

pub fn lines(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("line {i}")).collect()
}

/// Jobs and stored uploads in the database.
pub async fn counts(pool: &Db) -> (i64, i64) {
    let jobs = jobs::count_by_status(pool).await.unwrap();
    let jobs = jobs.iter().map(|(_, n)| n).sum();
    (jobs, uploads::count(pool).await.unwrap())
}

/// Bytes that do not compress.
pub fn noise(len: usize) -> Vec<u8> {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// A small valid project.
pub fn project_zip() -> Vec<u8> {
    zip_files(&[
        ("tests/test_ok.py", b"def test_ok():\n    assert True\n"),
        ("requirements.txt", b""),
    ])
}

/// Uploads `zip` to `path` and returns the status and JSON body.
pub async fn upload(
    server: &Server,
    path: &str,
    key: &str,
    zip: Vec<u8>,
) -> (reqwest::StatusCode, serde_json::Value) {
    upload_with(server, path, key, zip, &[]).await
}

/// Uploads `zip` to `path` with extra multipart text fields (`task`, `image`, `arg`, ...).
pub async fn upload_with(
    server: &Server,
    path: &str,
    key: &str,
    zip: Vec<u8>,
    fields: &[(&str, &str)],
) -> (reqwest::StatusCode, serde_json::Value) {
    let mut form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(zip).file_name("project.zip"),
    );
    for (name, value) in fields {
        form = form.text(name.to_string(), value.to_string());
    }
    let response = client()
        .post(server.at(path))
        .bearer_auth(key)
        .multipart(form)
        .send()
        .await
        .expect("upload request");
    let status = response.status();
    let body = response.json().await.expect("JSON answer");
    (status, body)
}

/// GETs `path` with a key and returns the status and JSON body.
pub async fn get_json(
    server: &Server,
    path: &str,
    key: &str,
) -> (reqwest::StatusCode, serde_json::Value) {
    let response = client()
        .get(server.at(path))
        .bearer_auth(key)
        .send()
        .await
        .expect("request");
    let status = response.status();
    let body = response.json().await.expect("JSON answer");
    (status, body)
}
