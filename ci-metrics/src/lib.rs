//! Prometheus metrics of ci's services, done one way: each service keeps its metrics as
//! [`prometheus_client`] types and registers them in an [`Endpoint`], whose registry already holds
//! the database pool's gauges. The endpoint serves the registry in the Prometheus text format on
//! `/metrics`, and a database check on `/health`, on a listener of its own (`--metrics-addr`),
//! never on a service's public port.
//!
//! With the `testing` feature, [`scrape`] reads a page back, for tests.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ci_common::db::{self, Db};
use futures_util::future::BoxFuture;
use futures_util::FutureExt as _;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric as _};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The `Content-Type` of `/metrics`: the Prometheus text format, version 0.0.4.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(any(test, feature = "testing"))]
pub mod scrape;

type Refresh = Box<dyn Fn() -> BoxFuture<'static, ()> + Send + Sync>;

/// A service's registry and what its metrics listener serves.
pub struct Endpoint {
    registry: Registry,
    db: Db,
    refresh: Option<Refresh>,
}

impl Endpoint {
    /// An endpoint whose registry holds the gauges of `db`'s pool (read when scraped), and whose
    /// `/health` checks that `db` answers.
    pub fn new(db: impl Into<Db>) -> Self {
        let db = db.into();
        let mut registry = Registry::default();
        registry.register_collector(Box::new(PoolGauges(db.clone())));
        Self {
            registry,
            db,
            refresh: None,
        }
    }

    /// Where the service registers its metrics.
    pub fn registry_mut(&mut self) -> &mut Registry {
        &mut self.registry
    }

    /// Runs `refresh` before each scrape, to update the values that need a database read (a
    /// value that can be read without waiting belongs in a [`Collector`] instead).
    pub fn on_scrape<F, Fut>(mut self, refresh: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.refresh = Some(Box::new(move || refresh().boxed()));
        self
    }

    /// The page `/metrics` answers now.
    pub async fn scrape(&self) -> String {
        if let Some(refresh) = &self.refresh {
            refresh().await;
        }
        encode(&self.registry)
    }

    /// `/metrics` and `/health`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/metrics", get(metrics_page))
            .route("/health", get(health))
            .with_state(Arc::new(self))
    }

    /// Binds `addr` (port 0 picks a free port) and serves the endpoint there until `shutdown`;
    /// returns the address it listens on. A failure to bind is the caller's error; a failure
    /// of the server later is logged.
    pub async fn start(
        self,
        addr: SocketAddr,
        shutdown: CancellationToken,
    ) -> anyhow::Result<SocketAddr> {
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on --metrics-addr {addr}"))?;
        let local = listener
            .local_addr()
            .context("cannot read the metrics address")?;
        let app = self.router();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::warn!("the metrics server stopped: {e}");
            }
        });
        Ok(local)
    }
}

/// `registry` in the Prometheus text format.
pub fn encode(registry: &Registry) -> String {
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, registry)
        .expect("metrics encode into a String");
    text
}

async fn metrics_page(State(endpoint): State<Arc<Endpoint>>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        endpoint.scrape().await,
    )
        .into_response()
}

async fn health(State(endpoint): State<Arc<Endpoint>>) -> Response {
    match db::ping(&endpoint.db).await {
        Ok(()) => (StatusCode::OK, Json(serde_json::json!({"status": "ok"}))).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({
                "status": "error",
                "error": format!("{:#}", anyhow::Error::from(e)),
            })),
        )
            .into_response(),
    }
}

/// `ci_db_pool_connections` and `ci_db_pool_idle_connections`, read from the pool when scraped.
#[derive(Debug)]
struct PoolGauges(Db);

impl Collector for PoolGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauges = [
            (
                "ci_db_pool_connections",
                "Open connections of the database pool, idle or in use.",
                i64::from(self.0.size()),
            ),
            (
                "ci_db_pool_idle_connections",
                "Open connections of the database pool that wait for a query.",
                i64::try_from(self.0.num_idle()).unwrap_or(i64::MAX),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use axum::body::{to_bytes, Body};
    use axum::http::Request;
    use ci_common::testing::TempDb;
    use prometheus_client::metrics::counter::Counter;
    use tower::ServiceExt as _;

    use super::scrape::Page;
    use super::*;

    async fn get(app: Router, path: &str) -> (StatusCode, Option<String>, String) {
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned());
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn the_page_holds_the_pool_and_the_services_metrics_refreshed_per_scrape() {
        let db = TempDb::new().await;
        let scrapes = Arc::new(AtomicU64::new(0));
        let counted = Counter::<u64>::default();
        let mut endpoint = Endpoint::new(db.pool.clone());
        endpoint
            .registry_mut()
            .register("ci_test_scrapes", "Scrapes so far", counted.clone());
        let endpoint = endpoint.on_scrape({
            let scrapes = scrapes.clone();
            move || {
                let (scrapes, counted) = (scrapes.clone(), counted.clone());
                async move {
                    scrapes.fetch_add(1, Ordering::Relaxed);
                    counted.inc();
                }
            }
        });
        let app = endpoint.router();

        let (status, content_type, text) = get(app.clone(), "/metrics").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            content_type.as_deref(),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        let page = Page::parse(&text).unwrap();
        assert_eq!(
            page.value("ci_test_scrapes_total", &[]),
            Some(1.0),
            "{text}"
        );
        assert_eq!(page.kind("ci_test_scrapes_total"), Some("counter"));
        let open = page.value("ci_db_pool_connections", &[]).unwrap();
        let idle = page.value("ci_db_pool_idle_connections", &[]).unwrap();
        assert!(open >= 1.0 && idle <= open, "{text}");
        assert_eq!(page.kind("ci_db_pool_connections"), Some("gauge"));

        let (_, _, text) = get(app.clone(), "/metrics").await;
        let page = Page::parse(&text).unwrap();
        assert_eq!(
            page.value("ci_test_scrapes_total", &[]),
            Some(2.0),
            "{text}"
        );
        assert_eq!(scrapes.load(Ordering::Relaxed), 2);

        let (status, _, body) = get(app.clone(), "/health").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["status"],
            "ok"
        );
        let (status, _, _) = get(app, "/api/v1/jobs").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn health_says_when_the_database_is_gone() {
        let db = TempDb::new().await;
        let app = Endpoint::new(db.pool.clone()).router();
        db.pool.close().await;
        let (status, _, body) = get(app, "/health").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "error");
    }

    #[tokio::test]
    async fn start_serves_on_the_port_it_picked_until_shutdown() {
        let db = TempDb::new().await;
        let shutdown = CancellationToken::new();
        let addr = Endpoint::new(db.pool.clone())
            .start("127.0.0.1:0".parse().unwrap(), shutdown.clone())
            .await
            .unwrap();
        assert_ne!(addr.port(), 0);
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("\nci_db_pool_connections "), "{answer}");

        // A second endpoint cannot take the same address.
        let err = Endpoint::new(db.pool.clone())
            .start(addr, shutdown.clone())
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("--metrics-addr"), "{err:#}");

        shutdown.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while tokio::net::TcpStream::connect(addr).await.is_ok() {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("the listener closed on shutdown");
    }
}
