//! Live job events over SSE, with events written to the database exactly as the controller
//! writes them: order, resumption on another replica without gap or duplicate, the end of the
//! stream, keep-alives (and the request time limit does not cut a stream), many followers, and
//! shutdown with open streams.

mod common_server;

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ci_common::{JobId, JobStatus};
use ci_tests::{client, log_lines, read_sse, submit, wait_for, Server, Sse, TestDb, WAIT};
use common_server::{lines, project_zip, FakeController, TEST_TIMEOUT};
use futures_util::StreamExt;

/// Opens a job's event stream (optionally resuming after `last_event_id`, or with a query).
async fn open(
    server: &Server,
    key: &str,
    job: JobId,
    last_event_id: Option<i64>,
    query: &str,
) -> reqwest::Response {
    let mut request = client()
        .get(server.at(&format!("/api/v1/jobs/{job}/events{query}")))
        .bearer_auth(key);
    if let Some(id) = last_event_id {
        request = request.header("Last-Event-ID", id.to_string());
    }
    let response = request.send().await.expect("events request");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(response.headers()["x-accel-buffering"], "no");
    assert_eq!(response.headers()["cache-control"], "no-cache");
    response
}

/// Reads the stream to its end in the background; `seen` holds the last seq received.
fn spawn_reader(
    response: reqwest::Response,
    seen: Arc<AtomicI64>,
) -> tokio::task::JoinHandle<Vec<Sse>> {
    tokio::spawn(async move {
        read_sse(response, |event| {
            seen.store(event.id.parse().unwrap(), Ordering::SeqCst);
            false
        })
        .await
    })
}

fn seqs(events: &[Sse]) -> Vec<i64> {
    events.iter().map(|e| e.id.parse().unwrap()).collect()
}

async fn wait_seen(seen: &AtomicI64, seq: i64) {
    wait_for(&format!("event {seq} to arrive"), WAIT, || async {
        (seen.load(Ordering::SeqCst) >= seq).then_some(())
    })
    .await;
}

async fn running_job(server: &Server, key: &str, controller: &FakeController) -> JobId {
    let job = submit(server, key, project_zip()).await;
    let id: JobId = job["job_id"].as_str().unwrap().parse().unwrap();
    assert_eq!(controller.claim().await, id);
    id
}

