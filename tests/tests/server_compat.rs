//! The original system's client, spoken exactly: multipart uploads to `/submit-async`,
//! `/submit-stream` and `/submit`, `GET /jobs`, `GET /jobs/{id}` and
//! `GET /jobs/{id}/stream?from_beginning=...`, reading only the `data:` lines of the streams.
//! (The same with the real Python client and real jobs: `compat_prototype.rs`.)

mod common_server;

use ci_common::{JobId, JobStatus};
use ci_tests::{client, Server, TestDb, WAIT};
use common_server::{get_json, lines, project_zip, FakeController, TEST_TIMEOUT};
use futures_util::StreamExt;

/// What the original client did with a stream: take each `data:` line as JSON, stop at
/// `complete` (or after `max` messages).
struct DataLines {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl DataLines {
    fn new(response: reqwest::Response) -> Self {
        assert_eq!(response.status(), 200);
        // Without the charset, `requests` decodes the stream as ISO-8859-1.
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream; charset=utf-8"
        );
        Self {
            body: Box::pin(response.bytes_stream()),
            buffer: String::new(),
        }
    }

    /// The next `data:` JSON, or `None` at the end of the stream.
    async fn next(&mut self) -> Option<serde_json::Value> {
        let read = async {
            loop {
                if let Some(at) = self.buffer.find('\n') {
                    let line: String = self.buffer.drain(..=at).collect();
                    if let Some(data) = line.trim_end().strip_prefix("data:") {
                        return Some(serde_json::from_str(data.trim()).expect("data is JSON"));
                    }
                    continue;
                }
                match self.body.next().await {
                    Some(chunk) => self
                        .buffer
                        .push_str(&String::from_utf8_lossy(&chunk.unwrap())),
                    None => return None,
                }
            }
        };
        tokio::time::timeout(WAIT, read)
            .await
            .expect("stream timed out")
    }

    async fn until_complete(&mut self) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        while let Some(data) = self.next().await {
            let done = data["type"] == "complete";
            out.push(data);
            if done {
                break;
            }
        }
        out
    }
}

/// The log lines of a stream, each ending with its newline as the original sent it.
fn logs(messages: &[serde_json::Value]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m["type"] == "log")
        .map(|m| m["data"].as_str().unwrap().to_owned())
        .collect()
}

fn with_newlines(lines: Vec<String>) -> Vec<String> {
    lines.into_iter().map(|l| l + "\n").collect()
}

fn form() -> reqwest::multipart::Form {
    reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(project_zip()).file_name("project.zip"),
    )
}

