//! The controller loop: one turn at a time (claim, cancel checks, heartbeat, periodic
//! reconciliation), each job in its own task.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use ci_common::api::Outcome;
use ci_common::db::changes::Watcher;
use ci_common::db::jobs::{self, Job};
use ci_common::db::lease::HEARTBEAT_EVERY;
use ci_common::db::{lease, Db};
use ci_common::step::StepState;
use ci_common::{JobId, JobStatus};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use crate::docker::{ContainerSummary, Docker};
use crate::error::{self, JobError};
use crate::fleet::{self, Health};
use crate::runner::{Ctx, JobControl, TaskEnd};
use crate::sandbox::LABEL_JOB;

const RECONCILE_EVERY: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How often the queue watcher looks whether another connection committed.
const WATCH_EVERY: Duration = Duration::from_millis(10);

/// What one turn of the loop did.
#[derive(Debug, PartialEq)]
enum Turn {
    Worked,
    Idle,
}

pub const LOST_REASON: &str = "the controller restarted and found no container for this job";

/// One Docker host of the scheduler: the context its jobs run in, and its health.
pub struct Host<D> {
    pub ctx: Arc<Ctx<D>>,
    /// Where its engine listens, as shown to operators.
    pub url: String,
    /// Jobs it may run at once; `None`: only the controller's maximum bounds it.
    pub capacity: Option<usize>,
    health: Arc<Health>,
    /// Whether the scheduler last saw it healthy (a change is acted on once).
    seen_healthy: bool,
    /// Its jobs left running when it stopped answering were ended `lost`.
    lost_done: bool,
    /// It stopped answering and may hold jobs that had not started a step: they go to another
    /// host.
    replace_pending: bool,
}

impl<D> Host<D> {
    pub fn new(ctx: Arc<Ctx<D>>, url: String, capacity: Option<usize>) -> Self {
        Self {
            ctx,
            url,
            capacity,
            health: Arc::default(),
            seen_healthy: true,
            lost_done: false,
            replace_pending: false,
        }
    }
}

/// How the scheduler watches its hosts.
#[derive(Clone, Copy, Debug)]
pub struct HostTiming {
    /// `--host-check-interval`.
    pub check_every: Duration,
    /// `--host-lost-after`.
    pub lost_after: Duration,
}

struct Owned {
    control: JobControl,
    host: usize,
}

pub struct Scheduler<D> {
    hosts: Vec<Host<D>>,
    timing: HostTiming,
    max_jobs: usize,
    interval: Duration,
    shutdown: CancellationToken,
    tasks: JoinSet<(JobId, TaskEnd)>,
    task_jobs: HashMap<tokio::task::Id, JobId>,
    owned: HashMap<JobId, Owned>,
    last_heartbeat: Instant,
    last_reconcile: Instant,
    /// A job was queued (from the queue watcher).
    queued: Arc<Notify>,
    /// A job task ended (its slot is free), or a host stopped or started answering.
    job_ended: Arc<Notify>,
}

impl<D: Docker> Scheduler<D> {
    /// A scheduler over `hosts` (at least one; the first also serves what is not any one
    /// host's: the database, the lease, the metrics).
    pub fn new(
        hosts: Vec<Host<D>>,
        timing: HostTiming,
        max_jobs: usize,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        assert!(!hosts.is_empty(), "a scheduler needs a Docker host");
        Self {
            hosts,
            timing,
            max_jobs: max_jobs.max(1),
            interval,
            shutdown,
            tasks: JoinSet::new(),
            task_jobs: HashMap::new(),
            owned: HashMap::new(),
            last_heartbeat: Instant::now(),
            last_reconcile: Instant::now(),
            queued: Arc::new(Notify::new()),
            job_ended: Arc::new(Notify::new()),
        }
    }

    /// What is shared by every host's context (database, lease epoch, metrics, settings).
    fn ctx(&self) -> &Arc<Ctx<D>> {
        &self.hosts[0].ctx
    }

