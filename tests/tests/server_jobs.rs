//! Jobs through `/api/v1/jobs`: create, show, list with paging, cancel, and isolation between
//! users (another user's job is a 404 exactly like a missing one).

mod common_server;

use ci_common::db::uploads;
use ci_common::{JobId, JobStatus};
use ci_tests::{client, submit, Server, TestDb};
use common_server::{get_json, project_zip, FakeController, TEST_TIMEOUT};

#[tokio::test]
async fn users_see_only_their_own_jobs() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let ada = db.user("Ada").await;
        let bob = db.user("Bob").await;

        let job = submit(&server, &ada.key, project_zip()).await;
        assert_eq!(job["status"], "queued");
        assert_eq!(job["task"], "test");
        assert_eq!(job["success"], false);
        let id = job["job_id"].as_str().unwrap().to_owned();
        let stored = uploads::get(&db.pool, id.parse().unwrap()).await.unwrap();
        assert_eq!(
            stored.unwrap(),
            project_zip(),
            "the upload is stored before the id is returned"
        );

        let (status, own) = get_json(&server, &format!("/api/v1/jobs/{id}"), &ada.key).await;
        assert_eq!(status, 200);
        assert_eq!(own["job_id"], id.as_str());
        assert_eq!(own["last_seq"], 0);

        // Bob gets exactly what a missing job gets.
        let missing = JobId::new().to_string();
        let (status, theirs) = get_json(&server, &format!("/api/v1/jobs/{id}"), &bob.key).await;
        let (missing_status, none) =
            get_json(&server, &format!("/api/v1/jobs/{missing}"), &bob.key).await;
        assert_eq!((status.as_u16(), missing_status.as_u16()), (404, 404));
        assert_eq!(theirs, none);
        let (status, malformed) = get_json(&server, "/api/v1/jobs/not-a-uuid", &bob.key).await;
        assert_eq!(status, 404);
        assert_eq!(malformed, none);

        let events = client()
            .get(server.at(&format!("/api/v1/jobs/{id}/events")))
            .bearer_auth(&bob.key)
            .send()
            .await
            .unwrap();
        assert_eq!(events.status(), 404);
        assert_eq!(events.json::<serde_json::Value>().await.unwrap(), none);

        let cancel = client()
            .post(server.at(&format!("/api/v1/jobs/{id}/cancel")))
            .bearer_auth(&bob.key)
            .send()
            .await
            .unwrap();
        assert_eq!(cancel.status(), 404);
        assert_eq!(cancel.json::<serde_json::Value>().await.unwrap(), none);

        for path in [format!("/jobs/{id}"), format!("/jobs/{id}/stream")] {
            let (status, body) = get_json(&server, &path, &bob.key).await;
            assert_eq!(status, 404, "{path}");
            assert_eq!(body, none, "{path}");
        }

        let (_, bobs) = get_json(&server, "/api/v1/jobs", &bob.key).await;
        assert_eq!(bobs["jobs"], serde_json::json!([]));
        let (_, bobs) = get_json(&server, "/jobs", &bob.key).await;
        assert_eq!(bobs, serde_json::json!([]));
        let (_, adas) = get_json(&server, "/api/v1/jobs", &ada.key).await;
        assert_eq!(adas["jobs"].as_array().unwrap().len(), 1);

        // Bob's attempt changed nothing: Ada's job is still queued.
        let (_, still) = get_json(&server, &format!("/api/v1/jobs/{id}"), &ada.key).await;
        assert_eq!(still["status"], "queued");
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn listing_pages_newest_first() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let ada = db.user("Ada").await;
        let bob = db.user("Bob").await;
        let mut ids = Vec::new();
        for i in 0..7 {
            ids.push(submit(&server, &ada.key, project_zip()).await["job_id"].clone());
            if i % 2 == 0 {
                submit(&server, &bob.key, project_zip()).await;
            }
        }
        ids.reverse();

        let mut seen = Vec::new();
        let mut path = "/api/v1/jobs?limit=3".to_owned();
        loop {
            let (status, page) = get_json(&server, &path, &ada.key).await;
            assert_eq!(status, 200, "{page}");
            let jobs = page["jobs"].as_array().unwrap();
            assert!(jobs.len() <= 3);
            seen.extend(jobs.iter().map(|j| j["job_id"].clone()));
            match page["next_before"].as_str() {
                Some(next) => path = format!("/api/v1/jobs?limit=3&before={next}"),
                None => break,
            }
        }
        assert_eq!(seen, ids, "every job once, newest first");

        let (_, all) = get_json(&server, "/jobs", &ada.key).await;
        let all: Vec<_> = all
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["job_id"].clone())
            .collect();
        assert_eq!(all, ids);
        let (status, body) = get_json(&server, "/api/v1/jobs?before=nope", &ada.key).await;
        assert_eq!(status, 400);
        assert!(
            body["error"].as_str().unwrap().contains("next_before"),
            "{body}"
        );
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn cancelling_queued_running_and_finished_jobs() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let db = TestDb::new().await;
        let server = Server::start(&db);
        let ada = db.user("Ada").await;
        let cancel = |id: String| {
            let server_url = server.at(&format!("/api/v1/jobs/{id}/cancel"));
            let key = ada.key.clone();
            async move {
                let response = client()
                    .post(server_url)
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap();
                let status = response.status().as_u16();
                (status, response.json::<serde_json::Value>().await.unwrap())
            }
        };

        let queued = submit(&server, &ada.key, project_zip()).await["job_id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, body) = cancel(queued.clone()).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "cancelled");
        assert_eq!(body["success"], false);
        let (status, body) = cancel(queued).await;
        assert_eq!(status, 409, "{body}");
        assert_eq!(body["code"], "job_finished");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("already ended (cancelled"),
            "{body}"
        );

        let controller = FakeController::new(&db.pool).await;
        let running = submit(&server, &ada.key, project_zip()).await["job_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(controller.claim().await.to_string(), running);
        let (status, body) = cancel(running.clone()).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(body["status"], "running");
        assert_eq!(body["cancel_requested"], true);

        controller
            .finish(running.parse().unwrap(), JobStatus::Failed)
            .await;
        let (status, body) = cancel(running).await;
        assert_eq!(status, 409);
        assert!(
            body["error"].as_str().unwrap().contains("(failed"),
            "{body}"
        );
    })
    .await
    .expect("test timed out");
}
