//! The controller loop: one turn at a time (claim, cancel checks, heartbeat, periodic
//! reconciliation), each job in its own task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ci_common::api::Outcome;
use ci_common::db::changes::Watcher;
use ci_common::db::jobs::{self, Job};
use ci_common::db::lease::HEARTBEAT_EVERY;
use ci_common::db::{lease, Db};
use ci_common::{JobId, JobStatus};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn, Instrument};

use crate::docker::{ContainerSummary, Docker};
use crate::error::{self, JobError};
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

pub struct Scheduler<D> {
    ctx: Arc<Ctx<D>>,
    max_jobs: usize,
    interval: Duration,
    shutdown: CancellationToken,
    tasks: JoinSet<(JobId, TaskEnd)>,
    task_jobs: HashMap<tokio::task::Id, JobId>,
    owned: HashMap<JobId, JobControl>,
    last_heartbeat: Instant,
    last_reconcile: Instant,
    /// A job was queued (from the queue watcher).
    queued: Arc<Notify>,
    /// A job task ended (its slot is free).
    job_ended: Arc<Notify>,
}

impl<D: Docker> Scheduler<D> {
    pub fn new(
        ctx: Arc<Ctx<D>>,
        max_jobs: usize,
        interval: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            ctx,
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

    /// Loops until shutdown (`Ok`) or until the lease is lost (`Err`).
    pub async fn run(&mut self) -> anyhow::Result<()> {
        let watching = self.shutdown.child_token();
        let _stop_watching = watching.clone().drop_guard();
        tokio::spawn(watch_queue(
            self.ctx.db.clone(),
            self.queued.clone(),
            watching,
        ));
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
        let ctx = self.ctx.clone();
        self.reap().await?;
        if self.last_heartbeat.elapsed() >= HEARTBEAT_EVERY {
            lease::heartbeat(&ctx.db, ctx.epoch).await?;
            self.last_heartbeat = Instant::now();
        }
        if !self.owned.is_empty() {
            for id in jobs::cancel_requested(&ctx.db).await? {
                if let Some(control) = self.owned.get(&id) {
                    if !control.cancel.is_cancelled() {
                        info!(job.id = %id, "cancel requested");
                        control.cancel.cancel();
                    }
                }
            }
        }
        if self.last_reconcile.elapsed() >= RECONCILE_EVERY {
            self.last_reconcile = Instant::now();
            self.reconcile(false).await?;
        }
        let mut worked = false;
        while self.owned.len() < self.max_jobs && !self.shutdown.is_cancelled() {
            match jobs::claim_next(&ctx.db, ctx.epoch, &ctx.sandbox.image).await? {
                Some(job) => {
                    info!(job.id = %job.id, "claimed job");
                    self.spawn(job, Vec::new());
                    worked = true;
                }
                None => break,
            }
        }
        self.ctx.metrics.set_running(self.owned.len());
        Ok(if worked { Turn::Worked } else { Turn::Idle })
    }

    fn spawn(&mut self, job: Job, found: Vec<ContainerSummary>) {
        let control = JobControl {
            cancel: CancellationToken::new(),
            shutdown: self.shutdown.clone(),
        };
        let id = job.id;
        self.owned.insert(id, control.clone());
        let ctx = self.ctx.clone();
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
                    self.owned.remove(&id);
                    match end {
                        TaskEnd::LeaseLost => {
                            return Err(JobError::LeaseLost(self.ctx.epoch).into())
                        }
                        TaskEnd::Failed(e) => {
                            error!(job.id = %id, "cannot record the end of the job: {e}")
                        }
                        TaskEnd::Finished(_) | TaskEnd::Detached => {}
                    }
                }
                Err(join) => {
                    let Some(id) = self.task_jobs.remove(&join.id()) else {
                        continue;
                    };
                    self.owned.remove(&id);
                    error!(job.id = %id, "the job's task failed: {join}");
                    let outcome = Outcome::new(JobStatus::Error)
                        .with_reason("the controller hit an internal error while running this job");
                    jobs::finish(&self.ctx.db, id, Some(self.ctx.epoch), &outcome).await?;
                    self.ctx.cleanup(id).await;
                }
            }
        }
        Ok(())
    }

    /// Matches containers with this controller's prefix to jobs: running jobs are reattached,
    /// containers of ended or unknown jobs are removed, running jobs without a container are
    /// `lost`, and volumes no job needs are removed. Jobs owned by a live task are left alone.
    pub async fn reconcile(&mut self, startup: bool) -> anyhow::Result<()> {
        let ctx = self.ctx.clone();
        let label = ctx.sandbox.prefix_label();
        let containers = ctx
            .docker
            .list_containers(&label)
            .await
            .map_err(|e| anyhow::anyhow!("cannot list containers: {e}"))?;
        let mut by_job: HashMap<Option<JobId>, Vec<ContainerSummary>> = HashMap::new();
        for c in containers {
            let id = c.labels.get(LABEL_JOB).and_then(|s| s.parse().ok());
            by_job.entry(id).or_default().push(c);
        }
        for job in jobs::running(&ctx.db).await? {
            if self.owned.contains_key(&job.id) {
                by_job.remove(&Some(job.id));
                continue;
            }
            match by_job.remove(&Some(job.id)) {
                Some(found) if !found.is_empty() => {
                    info!(job.id = %job.id, startup, "found the container of a running job");
                    self.spawn(job, found);
                }
                _ => {
                    warn!(job.id = %job.id, "running job has no container: marking it lost");
                    let outcome = Outcome::new(JobStatus::Lost).with_reason(LOST_REASON);
                    jobs::finish(&ctx.db, job.id, Some(ctx.epoch), &outcome).await?;
                    ctx.metrics.job_finished(JobStatus::Lost, 0.0);
                    ctx.cleanup(job.id).await;
                }
            }
        }
        for (id, found) in by_job {
            if id.is_some_and(|id| self.owned.contains_key(&id)) {
                continue;
            }
            for c in found {
                info!(
                    container = c.name,
                    "removing a container no running job needs"
                );
                if let Err(e) = ctx.docker.remove_container(&c.name).await {
                    ctx.metrics.docker_error();
                    warn!("cannot remove container {}: {e}", c.name);
                }
            }
        }
        ctx.sweep_cache(true).await;
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
        let volumes = ctx
            .docker
            .list_volumes(&label)
            .await
            .map_err(|e| anyhow::anyhow!("cannot list volumes: {e}"))?;
        for v in volumes {
            let id: Option<JobId> = v.labels.get(LABEL_JOB).and_then(|s| s.parse().ok());
            if id.is_some_and(|id| self.owned.contains_key(&id)) {
                continue;
            }
            info!(volume = v.name, "removing a volume no running job needs");
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