#[tokio::test]
async fn a_follower_gets_every_event_in_order_and_the_stream_ends() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let ada = db.user("Ada").await;
        let controller = FakeController::new(&db.pool).await;
        let job = running_job(&server, &ada.key, &controller).await;

        let seen = Arc::new(AtomicI64::new(0));
        let reader = spawn_reader(open(&server, &ada.key, job, None, "").await, seen.clone());
        wait_seen(&seen, 1).await;
        for chunk in 0..10 {
            controller
                .log(job, &lines(chunk * 30..(chunk + 1) * 30))
                .await;
        }
        controller.finish(job, JobStatus::Passed).await;
        let events = reader.await.unwrap();

        assert_eq!(seqs(&events), (1..=303).collect::<Vec<_>>());
        assert_eq!(log_lines(&events), lines(0..300));
        assert_eq!(events[0].event, "status");
        assert_eq!(events[0].data["status"], "running");
        let last = events.last().unwrap();
        assert_eq!(last.event, "complete");
        assert_eq!(last.data["type"], "complete");
        assert_eq!(last.data["success"], true);
        assert_eq!(last.data["status"], "passed");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn resuming_on_another_replica_has_no_gap_and_no_duplicate() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let first = Server::start(&db);
        let second = Server::start(&db);
        let ada = db.user("Ada").await;
        let controller = FakeController::new(&db.pool).await;
        let job = running_job(&first, &ada.key, &controller).await;
        controller.log(job, &lines(0..20)).await; // seqs 2..=21

        // Read up to seq 10 on the first replica, then drop the connection.
        let response = open(&first, &ada.key, job, None, "").await;
        let before = read_sse(response, |e| e.id == "10").await;
        assert_eq!(seqs(&before), (1..=10).collect::<Vec<_>>());

        // Resume on the second replica; the header wins over `?after=`.
        let seen = Arc::new(AtomicI64::new(0));
        let reader = spawn_reader(
            open(&second, &ada.key, job, Some(10), "?after=3").await,
            seen.clone(),
        );
        wait_seen(&seen, 21).await;
        controller.log(job, &lines(20..25)).await; // 22..=26
        controller.log(job, &lines(25..40)).await; // 27..=41
        controller.finish(job, JobStatus::Failed).await; // 42, 43
        let after = reader.await.unwrap();
        assert_eq!(seqs(&after), (11..=43).collect::<Vec<_>>());
        let mut all = log_lines(&before);
        all.extend(log_lines(&after));
        assert_eq!(all, lines(0..40));
        assert_eq!(after.last().unwrap().data["success"], false);
        assert_eq!(after.last().unwrap().data["status"], "failed");

        // A finished job: the rest is replayed from the database and the stream ends.
        let replay = read_sse(
            open(&second, &ada.key, job, None, "?after=40").await,
            |_| false,
        )
        .await;
        assert_eq!(seqs(&replay), vec![41, 42, 43]);
        let replay = read_sse(open(&first, &ada.key, job, None, "").await, |_| false).await;
        assert_eq!(seqs(&replay), (1..=43).collect::<Vec<_>>());
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn keep_alive_comments_arrive_while_the_job_is_quiet() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start_with(
            &db,
            &["--keepalive-secs", "2", "--request-timeout-secs", "1"],
        );
        let ada = db.user("Ada").await;
        let controller = FakeController::new(&db.pool).await;
        let job = running_job(&server, &ada.key, &controller).await;

        let mut body = open(&server, &ada.key, job, None, "").await.bytes_stream();
        let mut text = String::new();
        let found = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(chunk) = body.next().await {
                text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
                if text.contains(":keep-alive") || text.contains(": keep-alive") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "no keep-alive comment in {text:?}");
        assert!(
            text.contains("id: 1\n") || text.contains("id:1\n"),
            "{text:?}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn two_hundred_followers_all_get_every_event() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let ada = db.user("Ada").await;
        let controller = FakeController::new(&db.pool).await;
        let job = running_job(&server, &ada.key, &controller).await;

        const FOLLOWERS: usize = 200;
        let ready = Arc::new(AtomicUsize::new(0));
        let mut readers = Vec::new();
        for _ in 0..FOLLOWERS {
            let response = open(&server, &ada.key, job, None, "").await;
            let ready = ready.clone();
            readers.push(tokio::spawn(async move {
                read_sse(response, |event| {
                    if event.id == "1" {
                        ready.fetch_add(1, Ordering::SeqCst);
                    }
                    false
                })
                .await
            }));
        }
        wait_for("every follower to start", WAIT, || async {
            (ready.load(Ordering::SeqCst) == FOLLOWERS).then_some(())
        })
        .await;
        for chunk in 0..20 {
            controller
                .log(job, &lines(chunk * 10..(chunk + 1) * 10))
                .await;
        }
        controller.finish(job, JobStatus::Passed).await;
        let expected: Vec<i64> = (1..=203).collect();
        for reader in readers {
            let events = reader.await.unwrap();
            assert_eq!(seqs(&events), expected);
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn sigterm_with_an_open_stream_exits_promptly() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let mut server = Server::start(&db);
        let ada = db.user("Ada").await;
        let controller = FakeController::new(&db.pool).await;
        let job = running_job(&server, &ada.key, &controller).await;

        let seen = Arc::new(AtomicI64::new(0));
        let reader = spawn_reader(open(&server, &ada.key, job, None, "").await, seen.clone());
        wait_seen(&seen, 1).await;
        server.proc.signal("TERM");
        let status = tokio::task::spawn_blocking(move || {
            let status = server.proc.wait_exit(Duration::from_secs(10));
            (status, server)
        })
        .await
        .unwrap()
        .0;
        assert!(status.success(), "ci-server exited with {status}");
        let events = tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("the stream ended with the server")
            .unwrap();
        assert_eq!(seqs(&events), vec![1]);
    })
    .await
    .expect("test timed out");
}
