//! Counters of the controller, served as Prometheus text on `--metrics-addr` with `/health`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use ci_common::db::{self, jobs, SqlitePool};
use ci_common::JobStatus;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Default)]
pub struct Metrics {
    finished: [AtomicU64; JobStatus::ALL.len()],
    duration_ms_sum: AtomicU64,
    duration_count: AtomicU64,
    docker_errors: AtomicU64,
    running: AtomicI64,
    epoch: AtomicI64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    cache_stored_bytes: AtomicU64,
    cache_evictions: AtomicU64,
}

impl Metrics {
    pub fn job_finished(&self, status: JobStatus, secs: f64) {
        if let Some(i) = JobStatus::ALL.iter().position(|s| *s == status) {
            self.finished[i].fetch_add(1, Ordering::Relaxed);
        }
        self.duration_ms_sum
            .fetch_add((secs.max(0.0) * 1000.0) as u64, Ordering::Relaxed);
        self.duration_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn docker_error(&self) {
        self.docker_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A job used a dependency cache entry instead of installing.
    pub fn cache_hit(&self) {
        self.cache_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A job found no dependency cache entry and installs into a new one.
    pub fn cache_miss(&self) {
        self.cache_misses.fetch_add(1, Ordering::Relaxed);
    }

    /// A dependency cache entry of `bytes` was published.
    pub fn cache_stored(&self, bytes: u64) {
        self.cache_stored_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// `n` dependency cache entries were evicted (over a cap or unused too long).
    pub fn cache_evicted(&self, n: u64) {
        self.cache_evictions.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set_running(&self, n: usize) {
        self.running.store(n as i64, Ordering::Relaxed);
    }

    pub fn set_epoch(&self, epoch: i64) {
        self.epoch.store(epoch, Ordering::Relaxed);
    }

    /// The Prometheus text exposition, with `queued` jobs and the dependency cache's published
    /// bytes (`cache_bytes`) counted by the caller.
    pub fn render(&self, queued: i64, cache_bytes: i64) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP ci_queue_depth Jobs waiting to run.\n# TYPE ci_queue_depth gauge\nci_queue_depth {queued}");
        let _ = writeln!(out, "# HELP ci_running_jobs Jobs this controller is running.\n# TYPE ci_running_jobs gauge\nci_running_jobs {}", self.running.load(Ordering::Relaxed));
        let _ = writeln!(out, "# HELP ci_jobs_finished_total Jobs finished by this controller, by outcome.\n# TYPE ci_jobs_finished_total counter");
        for (i, status) in JobStatus::ALL.iter().enumerate() {
            if status.is_terminal() {
                let _ = writeln!(
                    out,
                    "ci_jobs_finished_total{{outcome=\"{status}\"}} {}",
                    self.finished[i].load(Ordering::Relaxed)
                );
            }
        }
        let _ = writeln!(out, "# HELP ci_job_duration_seconds Wall-clock time of finished jobs.\n# TYPE ci_job_duration_seconds summary");
        let _ = writeln!(
            out,
            "ci_job_duration_seconds_sum {:.3}\nci_job_duration_seconds_count {}",
            self.duration_ms_sum.load(Ordering::Relaxed) as f64 / 1000.0,
            self.duration_count.load(Ordering::Relaxed)
        );
        let _ = writeln!(out, "# HELP ci_docker_errors_total Failed Docker API calls.\n# TYPE ci_docker_errors_total counter\nci_docker_errors_total {}", self.docker_errors.load(Ordering::Relaxed));
        let counter = |out: &mut String, name: &str, help: &str, value: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        };
        counter(
            &mut out,
            "ci_cache_hits_total",
            "Jobs that used a dependency cache entry instead of installing.",
            &self.cache_hits,
        );
        counter(
            &mut out,
            "ci_cache_misses_total",
            "Jobs that installed into a new dependency cache entry.",
            &self.cache_misses,
        );
        counter(
            &mut out,
            "ci_cache_stored_bytes_total",
            "Bytes of dependency cache entries published.",
            &self.cache_stored_bytes,
        );
        counter(
            &mut out,
            "ci_cache_evictions_total",
            "Dependency cache entries evicted (over a cap or unused too long).",
            &self.cache_evictions,
        );
        let _ = writeln!(out, "# HELP ci_cache_bytes Bytes of the published dependency cache entries.\n# TYPE ci_cache_bytes gauge\nci_cache_bytes {cache_bytes}");
        let _ = writeln!(out, "# HELP ci_controller_epoch Lease epoch of this controller.\n# TYPE ci_controller_epoch gauge\nci_controller_epoch {}", self.epoch.load(Ordering::Relaxed));
        out
    }
}

#[derive(Clone)]
struct MetricsState {
    metrics: Arc<Metrics>,
    pool: SqlitePool,
}

async fn metrics_page(State(state): State<MetricsState>) -> impl IntoResponse {
    let queued = jobs::count_by_status(&state.pool)
        .await
        .map(|counts| {
            counts
                .into_iter()
                .find(|(s, _)| *s == JobStatus::Queued)
                .map_or(0, |(_, n)| n)
        })
        .unwrap_or(-1);
    let cache_bytes = ci_common::db::cache::ready_bytes(&state.pool)
        .await
        .unwrap_or(-1);
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(queued, cache_bytes),
    )
}

async fn health(State(state): State<MetricsState>) -> impl IntoResponse {
    match db::ping(&state.pool).await {
        Ok(_) => (
            StatusCode::OK,
            axum::Json(serde_json::json!({"status": "ok"})),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(
                serde_json::json!({"status": "error", "error": format!("{:#}", anyhow::Error::from(e))}),
            ),
        ),
    }
}

/// Serves `/metrics` and `/health` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    pool: SqlitePool,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics_page))
        .route("/health", get(health))
        .with_state(MetricsState { metrics, pool });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_counts_outcomes() {
        let m = Metrics::default();
        m.job_finished(JobStatus::Passed, 1.5);
        m.job_finished(JobStatus::Failed, 0.5);
        m.docker_error();
        m.cache_hit();
        m.cache_hit();
        m.cache_miss();
        m.cache_stored(4096);
        m.cache_evicted(3);
        let text = m.render(3, 8192);
        assert!(text.contains("ci_queue_depth 3"));
        assert!(text.contains("ci_jobs_finished_total{outcome=\"passed\"} 1"));
        assert!(text.contains("ci_job_duration_seconds_sum 2.000"));
        assert!(text.contains("ci_job_duration_seconds_count 2"));
        assert!(text.contains("ci_docker_errors_total 1"));
        for line in [
            "ci_cache_hits_total 2",
            "ci_cache_misses_total 1",
            "ci_cache_stored_bytes_total 4096",
            "ci_cache_evictions_total 3",
            "ci_cache_bytes 8192",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
        }
    }
}
