//! `ci-server`: the stateless HTTP API of ci. Any number of replicas serve the same database
//! (SQLite on one machine, PostgreSQL across machines); they never talk to the controller or to
//! Docker.
//!
//! [`run`] serves an already bound listener until a shutdown token is cancelled; [`router`] is the
//! whole HTTP surface in one table.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::{Json, Router};
use ci_common::api::API_PREFIX;
use ci_common::db::Db;
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
pub mod metrics;
pub mod openapi;
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
    pub db: Db,
    pub config: Arc<Config>,
    /// Cancelled on shutdown: open event streams end when it is.
    pub shutdown: CancellationToken,
    pub hub: hub::Hub,
    pub touches: Arc<auth::Touches>,
    pub metrics: Arc<metrics::Metrics>,
    /// The key of `--secrets-key-file`, if given (checked at start by [`run`]).
    pub secrets: Option<ci_common::secrets::SecretsKey>,
    /// Requests per key, with `--key-rate-per-minute` (see [`auth::KeyRate`]).
    pub key_rate: Option<Arc<auth::KeyRate>>,
    /// Refused sign-ins per address, `--sign-in-failures-per-minute` (see
    /// [`auth::SignInFailures`]).
    pub sign_in_failures: Option<Arc<auth::SignInFailures>>,
}

impl AppState {
    /// The state of a replica on `db` (a [`Db`], or a pool of either backend).
    pub fn new(db: impl Into<Db>, config: Config, shutdown: CancellationToken) -> Self {
        let db = db.into();
        let hub = hub::Hub::start(
            db.clone(),
            config.poll_interval(),
            shutdown.clone(),
            hub::CHANNEL_CAPACITY,
        );
        let secrets = config.secrets_key().ok().flatten();
        let key_rate = auth::KeyRate::new(config.key_rate_per_minute).map(Arc::new);
        let sign_in_failures =
            auth::SignInFailures::new(config.sign_in_failures_per_minute).map(Arc::new);
        Self {
            secrets,
            key_rate,
            sign_in_failures,
            db,
            config: Arc::new(config),
            shutdown,
            hub,
            touches: Arc::default(),
            metrics: Arc::default(),
        }
    }
}

/// Opens the database, prints `ci-server listening on http://ADDR` and serves until `shutdown`
/// is cancelled; open event streams end then too. With `--metrics-addr`, the metrics are served
/// there first ([`metrics::start`]).
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    config.secrets_key()?;
    let db = config.db.open(config::DB_CONNECTIONS).await?;
    let addr = listener
        .local_addr()
        .context("cannot read the listening address")?;
    let state = AppState::new(db.clone(), config, shutdown.clone());
    if let Some(addr) = state.config.metrics_addr {
        metrics::start(&state, addr).await?;
    }
    let app = router(state);
    println!("ci-server listening on http://{addr}");
    tracing::info!(%addr, "listening");
    // Each request knows its peer's address (`ConnectInfo`): the source of its audit rows.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .context("the HTTP server failed")?;
    db.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// The whole HTTP API: every route, and every layer, in one place.
pub fn router(state: AppState) -> Router {
    use routes::{compat, health};
    let config = &state.config;
    let limits = RouteLimits::new(config);
    let mut router = Router::new()
        .route("/health", limits.quick(get(health::health)))
        .route("/ready", limits.quick(get(health::ready)));
    for (path, route) in api_routes(&limits) {
        router = router.route(&format!("{API_PREFIX}{path}"), route);
    }
    router
        // The original system's API.
        .route("/submit", limits.upload(post(compat::submit)))
        .route("/submit-stream", limits.upload(post(compat::submit_stream)))
        .route("/submit-async", limits.upload(post(compat::submit_async)))
        .route("/jobs", limits.quick(get(compat::list)))
        .route("/jobs/{id}", limits.quick(get(compat::get)))
        .route("/jobs/{id}/stream", limits.quick(get(compat::stream)))
        // The web UI (`/` → `/ui/`): its pages, and their scripts and style sheet.
        .route("/", limits.page(get(ui::to_ui)))
        .route("/ui", limits.page(get(ui::to_ui)))
        .route("/ui/", limits.page(get(ui::jobs_page)))
        .route("/ui/signin", limits.page(get(ui::signin_page)))
        .route("/ui/jobs/{id}", limits.page(get(ui::job_page)))
        .nest_service("/ui/assets", ui::assets().layer(limits.timeout()))
        .route("/ui/{*rest}", limits.page(get(ui::not_found_page)))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(tower::util::option_layer(cors(config)))
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
        .layer(axum::middleware::from_fn_with_state(
            state.metrics.clone(),
            metrics::track,
        ))
        .with_state(state)
}

