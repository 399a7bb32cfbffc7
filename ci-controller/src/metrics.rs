//! What the controller counts, served with `/health` on `--metrics-addr` by
//! [`ci_metrics::Endpoint`].

use std::net::SocketAddr;

use ci_common::db::{jobs, Db};
use ci_common::JobStatus;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use tokio_util::sync::CancellationToken;

/// Upper bounds of the job duration buckets, in seconds.
const DURATION_BUCKETS: [f64; 12] = [
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1200.0, 1800.0, 3600.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HostLabels {
    host: String,
}

/// What one health check saw of a Docker host (see [`Metrics::set_host`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HostGauges {
    pub healthy: bool,
    /// Jobs it may run at once (0: bounded only by `--max-concurrent-jobs`).
    pub capacity: i64,
    pub running: i64,
    /// CPU in use by its job containers, in thousandths of a core.
    pub cpu_millicores: i64,
    /// Memory in use by its job containers, in bytes.
    pub memory_bytes: i64,
}

/// The controller's metrics. Cheap to clone (every metric is shared).
#[derive(Clone, Debug)]
pub struct Metrics {
    queue_depth: Gauge,
    running: Gauge,
    finished: Family<OutcomeLabels, Counter>,
    duration: Histogram,
    docker_errors: Counter,
    cache_hits: Counter,
    cache_misses: Counter,
    cache_stored_bytes: Counter,
    cache_evictions: Counter,
    cache_bytes: Gauge,
    epoch: Gauge,
    host_healthy: Family<HostLabels, Gauge>,
    host_capacity: Family<HostLabels, Gauge>,
    host_running: Family<HostLabels, Gauge>,
    host_cpu: Family<HostLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    host_memory: Family<HostLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let finished = Family::<OutcomeLabels, Counter>::default();
        // Every outcome has its series from the start, at 0.
        for status in JobStatus::ALL.into_iter().filter(|s| s.is_terminal()) {
            finished.get_or_create_owned(&OutcomeLabels {
                outcome: status.as_str(),
            });
        }
        Self {
            queue_depth: Gauge::default(),
            running: Gauge::default(),
            finished,
            duration: Histogram::new(DURATION_BUCKETS),
            docker_errors: Counter::default(),
            cache_hits: Counter::default(),
            cache_misses: Counter::default(),
            cache_stored_bytes: Counter::default(),
            cache_evictions: Counter::default(),
            cache_bytes: Gauge::default(),
            epoch: Gauge::default(),
            host_healthy: Family::default(),
            host_capacity: Family::default(),
            host_running: Family::default(),
            host_cpu: Family::default(),
            host_memory: Family::default(),
        }
    }
}

impl Metrics {
    pub fn job_finished(&self, status: JobStatus, secs: f64) {
        if status.is_terminal() {
            self.finished
                .get_or_create(&OutcomeLabels {
                    outcome: status.as_str(),
                })
                .inc();
        }
        self.duration.observe(secs.max(0.0));
    }

    pub fn docker_error(&self) {
        self.docker_errors.inc();
    }

    /// A job used a dependency cache entry instead of installing.
    pub fn cache_hit(&self) {
        self.cache_hits.inc();
    }

    /// A job found no dependency cache entry and installs into a new one.
    pub fn cache_miss(&self) {
        self.cache_misses.inc();
    }

    /// A dependency cache entry of `bytes` was published.
    pub fn cache_stored(&self, bytes: u64) {
        self.cache_stored_bytes.inc_by(bytes);
    }

    /// `n` dependency cache entries were evicted (over a cap or unused too long).
    pub fn cache_evicted(&self, n: u64) {
        self.cache_evictions.inc_by(n);
    }

