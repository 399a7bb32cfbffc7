//! The controller's Docker hosts at run time: where the next job goes ([`place`]) and how each
//! host is watched ([`check_host`]: a ping every `--host-check-interval`, the CPU and memory of
//! its job containers, written to the `docker_hosts` table and the metrics).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ci_common::db::docker_hosts::{self, DockerHost};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::docker::Docker;
use crate::metrics::HostGauges;
use crate::runner::Ctx;

/// How long a ping may take before the host counts as not answering.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// What a host's checker last saw; read by the scheduler at every turn.
#[derive(Clone, Debug, PartialEq)]
pub struct HealthState {
    pub healthy: bool,
    /// Since when it has not answered (unhealthy only).
    pub since: Option<DateTime<Utc>>,
    /// Why it is not healthy.
    pub error: Option<String>,
    pub cpu_millicores: Option<i64>,
    pub memory_bytes: Option<i64>,
}

/// One host's health, shared by its checker (which writes it) and the scheduler (which reads
/// it and reports a job task's failed call to the host with [`Health::lost`]).
#[derive(Debug)]
pub struct Health {
    state: Mutex<HealthState>,
    /// Jobs the scheduler runs on the host (for the checker's record).
    pub running: AtomicUsize,
}

impl Default for Health {
    /// A host that answered when the controller connected.
    fn default() -> Self {
        Self {
            state: Mutex::new(HealthState {
                healthy: true,
                since: None,
                error: None,
                cpu_millicores: None,
                memory_bytes: None,
            }),
            running: AtomicUsize::new(0),
        }
    }
}

impl Health {
    pub fn get(&self) -> HealthState {
        self.state.lock().unwrap().clone()
    }

    /// The host did not answer (`error` says how); it takes no new jobs until it answers again.
    /// Returns whether it answered until now.
    pub fn lost(&self, error: String) -> bool {
        let mut state = self.state.lock().unwrap();
        let was = state.healthy;
        if was {
            state.healthy = false;
            state.since = Some(ci_common::db::now());
        }
        state.error = Some(error);
        was
    }

    /// The host answered; returns whether it did not until now.
    fn answered(&self, cpu_millicores: Option<i64>, memory_bytes: Option<i64>) -> bool {
        let mut state = self.state.lock().unwrap();
        let was = state.healthy;
        *state = HealthState {
            healthy: true,
            since: None,
            error: None,
            cpu_millicores,
            memory_bytes,
        };
        !was
    }
}

/// A host as [`place`] sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slot {
    pub healthy: bool,
    pub running: usize,
    /// `None`: bounded only by the controller's maximum.
    pub capacity: Option<usize>,
}

/// The host the next job goes to: a healthy one with a free place, the least loaded first
/// (running ÷ capacity, where a host without a capacity of its own counts `max_jobs`), the
/// earlier in the list on a tie; `None` when every healthy host is full.
pub fn place(slots: &[Slot], max_jobs: usize) -> Option<usize> {
    let capacity = |s: &Slot| s.capacity.unwrap_or(max_jobs).max(1);
    slots
        .iter()
        .enumerate()
        .filter(|(_, s)| s.healthy && s.running < capacity(s))
        // a.running / a.capacity < b.running / b.capacity, without division.
        .min_by(|(i, a), (j, b)| {
            (a.running * capacity(b))
                .cmp(&(b.running * capacity(a)))
                .then(i.cmp(j))
        })
        .map(|(i, _)| i)
}

