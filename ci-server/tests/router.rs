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
    user_id: ci_common::UserId,
}

impl App {
    async fn new() -> Self {
        Self::with_config(|_| {}).await
    }

    /// The router with the defaults changed by `change`.
    async fn with_config(change: impl FnOnce(&mut Config)) -> Self {
        let db = TempDb::new().await;
        let (user, key) = db.user_with_key("Ada").await;
        let mut config = Config::for_db(&db.path);
        change(&mut config);
        let state = AppState::new(db.pool.clone(), config, CancellationToken::new());
        Self {
            db,
            state,
            key: key.expose().to_owned(),
            user_id: user.id,
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

/// The host the in-process requests are sent to, and this server's own origin for it.
const HOST: &str = "ci.example.com:8000";
const OWN_ORIGIN: &str = "http://ci.example.com:8000";

impl App {
    /// Signs in with `key` through `POST /api/v1/session` from the server's own page; returns the
    /// whole `Set-Cookie` header and the `name=value` pair a browser sends back.
    async fn sign_in(&self, key: &str) -> (String, String) {
        let (status, headers, body) = self
            .send(
                Request::post("/api/v1/session")
                    .header(header::HOST, HOST)
                    .header(header::ORIGIN, OWN_ORIGIN)
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from(
                        serde_json::json!({ "api_key": key }).to_string(),
                    ))
                    .unwrap(),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let set_cookie = headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        let pair = set_cookie.split(';').next().unwrap().to_owned();
        (set_cookie, pair)
    }

    /// A request with a browser's cookie, sent to [`HOST`].
    fn with_cookie(&self, method: Method, uri: &str, cookie: &str) -> axum::http::request::Builder {
        Request::builder()
            .method(method)
            .uri(uri)
            .header(header::HOST, HOST)
            .header(header::COOKIE, cookie)
    }

    /// Sends a request without a body with a browser's cookie (to [`HOST`], no `Origin`).
    async fn send_with_cookie(
        &self,
        method: Method,
        uri: &str,
        cookie: &str,
    ) -> (StatusCode, HeaderMap, Vec<u8>) {
        self.send(
            self.with_cookie(method, uri, cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
    }

    /// A queued job of this app's user, with `lines` log lines (seq 1..=lines).
    async fn job_with_lines(&self, lines: &[&str]) -> ci_common::JobId {
        use ci_common::db::events::{self, NewEvent};
        let job = ci_common::db::jobs::create(&self.db.pool, self.user_id, "test", b"zip")
            .await
            .unwrap();
        let events: Vec<NewEvent> = lines
            .iter()
            .map(|l| NewEvent::log(ci_common::LogStream::Stdout, chrono::Utc::now(), *l))
            .collect();
        // Each statement in a transaction of its own (a deferred transaction that other writers,
        // such as a key's last use, get ahead of could not take the write lock).
        events::append(&self.db.pool, job.id, &events)
            .await
            .unwrap();
        job.id
    }
}

#[tokio::test]
async fn signing_in_gives_a_strict_http_only_cookie_that_authenticates() {
    let app = App::new().await;
    let (set_cookie, cookie) = app.sign_in(&app.key).await;
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "plain HTTP: {set_cookie}");
    assert!(
        !set_cookie.contains(&app.key),
        "the cookie is not the key: {set_cookie}"
    );

    let (status, _, body) = app
        .send_with_cookie(Method::GET, "/api/v1/session", &cookie)
        .await;
    assert_eq!(status, StatusCode::OK);
    let me: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(me["user_name"], "Ada");
    assert!(me["expires_at"].is_string(), "{me}");
    let (status, _, _) = app
        .send_with_cookie(Method::GET, "/api/v1/jobs", &cookie)
        .await;
    assert_eq!(status, StatusCode::OK);

    // Behind a TLS proxy the cookie is Secure.
    let (_, headers, _) = app
        .send(
            Request::post("/api/v1/session")
                .header(header::HOST, HOST)
                .header("x-forwarded-proto", "https")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    serde_json::json!({ "api_key": app.key }).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert!(headers[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .contains("Secure"));

    // A wrong key signs nobody in, and says why.
    let (status, headers, body) = app
        .send(
            Request::post("/api/v1/session")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(r#"{"api_key": "ci_nope"}"#))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!headers.contains_key(header::SET_COOKIE));
    assert_eq!(error_body(&headers, &body).code, "mistyped_api_key");
}

#[tokio::test]
async fn without_a_cookie_or_with_a_dead_one_the_api_is_401() {
    let app = App::new().await;
    let (_, cookie) = app.sign_in(&app.key).await;
    let made_up = format!("ci_session={}", "ab".repeat(32));
    for cookie in [None, Some("ci_session=short"), Some(made_up.as_str())] {
        let mut request = Request::get("/api/v1/jobs").header(header::HOST, HOST);
        if let Some(cookie) = cookie {
            request = request.header(header::COOKIE, cookie);
        }
        let (status, headers, body) = app.send(request.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{cookie:?}");
        let code = error_body(&headers, &body).code;
        let expected = if cookie.is_some_and(|c| c.len() > 20) {
            "signed_out"
        } else {
            "missing_api_key"
        };
        assert_eq!(code, expected, "{cookie:?}");
    }

    // Revoking the key ends the sessions made with it.
    let secret = SecretKey::parse(&app.key).unwrap();
    let (key, _) = ci_common::db::api_keys::find_by_secret(&app.db.pool, &secret)
        .await
        .unwrap()
        .unwrap();
    ci_common::db::api_keys::revoke(&app.db.pool, key.id, chrono::Utc::now())
        .await
        .unwrap();
    let (status, headers, body) = app
        .send_with_cookie(Method::GET, "/api/v1/jobs", &cookie)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(error_body(&headers, &body).code, "revoked_api_key");
}

#[tokio::test]
async fn a_cookie_acts_only_from_the_servers_own_pages() {
    let app = App::new().await;
    let (_, cookie) = app.sign_in(&app.key).await;
    let job = app.job_with_lines(&[]).await;
    let cancel = format!("/api/v1/jobs/{job}/cancel");
    for origin in [Some("http://evil.example"), Some("null"), None] {
        let mut request = app.with_cookie(Method::POST, &cancel, &cookie);
        if let Some(origin) = origin {
            request = request.header(header::ORIGIN, origin);
        }
        let (status, headers, body) = app.send(request.body(Body::empty()).unwrap()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{origin:?}");
        assert_eq!(error_body(&headers, &body).code, "cross_origin_request");
    }
    let (status, _, body) = app
        .send_authorized(Method::GET, &format!("/api/v1/jobs/{job}"))
        .await;
    let view: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (status, view["status"].as_str()),
        (StatusCode::OK, Some("queued"))
    );

    // Another site cannot sign a browser in either.
    let (status, _, _) = app
        .send(
            Request::post("/api/v1/session")
                .header(header::HOST, HOST)
                .header(header::ORIGIN, "http://evil.example")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(
                    serde_json::json!({ "api_key": app.key }).to_string(),
                ))
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // From the server's own page it works.
    let (status, _, body) = app
        .send(
            app.with_cookie(Method::POST, &cancel, &cookie)
                .header(header::ORIGIN, OWN_ORIGIN)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "{}",
        String::from_utf8_lossy(&body)
    );
    // A key needs no Origin (the command line and scripts send none).
    let other = app.job_with_lines(&[]).await;
    let (status, _, _) = app
        .send_authorized(Method::POST, &format!("/api/v1/jobs/{other}/cancel"))
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn another_users_job_is_404_with_a_cookie_too() {
    let app = App::new().await;
    let (bob, _) = app.db.user_with_key("Bob").await;
    let bobs = ci_common::db::jobs::create(&app.db.pool, bob.id, "test", b"zip")
        .await
        .unwrap();
    let (_, cookie) = app.sign_in(&app.key).await;
    for path in ["", "/log", "/log.txt", "/log/search?q=x", "/events"] {
        let uri = format!("/api/v1/jobs/{}{path}", bobs.id);
        let (status, headers, body) = app.send_with_cookie(Method::GET, &uri, &cookie).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(error_body(&headers, &body).code, "job_not_found");
    }
}

#[tokio::test]
async fn signing_out_ends_the_session_and_its_open_streams() {
    use futures_util::StreamExt;
    let app = App::new().await;
    let (_, cookie) = app.sign_in(&app.key).await;
    let job = app.job_with_lines(&["one", "two"]).await;
    // The job is queued: its stream stays open, following it.
    let response = app
        .router()
        .oneshot(
            app.with_cookie(Method::GET, &format!("/api/v1/jobs/{job}/events"), &cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body().into_data_stream();
    let mut seen = String::new();
    while !seen.contains("two") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), body.next())
            .await
            .expect("the first events arrive")
            .expect("the stream is open")
            .unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }

    let (status, headers, _) = app
        .send(
            app.with_cookie(Method::DELETE, "/api/v1/session", &cookie)
                .header(header::ORIGIN, OWN_ORIGIN)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let cleared = headers[header::SET_COOKIE].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    // The open stream ends on its own (keep-alive comments may come first).
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(chunk) = body.next().await {
            let text = String::from_utf8_lossy(&chunk.unwrap()).into_owned();
            assert!(
                text.trim_start().starts_with(':'),
                "only keep-alives: {text}"
            );
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream of a signed-out session is still open"
    );
    let (status, _, _) = app
        .send_with_cookie(Method::GET, "/api/v1/jobs", &cookie)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_log_is_served_by_line_range_whole_and_searched() {
    let app = App::new().await;
    let lines: Vec<String> = (1..=25)
        .map(|i| format!("line {i} \u{1b}[31mred\u{1b}[0m 日本"))
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let job = app.job_with_lines(&refs).await;

    let (status, headers, body) = app
        .send_authorized(Method::GET, &format!("/api/v1/jobs/{job}/log?from=3&to=5"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "text/plain; charset=utf-8");
    assert_eq!(headers["x-ci-last-seq"], "25");
    let text = String::from_utf8(body).unwrap();
    assert_eq!(text, format!("{}\n{}\n{}\n", lines[2], lines[3], lines[4]));
    // Past the end: fewer lines.
    let (_, _, body) = app
        .send_authorized(Method::GET, &format!("/api/v1/jobs/{job}/log?from=24"))
        .await;
    assert_eq!(String::from_utf8(body).unwrap().lines().count(), 2);
    for bad in ["from=0", "from=x", "from=5&to=4"] {
        let (status, headers, body) = app
            .send_authorized(Method::GET, &format!("/api/v1/jobs/{job}/log?{bad}"))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}");
        assert_eq!(error_body(&headers, &body).code, "bad_request");
    }

    let (status, headers, body) = app
        .send_authorized(Method::GET, &format!("/api/v1/jobs/{job}/log.txt"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .contains(&format!("job-{job}.log")));
    assert_eq!(String::from_utf8(body).unwrap(), lines.join("\n") + "\n");

    let (status, _, body) = app
        .send_authorized(
            Method::GET,
            &format!("/api/v1/jobs/{job}/log/search?q=LINE%202&limit=3"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let found: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let seqs: Vec<i64> = found["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(seqs, [2, 20, 21]);
    assert_eq!(found["matches"][0]["text"], lines[1]);
    assert_eq!(found["next_after"], 21);
    let (_, _, body) = app
        .send_authorized(
            Method::GET,
            &format!("/api/v1/jobs/{job}/log/search?q=line%202&after=21"),
        )
        .await;
    let rest: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(rest["matches"].as_array().unwrap().len(), 4);
    assert!(rest["next_after"].is_null());
    let (status, _, _) = app
        .send_authorized(Method::GET, &format!("/api/v1/jobs/{job}/log/search"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn jobs_are_listed_by_status_and_task() {
    let app = App::new().await;
    let queued = app.job_with_lines(&[]).await;
    let cancelled = app.job_with_lines(&[]).await;
    app.send_authorized(Method::POST, &format!("/api/v1/jobs/{cancelled}/cancel"))
        .await;
    let ids = |body: &[u8]| -> Vec<String> {
        let list: serde_json::Value = serde_json::from_slice(body).unwrap();
        list["jobs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["job_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, _, body) = app
        .send_authorized(Method::GET, "/api/v1/jobs?status=queued")
        .await;
    assert_eq!(ids(&body), [queued.to_string()]);
    let (_, _, body) = app
        .send_authorized(Method::GET, "/api/v1/jobs?status=cancelled&task=test")
        .await;
    assert_eq!(ids(&body), [cancelled.to_string()]);
    let (_, _, body) = app
        .send_authorized(Method::GET, "/api/v1/jobs?task=lint")
        .await;
    assert!(ids(&body).is_empty());
    let (status, headers, body) = app
        .send_authorized(Method::GET, "/api/v1/jobs?status=done")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let error = error_body(&headers, &body);
    assert!(
        error.error.contains("running"),
        "lists the states: {}",
        error.error
    );
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let preflight = |origin: &str| {
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/api/v1/jobs")
            .header(header::ORIGIN, origin)
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
            .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
            .body(Body::empty())
            .unwrap()
    };
    let off = App::new().await;
    let (_, headers, _) = off.send(preflight("https://ui.example.com")).await;
    assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
    let (_, headers, _) = off.send_authorized(Method::GET, "/api/v1/jobs").await;
    let cors_headers: Vec<_> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("access-control") || *name == header::VARY)
        .collect();
    assert!(cors_headers.is_empty(), "CORS is off: {cors_headers:?}");

    let on = App::with_config(|c| c.cors_origins = vec!["https://ui.example.com".into()]).await;
    let (_, headers, _) = on.send(preflight("https://ui.example.com")).await;
    assert_eq!(
        headers[header::ACCESS_CONTROL_ALLOW_ORIGIN],
        "https://ui.example.com"
    );
    let allowed = headers[header::ACCESS_CONTROL_ALLOW_HEADERS]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(allowed.contains("authorization"), "{allowed}");
    let (_, headers, _) = on.send(preflight("https://other.example.com")).await;
    assert!(!headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN));
}

/// Fails unless a 429's body is `code` saying the limit of `per_minute` a minute, and its
/// `Retry-After` is the seconds until the next token: at least 1, at most a minute's share of
/// one (rounded up).
fn expect_limited(headers: &HeaderMap, body: &[u8], code: &str, per_minute: u64) {
    let retry_after: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=60 / per_minute + 1).contains(&retry_after),
        "{retry_after}"
    );
    let error = error_body(headers, body);
    assert_eq!(error.code, code);
    assert!(
        error
            .error
            .contains(&format!("at most {per_minute} a minute")),
        "{}",
        error.error
    );
}

#[tokio::test]
async fn past_its_rate_a_key_gets_429_with_retry_after_and_other_keys_do_not() {
    let app = App::with_config(|config| config.key_rate_per_minute = 5).await;
    for _ in 0..5 {
        let (status, _, _) = app.send_authorized(Method::GET, "/api/v1/jobs").await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, headers, body) = app.send_authorized(Method::GET, "/api/v1/jobs").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    expect_limited(&headers, &body, "rate_limited", 5);
    // Another key of the same user has a bucket of its own.
    let (_, other) = app.db.user_with_key("Bob").await;
    let request = Request::get("/api/v1/jobs")
        .header(header::AUTHORIZATION, format!("Bearer {}", other.expose()))
        .body(Body::empty())
        .unwrap();
    let (status, _, _) = app.send(request).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn an_action_and_its_audit_row_are_one_change_and_refusals_are_not_recorded() {
    use ci_common::db::audit::{self, AuditFilter, Outcome};
    let app = App::new().await;
    let rows = || async {
        audit::list(&app.db.pool, &AuditFilter::default())
            .await
            .unwrap()
    };
    let job = ci_common::db::jobs::create(&app.db.pool, app.user_id, "test", b"zip")
        .await
        .unwrap();
    let cancel = format!("/api/v1/jobs/{}/cancel", job.id);
    // The peer's address is the source (`ci-server` serves with connect info; here a mock).
    let peer = std::net::SocketAddr::from(([10, 0, 0, 7], 40000));
    let request = app
        .authorized(Method::POST, &cancel)
        .body(Body::empty())
        .unwrap();
    let response = app
        .router()
        .layer(axum::extract::connect_info::MockConnectInfo(peer))
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let done = rows().await;
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].action, "job.cancel");
    assert_eq!(done[0].actor, "Ada");
    assert_eq!(done[0].actor_user_id, Some(app.user_id));
    assert_eq!(done[0].source, "10.0.0.7");
    assert_eq!(done[0].target, format!("job {}", job.id));
    assert_eq!(done[0].detail["status"], "cancelled");

    // Refused: the job has ended (409), another's webhook (404), a wrong key (401). Nothing
    // is recorded, and a router without connect info still answers.
    let (status, ..) = app.send_authorized(Method::POST, &cancel).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let other = format!("/api/v1/webhooks/{}", ci_common::WebhookId::new());
    let (status, ..) = app.send_authorized(Method::DELETE, &other).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let stranger = SecretKey::generate();
    let wrong = Request::post(&cancel)
        .header(
            header::AUTHORIZATION,
            format!("Bearer {}", stranger.expose()),
        )
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.send(wrong).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(rows().await.len(), 1);

    // At sign-in a wrong key is recorded, alone, as denied, without the key.
    let sign_in = Request::post("/api/v1/session")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            serde_json::json!({ "api_key": stranger.expose() }).to_string(),
        ))
        .unwrap();
    assert_eq!(app.send(sign_in).await.0, StatusCode::UNAUTHORIZED);
    let all = rows().await;
    assert_eq!(all.len(), 2);
    let denied = &all[1];
    assert_eq!(denied.action, "session.sign_in");
    assert_eq!(denied.outcome, Outcome::Denied);
    assert_eq!(denied.actor, audit::UNKNOWN_ACTOR);
    assert_eq!(denied.source, "unknown");
    assert_eq!(denied.detail["code"], "unknown_api_key");
    assert!(!format!("{all:?}").contains(stranger.expose()));
}

#[tokio::test]
async fn past_the_limit_refused_sign_ins_from_an_address_are_429_and_not_recorded() {
    use ci_common::db::audit::{self, AuditFilter, Outcome};
    let app = App::with_config(|config| config.sign_in_failures_per_minute = 3).await;
    let sign_in = |api_key: &str, from: [u8; 4]| {
        let request = Request::post("/api/v1/session")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                serde_json::json!({ "api_key": api_key }).to_string(),
            ))
            .unwrap();
        let peer = std::net::SocketAddr::from((from, 40000));
        let router = app
            .router()
            .layer(axum::extract::connect_info::MockConnectInfo(peer));
        async move {
            let response = router.oneshot(request).await.unwrap();
            let status = response.status();
            let headers = response.headers().clone();
            let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
            (status, headers, body.to_vec())
        }
    };
    let wrong = SecretKey::generate();
    let attacker = [203, 0, 113, 9];
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(sign_in(wrong.expose(), attacker).await.0);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS,
        ]
    );
    let (_, headers, body) = sign_in(wrong.expose(), attacker).await;
    expect_limited(&headers, &body, "too_many_sign_ins", 3);

    // Only the first three are in the audit log; another address is refused and recorded as
    // before, and the right key still signs in from the limited address.
    assert_eq!(
        sign_in(wrong.expose(), [198, 51, 100, 4]).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(sign_in(&app.key, attacker).await.0, StatusCode::CREATED);
    let rows = audit::list(&app.db.pool, &AuditFilter::default())
        .await
        .unwrap();
    let denied: Vec<&str> = rows
        .iter()
        .filter(|r| r.outcome == Outcome::Denied)
        .map(|r| r.source.as_str())
        .collect();
    assert_eq!(
        denied,
        ["203.0.113.9", "203.0.113.9", "203.0.113.9", "198.51.100.4"],
        "{rows:?}"
    );
    assert!(rows
        .iter()
        .any(|r| r.outcome == Outcome::Ok && r.source == "203.0.113.9"));
}
