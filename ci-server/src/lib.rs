//! `ci-server`: the stateless HTTP API of ci. Any number of replicas serve the same SQLite
//! database; they never talk to the controller or to Docker.
//!
//! [`run`] serves an already bound listener until a shutdown token is cancelled; [`router`] is the
//! whole HTTP surface in one table.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use ci_common::api::API_PREFIX;
use ci_common::db::{self, SqlitePool};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{field, Span};

pub mod auth;
pub mod config;
pub mod error;
pub mod hub;
pub mod routes;
pub mod stream;
pub mod ui;
pub mod upload;

pub use config::Config;
use error::ApiError;

/// Room for the multipart framing around the uploaded file.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: SqlitePool,
    pub config: Arc<Config>,
    /// Cancelled on shutdown: open event streams end when it is.
    pub shutdown: CancellationToken,
    pub hub: hub::Hub,
    pub touches: Arc<auth::Touches>,
}

impl AppState {
    pub fn new(pool: SqlitePool, config: Config, shutdown: CancellationToken) -> Self {
        let hub = hub::Hub::start(
            pool.clone(),
            config.poll_interval(),
            shutdown.clone(),
            hub::CHANNEL_CAPACITY,
        );
        Self {
            pool,
            config: Arc::new(config),
            shutdown,
            hub,
            touches: Arc::default(),
        }
    }
}

/// Opens the database, prints `ci-server listening on http://ADDR` and serves until `shutdown`
/// is cancelled; open event streams end then too.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let pool = db::connect(&config.db_path, config.db_connections)
        .await
        .with_context(|| format!("cannot open the database {}", config.db_path.display()))?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let state = AppState::new(pool.clone(), config, shutdown.clone());
    let app = router(state);
    println!("ci-server listening on http://{addr}");
    tracing::info!(%addr, "listening");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("the HTTP server failed")?;
    pool.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The whole HTTP API: every route, and every layer, in one place.
pub fn router(state: AppState) -> Router {
    use routes::{blobs, compat, events, health, jobs, log, session, tests};
    let config = &state.config;
    let quick =
        TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, config.request_timeout());
    let upload = ServiceBuilder::new()
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.upload_timeout(),
        ))
        .layer(DefaultBodyLimit::max(
            usize::try_from(config.max_upload_bytes.saturating_add(MULTIPART_OVERHEAD))
                .unwrap_or(usize::MAX),
        ));
    // Streams are not limited by the timeout once their headers are sent.
    let quick_route = |route: MethodRouter<AppState>| route.layer(quick);
    let ui_route = |route: MethodRouter<AppState>| {
        route
            .layer(quick)
            .layer(axum::middleware::map_response(ui::security_headers))
    };

    Router::new()
        .route("/health", quick_route(get(health::health)))
        .route("/ready", quick_route(get(health::ready)))
        .route(
            &format!("{API_PREFIX}/jobs"),
            quick_route(get(jobs::list)).merge(post(jobs::create).layer(upload.clone())),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}"),
            quick_route(get(jobs::get)),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}/cancel"),
            post(jobs::cancel).layer(quick),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}/retry"),
            post(jobs::retry).layer(quick),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}/events"),
            quick_route(get(events::follow)),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}/log"),
            quick_route(get(log::range)),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}/log.txt"),
            quick_route(get(log::raw)),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}/log/search"),
            quick_route(get(log::search)),
        )
        .route(
            &format!("{API_PREFIX}/session"),
            quick_route(
                post(session::create)
                    .get(session::current)
                    .delete(session::delete),
            ),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}/tests"),
            quick_route(get(tests::list)),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}/junit.xml"),
            quick_route(get(tests::junit)),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}/blobs"),
            quick_route(get(blobs::list)),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}/blobs/{{*name}}"),
            quick_route(get(blobs::get)),
        )
        .route(
            &format!("{API_PREFIX}/tasks/{{name}}"),
            quick_route(get(jobs::task_status)),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}/artifacts"),
            quick_route(get(blobs::artifacts)),
        )
        .route(
            &format!("{API_PREFIX}/jobs/{{id}}/artifacts/{{*path}}"),
            quick_route(get(blobs::artifact)),
        )
        // The original system's API.
        .route("/submit", post(compat::submit).layer(upload.clone()))
        .route(
            "/submit-stream",
            post(compat::submit_stream).layer(upload.clone()),
        )
        .route("/submit-async", post(compat::submit_async).layer(upload))
        .route("/jobs", quick_route(get(compat::list)))
        .route("/jobs/{id}", quick_route(get(compat::get)))
        .route("/jobs/{id}/stream", quick_route(get(compat::stream)))
        // The web UI (`/` → `/ui/`): its pages, and their scripts and style sheet.
        .route("/", ui_route(get(ui::to_ui)))
        .route("/ui", ui_route(get(ui::to_ui)))
        .route("/ui/", ui_route(get(ui::jobs_page)))
        .route("/ui/signin", ui_route(get(ui::signin_page)))
        .route("/ui/jobs/{id}", ui_route(get(ui::job_page)))
        .nest_service("/ui/assets", ui::assets().layer(quick))
        .route("/ui/{*rest}", ui_route(get(ui::not_found_page)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(cors(config))
        .layer(
            ServiceBuilder::new()
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(request_span)
                        .on_request(())
                        .on_response(on_response)
                        .on_failure(()),
                )
                .layer(CatchPanicLayer::custom(panic_response))
                .layer(axum::middleware::map_response(json_errors)),
        )
        .with_state(state)
}

/// CORS for the origins of `--cors-origin` (none by default: the layer then answers nothing
/// and adds nothing). Pages there call the API with an API key in `Authorization`; cookies are
/// not shared with them (a browser session is for this server's own pages).
fn cors(config: &Config) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<header::HeaderValue> = config
        .cors_origins
        .iter()
        .filter_map(|origin| header::HeaderValue::from_str(origin).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST, Method::DELETE])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            header::CONTENT_DISPOSITION,
            header::HeaderName::from_static("x-ci-last-seq"),
            header::HeaderName::from_static("x-job-id"),
        ])
        .max_age(Duration::from_secs(3600))
}

fn request_span(request: &Request) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %request.method(),
        route,
        status = field::Empty,
        latency_ms = field::Empty,
        user_id = field::Empty,
    )
}

fn on_response<B>(response: &axum::http::Response<B>, latency: Duration, span: &Span) {
    let latency_ms = (latency.as_secs_f64() * 1000.0 * 100.0).round() / 100.0;
    span.record("status", response.status().as_u16());
    span.record("latency_ms", latency_ms);
    tracing::info!("response");
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::RouteNotFound(uri.path().to_owned())
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed {
        method: method.to_string(),
        path: uri.path().to_owned(),
    }
}

fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    ApiError::Internal(anyhow::anyhow!("handler panicked: {message}")).into_response()
}

/// Gives every error response that a layer or the framework produced without a JSON body (a
/// timeout, an oversized body) the one error shape. The UI's HTML pages (its 404) stay as they
/// are.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let has_body = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|ct| {
            let ct = ct.as_bytes();
            ct.starts_with(b"application/json") || ct.starts_with(b"text/html")
        });
    if !(status.is_client_error() || status.is_server_error()) || has_body {
        return response;
    }
    let mut replaced = (status, Json(error::generic_body(status))).into_response();
    if let Some(auth) = response.headers().get(header::WWW_AUTHENTICATE) {
        replaced
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, auth.clone());
    }
    replaced
}