/// Every route of the versioned API, by its path under [`API_PREFIX`]. [`router`] serves them
/// all, and [`openapi::ApiDoc`] must document each (a test checks it).
pub(crate) fn api_routes(limits: &RouteLimits) -> Vec<(&'static str, MethodRouter<AppState>)> {
    use routes::{
        blobs, events, git_credentials, jobs, log, secrets, session, teams, tests, triggers,
        webhooks,
    };
    vec![
        (
            "/jobs",
            limits
                .quick(get(jobs::list))
                .merge(limits.upload(post(jobs::create))),
        ),
        ("/jobs/{id}", limits.quick(get(jobs::get))),
        (
            "/triggers",
            limits
                .quick(get(triggers::list))
                .merge(limits.quick(post(triggers::create))),
        ),
        ("/triggers/{id}", limits.quick(delete(triggers::revoke))),
        ("/trigger/{token}", limits.quick(post(triggers::run))),
        ("/teams", limits.quick(get(teams::list))),
        ("/secrets", limits.quick(get(secrets::list))),
        (
            "/secrets/{name}",
            limits
                .quick(put(secrets::set))
                .merge(limits.quick(delete(secrets::remove))),
        ),
        ("/git-credentials", limits.quick(get(git_credentials::list))),
        (
            "/git-credentials/{host}",
            limits
                .quick(put(git_credentials::set))
                .merge(limits.quick(delete(git_credentials::remove))),
        ),
        ("/hooks/{token}", limits.quick(post(triggers::push))),
        ("/jobs/{id}/cancel", limits.quick(post(jobs::cancel))),
        ("/jobs/{id}/retry", limits.quick(post(jobs::retry))),
        ("/jobs/{id}/events", limits.quick(get(events::follow))),
        ("/jobs/{id}/log", limits.quick(get(log::range))),
        ("/jobs/{id}/log.txt", limits.quick(get(log::raw))),
        ("/jobs/{id}/log/search", limits.quick(get(log::search))),
        (
            "/session",
            limits.quick(
                post(session::create)
                    .get(session::current)
                    .delete(session::delete),
            ),
        ),
        ("/jobs/{id}/tests", limits.quick(get(tests::list))),
        ("/jobs/{id}/junit.xml", limits.quick(get(tests::junit))),
        ("/jobs/{id}/blobs", limits.quick(get(blobs::list))),
        ("/jobs/{id}/blobs/{*name}", limits.quick(get(blobs::get))),
        ("/tasks/{name}", limits.quick(get(jobs::task_status))),
        ("/jobs/{id}/artifacts", limits.quick(get(blobs::artifacts))),
        (
            "/jobs/{id}/artifacts/{*path}",
            limits.quick(get(blobs::artifact)),
        ),
        (
            "/webhooks",
            limits.quick(get(webhooks::list).post(webhooks::create)),
        ),
        (
            "/webhooks/{id}",
            limits.quick(axum::routing::delete(webhooks::delete)),
        ),
        (
            "/webhooks/{id}/deliveries",
            limits.quick(get(webhooks::deliveries)),
        ),
        ("/openapi.json", limits.quick(get(openapi::document))),
    ]
}

/// The time and body limits of routes, from the configuration.
pub(crate) struct RouteLimits {
    request_timeout: Duration,
    upload_timeout: Duration,
    /// The largest upload plus its multipart framing, in bytes.
    max_upload_body: usize,
}

impl RouteLimits {
    pub(crate) fn new(config: &Config) -> Self {
        Self {
            request_timeout: config.request_timeout(),
            upload_timeout: config.upload_timeout(),
            max_upload_body: usize::try_from(
                config.max_upload_bytes.saturating_add(MULTIPART_OVERHEAD),
            )
            .unwrap_or(usize::MAX),
        }
    }

    /// The request time limit (503 past it).
    fn timeout(&self) -> TimeoutLayer {
        TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, self.request_timeout)
    }

    /// A route that answers within the request time limit (503 past it). Streams are not
    /// limited by it once their headers are sent.
    fn quick(&self, route: MethodRouter<AppState>) -> MethodRouter<AppState> {
        route.layer(self.timeout())
    }

    /// A page of the web UI: quick, with the UI's security headers.
    fn page(&self, route: MethodRouter<AppState>) -> MethodRouter<AppState> {
        self.quick(route)
            .layer(axum::middleware::map_response(ui::security_headers))
    }

    /// An upload: the upload time limit (503 past it) and a body of at most the largest upload.
    fn upload(&self, route: MethodRouter<AppState>) -> MethodRouter<AppState> {
        route.layer(
            ServiceBuilder::new()
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::SERVICE_UNAVAILABLE,
                    self.upload_timeout,
                ))
                .layer(DefaultBodyLimit::max(self.max_upload_body)),
        )
    }
}

/// CORS for the origins of `--cors-origin`; `None` (no CORS headers at all) by default. Pages
/// there call the API with an API key in `Authorization`; cookies are not shared with them (a
/// browser session is for this server's own pages).
fn cors(config: &Config) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if config.cors_origins.is_empty() {
        return None;
    }
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
        .into()
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