#[tokio::test]
async fn the_original_client_submits_lists_and_reads_the_whole_log() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let ada = db.user("Ada").await;
        let controller = FakeController::new(&db.pool).await;

        let response = client()
            .post(server.at("/submit-async"))
            .bearer_auth(&ada.key)
            .multipart(form())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let submitted: serde_json::Value = response.json().await.unwrap();
        let id = submitted["job_id"].as_str().unwrap().to_owned();

        let (status, jobs) = get_json(&server, "/jobs", &ada.key).await;
        assert_eq!(status, 200);
        let listed = &jobs.as_array().unwrap()[0];
        for field in ["job_id", "status", "success", "start_time", "end_time"] {
            assert!(listed.get(field).is_some(), "missing {field}: {listed}");
        }
        assert_eq!(listed["status"], "queued");
        assert_eq!(
            listed["success"],
            serde_json::Value::Null,
            "not until it ends"
        );

        let job: JobId = id.parse().unwrap();
        assert_eq!(controller.claim().await, job);
        controller.log(job, &lines(0..50)).await;
        controller.finish(job, JobStatus::Failed).await;

        let response = client()
            .get(server.at(&format!("/jobs/{id}/stream?from_beginning=true")))
            .bearer_auth(&ada.key)
            .send()
            .await
            .unwrap();
        let mut stream = DataLines::new(response);
        let messages = stream.until_complete().await;
        assert_eq!(logs(&messages), with_newlines(lines(0..50)));
        let complete = messages.last().unwrap();
        assert_eq!(complete["type"], "complete");
        assert_eq!(complete["success"], false);
        assert_eq!(complete["status"], "completed", "the tests ran");
        assert!(
            stream.next().await.is_none(),
            "the stream ends after complete"
        );

        // The original's words: the tests ran, and failed.
        let (_, shown) = get_json(&server, &format!("/jobs/{id}"), &ada.key).await;
        assert_eq!(shown["status"], "completed");
        assert_eq!(shown["success"], false);
        assert!(shown["end_time"].is_string());
        assert_eq!(shown["exit_code"], 1, "our fields too");
        let (_, listed) = get_json(&server, "/jobs", &ada.key).await;
        assert_eq!(listed[0]["status"], "completed");
        assert_eq!(listed[0]["success"], false);
        // The v1 API keeps the precise state.
        let (_, v1) = get_json(&server, &format!("/api/v1/jobs/{id}"), &ada.key).await;
        assert_eq!(v1["status"], "failed");

        // Not from the beginning, on a finished job: the original's two messages.
        let response = client()
            .get(server.at(&format!("/jobs/{id}/stream?from_beginning=false")))
            .bearer_auth(&ada.key)
            .send()
            .await
            .unwrap();
        let messages = DataLines::new(response).until_complete().await;
        assert_eq!(messages.len(), 2, "{messages:?}");
        assert_eq!(
            messages[0],
            serde_json::json!({"type": "log", "data": "Job already completed.\n"})
        );
        assert_eq!(messages[1]["type"], "complete");
        assert_eq!(messages[1]["success"], false);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn submit_stream_sends_the_job_id_first_then_the_log() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let ada = db.user("Ada").await;
        let controller = FakeController::new(&db.pool).await;

        let response = client()
            .post(server.at("/submit-stream"))
            .bearer_auth(&ada.key)
            .multipart(form())
            .send()
            .await
            .unwrap();
        let mut stream = DataLines::new(response);
        let first = stream.next().await.unwrap();
        assert_eq!(first["type"], "job_id");
        let job: JobId = first["job_id"].as_str().unwrap().parse().unwrap();

        assert_eq!(controller.claim().await, job);
        controller.log(job, &lines(0..10)).await;
        controller.finish(job, JobStatus::Passed).await;
        let messages = stream.until_complete().await;
        assert_eq!(logs(&messages), with_newlines(lines(0..10)));
        assert_eq!(messages.last().unwrap()["success"], true);
        assert_eq!(messages.last().unwrap()["status"], "completed");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn submit_streams_and_live_streams_show_only_new_output() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let ada = db.user("Ada").await;
        let controller = FakeController::new(&db.pool).await;

        let response = client()
            .post(server.at("/submit"))
            .bearer_auth(&ada.key)
            .multipart(form())
            .send()
            .await
            .unwrap();
        let job: JobId = response.headers()["x-job-id"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let mut submitted = DataLines::new(response);
        assert_eq!(controller.claim().await, job);
        assert_eq!(submitted.next().await.unwrap()["status"], "running");
        controller.log(job, &lines(0..5)).await;

        // A new follower without from_beginning sees only what comes next.
        let response = client()
            .get(server.at(&format!("/jobs/{job}/stream")))
            .bearer_auth(&ada.key)
            .send()
            .await
            .unwrap();
        let mut live = DataLines::new(response);
        controller.log(job, &lines(5..8)).await;
        controller.finish(job, JobStatus::Passed).await;
        let messages = live.until_complete().await;
        assert_eq!(logs(&messages), with_newlines(lines(5..8)));
        let messages = submitted.until_complete().await;
        assert_eq!(logs(&messages), with_newlines(lines(0..8)));
        assert_eq!(messages.last().unwrap()["success"], true);
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn every_end_has_the_originals_word_and_non_ascii_arrives_escaped() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let ada = db.user("Ada").await;
        let controller = FakeController::new(&db.pool).await;
        let submit = || async {
            let response = client()
                .post(server.at("/submit-async"))
                .bearer_auth(&ada.key)
                .multipart(form())
                .send()
                .await
                .unwrap();
            let body: serde_json::Value = response.json().await.unwrap();
            body["job_id"].as_str().unwrap().parse::<JobId>().unwrap()
        };

        // The job could not run (an error, a timeout): `failed`.
        for status in [JobStatus::Error, JobStatus::TimedOut] {
            let job = submit().await;
            assert_eq!(controller.claim().await, job);
            let (_, shown) = get_json(&server, &format!("/jobs/{job}"), &ada.key).await;
            assert_eq!(shown["status"], "running");
            assert_eq!(shown["success"], serde_json::Value::Null);
            controller
                .log(job, &["café ✓ \u{2028} 你好".to_owned()])
                .await;
            controller.finish(job, status).await;
            let (_, shown) = get_json(&server, &format!("/jobs/{job}"), &ada.key).await;
            assert_eq!(shown["status"], "failed", "{status}");
            assert_eq!(shown["success"], false);
            let (_, v1) = get_json(&server, &format!("/api/v1/jobs/{job}"), &ada.key).await;
            assert_eq!(v1["status"], status.as_str());

            let response = client()
                .get(server.at(&format!("/jobs/{job}/stream?from_beginning=true")))
                .bearer_auth(&ada.key)
                .send()
                .await
                .unwrap();
            let body = response.text().await.unwrap();
            assert!(
                body.is_ascii(),
                "escaped as the original's json.dumps: {body}"
            );
            let messages: Vec<serde_json::Value> = body
                .lines()
                .filter_map(|l| l.strip_prefix("data: "))
                .map(|json| serde_json::from_str(json).unwrap())
                .collect();
            assert_eq!(logs(&messages), ["café ✓ \u{2028} 你好\n"]);
            let words: Vec<_> = messages
                .iter()
                .filter(|m| m["type"] != "log")
                .map(|m| (m["type"].as_str().unwrap(), m["status"].as_str().unwrap()))
                .collect();
            assert_eq!(
                words,
                [
                    ("status", "running"),
                    ("status", "failed"),
                    ("complete", "failed")
                ]
            );
        }

        // Cancelled while queued: `cancelled`.
        let job = submit().await;
        let cancel = client()
            .post(server.at(&format!("/api/v1/jobs/{job}/cancel")))
            .bearer_auth(&ada.key)
            .send()
            .await
            .unwrap();
        assert_eq!(cancel.status(), 202);
        let (_, shown) = get_json(&server, &format!("/jobs/{job}"), &ada.key).await;
        assert_eq!(shown["status"], "cancelled");
        assert_eq!(shown["success"], false);
    })
    .await
    .expect("test timed out");
}