/// Watches one host until `stop`: pings it every `every`; while it answers, reads the CPU and
/// memory its job containers use (the CPU from the change of their CPU time since the last
/// check); records what it saw in `health`, the `docker_hosts` table and the metrics, and
/// wakes `changed` when the host stops or starts answering.
pub async fn check_host<D: Docker>(
    ctx: Arc<Ctx<D>>,
    url: String,
    capacity: Option<usize>,
    health: Arc<Health>,
    every: Duration,
    changed: Arc<Notify>,
    stop: CancellationToken,
) {
    let mut last_cpu: HashMap<String, u64> = HashMap::new();
    let mut last_at = Instant::now();
    loop {
        let answered = match tokio::time::timeout(PING_TIMEOUT, ctx.docker.ping()).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {PING_TIMEOUT:?}")),
        };
        match answered {
            Ok(()) => {
                let (cpu, memory) = usage(&ctx, &mut last_cpu, last_at.elapsed()).await;
                last_at = Instant::now();
                if health.answered(cpu, memory) {
                    info!(host = ctx.host, "the Docker host answers again");
                    changed.notify_one();
                }
            }
            Err(error) => {
                last_cpu.clear();
                if health.lost(error.clone()) {
                    warn!(host = ctx.host, "the Docker host does not answer: {error}");
                    changed.notify_one();
                }
            }
        }
        let state = health.get();
        let running = health.running.load(Ordering::Relaxed) as i64;
        ctx.metrics.set_host(
            &ctx.host,
            HostGauges {
                healthy: state.healthy,
                capacity: capacity.unwrap_or(0) as i64,
                running,
                cpu_millicores: state.cpu_millicores.unwrap_or(0),
                memory_bytes: state.memory_bytes.unwrap_or(0),
            },
        );
        let row = DockerHost {
            name: ctx.host.clone(),
            url: url.clone(),
            capacity: capacity.map(|c| c as i64),
            healthy: state.healthy,
            running,
            cpu_millicores: state.cpu_millicores,
            memory_bytes: state.memory_bytes,
            error: state.error,
            unhealthy_at: state.since,
            checked_at: ci_common::db::now(),
        };
        if let Err(e) = docker_hosts::record(&ctx.db, ctx.epoch, &row).await {
            warn!(
                host = ctx.host,
                "cannot record the Docker host's health: {e}"
            );
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// The CPU (thousandths of a core, over `elapsed`) and memory (bytes) the host's running job
/// containers use; `None` where Docker's stats could not be read.
async fn usage<D: Docker>(
    ctx: &Ctx<D>,
    last_cpu: &mut HashMap<String, u64>,
    elapsed: Duration,
) -> (Option<i64>, Option<i64>) {
    let Ok(containers) = ctx
        .docker
        .list_containers(&ctx.sandbox.prefix_label())
        .await
    else {
        return (None, None);
    };
    let mut cpu_ns = 0u64;
    let mut memory = 0u64;
    let mut now_cpu = HashMap::new();
    for c in containers.into_iter().filter(|c| c.running) {
        let Ok(used) = ctx.docker.usage(&c.name).await else {
            continue;
        };
        memory += used.memory_bytes;
        if let Some(before) = last_cpu.get(&c.name) {
            cpu_ns += used.cpu_ns.saturating_sub(*before);
        }
        now_cpu.insert(c.name, used.cpu_ns);
    }
    *last_cpu = now_cpu;
    let millicores = (cpu_ns as f64 / elapsed.as_nanos().max(1) as f64 * 1000.0).round() as i64;
    (Some(millicores), Some(memory as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(healthy: bool, running: usize, capacity: Option<usize>) -> Slot {
        Slot {
            healthy,
            running,
            capacity,
        }
    }

    #[test]
    fn jobs_go_to_the_least_loaded_healthy_host_with_room() {
        // Capacities 1 and 2: the first job to the first (tie, earlier), then the second
        // twice (0/2 < 1/1, then 1/2 < 1/1), then nothing.
        let mut slots = [slot(true, 0, Some(1)), slot(true, 0, Some(2))];
        let mut order = Vec::new();
        while let Some(i) = place(&slots, 8) {
            order.push(i);
            slots[i].running += 1;
        }
        assert_eq!(order, [0, 1, 1]);
        assert_eq!(slots.map(|s| s.running), [1, 2], "never past a capacity");
    }

    #[test]
    fn an_unhealthy_host_takes_no_job_and_an_uncapped_one_counts_the_maximum() {
        let slots = [slot(false, 0, Some(4)), slot(true, 3, None)];
        assert_eq!(place(&slots, 4), Some(1));
        assert_eq!(
            place(&slots, 3),
            None,
            "the uncapped host is full at the maximum"
        );
        let slots = [slot(true, 1, None), slot(true, 1, Some(4))];
        assert_eq!(place(&slots, 2), Some(1), "1/4 is less loaded than 1/2");
        assert_eq!(place(&[slot(false, 0, None)], 4), None);
    }
}
