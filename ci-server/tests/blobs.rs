//! A job's blobs through the whole router in process: listed, streamed byte-exact with their
//! headers, and only to the job's owner.

use std::time::Duration;

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap, Request, StatusCode};
use ci_common::api::ErrorBody;
use ci_common::db::blobs::{self, BlobCaps, CHUNK_BYTES};
use ci_common::db::jobs;
use ci_common::keys::sha256_hex;
use ci_common::testing::TempDb;
use ci_common::JobId;
use ci_server::{router, AppState, Config};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The router over a fresh database, with a job of Ada's holding two blobs (`data` as
/// `artifacts/out.bin`, and `reports/test.jsonl`), and the keys of Ada and Bob.
struct App {
    db: TempDb,
    state: AppState,
    ada: String,
    bob: String,
    job: JobId,
    data: Vec<u8>,
}

impl App {
    async fn new() -> Self {
        let db = TempDb::new().await;
        let (ada_user, ada) = db.user_with_key("Ada").await;
        let (_, bob) = db.user_with_key("Bob").await;
        let job = jobs::create(&db.pool, ada_user.id, "test", b"zip")
            .await
            .unwrap()
            .id;
        // Two full chunks and a part: the body is several chunks long.
        let data: Vec<u8> = (0..CHUNK_BYTES * 2 + 1000)
            .map(|i| (i % 253) as u8)
            .collect();
        let caps = BlobCaps::default();
        blobs::put(
            &db.pool,
            job,
            None,
            "artifacts/out.bin",
            "",
            &data[..],
            &caps,
        )
        .await
        .unwrap();
        blobs::put(
            &db.pool,
            job,
            None,
            "reports/test.jsonl",
            "application/jsonl",
            &b"{}\n"[..],
            &caps,
        )
        .await
        .unwrap();
        let state = AppState::new(
            db.pool.clone(),
            Config::for_db(&db.path),
            CancellationToken::new(),
        );
        Self {
            db,
            state,
            ada: ada.expose().to_owned(),
            bob: bob.expose().to_owned(),
            job,
            data,
        }
    }

    /// `GET uri` with `key` (none: no Authorization): status, headers and the whole body.
    async fn get(&self, key: Option<&str>, uri: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::get(uri);
        if let Some(key) = key {
            request = request.header(header::AUTHORIZATION, format!("Bearer {key}"));
        }
        let response = router(self.state.clone())
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = tokio::time::timeout(
            Duration::from_secs(30),
            to_bytes(response.into_body(), 1 << 24),
        )
        .await
        .expect("the body ends")
        .unwrap();
        (status, headers, body.to_vec())
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Ends the hub's change watcher.
        self.state.shutdown.cancel();
    }
}

fn error_body(headers: &HeaderMap, body: &[u8]) -> ErrorBody {
    assert_eq!(headers[header::CONTENT_TYPE], "application/json");
    serde_json::from_slice(body).unwrap()
}

#[tokio::test]
async fn the_owner_lists_a_jobs_blobs_and_reads_one_byte_exact_with_its_headers() {
    let app = App::new().await;
    let job = app.job;

    let (status, _, body) = app
        .get(Some(&app.ada), &format!("/api/v1/jobs/{job}/blobs"))
        .await;
    assert_eq!(status, StatusCode::OK);
    let list: Value = serde_json::from_slice(&body).unwrap();
    let blobs = list["blobs"].as_array().unwrap();
    let names: Vec<&str> = blobs.iter().map(|b| b["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["artifacts/out.bin", "reports/test.jsonl"]);
    assert_eq!(blobs[0]["size"], app.data.len());
    assert_eq!(blobs[0]["chunks"], 3);
    assert_eq!(blobs[0]["sha256"], sha256_hex(&app.data));
    assert_eq!(blobs[0]["content_type"], "application/octet-stream");
    assert_eq!(blobs[0]["job_id"], job.to_string());
    assert!(blobs[0]["created_at"].is_string());

    let (status, headers, body) = app
        .get(
            Some(&app.ada),
            &format!("/api/v1/jobs/{job}/blobs/artifacts/out.bin"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body.len(), app.data.len());
    assert!(body == app.data, "the body is the blob, byte for byte");
    assert_eq!(
        headers[header::CONTENT_LENGTH],
        app.data.len().to_string().as_str()
    );
    assert_eq!(headers[header::CONTENT_TYPE], "application/octet-stream");
    assert_eq!(
        headers[header::ETAG],
        format!("\"{}\"", sha256_hex(&app.data)).as_str()
    );

    let (status, headers, body) = app
        .get(
            Some(&app.ada),
            &format!("/api/v1/jobs/{job}/blobs/reports/test.jsonl"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/jsonl");
    assert_eq!(body, b"{}\n");
}

#[tokio::test]
async fn another_users_job_a_missing_job_and_a_missing_blob_are_404_with_the_error_body() {
    let app = App::new().await;
    let job = app.job;

    // Bob cannot tell Ada's job from one that does not exist.
    for uri in [
        format!("/api/v1/jobs/{job}/blobs"),
        format!("/api/v1/jobs/{job}/blobs/artifacts/out.bin"),
        format!("/api/v1/jobs/{}/blobs", JobId::new()),
        format!("/api/v1/jobs/{}/blobs/artifacts/out.bin", JobId::new()),
        "/api/v1/jobs/not-a-uuid/blobs/artifacts/out.bin".to_owned(),
    ] {
        let (status, headers, body) = app.get(Some(&app.bob), &uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(error_body(&headers, &body).code, "job_not_found", "{uri}");
    }

    for name in [
        "artifacts/missing.bin",
        "artifacts",
        "../reports/test.jsonl",
    ] {
        let (status, headers, body) = app
            .get(Some(&app.ada), &format!("/api/v1/jobs/{job}/blobs/{name}"))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name}");
        let error = error_body(&headers, &body);
        assert_eq!(error.code, "blob_not_found", "{name}");
        assert!(
            error.error.contains(&format!("/api/v1/jobs/{job}/blobs")),
            "says where the list is: {}",
            error.error
        );
    }

    let (status, headers, _) = app
        .get(None, &format!("/api/v1/jobs/{job}/blobs/artifacts/out.bin"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(headers.contains_key(header::WWW_AUTHENTICATE));
}

#[tokio::test]
async fn a_job_without_blobs_lists_none() {
    let app = App::new().await;
    let ada = ci_common::db::users::find_by_email(&app.db.pool, "ada@example.com")
        .await
        .unwrap()
        .unwrap();
    let other = jobs::create(&app.db.pool, ada.id, "test", b"zip")
        .await
        .unwrap()
        .id;
    let (status, _, body) = app
        .get(Some(&app.ada), &format!("/api/v1/jobs/{other}/blobs"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        serde_json::from_slice::<Value>(&body).unwrap(),
        serde_json::json!({ "blobs": [] })
    );
}
