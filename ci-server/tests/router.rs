//! The HTTP surface's edge cases, through the whole router in process (every route and layer, as
//! `ci-server` serves them) on a temporary database: no binary, no socket.

use axum::body::{to_bytes, Body};
use axum::http::{header, HeaderMap, Method, Request, StatusCode};
use axum::Router;
use ci_common::api::ErrorBody;
use ci_common::keys::SecretKey;
use ci_common::testing::TempDb;
use ci_server::{router, AppState, Config};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The router over a fresh database, and the API key of a user of it.
struct App {
    db: TempDb,
    state: AppState,
    key: String,
}

impl App {
    async fn new() -> Self {
        let db = TempDb::new().await;
        let (_, key) = db.user_with_key("Ada").await;
        let state = AppState::new(
            db.pool.clone(),
            Config::for_db(&db.path),
            CancellationToken::new(),
        );
        Self {
            db,
            state,
            key: key.expose().to_owned(),
        }
    }

    fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Sends `request` through the router and returns its status, headers and body.
    async fn send(&self, request: Request<Body>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let response = self.router().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, headers, body.to_vec())
    }

    /// A request carrying this app's API key.
    fn authorized(&self, method: Method, uri: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {}", self.key))
    }

    /// Sends a request without a body, with this app's API key.
    async fn send_authorized(&self, method: Method, uri: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
        self.send(self.authorized(method, uri).body(Body::empty()).unwrap())
            .await
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // Ends the hub's change watcher.
        self.state.shutdown.cancel();
    }
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).unwrap()
}

/// The one error shape, after checking that the response says it is JSON.
fn error_body(headers: &HeaderMap, body: &[u8]) -> ErrorBody {
    let content_type = headers.get(header::CONTENT_TYPE).unwrap();
    assert_eq!(content_type, "application/json");
    serde_json::from_slice(body).unwrap_or_else(|e| {
        panic!(
            "not the error body ({e}): {}",
            String::from_utf8_lossy(body)
        )
    })
}

#[tokio::test]
async fn an_unknown_route_is_404_with_the_error_body() {
    let app = App::new().await;
    let (status, headers, body) = app.send(get("/api/v2/jobs")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let error = error_body(&headers, &body);
    assert_eq!(error.code, "not_found");
    assert!(error.error.contains("/api/v2/jobs"), "{}", error.error);
    assert!(
        error.error.contains("/api/v1"),
        "says where the API is: {}",
        error.error
    );
}

#[tokio::test]
async fn a_wrong_method_is_405_with_the_error_body() {
    let app = App::new().await;
    let (status, headers, body) = app.send_authorized(Method::DELETE, "/api/v1/jobs").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let error = error_body(&headers, &body);
    assert_eq!(error.code, "method_not_allowed");
    assert_eq!(error.error, "DELETE is not allowed on /api/v1/jobs");

    let (status, headers, body) = app
        .send(Request::post("/health").body(Body::empty()).unwrap())
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(error_body(&headers, &body).code, "method_not_allowed");
}

#[tokio::test]
async fn a_missing_or_malformed_authorization_is_401_with_www_authenticate() {
    let app = App::new().await;
    let unknown = SecretKey::generate();
    for (authorization, code) in [
        (None, "missing_api_key"),
        (
            Some("Basic YWRhOnNlY3JldA==".to_owned()),
            "malformed_authorization",
        ),
        (Some(app.key.clone()), "malformed_authorization"),
        (Some("Bearer ci_abc".to_owned()), "mistyped_api_key"),
        (
            Some(format!("Bearer {}", unknown.expose())),
            "unknown_api_key",
        ),
    ] {
        let mut request = Request::get("/api/v1/jobs");
        if let Some(value) = &authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let (status, headers, body) = app.send(request.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{authorization:?}");
        assert_eq!(
            headers.get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer realm=\"ci\"",
            "{authorization:?}"
        );
        let error = error_body(&headers, &body);
        assert_eq!(error.code, code, "{authorization:?}: {}", error.error);
        assert!(!error.error.is_empty());
    }

    // The same key, sent properly, is accepted.
    let (status, _, body) = app.send_authorized(Method::GET, "/api/v1/jobs").await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
}

#[tokio::test]
async fn an_upload_that_is_not_multipart_is_400_and_says_how_to_send_it() {
    let app = App::new().await;
    for content_type in [Some("application/json"), None] {
        let mut request = app.authorized(Method::POST, "/api/v1/jobs");
        if let Some(content_type) = content_type {
            request = request.header(header::CONTENT_TYPE, content_type);
        }
        let request = request.body(Body::from(r#"{"file": "x"}"#)).unwrap();
        let (status, headers, body) = app.send(request).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{content_type:?}");
        let error = error_body(&headers, &body);
        assert_eq!(error.code, "bad_request");
        assert!(
            error.error.contains("multipart/form-data") && error.error.contains("`file`"),
            "{content_type:?}: {}",
            error.error
        );
    }
    let jobs = ci_common::db::jobs::count_by_status(&app.db.pool)
        .await
        .unwrap();
    assert!(jobs.iter().all(|(_, n)| *n == 0), "no job: {jobs:?}");
}

#[tokio::test]
async fn health_and_ready_answer_ok_and_ready_fails_without_the_database() {
    let app = App::new().await;
    for path in ["/health", "/ready"] {
        let (status, _, body) = app.send(get(path)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body, serde_json::json!({"status": "ok"}), "{path}");
    }

    app.db.pool.close().await;
    let (status, headers, body) = app.send(get("/ready")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let error = error_body(&headers, &body);
    assert_eq!(error.code, "unavailable");
    assert!(error.error.contains("database"), "{}", error.error);
    // The process itself still answers.
    let (status, _, _) = app.send(get("/health")).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_job_id_that_is_not_a_uuid_is_404_like_a_missing_job() {
    let app = App::new().await;
    let missing = ci_common::JobId::new();
    let mut bodies = Vec::new();
    for path in [
        "/api/v1/jobs/not-a-uuid".to_owned(),
        "/api/v1/jobs/not-a-uuid/events".to_owned(),
        "/jobs/not-a-uuid".to_owned(),
        format!("/api/v1/jobs/{missing}"),
    ] {
        let (status, headers, body) = app.send_authorized(Method::GET, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        let error = error_body(&headers, &body);
        assert_eq!(error.code, "job_not_found", "{path}");
        bodies.push(body);
    }
    let (status, _, body) = app
        .send_authorized(Method::POST, "/api/v1/jobs/42/cancel")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    bodies.push(body);
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "a malformed id is answered exactly like a missing job"
    );
}