    /// Loops until shutdown (`Ok`) or until the lease is lost (`Err`).
    pub async fn run(&mut self) -> anyhow::Result<()> {
        let watching = self.shutdown.child_token();
        let _stop_watching = watching.clone().drop_guard();
        tokio::spawn(watch_queue(
            self.ctx().db.clone(),
            self.queued.clone(),
            watching.clone(),
        ));
        for host in &self.hosts {
            tokio::spawn(fleet::check_host(
                host.ctx.clone(),
                host.url.clone(),
                host.capacity,
                host.health.clone(),
                self.timing.check_every,
                self.job_ended.clone(),
                watching.clone(),
            ));
        }
        let mut backoff = self.interval;
        while !self.shutdown.is_cancelled() {
            let mut wakeable = false;
            let wait = match self.turn().await {
                Ok(Turn::Worked) => {
                    backoff = self.interval;
                    Duration::ZERO
                }
                Ok(Turn::Idle) => {
                    backoff = self.interval;
                    wakeable = true;
                    self.interval
                }
                Err(e) if error::is_lease_lost(&e) => {
                    return Err(e.context("another controller took over the lease; stopping"));
                }
                Err(e) => {
                    warn!("controller turn failed, retrying in {backoff:?}: {e:#}");
                    let wait = backoff;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            if wait.is_zero() {
                tokio::task::yield_now().await;
                continue;
            }
            let can_claim = wakeable && self.owned.len() < self.max_jobs;
            tokio::select! {
                _ = self.shutdown.cancelled() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = self.queued.notified(), if can_claim => {}
                _ = self.job_ended.notified(), if wakeable => {}
            }
        }
        Ok(())
    }

    async fn turn(&mut self) -> anyhow::Result<Turn> {
        let ctx = self.ctx().clone();
        self.reap().await?;
        if self.last_heartbeat.elapsed() >= HEARTBEAT_EVERY {
            lease::heartbeat(&ctx.db, ctx.epoch).await?;
            self.last_heartbeat = Instant::now();
        }
        if !self.owned.is_empty() {
            for id in jobs::cancel_requested(&ctx.db).await? {
                if let Some(owned) = self.owned.get(&id) {
                    if !owned.control.cancel.is_cancelled() {
                        info!(job.id = %id, "cancel requested");
                        owned.control.cancel.cancel();
                    }
                }
            }
        }
        self.watch_hosts().await?;
        if self.last_reconcile.elapsed() >= RECONCILE_EVERY {
            self.last_reconcile = Instant::now();
            self.reconcile(false).await?;
        }
        let mut worked = false;
        while self.owned.len() < self.max_jobs && !self.shutdown.is_cancelled() {
            let Some(host) = fleet::place(&self.slots(), self.max_jobs) else {
                break;
            };
            let on = &self.hosts[host].ctx;
            let claimed = jobs::claim_next_within(
                &ctx.db,
                ctx.epoch,
                &on.sandbox.image,
                &on.host,
                ctx.settings.max_running_per_user,
            )
            .await?;
            match claimed {
                Some(job) => {
                    info!(job.id = %job.id, host = on.host, "claimed job");
                    self.spawn(job, Vec::new(), host);
                    worked = true;
                }
                None => break,
            }
        }
        self.count_running();
        Ok(if worked { Turn::Worked } else { Turn::Idle })
    }

    /// Each host as [`fleet::place`] sees it.
    fn slots(&self) -> Vec<fleet::Slot> {
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| fleet::Slot {
                healthy: h.seen_healthy,
                running: self.owned.values().filter(|o| o.host == i).count(),
                capacity: h.capacity,
            })
            .collect()
    }

    fn count_running(&self) {
        for (i, host) in self.hosts.iter().enumerate() {
            let running = self.owned.values().filter(|o| o.host == i).count();
            host.health.running.store(running, Ordering::Relaxed);
        }
        self.ctx().metrics.set_running(self.owned.len());
    }

    /// Acts on what the host checkers saw: a host that stopped answering takes no new jobs and
    /// its job tasks let go of their containers (the jobs stay `running`); once it has not
    /// answered for `--host-lost-after`, those jobs end `lost`, naming it. A host that answers
    /// again is reconciled: its jobs' containers are reattached (or harvested when they exited
    /// meanwhile), and containers of jobs that ended meanwhile are removed.
    async fn watch_hosts(&mut self) -> anyhow::Result<()> {
        for i in 0..self.hosts.len() {
            let state = self.hosts[i].health.get();
            let host = &mut self.hosts[i];
            match (state.healthy, host.seen_healthy) {
                (false, true) => {
                    host.seen_healthy = false;
                    host.lost_done = false;
                    host.replace_pending = true;
                    warn!(
                        host = host.ctx.host,
                        "the Docker host does not answer: it takes no new jobs; its running \
                         jobs wait {:?} for it",
                        self.timing.lost_after
                    );
                    for owned in self.owned.values().filter(|o| o.host == i) {
                        owned.control.shutdown.cancel();
                    }
                }
                (true, false) => {
                    host.seen_healthy = true;
                    info!(host = host.ctx.host, "the Docker host takes jobs again");
                    self.reconcile_host(i, false).await?;
                }
                _ => {}
            }
            let host = &self.hosts[i];
            let since = state.since.unwrap_or_else(ci_common::db::now);
            let waited = (ci_common::db::now() - since).to_std().unwrap_or_default();
            if !state.healthy && !host.lost_done && waited >= self.timing.lost_after {
                self.end_lost_jobs(i, since).await?;
                self.hosts[i].lost_done = true;
                self.hosts[i].replace_pending = false;
            }
        }
        for i in 0..self.hosts.len() {
            if !self.hosts[i].seen_healthy && self.hosts[i].replace_pending {
                self.hosts[i].replace_pending = !self.replace_unstarted(i).await?;
            }
        }
        Ok(())
    }

    /// Places elsewhere the jobs of host `i` (which does not answer) that no task follows and
    /// that had not started a step: nothing of theirs ran, so they start afresh on a healthy
    /// host with a free place. Returns whether none is left to move (false: no place yet).
    async fn replace_unstarted(&mut self, i: usize) -> anyhow::Result<bool> {
        let ctx = self.ctx().clone();
        for job in jobs::running(&ctx.db).await? {
            if self.host_of(&job) != Some(i) || self.owned.contains_key(&job.id) {
                continue;
            }
            let steps = ci_common::db::steps::list(&ctx.db, job.id).await?;
            if steps.iter().any(|s| s.state != StepState::Pending) {
                continue;
            }
            let Some(to) = fleet::place(&self.slots(), self.max_jobs) else {
                return Ok(false);
            };
            if self.owned.len() >= self.max_jobs {
                return Ok(false);
            }
            let name = self.hosts[to].ctx.host.clone();
            if jobs::move_to_host(&ctx.db, ctx.epoch, job.id, &name).await? {
                self.hosts[i].ctx.release_pip_cache(&job);
                info!(job.id = %job.id, from = self.hosts[i].ctx.host, to = name, "the job had not started: placing it on another host");
                let mut job = job;
                job.host = Some(name);
                self.spawn(job, Vec::new(), to);
            }
        }
        Ok(true)
    }

    /// Ends `lost` the running jobs of host `i` that no task follows (they waited for it past
    /// `--host-lost-after`). Containers found later for them are removed by the reconciliation,
    /// without changing their state.
    async fn end_lost_jobs(&mut self, i: usize, since: DateTime<Utc>) -> anyhow::Result<()> {
        let ctx = self.hosts[i].ctx.clone();
        let reason = format!(
            "the Docker host {} stopped answering at {} and did not answer again within {:?}",
            ctx.host,
            since.format("%Y-%m-%d %H:%M:%S UTC"),
            self.timing.lost_after
        );
        for job in jobs::running(&ctx.db).await? {
            if self.host_of(&job) != Some(i) || self.owned.contains_key(&job.id) {
                continue;
            }
            warn!(job.id = %job.id, host = ctx.host, "the job's Docker host is lost: marking it lost");
            let outcome = Outcome::new(JobStatus::Lost).with_reason(reason.clone());
            jobs::finish(&ctx.db, job.id, Some(ctx.epoch), &outcome).await?;
            ctx.metrics.job_finished(JobStatus::Lost, 0.0);
            ctx.release_pip_cache(&job);
        }
        Ok(())
    }

    /// The host a running job was placed on: its recorded host, or the first host for a job
    /// that records none (claimed before there were hosts); `None` for a host no longer in the
    /// list.
    fn host_of(&self, job: &Job) -> Option<usize> {
        match job.host.as_deref() {
            None => Some(0),
            Some(name) => self.hosts.iter().position(|h| h.ctx.host == name),
        }
    }

    fn spawn(&mut self, job: Job, found: Vec<ContainerSummary>, host: usize) {
        let control = JobControl {
            cancel: CancellationToken::new(),
            // Shutdown detaches every job; a host that stops answering detaches its own.
            shutdown: self.shutdown.child_token(),
        };
        let id = job.id;
        self.owned.insert(
            id,
            Owned {
                control: control.clone(),
                host,
            },
        );
        let ctx = self.hosts[host].ctx.clone();
        let ended = self.job_ended.clone();
        let span = tracing::info_span!("job", job.id = %id);
        let task = async move {
            let end = ctx.run_job(job, found, control).await;
            ended.notify_one();
            (id, end)
        };
        let handle = self.tasks.spawn(task.instrument(span));
        self.task_jobs.insert(handle.id(), id);
    }

    /// Collects ended job tasks. A panicked task's job ends as `error`.
    async fn reap(&mut self) -> anyhow::Result<()> {
        while let Some(result) = self.tasks.try_join_next_with_id() {
            match result {
                Ok((task, (id, end))) => {
                    self.task_jobs.remove(&task);
                    let owned = self.owned.remove(&id);
                    match end {
                        TaskEnd::LeaseLost => {
                            return Err(JobError::LeaseLost(self.ctx().epoch).into())
                        }
                        TaskEnd::Failed(e) => {
                            error!(job.id = %id, "cannot record the end of the job: {e}")
                        }
                        TaskEnd::HostLost => {
                            if let Some(owned) = owned {
                                let host = &mut self.hosts[owned.host];
                                host.health.lost("a job's call to it failed".into());
                                host.replace_pending = true;
                            }
                        }
                        TaskEnd::Detached => {
                            if let Some(owned) = owned {
                                let host = &mut self.hosts[owned.host];
                                host.replace_pending |= !host.seen_healthy;
                            }
                        }
                        TaskEnd::Finished(_) => {}
                    }
                }
                Err(join) => {
                    let Some(id) = self.task_jobs.remove(&join.id()) else {
                        continue;
                    };
                    let host = self.owned.remove(&id).map_or(0, |o| o.host);
                    let ctx = self.hosts[host].ctx.clone();
                    error!(job.id = %id, "the job's task failed: {join}");
                    let outcome = Outcome::new(JobStatus::Error)
                        .with_reason("the controller hit an internal error while running this job");
                    jobs::finish(&ctx.db, id, Some(ctx.epoch), &outcome).await?;
                    ctx.cleanup(id).await;
                }
            }
        }
        Ok(())
    }

    /// Reconciles every host that answers (see [`Self::reconcile_host`]), ends `lost` the
    /// running jobs of hosts no longer in the list, and removes sources and artifacts past
    /// their retention.
    pub async fn reconcile(&mut self, startup: bool) -> anyhow::Result<()> {
        let ctx = self.ctx().clone();
        for i in 0..self.hosts.len() {
            if self.hosts[i].seen_healthy {
                self.reconcile_host(i, startup).await?;
            }
        }
        for job in jobs::running(&ctx.db).await? {
            if self.host_of(&job).is_none() && !self.owned.contains_key(&job.id) {
                let host = job.host.as_deref().unwrap_or_default();
                warn!(job.id = %job.id, host, "running job's Docker host is no longer configured: marking it lost");
                let outcome = Outcome::new(JobStatus::Lost).with_reason(format!(
                    "the controller restarted without the Docker host {host} this job ran on"
                ));
                jobs::finish(&ctx.db, job.id, Some(ctx.epoch), &outcome).await?;
                ctx.metrics.job_finished(JobStatus::Lost, 0.0);
            }
        }
        match ci_common::db::uploads::expire(&ctx.db, ctx.settings.source_retain).await {
            Ok(0) => {}
            Ok(n) => info!(sources = n, "removed sources past their retention"),
            Err(e) => warn!("cannot remove expired sources: {e}"),
        }
        if !ctx.settings.artifact_retain.is_zero() {
            let prefix = ci_common::tasks::ARTIFACTS_PREFIX;
            match ci_common::db::blobs::expire(&ctx.db, prefix, ctx.settings.artifact_retain).await
            {
                Ok(0) => {}
                Ok(n) => info!(artifacts = n, "removed artifacts past their retention"),
                Err(e) => warn!("cannot remove expired artifacts: {e}"),
            }
        }
        Ok(())
    }

    /// Matches the containers with this controller's prefix on host `i` to jobs: the host's
    /// running jobs are reattached, containers of ended, unknown or other hosts' jobs are
    /// removed, the host's running jobs without a container are `lost`, and volumes no job of
    /// the host needs are removed. Jobs owned by a live task are left alone.
    async fn reconcile_host(&mut self, i: usize, startup: bool) -> anyhow::Result<()> {
        let ctx = self.hosts[i].ctx.clone();
        let owned_here =
            |owned: &HashMap<JobId, Owned>, id: &JobId| owned.get(id).is_some_and(|o| o.host == i);
        let label = ctx.sandbox.prefix_label();
        let containers = ctx.docker.list_containers(&label).await.map_err(|e| {
            anyhow::anyhow!(
                "cannot list containers on the Docker host {}: {e}",
                ctx.host
            )
        })?;
        let mut by_job: HashMap<Option<JobId>, Vec<ContainerSummary>> = HashMap::new();
        for c in containers {
            let id = c.labels.get(LABEL_JOB).and_then(|s| s.parse().ok());
            by_job.entry(id).or_default().push(c);
        }
        for job in jobs::running(&ctx.db).await? {
            if self.host_of(&job) != Some(i) {
                continue;
            }
            if self.owned.contains_key(&job.id) {
                by_job.remove(&Some(job.id));
                continue;
            }
            match by_job.remove(&Some(job.id)) {
                Some(found) if !found.is_empty() => {
                    info!(job.id = %job.id, host = ctx.host, startup, "found the container of a running job");
                    self.spawn(job, found, i);
                }
                _ => {
                    warn!(job.id = %job.id, host = ctx.host, "running job has no container: marking it lost");
                    let outcome = Outcome::new(JobStatus::Lost).with_reason(LOST_REASON);
                    jobs::finish(&ctx.db, job.id, Some(ctx.epoch), &outcome).await?;
                    ctx.metrics.job_finished(JobStatus::Lost, 0.0);
                    ctx.cleanup(job.id).await;
                }
            }
        }
        for (id, found) in by_job {
            if id.is_some_and(|id| owned_here(&self.owned, &id)) {
                continue;
            }
            for c in found {
                info!(
                    container = c.name,
                    host = ctx.host,
                    "removing a container no running job needs"
                );
                if let Err(e) = ctx.docker.remove_container(&c.name).await {
                    ctx.metrics.docker_error();
                    warn!("cannot remove container {}: {e}", c.name);
                }
            }
        }
        ctx.sweep_cache(true).await;
        let volumes = ctx.docker.list_volumes(&label).await.map_err(|e| {
            anyhow::anyhow!("cannot list volumes on the Docker host {}: {e}", ctx.host)
        })?;
        for v in volumes {
            let id: Option<JobId> = v.labels.get(LABEL_JOB).and_then(|s| s.parse().ok());
            if id.is_some_and(|id| owned_here(&self.owned, &id)) {
                continue;
            }
            info!(
                volume = v.name,
                host = ctx.host,
                "removing a volume no running job needs"
            );
            if let Err(e) = ctx.docker.remove_volume(&v.name).await {
                ctx.metrics.docker_error();
                warn!("cannot remove volume {}: {e}", v.name);
            }
        }
        Ok(())
    }

    /// Shutdown: tells every job task to write what it has read and stop following, and waits
    /// for them. Their containers keep running for the next controller.
    pub async fn detach_all(&mut self) {
        self.shutdown.cancel();
        let wait = async {
            while let Some(result) = self.tasks.join_next().await {
                if let Ok((id, end)) = result {
                    info!(job.id = %id, ?end, "job task stopped");
                }
            }
        };
        if tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .is_err()
        {
            warn!("some job tasks did not stop within 30s");
            self.tasks.abort_all();
        }
    }
}

/// Wakes the claim loop soon after a job is queued, instead of at the next `--interval`: the
/// database's change watcher ([`Watcher`]: `PRAGMA data_version` on SQLite, `LISTEN` on
/// PostgreSQL) wakes whenever another process (a server replica queueing a job, or anything
/// else) commits; only then is the queue read.
async fn watch_queue(db: Db, queued: Arc<Notify>, stop: CancellationToken) {
    let mut watcher: Option<Watcher> = None;
    loop {
        let w = match &mut watcher {
            Some(w) => w,
            None => match Watcher::open(&db, WATCH_EVERY).await {
                Ok(w) => watcher.insert(w),
                Err(e) => {
                    warn!("cannot open the queue watcher (the claim loop still polls): {e}");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(MAX_BACKOFF) => continue,
                    }
                }
            },
        };
        let changed = tokio::select! {
            _ = stop.cancelled() => return,
            changed = w.changed() => changed,
        };
        let checked = match changed {
            Ok(()) => jobs::any_queued(&db).await,
            Err(e) => Err(e),
        };
        match checked {
            Ok(true) => queued.notify_one(),
            Ok(false) => {}
            Err(e) => {
                warn!("the queue watcher failed (the claim loop still polls): {e}");
                watcher = None;
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(MAX_BACKOFF) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ci_common::db::users;
    use ci_common::testing::backends;

    #[tokio::test]
    async fn the_queue_watcher_wakes_the_claim_loop_when_a_job_is_queued() {
        for backend in backends().await {
            let db = backend.db();
            let queued = Arc::new(Notify::new());
            let stop = CancellationToken::new();
            let user = users::create(&db, "Ada", "ada@example.com").await.unwrap();
            tokio::spawn(watch_queue(db.clone(), queued.clone(), stop.clone()));
            assert!(
                tokio::time::timeout(Duration::from_millis(300), queued.notified())
                    .await
                    .is_err(),
                "no job, no wake ({backend:?})"
            );
            jobs::create(&db, user.id, "test", b"zip").await.unwrap();
            tokio::time::timeout(Duration::from_secs(2), queued.notified())
                .await
                .unwrap_or_else(|_| panic!("woken soon after the job is queued ({backend:?})"));
            stop.cancel();
        }
    }
}
