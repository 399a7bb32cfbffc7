//! What a replica counts: requests by route template and status, their latency, open event
//! streams, the hub's database tails, and uploads (sizes, and refusals by error code). Served on
//! `--metrics-addr` by [`ci_metrics::Endpoint`], never on the API's port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric as _};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::hub::Hub;
use crate::AppState;

/// The `route` of a request that matched no route (its raw path is never a label).
pub const UNMATCHED: &str = "unmatched";

/// Upper bounds of the request latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The replica's metrics. Cheap to clone (every metric is shared).
#[derive(Clone, Debug)]
pub struct Metrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    open_streams: Gauge,
    upload_size: Histogram,
    upload_rejections: Family<ReasonLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS)),
            open_streams: Gauge::default(),
            // 1 KiB to 256 MiB.
            upload_size: Histogram::new(exponential_buckets(1024.0, 4.0, 10)),
            upload_rejections: Family::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric, and the hub's tails (read when scraped), in `registry`.
    pub fn register(&self, registry: &mut Registry, hub: &Hub) {
        registry.register(
            "ci_http_requests",
            "HTTP requests answered, by method, route template and status",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "ci_http_request_duration",
            "Time from a request to its response's head (an event stream's life is not \
             included), by method and route template",
            Unit::Seconds,
            self.latency.clone(),
        );
        registry.register(
            "ci_sse_streams_open",
            "Event streams (SSE) open on this replica",
            self.open_streams.clone(),
        );
        registry.register_collector(Box::new(HubTails(hub.clone())));
        registry.register_with_unit(
            "ci_upload_size",
            "Sizes of uploaded archives that were read whole, accepted or not",
            Unit::Bytes,
            self.upload_size.clone(),
        );
        registry.register(
            "ci_upload_rejections",
            "Uploads refused, by the error code of the answer",
            self.upload_rejections.clone(),
        );
    }

    /// Counts a response to `method` on `route` (a route template).
    pub fn request(&self, method: &Method, route: &str, status: StatusCode, latency: Duration) {
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                method,
                route: route.to_owned(),
                status: status.as_u16(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method,
                route: route.to_owned(),
            })
            .observe(latency.as_secs_f64());
    }

    /// Counts an event stream as open until the returned guard is dropped.
    pub fn stream_opened(&self) -> OpenStream {
        self.open_streams.inc();
        OpenStream(self.open_streams.clone())
    }

    /// An uploaded archive of `bytes` was read whole.
    pub fn upload_read(&self, bytes: usize) {
        self.upload_size.observe(bytes as f64);
    }

    /// An upload was refused with the error code `reason`.
    pub fn upload_rejected(&self, reason: &'static str) {
        self.upload_rejections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}

/// Serves the replica's metrics and `/health` on `addr` until shutdown, and logs the address
/// (`metrics on http://ADDR`; port 0 picks a free one).
pub async fn start(state: &AppState, addr: SocketAddr) -> anyhow::Result<()> {
    let mut endpoint = ci_metrics::Endpoint::new(state.db.clone());
    state.metrics.register(endpoint.registry_mut(), &state.hub);
    let addr = endpoint.start(addr, state.shutdown.clone()).await?;
    tracing::info!("metrics on http://{addr}");
    Ok(())
}

/// An open event stream, counted until dropped.
#[derive(Debug)]
pub struct OpenStream(Gauge);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The middleware that counts every response by the route template that matched its request
/// ([`UNMATCHED`] when none did), never by the raw path, whose ids would make a series each.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED.to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    metrics.request(&method, &route, response.status(), started.elapsed());
    response
}

/// A method as a label: the standard ones by name, any other as `other` (a client must not be
/// able to make new series).
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

/// `ci_hub_tails`: the jobs that have a database tail on this replica, when scraped.
struct HubTails(Hub);

impl std::fmt::Debug for HubTails {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("HubTails").finish()
    }
}

impl Collector for HubTails {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let gauge = ConstGauge::new(i64::try_from(self.0.tails()).unwrap_or(i64::MAX));
        gauge.encode(encoder.encode_descriptor(
            "ci_hub_tails",
            "Jobs whose events this replica reads from the database for its followers (one \
             tail per followed job).",
            None,
            gauge.metric_type(),
        )?)
    }
}

#[cfg(test)]
mod tests {
    use ci_common::testing::TempDb;
    use ci_metrics::scrape::Page;
    use tokio_util::sync::CancellationToken;

    use super::*;

    #[tokio::test]
    async fn the_page_counts_by_route_template_and_reason() {
        let db = TempDb::new().await;
        let shutdown = CancellationToken::new();
        let hub = Hub::start(db.pool.clone(), Duration::from_millis(5), shutdown, 4);
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry, &hub);

        let route = "/api/v1/jobs/{id}";
        let ms = Duration::from_millis(3);
        metrics.request(&Method::GET, route, StatusCode::UNAUTHORIZED, ms);
        metrics.request(&Method::GET, route, StatusCode::UNAUTHORIZED, ms);
        metrics.request(&Method::GET, route, StatusCode::OK, ms);
        metrics.request(
            &Method::from_bytes(b"BREW").unwrap(),
            UNMATCHED,
            StatusCode::NOT_FOUND,
            ms,
        );
        let first = metrics.stream_opened();
        let second = metrics.stream_opened();
        drop(first);
        metrics.upload_read(2000);
        metrics.upload_read(5000);
        metrics.upload_rejected("not_a_zip");
        metrics.upload_rejected("not_a_zip");
        metrics.upload_rejected("too_large");

        let text = ci_metrics::encode(&registry);
        let page = Page::parse(&text).unwrap();
        let requests = |method, route, status| {
            page.value(
                "ci_http_requests_total",
                &[("method", method), ("route", route), ("status", status)],
            )
        };
        assert_eq!(requests("GET", route, "401"), Some(2.0), "{text}");
        assert_eq!(requests("GET", route, "200"), Some(1.0), "{text}");
        assert_eq!(requests("other", UNMATCHED, "404"), Some(1.0), "{text}");
        assert_eq!(
            page.value(
                "ci_http_request_duration_seconds_count",
                &[("method", "GET"), ("route", route)]
            ),
            Some(3.0),
            "{text}"
        );
        assert_eq!(page.value("ci_sse_streams_open", &[]), Some(1.0), "{text}");
        drop(second);
        let page = Page::parse(&ci_metrics::encode(&registry)).unwrap();
        assert_eq!(page.value("ci_sse_streams_open", &[]), Some(0.0));
        assert_eq!(page.value("ci_hub_tails", &[]), Some(0.0));
        assert_eq!(page.value("ci_upload_size_bytes_count", &[]), Some(2.0));
        assert_eq!(page.value("ci_upload_size_bytes_sum", &[]), Some(7000.0));
        assert_eq!(
            page.value("ci_upload_size_bytes_bucket", &[("le", "4096")]),
            Some(1.0)
        );
        assert_eq!(
            page.value("ci_upload_rejections_total", &[("reason", "not_a_zip")]),
            Some(2.0)
        );
        assert_eq!(
            page.value("ci_upload_rejections_total", &[("reason", "too_large")]),
            Some(1.0)
        );

        let _follower = hub.subscribe(ci_common::JobId::new(), 0);
        let page = Page::parse(&ci_metrics::encode(&registry)).unwrap();
        assert_eq!(page.value("ci_hub_tails", &[]), Some(1.0));
    }
}
