//! Many followers of one job on one replica: each event is rendered once and every follower gets
//! the same bytes, whether it started before the job logged anything, in the middle of the log
//! (replayed from the replica's memory or its database), or on the original system's stream.

mod common_server;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ci_common::{JobId, JobStatus};
use ci_tests::{client, submit, wait_for, Server, TestDb, WAIT};
use common_server::{lines, project_zip, FakeController, TEST_TIMEOUT};
use futures_util::StreamExt;

/// Reads a whole event stream in the background; `started` counts streams whose first bytes
/// arrived.
fn read_body(
    server: &Server,
    key: &str,
    path: String,
    started: Arc<AtomicUsize>,
) -> tokio::task::JoinHandle<Vec<u8>> {
    let request = client().get(server.at(&path)).bearer_auth(key);
    tokio::spawn(async move {
        let response = request.send().await.expect("events request");
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream; charset=utf-8"
        );
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            if body.is_empty() {
                started.fetch_add(1, Ordering::SeqCst);
            }
            body.extend_from_slice(&chunk.expect("reading the stream"));
        }
        body
    })
}

/// The stream without keep-alive comments, which depend on timing.
fn without_comments(body: &[u8]) -> String {
    String::from_utf8(body.to_vec())
        .expect("UTF-8 stream")
        .split_inclusive('\n')
        .filter(|line| !line.starts_with(':'))
        .collect()
}

#[tokio::test]
async fn many_followers_get_byte_for_byte_the_same_stream() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let ada = db.user("Ada").await;
        let controller = FakeController::new(&db.pool).await;
        let job = submit(&server, &ada.key, project_zip()).await;
        let job: JobId = job["job_id"].as_str().unwrap().parse().unwrap();
        assert_eq!(controller.claim().await, job);

        let v1 = format!("/api/v1/jobs/{job}/events?after=0");
        let compat = format!("/jobs/{job}/stream?from_beginning=true");
        let started = Arc::new(AtomicUsize::new(0));
        let mut named = Vec::new();
        let mut unnamed = Vec::new();
        const EARLY: usize = 100;
        for i in 0..EARLY {
            named.push(read_body(&server, &ada.key, v1.clone(), started.clone()));
            if i % 10 == 0 {
                unnamed.push(read_body(
                    &server,
                    &ada.key,
                    compat.clone(),
                    started.clone(),
                ));
            }
        }
        let early = named.len() + unnamed.len();
        wait_for("every early follower to start", WAIT, || async {
            (started.load(Ordering::SeqCst) == early).then_some(())
        })
        .await;
        for chunk in 0..10 {
            controller
                .log(job, &lines(chunk * 10..(chunk + 1) * 10))
                .await;
        }
        // Late followers start in the middle of the log and replay its beginning.
        for _ in 0..20 {
            named.push(read_body(&server, &ada.key, v1.clone(), started.clone()));
        }
        unnamed.push(read_body(
            &server,
            &ada.key,
            compat.clone(),
            started.clone(),
        ));
        for chunk in 10..20 {
            controller
                .log(job, &lines(chunk * 10..(chunk + 1) * 10))
                .await;
        }
        controller.finish(job, JobStatus::Passed).await;

        let mut named_bodies = Vec::new();
        for reader in named {
            named_bodies.push(without_comments(&reader.await.unwrap()));
        }
        let mut unnamed_bodies = Vec::new();
        for reader in unnamed {
            unnamed_bodies.push(without_comments(&reader.await.unwrap()));
        }
        let first = &named_bodies[0];
        let ids: Vec<i64> = first
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .map(|id| id.parse().unwrap())
            .collect();
        assert_eq!(ids, (1..=203).collect::<Vec<_>>());
        assert!(first.contains("id: 2\nevent: log\ndata: {"), "{first}");
        assert!(first.ends_with("\n\n"));
        for body in &named_bodies {
            assert_eq!(body, first);
        }
        // The original API's streams carry the same events (in its words, each line with its
        // newline), and are the same for every follower too.
        let unnamed_ids: Vec<i64> = unnamed_bodies[0]
            .lines()
            .filter_map(|l| l.strip_prefix("id: "))
            .map(|id| id.parse().unwrap())
            .collect();
        assert_eq!(unnamed_ids, ids);
        assert!(!unnamed_bodies[0].contains("event: "));
        assert!(
            unnamed_bodies[0].contains(r#""data":"line 0\n""#),
            "{}",
            unnamed_bodies[0]
        );
        for body in &unnamed_bodies {
            assert_eq!(body, &unnamed_bodies[0]);
        }
    })
    .await
    .expect("test timed out");
}