    pub fn set_running(&self, n: usize) {
        self.running.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Sets the gauges of the Docker host `host` (each labelled `host="NAME"`).
    pub fn set_host(&self, host: &str, gauges: HostGauges) {
        let labels = HostLabels { host: host.into() };
        self.host_healthy
            .get_or_create(&labels)
            .set(i64::from(gauges.healthy));
        self.host_capacity
            .get_or_create(&labels)
            .set(gauges.capacity);
        self.host_running.get_or_create(&labels).set(gauges.running);
        self.host_cpu
            .get_or_create(&labels)
            .set(gauges.cpu_millicores as f64 / 1000.0);
        self.host_memory
            .get_or_create(&labels)
            .set(gauges.memory_bytes);
    }

    pub fn set_epoch(&self, epoch: i64) {
        self.epoch.set(epoch);
    }

    /// Sets what the database counts: `queued` jobs and the dependency cache's published bytes
    /// (`cache_bytes`); -1 where it could not be read.
    pub fn set_database_counts(&self, queued: i64, cache_bytes: i64) {
        self.queue_depth.set(queued);
        self.cache_bytes.set(cache_bytes);
    }

    /// Reads what the database counts (before each scrape).
    pub async fn count_database(&self, db: &Db) {
        let queued = jobs::count_by_status(db)
            .await
            .map(|counts| {
                counts
                    .into_iter()
                    .find(|(s, _)| *s == JobStatus::Queued)
                    .map_or(0, |(_, n)| n)
            })
            .unwrap_or(-1);
        let cache_bytes = ci_common::db::cache::ready_bytes(db).await.unwrap_or(-1);
        self.set_database_counts(queued, cache_bytes);
    }

    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ci_queue_depth",
            "Jobs waiting to run",
            self.queue_depth.clone(),
        );
        registry.register(
            "ci_running_jobs",
            "Jobs this controller is running",
            self.running.clone(),
        );
        registry.register(
            "ci_jobs_finished",
            "Jobs finished by this controller, by outcome",
            self.finished.clone(),
        );
        registry.register_with_unit(
            "ci_job_duration",
            "Wall-clock time of finished jobs",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "ci_docker_errors",
            "Failed Docker API calls",
            self.docker_errors.clone(),
        );
        registry.register(
            "ci_cache_hits",
            "Jobs that used a dependency cache entry instead of installing",
            self.cache_hits.clone(),
        );
        registry.register(
            "ci_cache_misses",
            "Jobs that installed into a new dependency cache entry",
            self.cache_misses.clone(),
        );
        registry.register_with_unit(
            "ci_cache_stored",
            "Bytes of dependency cache entries published",
            Unit::Bytes,
            self.cache_stored_bytes.clone(),
        );
        registry.register(
            "ci_cache_evictions",
            "Dependency cache entries evicted (over a cap or unused too long)",
            self.cache_evictions.clone(),
        );
        registry.register(
            "ci_cache_bytes",
            "Bytes of the published dependency cache entries",
            self.cache_bytes.clone(),
        );
        registry.register(
            "ci_controller_epoch",
            "Lease epoch of this controller",
            self.epoch.clone(),
        );
        registry.register(
            "ci_host_healthy",
            "Whether the Docker host answered its last health check (1) or not (0)",
            self.host_healthy.clone(),
        );
        registry.register(
            "ci_host_capacity",
            "Jobs the Docker host may run at once (0: only --max-concurrent-jobs bounds it)",
            self.host_capacity.clone(),
        );
        registry.register(
            "ci_host_running_jobs",
            "Jobs this controller runs on the Docker host",
            self.host_running.clone(),
        );
        registry.register(
            "ci_host_cpu_cores",
            "CPU in use by the job containers of the Docker host, in cores",
            self.host_cpu.clone(),
        );
        registry.register_with_unit(
            "ci_host_memory",
            "Memory in use by the job containers of the Docker host",
            Unit::Bytes,
            self.host_memory.clone(),
        );
    }
}

/// Serves the controller's metrics and `/health` on `addr` until `shutdown`, reading the
/// database's counts at each scrape, and logs the address (`metrics on http://ADDR`; port 0
/// picks a free one).
pub async fn start(
    metrics: &Metrics,
    db: &Db,
    addr: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let mut endpoint = ci_metrics::Endpoint::new(db);
    metrics.register(endpoint.registry_mut());
    let (metrics, db) = (metrics.clone(), db.clone());
    let endpoint = endpoint.on_scrape(move || {
        let (metrics, db) = (metrics.clone(), db.clone());
        async move { metrics.count_database(&db).await }
    });
    let addr = endpoint.start(addr, shutdown).await?;
    tracing::info!("metrics on http://{addr}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use ci_common::testing::TempDb;
    use ci_metrics::scrape::Page;

    use super::*;

    fn page(m: &Metrics) -> Page {
        let mut registry = Registry::default();
        m.register(&mut registry);
        let text = ci_metrics::encode(&registry);
        Page::parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

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
        m.set_database_counts(3, 8192);
        let page = page(&m);
        assert_eq!(page.value("ci_queue_depth", &[]), Some(3.0));
        let finished = |outcome| page.value("ci_jobs_finished_total", &[("outcome", outcome)]);
        assert_eq!(finished("passed"), Some(1.0));
        assert_eq!(finished("failed"), Some(1.0));
        assert_eq!(finished("cancelled"), Some(0.0), "every outcome is there");
        assert_eq!(page.series("ci_jobs_finished_total").count(), 6);
        assert_eq!(page.value("ci_job_duration_seconds_sum", &[]), Some(2.0));
        assert_eq!(page.value("ci_job_duration_seconds_count", &[]), Some(2.0));
        assert_eq!(page.value("ci_docker_errors_total", &[]), Some(1.0));
        for (name, value) in [
            ("ci_cache_hits_total", 2.0),
            ("ci_cache_misses_total", 1.0),
            ("ci_cache_stored_bytes_total", 4096.0),
            ("ci_cache_evictions_total", 3.0),
            ("ci_cache_bytes", 8192.0),
        ] {
            assert_eq!(page.value(name, &[]), Some(value), "{name}");
        }
        assert_eq!(page.kind("ci_cache_bytes"), Some("gauge"));
        assert_eq!(page.kind("ci_cache_hits_total"), Some("counter"));
    }

    #[tokio::test]
    async fn the_database_counts_are_read_at_each_scrape() {
        let db = TempDb::new().await;
        let m = Metrics::default();
        m.count_database(&db.pool.clone().into()).await;
        assert_eq!(page(&m).value("ci_queue_depth", &[]), Some(0.0));
        let user = ci_common::db::users::create(&db.pool, "Ada", "ada@example.com")
            .await
            .unwrap();
        jobs::create(&db.pool, user.id, "test", b"zip")
            .await
            .unwrap();
        m.count_database(&db.pool.clone().into()).await;
        let page = page(&m);
        assert_eq!(page.value("ci_queue_depth", &[]), Some(1.0));
        assert_eq!(page.value("ci_cache_bytes", &[]), Some(0.0));
    }
}
