//! One job from claim (or reattach) to its end: the workspace, its plan of steps, each step in
//! its container (the same code for every kind of step: start, reattach, log, cancel, timeout,
//! exit code), and the job's outcome.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use ci_common::api::Outcome;
use ci_common::cache::{install_key, ZipFiles};
use ci_common::config::human_bytes;
use ci_common::db::blobs::{self, BlobCaps, BlobError};
use ci_common::db::cache::{self, CacheBounds, Published};
use ci_common::db::jobs::{self, Job};
use ci_common::db::secret_variables::{self, SecretOwner};
use ci_common::db::steps::{self, StepRow};
use ci_common::db::test_results::{self, Attempts};
use ci_common::db::{git_credentials, uploads, Db};
use ci_common::git::{self, FETCH_STEP};
use ci_common::policy::Policy;
use ci_common::project::{Install, Installer, RootFiles};
use ci_common::results::{read_report, ReportCaps, TestOutcome};
use ci_common::step::{ExitRule, Network, StepCache, StepSpec, INSTALL_STEP};
use ci_common::tasks::{
    artifact_matcher, plan_task, ARTIFACTS_PREFIX, MAX_ARTIFACT_BYTES, MAX_ARTIFACT_FILES,
};
use ci_common::{JobId, JobStatus, StepState};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::archive::{files_to_zip, zip_to_tar, MountDirs};
use crate::config::human_size;
use crate::docker::{ContainerState, ContainerSummary, Docker, DockerError, FileCaps, Select};
use crate::error::{self, JobError};
use crate::logs::{Cursor, LogCap, LogParser, LogSink, Masker};
use crate::metrics::Metrics;
use crate::sandbox::{
    container_config, results_file, step_of, Run, Sandbox, DEPS, LABEL_JOB, WORKDIR, WORKSPACE,
};
use ci_common::archive::root_files;

/// Settings of job execution that are not container settings.
#[derive(Clone, Debug)]
pub struct JobSettings {
    pub job_timeout: Duration,
    pub stop_grace: Duration,
    pub max_line_bytes: usize,
    pub log_cap: LogCap,
    pub workspace_size: u64,
    /// Largest test report read from a test step, in bytes.
    pub report_max_bytes: u64,
    /// The bounds of the dependency cache.
    pub cache: CacheBounds,
    /// The installer the operator forces (`pip`, `uv`), or `auto` (the project's choice).
    pub installer: Installer,
    /// How long uploaded sources are kept after their last use.
    pub source_retain: Duration,
    /// How long artifacts are kept (zero: with the job's record).
    pub artifact_retain: Duration,
    /// Time limit of the fetch step of a job from git.
    pub git_timeout: Duration,
    /// Most running jobs one user may have (0: no limit beyond the fair claim).
    pub max_running_per_user: u32,
    /// The key that opens users' git credentials (`--secrets-key-file`).
    pub secrets: Option<ci_common::secrets::SecretsKey>,
    pub uid: u64,
    pub gid: u64,
}

/// What every job task shares.
pub struct Ctx<D> {
    /// The Docker host this context runs jobs on: its name (see [`crate::hosts`]) and engine.
    pub host: String,
    pub docker: D,
    pub db: Db,
    pub epoch: i64,
    /// What the operator allows (published for the server at start).
    pub policy: Policy,
    pub sandbox: Sandbox,
    pub settings: JobSettings,
    pub metrics: Arc<Metrics>,
    /// Users whose pip cache an install step of theirs is using (one at a time per user, so
    /// that concurrent installs never write the same cache).
    pub pip_cache_busy: std::sync::Mutex<std::collections::HashMap<ci_common::UserId, JobId>>,
    /// When each image was last seen present, and its ID (it is not inspected again for every
    /// job).
    pub image_seen: std::sync::Mutex<std::collections::HashMap<String, (Instant, String)>>,
}

/// How long a dependency cache entry just chosen by a job is kept from removal (the job stores
/// its plan, which then protects it, within this).
const CACHE_GRACE: Duration = Duration::from_secs(10);

/// How many flaky tests the job's log and reason name before "and N more".
const FLAKY_NAMED: usize = 5;

/// How long an image seen present is trusted without inspecting it again.
const IMAGE_SEEN_FOR: Duration = Duration::from_secs(30);

/// How long a step killed with SIGKILL (not by the controller) waits for Docker's `oom` event,
/// which can come after the exit (measured under gVisor: up to about a second after the kill).
const LATE_OOM_WAIT: Duration = Duration::from_secs(1);

/// Signals a job task listens to.
#[derive(Clone, Debug, Default)]
pub struct JobControl {
    /// The user asked to cancel the job.
    pub cancel: CancellationToken,
    /// The controller is shutting down: stop following, leave the container running.
    pub shutdown: CancellationToken,
}

/// How a job task ended.
#[derive(Debug)]
pub enum TaskEnd {
    /// The job reached a terminal state.
    Finished(JobStatus),
    /// The controller is shutting down; the job keeps running in its container.
    Detached,
    /// Another controller holds the lease: this one must stop.
    LeaseLost,
    /// The job's Docker host stopped answering: the job stays `running`, left to the host-loss
    /// rule (reattached if the host answers again in time, `lost` past it).
    HostLost,
    /// The job could not be finished in the database (it stays `running` for reconciliation).
    Failed(String),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum StopKind {
    Cancel,
    Timeout,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct Stop {
    kind: StopKind,
    killed: bool,
}

impl Stop {
    /// The state of the step that was stopped.
    fn step_state(self) -> StepState {
        match self.kind {
            StopKind::Cancel => StepState::Cancelled,
            StopKind::Timeout => StepState::TimedOut,
        }
    }
}

enum StepEnd {
    Exited(ContainerState, Option<Stop>),
    /// Stopped before the container started.
    StoppedBefore(StopKind),
    Detached,
}

enum Flow {
    Done(Outcome),
    Detached,
}

/// Whether a step's container ran before the step ended.
#[derive(Clone, Copy, PartialEq)]
enum EndKind {
    Before,
    Ran,
}

/// How a step begins.
enum Start {
    /// Create and start a new container, uploading the project first if given.
    Fresh(Option<Bytes>),
    /// Continue the step's existing container: follow its log after `cursor`.
    Resume { cursor: Option<Cursor> },
}

/// The steps of a job of `task`, decided from the job and its project's root files in one
/// place: the task's plan (see [`plan_task`]) in the job's image (checked against the
/// operator's policy), installing with the operator's `installer` unless it leaves the choice to
/// the project. Also returns what the job says about a skipped install step.
///
/// # Errors
///
/// Why the job cannot run: an unknown task, an image the operator does not allow, a broken
/// project configuration.
pub fn plan_steps(
    job: &Job,
    default_image: &str,
    policy: &Policy,
    root: &RootFiles,
    installer: Installer,
) -> Result<(Vec<StepSpec>, Option<String>), String> {
    let image = job
        .image
        .clone()
        .unwrap_or_else(|| default_image.to_owned());
    policy.check_image(&image).map_err(|e| e.to_string())?;
    let (steps, skipped) =
        plan_task(root, &job.task, &image, &job.args(), installer).map_err(|e| e.to_string())?;
    if job.git_url.is_some() && steps.iter().any(|s| s.name == FETCH_STEP) {
        return Err(format!(
            "the project has a task named {FETCH_STEP:?}, the name of the step that fetches a \
             job from git: rename the task in pyproject.toml"
        ));
    }
    // A task may name its own image: every step's must be allowed.
    for step in &steps {
        policy.check_image(&step.image).map_err(|e| e.to_string())?;
    }
    Ok((steps, skipped))
}

/// A duration as people write it: `10s`, `5m`, `1h`, `1.5s`.
pub fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 {
        format!("{:.1}s", d.as_secs_f64())
    } else if secs >= 3600 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs >= 60 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

/// The outcome of a step whose container was killed for using too much memory.
fn oom_outcome(spec: &StepSpec, state: &ContainerState, memory: u64) -> Outcome {
    let mut outcome = Outcome::new(JobStatus::Error)
        .with_reason(format!(
            "out of memory: {} (step {}) used more than the memory limit of {} and the process was killed",
            spec.title,
            spec.name,
            human_size(memory)
        ))
        .with_exit_code(state.exit_code);
    outcome.oom_killed = true;
    outcome
}

/// What a step's container that exited means: the step's state and the job's outcome.
pub fn step_result(spec: &StepSpec, state: &ContainerState, memory: u64) -> (StepState, Outcome) {
    if state.oom_killed {
        return (StepState::Error, oom_outcome(spec, state, memory));
    }
    spec.exit_outcome(state.exit_code)
}

fn stopped_outcome(stop: Stop, state: Option<&ContainerState>, s: &JobSettings) -> Outcome {
    let (status, what) = match stop.kind {
        StopKind::Cancel => (JobStatus::Cancelled, "cancelled by the user".to_owned()),
        StopKind::Timeout => (
            JobStatus::TimedOut,
            format!("timed out after {}", human_duration(s.job_timeout)),
        ),
    };
    let how = match (state, stop.killed) {
        (None, _) => "before its container started".to_owned(),
        (Some(_), false) => "stopped with SIGTERM".to_owned(),
        (Some(_), true) => format!(
            "killed with SIGKILL after {} grace",
            human_duration(s.stop_grace)
        ),
    };
    let mut outcome = Outcome::new(status).with_reason(format!("{what}; {how}"));
    if let Some(state) = state {
        outcome.exit_code = Some(state.exit_code);
    }
    outcome
}

fn error(reason: impl Into<String>) -> Flow {
    Flow::Done(Outcome::new(JobStatus::Error).with_reason(reason))
}

/// The reason of a job whose image is missing.
pub fn missing_image_reason(image: &str, host: &str, pull_error: &str) -> String {
    format!(
        "the image {image} is not on the Docker host {host} and could not be pulled \
         ({pull_error}); without a registry, build the offline runner image there with \
         scripts/build-runner-image.sh (or copy it: docker save {image} | docker -H <that \
         host> load) and start the controller with --image ci-runner:bookworm"
    )
}

impl<D: Docker> Ctx<D> {
    /// Runs (or, with `found` containers, continues) a job to its end. Never panics the
    /// controller: failures end the job as `error`.
    pub async fn run_job(
        self: Arc<Self>,
        job: Job,
        found: Vec<ContainerSummary>,
        control: JobControl,
    ) -> TaskEnd {
        let id = job.id;
        let started = Instant::now();
        let mut sink = LogSink::new(
            self.db.clone(),
            job.id,
            self.epoch,
            self.settings.log_cap,
            job.log_lines.max(0) as u64,
            job.log_bytes.max(0) as u64,
        );
        let flow = self.drive(&job, &found, &control, &mut sink).await;
        // Whichever way the job went, what its log writer was given is stored before its end
        // (and a writer that failed, for example on a lost lease, decides the job's end).
        let stored = sink.sync().await;
        drop(sink);
        let flow = match (flow, stored) {
            (Err(e), _) => Err(e),
            (Ok(flow), Ok(())) => Ok(flow),
            (Ok(_), Err(e)) => Err(anyhow::Error::from(e)),
        };
        let outcome = match flow {
            Ok(Flow::Detached) => return TaskEnd::Detached,
            Ok(Flow::Done(outcome)) => outcome,
            Err(e) if error::is_lease_lost(&e) => return TaskEnd::LeaseLost,
            Err(e) if self.docker.ping().await.is_err() => {
                warn!(job.id = %id, host = self.host, "the job's Docker host does not answer: {e:#}");
                return TaskEnd::HostLost;
            }
            Err(e) => {
                warn!(job.id = %id, "job failed inside the controller: {e:#}");
                Outcome::new(JobStatus::Error).with_reason(format!("{e:#}"))
            }
        };
        let end = match jobs::finish(&self.db, id, Some(self.epoch), &outcome).await {
            Ok(_) => {
                info!(job.id = %id, status = %outcome.status, reason = outcome.reason.as_deref().unwrap_or(""), "job finished");
                let secs = job
                    .started_at
                    .map(|t| (chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0)
                    .unwrap_or_else(|| started.elapsed().as_secs_f64());
                self.metrics.job_finished(outcome.status, secs);
                TaskEnd::Finished(outcome.status)
            }
            Err(e) => match JobError::from(e) {
                e if e.is_lease_lost() => return TaskEnd::LeaseLost,
                e => TaskEnd::Failed(format!("{:#}", anyhow::Error::from(e))),
            },
        };
        self.release_pip_cache(&job);
        self.cleanup(id).await;
        end
    }

    /// Removes a job's containers (every step's) and volume.
    pub async fn cleanup(&self, id: JobId) {
        let containers = match self
            .docker
            .list_containers(&format!("{LABEL_JOB}={id}"))
            .await
        {
            Ok(containers) => containers,
            Err(e) => {
                self.metrics.docker_error();
                warn!(job.id = %id, "cannot list the job's containers: {e}");
                Vec::new()
            }
        };
        for container in containers {
            if let Err(e) = self.docker.remove_container(&container.name).await {
                self.metrics.docker_error();
                warn!(job.id = %id, "cannot remove container {}: {e}", container.name);
            }
        }
        let volume = self.sandbox.volume_name(id);
        if let Err(e) = self.docker.remove_volume(&volume).await {
            self.metrics.docker_error();
            warn!(job.id = %id, "cannot remove volume {volume}: {e}");
        }
        // A dependency cache entry the job filled and did not publish goes too, and the cache
        // is brought within its bounds (the job may have published an entry).
        if let Err(e) = cache::abandon(&self.db, self.epoch, id).await {
            warn!(job.id = %id, "cannot give up the job's cache entry: {e}");
        }
        self.sweep_cache(false).await;
    }

    /// Keeps the dependency cache within its bounds (evicting the least recently used entries)
    /// and removes the volumes of the entries that are to go (failed or duplicate installs,
    /// evicted, pruned with `ci-admin cache prune`) once no running job mounts them. With
    /// `orphans`, also removes cache volumes the database does not know and gives up entries of
    /// jobs that ended without their controller (after a restart).
    pub async fn sweep_cache(&self, orphans: bool) {
        if let Err(e) = self.try_sweep_cache(orphans).await {
            warn!("cannot sweep the dependency cache: {e:#}");
        }
    }

    async fn try_sweep_cache(&self, orphans: bool) -> anyhow::Result<()> {
        if orphans {
            cache::abandon_ended(&self.db).await?;
        }
        let evicted = cache::evict(&self.db, &self.settings.cache).await?;
        self.metrics.cache_evicted(evicted.len() as u64);
        for entry in &evicted {
            info!(volume = entry.volume, user = %entry.user_id, "evicting a dependency cache entry");
        }
        for entry in cache::removable(&self.db, &self.host, CACHE_GRACE).await? {
            match self.docker.remove_volume(&entry.volume).await {
                Ok(()) => cache::forget(&self.db, &entry.id).await?,
                // In use by a container (of a job that is ending): the next sweep removes it.
                Err(e) => info!(volume = entry.volume, "cache volume not removed yet: {e}"),
            }
        }
        if orphans {
            let volumes = self
                .docker
                .list_volumes(&self.sandbox.cache_label())
                .await
                .map_err(|e| anyhow::anyhow!("cannot list cache volumes: {e}"))?;
            for volume in volumes {
                if !cache::knows_volume(&self.db, &volume.name).await? {
                    info!(
                        volume = volume.name,
                        "removing a cache volume no entry knows"
                    );
                    if let Err(e) = self.docker.remove_volume(&volume.name).await {
                        warn!("cannot remove volume {}: {e}", volume.name);
                    }
                }
            }
        }
        Ok(())
    }

    /// The job from where it is to its end: its plan (made on its first run, read back after a
    /// restart), then every step that has not ended, in order.
    async fn drive(
        &self,
        job: &Job,
        found: &[ContainerSummary],
        control: &JobControl,
        sink: &mut LogSink,
    ) -> anyhow::Result<Flow> {
        let deadline = {
            let started = job.started_at.unwrap_or_else(chrono::Utc::now);
            let end = started
                + chrono::Duration::from_std(self.settings.job_timeout)
                    .unwrap_or(chrono::Duration::days(365));
            let left = (end - chrono::Utc::now()).to_std().unwrap_or_default();
            Instant::now() + left
        };
        let mut rows = steps::list(&self.db, job.id).await?;
        let mut tar = None;
        // A job from git first fetches its project (a step of its own); the rest of its plan
        // is made from what that step checked out.
        let is_fetch = |name: &str| job.git_url.is_some() && name == FETCH_STEP;
        let fetched = rows
            .iter()
            .any(|r| is_fetch(&r.name) && r.state == StepState::Passed);
        if job.needs_fetch() && !fetched {
            if rows.is_empty() {
                match self.plan_fetch(job).await? {
                    Ok((planned, workspace)) => {
                        rows = planned;
                        tar = Some(workspace);
                    }
                    Err(flow) => return Ok(flow),
                }
            } else {
                info!(job.id = %job.id, step = ?job.step, "reattaching to the job's fetch step");
            }
        } else {
            if job.needs_fetch() {
                if let Err(flow) = self.store_fetched(job).await? {
                    return Ok(flow);
                }
            }
            // No container of the plan has been made yet: the workspace is made now (and, on
            // the job's first run, its plan).
            let rest: Vec<&StepRow> = rows.iter().filter(|r| !is_fetch(&r.name)).collect();
            let no_containers = found
                .iter()
                .all(|c| step_of(&c.labels).is_some_and(is_fetch));
            let untouched = no_containers && rest.iter().all(|r| r.state == StepState::Pending);
            if rest.is_empty() || untouched {
                match self
                    .prepare(job, no_containers, rest.is_empty(), sink)
                    .await?
                {
                    Ok((planned, workspace)) => {
                        rows = planned;
                        tar = workspace;
                    }
                    Err(flow) => return Ok(flow),
                }
            } else {
                info!(job.id = %job.id, step = ?job.step, "reattaching to the job's steps");
            }
        }
        // The job's secret variables: opened once per run of the job (again after a restart),
        // masked in every line from now on.
        let secrets = match self.open_secrets(job, &rows).await? {
            Ok(secrets) => secrets,
            Err(flow) => return Ok(flow),
        };
        sink.mask(Masker::new(secrets.values().cloned()));
        let db_cursor = job.log_cursor.as_deref().and_then(|text| {
            let cursor = Cursor::from_stored(text, job.log_cursor_skip);
            if cursor.is_none() {
                warn!(job.id = %job.id, "the stored log cursor {text:?} is not one; reading the log from its start");
            }
            cursor
        });
        let mut last = Outcome::new(JobStatus::Passed);
        let mut failed: Option<Outcome> = None;
        let mut tests_ran = false;
        // Rows grow while the job runs: a retry of failed tests is appended as another step.
        let mut next = 0;
        while let Some(row) = rows.get(next).cloned() {
            next += 1;
            let row = &row;
            if row.state.is_terminal() {
                continue;
            }
            let spec = row
                .spec()
                .with_context(|| format!("the stored plan of step {} cannot be read", row.name))?;
            let has_container = found
                .iter()
                .any(|c| step_of(&c.labels) == Some(row.name.as_str()));
            let start = if has_container {
                Start::Resume {
                    cursor: if job.step.as_deref() == Some(row.name.as_str()) {
                        db_cursor.clone()
                    } else {
                        None
                    },
                }
            } else if row.state == StepState::Running {
                // Its container vanished while it ran: what it did cannot be known.
                let reason = format!("the container of step {} vanished while it ran", row.name);
                steps::finish(
                    &self.db,
                    job.id,
                    self.epoch,
                    row.position,
                    StepState::Lost,
                    None,
                    Some(&reason),
                )
                .await?;
                return Ok(Flow::Done(
                    Outcome::new(JobStatus::Lost).with_reason(reason),
                ));
            } else {
                if let Err(flow) = self.ensure_image(&spec.image, sink).await? {
                    return Ok(flow);
                }
                Start::Fresh(tar.take())
            };
            if spec.pip_cache.is_some() {
                // Also after a restart, while the step runs on.
                self.hold_pip_cache(job);
            }
            let end = self
                .run_step(job, row, &spec, &secrets, start, sink, control, deadline)
                .await?;
            if spec.pip_cache.is_some() && !matches!(end, StepEnd::Detached) {
                self.release_pip_cache(job);
            }
            let end_kind = match &end {
                StepEnd::StoppedBefore(_) => EndKind::Before,
                _ => EndKind::Ran,
            };
            let (state, outcome) = match end {
                StepEnd::Detached => return Ok(Flow::Detached),
                StepEnd::StoppedBefore(kind) => {
                    let stop = Stop {
                        kind,
                        killed: false,
                    };
                    (
                        stop.step_state(),
                        stopped_outcome(stop, None, &self.settings),
                    )
                }
                StepEnd::Exited(state, Some(stop)) => (
                    stop.step_state(),
                    stopped_outcome(stop, Some(&state), &self.settings),
                ),
                StepEnd::Exited(state, None) => {
                    step_result(&spec, &state, self.sandbox.memory_bytes as u64)
                }
            };
            let mut outcome = outcome;
            let mut retry = None;
            if matches!(spec.exit, ExitRule::Pytest) && !matches!(end_kind, EndKind::Before) {
                tests_ran = true;
                self.collect_results(job, row, &spec, sink).await?;
                if state == StepState::Failed {
                    retry = self.plan_retry(job, &spec, sink).await?;
                    if retry.is_none() && spec.attempt > 1 {
                        outcome.reason = Some(format!(
                            "some tests failed on every one of {} attempts (pytest exit 1)",
                            spec.attempt
                        ));
                    }
                }
            }
            if let Some(retry) = &retry {
                // Added before this step ends, so a restart in between decides the same.
                rows = steps::append(&self.db, job.id, self.epoch, retry).await?;
            }
            let exit_code = outcome.exit_code;
            let reason = (state != StepState::Passed)
                .then(|| outcome.reason.clone())
                .flatten();
            steps::finish(
                &self.db,
                job.id,
                self.epoch,
                row.position,
                state,
                exit_code,
                reason.as_deref(),
            )
            .await?;
            if retry.is_some() {
                continue;
            }
            if is_fetch(&row.name) && state == StepState::Passed {
                if let Err(flow) = self.store_fetched(job).await? {
                    return Ok(flow);
                }
                match self.prepare(job, true, true, sink).await? {
                    Ok((planned, workspace)) => {
                        rows = planned;
                        tar = workspace;
                    }
                    Err(flow) => return Ok(flow),
                }
                continue;
            }
            if let Some(cache) = spec.cache.as_ref().filter(|c| c.write) {
                if state == StepState::Passed {
                    self.publish_cache(job, row, cache, sink).await?;
                }
            }
            if state == StepState::Passed && !spec.artifacts.is_empty() {
                self.collect_artifacts(job, row, &spec, sink).await?;
            }
            let stopped = matches!(state, StepState::Cancelled | StepState::TimedOut);
            if state != StepState::Passed && (spec.stops_job || stopped) {
                return Ok(Flow::Done(outcome));
            }
            if state != StepState::Passed && failed.is_none() {
                failed = Some(outcome.clone());
            }
            last = outcome;
        }
        let outcome = failed.unwrap_or(last);
        if tests_ran && outcome.status == JobStatus::Passed {
            return Ok(Flow::Done(self.flaky_outcome(job, outcome, sink).await?));
        }
        Ok(Flow::Done(outcome))
    }

    /// The retry of a pytest step that failed, when the job has attempts left: its failed tests
    /// as the next attempt (see [`StepSpec::retry`]). A retry that cannot be made is a notice.
    async fn plan_retry(
        &self,
        job: &Job,
        spec: &StepSpec,
        sink: &mut LogSink,
    ) -> anyhow::Result<Option<StepSpec>> {
        let retries = u32::try_from(job.retries)
            .unwrap_or(0)
            .min(self.policy.max_retries);
        let attempts = retries + 1;
        if spec.attempt >= attempts {
            return Ok(None);
        }
        let failed =
            test_results::failed_in_attempt(&self.db, job.id, i64::from(spec.attempt)).await?;
        match spec.retry(&failed, attempts) {
            Ok(retry) => Ok(Some(retry)),
            Err(notice) => {
                sink.notice(notice).await?;
                Ok(None)
            }
        }
    }

    /// The end of a job whose tests passed: its flaky tests (failed, then passed on a retry) are
    /// named in the log, and fail the job when it asked for that (`flaky = "fail"`).
    async fn flaky_outcome(
        &self,
        job: &Job,
        outcome: Outcome,
        sink: &mut LogSink,
    ) -> anyhow::Result<Outcome> {
        let flaky = test_results::list(
            &self.db,
            job.id,
            Some(TestOutcome::Flaky),
            Attempts::Last,
            FLAKY_NAMED as i64 + 1,
            0,
        )
        .await?;
        if flaky.is_empty() {
            return Ok(outcome);
        }
        let count = test_results::counts(&self.db, job.id)
            .await?
            .map_or(flaky.len() as u64, |c| c.get(TestOutcome::Flaky));
        let mut names = flaky
            .iter()
            .take(FLAKY_NAMED)
            .map(|t| t.nodeid.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        if count > FLAKY_NAMED as u64 {
            names.push_str(&format!(" and {} more", count - FLAKY_NAMED as u64));
        }
        let what = format!(
            "{count} flaky test{} (failed, then passed when run again): {names}",
            if count == 1 { "" } else { "s" }
        );
        if job.fail_on_flaky {
            sink.sync().await?;
            return Ok(Outcome::new(JobStatus::Failed)
                .with_reason(format!(
                    "{what}; this job fails on flaky tests (flaky = \"fail\")"
                ))
                .with_exit_code(outcome.exit_code.unwrap_or(0)));
        }
        sink.notice(what).await?;
        Ok(outcome)
    }

    /// The first step of a job from git: checks its remote against the operator's rules (again:
    /// the server did at submission, and the rules or the host's addresses may have changed),
    /// stores the fetch step as its plan, and makes its workspace volume. Returns the plan and
    /// the empty workspace for the step's container. `Err` ends the job (a refused remote).
    async fn plan_fetch(&self, job: &Job) -> anyhow::Result<Result<(Vec<StepRow>, Bytes), Flow>> {
        let Some(git) = job.git() else {
            return Ok(Err(error("the job has no git source")));
        };
        let rules = match self.policy.git_allowlist() {
            Ok(rules) => rules,
            Err(e) => return Ok(Err(error(e.to_string()))),
        };
        let target = match rules.check(&git.url).await {
            Ok(target) => target,
            Err(e) => return Ok(Err(error(e.to_string()))),
        };
        // Git connects to the addresses checked here, not to what a second lookup would give.
        let addr = target.addrs[0];
        let (url, resolve) = if target.url.scheme() == "git" {
            let mut url = target.url.clone();
            url.set_ip_host(addr)
                .map_err(|()| anyhow::anyhow!("cannot put {addr} into {}", target.url))?;
            (url.to_string(), None)
        } else {
            let addr = match addr {
                std::net::IpAddr::V6(v6) => format!("[{v6}]"),
                v4 => v4.to_string(),
            };
            (
                git.url.clone(),
                Some(format!("{}:{}:{addr}", target.host, target.port)),
            )
        };
        let spec = StepSpec {
            name: FETCH_STEP.to_owned(),
            title: "git fetch".to_owned(),
            notice: format!("fetching {} at {}", git.url, git.git_ref),
            image: self.sandbox.image.clone(),
            command: git::fetch_command(&url, &git.git_ref, resolve.as_deref()),
            network: Network::Git,
            env: git::FETCH_ENV.iter().map(|e| (*e).to_owned()).collect(),
            timeout_secs: Some(self.settings.git_timeout.as_secs().max(1)),
            exit: ExitRule::Zero {
                failure: JobStatus::Error,
            },
            stops_job: true,
            attempt: 1,
            rerun: Vec::new(),
            cache: None,
            pip_cache: None,
            artifacts: Vec::new(),
            deps_dir: None,
            secrets: Vec::new(),
        };
        let rows = steps::plan(&self.db, job.id, self.epoch, &[spec]).await?;
        let volume = self.sandbox.volume_name(job.id);
        if let Err(e) = self
            .docker
            .create_volume(&volume, self.sandbox.labels(job.id, None))
            .await
        {
            self.metrics.docker_error();
            return Ok(Err(error(format!(
                "could not create the workspace volume: {e}"
            ))));
        }
        let (uid, gid) = (self.settings.uid, self.settings.gid);
        let dirs = MountDirs {
            deps: false,
            pip_cache: false,
        };
        let tar = tokio::task::spawn_blocking(move || {
            files_to_zip(&[], &[]).and_then(|zip| zip_to_tar(&zip, uid, gid, 0, dirs))
        })
        .await
        .context("making the workspace failed")??;
        Ok(Ok((rows, Bytes::from(tar.tar))))
    }

    /// After the fetch step of a job from git passed: reads the tree it checked out (without
    /// `.git`) from its container, within the workspace limits, and stores it as the job's
    /// source with the commit. `Err` ends the job (a tree past the limits, no commit).
    async fn store_fetched(&self, job: &Job) -> anyhow::Result<Result<(), Flow>> {
        let name = self.sandbox.container_name(job.id, FETCH_STEP);
        let head = self
            .docker
            .read_file(&name, &format!("{WORKDIR}/.git/HEAD"), 4096)
            .await;
        let commit = match head {
            Ok(Some(head)) => String::from_utf8_lossy(&head).trim().to_owned(),
            Ok(None) => return Ok(Err(error("the fetch step checked out no commit"))),
            Err(e) => {
                self.metrics.docker_error();
                return Ok(Err(error(format!(
                    "the fetched project cannot be read from the fetch step's container: {e}"
                ))));
            }
        };
        if commit.len() < 40 || !commit.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(Err(error(format!(
                "the fetch step left HEAD at {commit:?}, not at a commit"
            ))));
        }
        let caps = FileCaps {
            max_files: usize::try_from(self.policy.max_entries).unwrap_or(usize::MAX),
            max_bytes: self.settings.workspace_size,
        };
        let select: Select =
            std::sync::Arc::new(|path: &str| path != ".git" && !path.starts_with(".git/"));
        let found = match self
            .docker
            .download_files(&name, WORKDIR, select, caps)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                self.metrics.docker_error();
                return Ok(Err(error(format!(
                    "the fetched project cannot be read from the fetch step's container: {e}"
                ))));
            }
        };
        if !found.left_out.is_empty() {
            return Ok(Err(error(format!(
                "the fetched project is larger than the workspace limits ({} files, {}): {} \
                 file(s) past them, such as {}",
                caps.max_files,
                human_bytes(caps.max_bytes),
                found.left_out.len(),
                found.left_out[0]
            ))));
        }
        let zip =
            tokio::task::spawn_blocking(move || files_to_zip(&found.files, &found.executable))
                .await
                .context("storing the fetched project failed")??;
        jobs::record_fetched(&self.db, job.id, self.epoch, &zip, &commit).await?;
        info!(job.id = %job.id, commit, bytes = zip.len(), "fetched the job's project");
        Ok(Ok(()))
    }

    /// The secret variables the steps of a job's plan list (`secrets = [...]` of their tasks),
    /// opened: the team's for a team's job, else the submitter's. A name with no stored value,
    /// a value that does not open, or a controller without the secrets key ends the job
    /// (`error`) with what to do.
    async fn open_secrets(
        &self,
        job: &Job,
        rows: &[StepRow],
    ) -> anyhow::Result<Result<BTreeMap<String, String>, Flow>> {
        let mut names: Vec<String> = Vec::new();
        for row in rows {
            let spec = row
                .spec()
                .with_context(|| format!("the stored plan of step {} cannot be read", row.name))?;
            names.extend(spec.secrets);
        }
        names.sort();
        names.dedup();
        if names.is_empty() {
            return Ok(Ok(BTreeMap::new()));
        }
        let Some(key) = &self.settings.secrets else {
            return Ok(Err(error(format!(
                "the job's tasks need the secret variables {}, but this controller has no \
                 secrets key: the operator starts ci-controller with --secrets-key-file",
                names.join(", ")
            ))));
        };
        let owner = SecretOwner::of(job);
        let whose = match owner {
            SecretOwner::User(_) => "you have",
            SecretOwner::Team(_) => "the job's team has",
        };
        let set = match owner {
            SecretOwner::User(_) => String::new(),
            SecretOwner::Team(team) => {
                let name = ci_common::db::teams::get(&self.db, team).await?;
                format!(
                    " --team {}",
                    name.map_or_else(|| team.to_string(), |t| t.name)
                )
            }
        };
        let mut opened = BTreeMap::new();
        for (name, value) in secret_variables::open(&self.db, key, owner, &names).await? {
            match value {
                Some(Ok(value)) => {
                    opened.insert(name, value);
                }
                None => {
                    return Ok(Err(error(format!(
                        "the job's tasks need the secret variable {name}, which {whose} not \
                         set: set it with `ci secrets set {name}{set}` (the value is read from \
                         standard input)"
                    ))))
                }
                Some(Err(e)) => {
                    return Ok(Err(error(format!(
                        "the secret variable {name} cannot be opened ({e}): set it again with \
                         `ci secrets set {name}{set}`"
                    ))))
                }
            }
        }
        Ok(Ok(opened))
    }

    /// The environment a step gets beside its stored plan, never stored or logged: the secret
    /// variables its task lists (`NAME=value`, from `secrets`), and, for the fetch step of a job
    /// from git over HTTP(S), its owner's credential for the remote's host (`CI_GIT_USERNAME`,
    /// `CI_GIT_PASSWORD`, read by the fetch's credential helper), when the owner stored one and
    /// the controller has the secrets key.
    async fn secret_env(
        &self,
        job: &Job,
        spec: &StepSpec,
        secrets: &BTreeMap<String, String>,
    ) -> anyhow::Result<Vec<String>> {
        let mut env = Vec::new();
        for name in &spec.secrets {
            let value = secrets
                .get(name)
                .with_context(|| format!("the secret variable {name} was not opened"))?;
            env.push(format!("{name}={value}"));
        }
        let (Some(key), Some(url)) = (&self.settings.secrets, &job.git_url) else {
            return Ok(env);
        };
        if spec.network != Network::Git {
            return Ok(env);
        }
        let Some(host) = url::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "https" | "http"))
            .and_then(|u| u.host_str().map(str::to_owned))
        else {
            return Ok(env);
        };
        match git_credentials::get(&self.db, key, job.user_id, &host).await? {
            None => {}
            Some(Ok((username, password))) => {
                env.push(format!("CI_GIT_USERNAME={username}"));
                env.push(format!("CI_GIT_PASSWORD={password}"));
            }
            Some(Err(e)) => {
                warn!(job.id = %job.id, host, "the owner's git credential cannot be used: {e}");
            }
        }
        Ok(env)
    }

    /// A job's first run: its workspace volume and project (when `fresh`: no container exists
    /// yet; the tar is returned for the first container), and its plan stored as steps (kept
    /// if it has one; `new_plan` says whether it had none, and only then is a skipped install
    /// step announced). `Err` ends the job (a missing upload, a project that cannot be unpacked
    /// or planned).
    async fn prepare(
        &self,
        job: &Job,
        fresh: bool,
        new_plan: bool,
        sink: &mut LogSink,
    ) -> anyhow::Result<Result<(Vec<StepRow>, Option<Bytes>), Flow>> {
        let s = &self.settings;
        let (uid, gid, size) = (s.uid, s.gid, s.workspace_size);
        let Some(zip) = uploads::get(&self.db, job.id).await? else {
            return Ok(Err(error("the job's uploaded project is missing")));
        };
        let zip = Bytes::from(zip);
        // The workspace volume is created while the project's root files are read.
        let volume = self.sandbox.volume_name(job.id);
        let create_volume = async {
            if fresh {
                self.docker
                    .create_volume(&volume, self.sandbox.labels(job.id, None))
                    .await
            } else {
                Ok(())
            }
        };
        let read_root = {
            let zip = zip.clone();
            tokio::task::spawn_blocking(move || root_files(&zip))
        };
        let (created, root) = tokio::join!(create_volume, read_root);
        let root = match root.context("reading the project failed")? {
            Ok(root) => root,
            Err(e) => {
                return Ok(Err(error(
                    crate::archive::ArchiveError::from(e).to_string(),
                )))
            }
        };
        if let Err(e) = created {
            self.metrics.docker_error();
            return Ok(Err(error(format!(
                "could not create the workspace volume: {e}"
            ))));
        }
        let rows = if new_plan {
            let (specs, skipped) = match plan_steps(
                job,
                &self.sandbox.image,
                &self.policy,
                &root,
                self.settings.installer,
            ) {
                Ok(plan) => plan,
                Err(reason) => return Ok(Err(error(reason))),
            };
            if let Some(notice) = skipped {
                sink.notice(notice).await?;
            }
            let specs = match self.use_cache(job, specs, &zip, &root, sink).await? {
                Ok(specs) => specs,
                Err(flow) => return Ok(Err(flow)),
            };
            steps::plan(&self.db, job.id, self.epoch, &specs).await?
        } else {
            steps::list(&self.db, job.id).await?
        };
        if !fresh {
            return Ok(Ok((rows, None)));
        }
        // The first container gets the project; `deps/` is left out when a read-only dependency
        // cache is mounted there.
        let first = rows
            .iter()
            .find(|r| !r.state.is_terminal())
            .and_then(|r| r.spec().ok());
        let dirs = MountDirs {
            deps: first
                .as_ref()
                .is_none_or(|spec| spec.cache.as_ref().is_none_or(|cache| cache.write)),
            pip_cache: first.as_ref().is_some_and(|spec| spec.pip_cache.is_some()),
        };
        let tar = tokio::task::spawn_blocking(move || zip_to_tar(&zip, uid, gid, size, dirs))
            .await
            .context("unpacking the project failed")?;
        match tar {
            Ok(ws) => Ok(Ok((rows, Some(Bytes::from(ws.tar))))),
            Err(e) => Ok(Err(error(e.to_string()))),
        }
    }

    /// The plan with the dependency cache (when the job uses it and has an install step): on a
    /// hit (an entry of the job's user with the install's key, [`install_key`]) the install
    /// step is left out and the other steps mount the entry read-only; on a miss the install
    /// step fills a new entry (published when it passes) that the other steps mount read-only.
    /// Says which in the log; an install that cannot be keyed runs without the cache.
    async fn use_cache(
        &self,
        job: &Job,
        mut specs: Vec<StepSpec>,
        zip: &Bytes,
        root: &RootFiles,
        sink: &mut LogSink,
    ) -> anyhow::Result<Result<Vec<StepSpec>, Flow>> {
        let Some(at) = specs.iter().position(|s| s.name == INSTALL_STEP) else {
            return Ok(Ok(specs));
        };
        if !job.use_cache {
            sink.notice("dependency cache: not used (--no-cache)")
                .await?;
            return Ok(Ok(specs));
        }
        let image_id = match self.ensure_image(&specs[at].image, sink).await? {
            Ok(id) => id,
            Err(flow) => return Ok(Err(flow)),
        };
        let key = {
            let (zip, install, command) =
                (zip.clone(), Install::plan(root), specs[at].command.clone());
            tokio::task::spawn_blocking(move || {
                install_key(&ZipFiles::new(&zip), &install, &command, &image_id)
            })
            .await
            .context("computing the dependency cache key stopped")?
        };
        let key = match key {
            Ok(key) => key,
            Err(why) => {
                sink.notice(format!("dependency cache: not used ({why})"))
                    .await?;
                self.attach_pip_cache(job, &mut specs[at]).await;
                return Ok(Ok(specs));
            }
        };
        let mount = |volume: &str, write: bool| StepCache {
            volume: volume.to_owned(),
            write,
            key: key.short().to_owned(),
        };
        let scope = cache::CacheScope::of(job);
        let found = cache::find_ready(&self.db, &self.host, scope, &key.hex).await?;
        let mut chosen = None;
        if let Some(entry) = found {
            // Not served when it was evicted or pruned since it was found.
            if cache::hit(&self.db, self.epoch, &entry.id).await? {
                chosen = Some(entry);
            }
        }
        if let Some(entry) = chosen {
            self.metrics.cache_hit();
            specs.remove(at);
            // Steps with an install of their own (another image) keep it.
            for spec in specs.iter_mut().filter(|s| s.deps_dir.is_none()) {
                spec.cache = Some(mount(&entry.volume, false));
            }
            sink.notice(format!(
                "dependency cache hit (key {}): using the packages an earlier job of {} \
                 installed ({}); skipping the install step",
                key.short(),
                if scope.team.is_some() {
                    "your team"
                } else {
                    "yours"
                },
                human_bytes(entry.size_bytes.max(0) as u64)
            ))
            .await?;
            return Ok(Ok(specs));
        }
        let volume = self
            .sandbox
            .cache_volume_name(&uuid::Uuid::new_v4().simple().to_string());
        cache::begin(
            &self.db, self.epoch, &self.host, scope, &key.hex, job.id, &volume,
        )
        .await?;
        if let Err(e) = self
            .docker
            .create_volume(&volume, self.sandbox.cache_labels())
            .await
        {
            self.metrics.docker_error();
            cache::abandon(&self.db, self.epoch, job.id).await?;
            sink.notice(format!(
                "dependency cache: not used (could not create its volume: {e})"
            ))
            .await?;
            return Ok(Ok(specs));
        }
        self.metrics.cache_miss();
        for (i, spec) in specs.iter_mut().enumerate() {
            if spec.deps_dir.is_none() {
                spec.cache = Some(mount(&volume, i == at));
            }
        }
        self.attach_pip_cache(job, &mut specs[at]).await;
        sink.notice(format!(
            "dependency cache miss (key {}): installing; the packages are kept for your next \
             jobs with the same requirements",
            key.short()
        ))
        .await?;
        Ok(Ok(specs))
    }

    /// Gives an install step its user's pip cache (created when missing), unless another install
    /// of the same user is using it (it then runs without one).
    async fn attach_pip_cache(&self, job: &Job, install: &mut StepSpec) {
        if !self.hold_pip_cache(job) {
            return;
        }
        let volume = self.sandbox.pip_cache_volume_name(job.user_id);
        match self
            .docker
            .create_volume(&volume, self.sandbox.pip_cache_labels(job.user_id))
            .await
        {
            Ok(()) => install.pip_cache = Some(volume),
            Err(e) => {
                self.metrics.docker_error();
                warn!(job.id = %job.id, "cannot create the pip cache volume {volume}: {e}");
                self.release_pip_cache(job);
            }
        }
    }

    /// Takes the user's pip cache for this job; false when another job of theirs has it.
    fn hold_pip_cache(&self, job: &Job) -> bool {
        let mut busy = self.pip_cache_busy.lock().unwrap();
        *busy.entry(job.user_id).or_insert(job.id) == job.id
    }

    /// The user's pip cache is free for another install (if this job had it).
    pub(crate) fn release_pip_cache(&self, job: &Job) {
        let mut busy = self.pip_cache_busy.lock().unwrap();
        if busy.get(&job.user_id) == Some(&job.id) {
            busy.remove(&job.user_id);
        }
    }

    /// After an install step that filled a dependency cache entry passed: measures the entry and
    /// publishes it for the user's next jobs (unless another job published the same key first).
    async fn publish_cache(
        &self,
        job: &Job,
        row: &StepRow,
        cache: &StepCache,
        sink: &mut LogSink,
    ) -> anyhow::Result<()> {
        let name = self.sandbox.container_name(job.id, &row.name);
        let size = match self.docker.archive_size(&name, DEPS).await {
            Ok(size) => size,
            Err(e) => {
                self.metrics.docker_error();
                warn!(job.id = %job.id, "cannot measure the installed packages: {e}");
                0
            }
        };
        match cache::publish(&self.db, self.epoch, &cache.volume, size).await? {
            Published::Ready => {
                self.metrics.cache_stored(size);
                sink.notice(format!(
                    "dependency cache: kept the installed packages ({}, key {}) for your next jobs",
                    human_bytes(size),
                    cache.key
                ))
                .await?;
                // Within the bounds again before the job goes on (older entries may go).
                self.sweep_cache(false).await;
            }
            Published::Duplicate | Published::Gone => {}
        }
        Ok(())
    }

    /// Keeps the files of a passed step that match its artifact globs as the job's blobs
    /// `artifacts/<path>` (within [`MAX_ARTIFACT_FILES`] and [`MAX_ARTIFACT_BYTES`], and the blob
    /// store's caps), and says in the log what was kept and what was left out.
    async fn collect_artifacts(
        &self,
        job: &Job,
        row: &StepRow,
        spec: &StepSpec,
        sink: &mut LogSink,
    ) -> anyhow::Result<()> {
        let matcher = match artifact_matcher(&spec.artifacts) {
            Ok(matcher) => std::sync::Arc::new(matcher),
            Err(e) => {
                sink.notice(format!("artifacts: not collected ({e})"))
                    .await?;
                return Ok(());
            }
        };
        let name = self.sandbox.container_name(job.id, &row.name);
        let caps = FileCaps {
            max_files: MAX_ARTIFACT_FILES,
            max_bytes: MAX_ARTIFACT_BYTES,
        };
        let select: Select = std::sync::Arc::new(move |path: &str| matcher.is_match(path));
        let found = match self
            .docker
            .download_files(&name, WORKDIR, select, caps)
            .await
        {
            Ok(found) => found,
            Err(e) => {
                self.metrics.docker_error();
                sink.notice(format!("artifacts: could not be read from the step ({e})"))
                    .await?;
                return Ok(());
            }
        };
        let mut kept: Vec<String> = Vec::new();
        let mut left_out = found.left_out;
        let mut bytes = 0u64;
        for (path, data) in found.files {
            let size = data.len() as u64;
            match blobs::put(
                &self.db,
                job.id,
                Some(self.epoch),
                &format!("{ARTIFACTS_PREFIX}{path}"),
                blobs::DEFAULT_CONTENT_TYPE,
                data.as_slice(),
                &BlobCaps::default(),
            )
            .await
            {
                Ok(_) => {
                    bytes += size;
                    kept.push(path);
                }
                Err(BlobError::Db(e)) => return Err(JobError::from(e).into()),
                Err(e) => {
                    warn!(job.id = %job.id, "artifact {path} not kept: {e}");
                    left_out.push(path);
                }
            }
        }
        let notice = if kept.is_empty() && left_out.is_empty() {
            format!("artifacts: no file matches {}", spec.artifacts.join(", "))
        } else {
            format!(
                "artifacts: kept {} file{} ({}): {}",
                kept.len(),
                if kept.len() == 1 { "" } else { "s" },
                human_bytes(bytes),
                if kept.is_empty() {
                    "-".to_owned()
                } else {
                    kept.join(", ")
                }
            )
        };
        sink.notice(notice).await?;
        if !left_out.is_empty() {
            sink.notice(format!(
                "artifacts: left out {} (past the caps of {MAX_ARTIFACT_FILES} files and {} per \
                 step, or a name the store does not take): {}",
                left_out.len(),
                human_bytes(MAX_ARTIFACT_BYTES),
                left_out.join(", ")
            ))
            .await?;
        }
        Ok(())
    }

    /// Reads the test report of a pytest step from its container (it must not be removed yet),
    /// and stores its results with the job's counts and `summary` event. A report that is
    /// missing, too large or unreadable is a notice in the log, never a changed job state.
    async fn collect_results(
        &self,
        job: &Job,
        row: &StepRow,
        spec: &StepSpec,
        sink: &mut LogSink,
    ) -> anyhow::Result<()> {
        let name = self.sandbox.container_name(job.id, &row.name);
        let path = results_file(&row.name);
        let max = self.settings.report_max_bytes;
        let bytes = match self.docker.read_file(&name, &path, max).await {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                sink.notice("no test report: pytest did not write one (did it start?)")
                    .await?;
                return Ok(());
            }
            Err(DockerError::TooLarge { limit }) => {
                sink.notice(format!(
                    "the test report is larger than {} and was not read (ci-controller --report-max-bytes)",
                    human_size(limit)
                ))
                .await?;
                return Ok(());
            }
            Err(e) => {
                self.metrics.docker_error();
                sink.notice(format!("the test report could not be read: {e}"))
                    .await?;
                return Ok(());
            }
        };
        // The raw report is kept as the job's blob `reports/<step>.jsonl`, within the blob
        // store's caps (a report it refuses is a notice).
        let blob = format!("reports/{}.jsonl", row.name);
        if let Err(e) = blobs::put(
            &self.db,
            job.id,
            Some(self.epoch),
            &blob,
            "application/x-ndjson",
            bytes.as_slice(),
            &BlobCaps::default(),
        )
        .await
        {
            match e {
                BlobError::Db(e) => return Err(JobError::from(e).into()),
                e => {
                    sink.notice(format!("the raw test report was not kept: {e}"))
                        .await?
                }
            }
        }
        let report = tokio::task::spawn_blocking(move || {
            read_report(bytes.as_slice(), &ReportCaps::default())
        })
        .await
        .context("reading the test report stopped")?
        .context("reading the test report failed")?;
        if report.summary.unreadable_lines > 0 || report.summary.dropped_tests > 0 {
            sink.notice(format!(
                "test report: {} unreadable line(s) skipped, {} test(s) past the cap counted but not kept",
                report.summary.unreadable_lines, report.summary.dropped_tests
            ))
            .await?;
        }
        // The summary follows everything the step printed.
        sink.sync().await?;
        test_results::store(
            &self.db,
            job.id,
            self.epoch,
            &row.name,
            i64::from(spec.attempt),
            &report,
        )
        .await?;
        Ok(())
    }

    /// Makes sure `image` is present (pulling it if it is not) and returns its ID; `Err` ends
    /// the job when it cannot be had.
    async fn ensure_image(
        &self,
        image: &str,
        sink: &mut LogSink,
    ) -> anyhow::Result<Result<String, Flow>> {
        let seen = self
            .image_seen
            .lock()
            .unwrap()
            .get(image)
            .filter(|(t, _)| t.elapsed() < IMAGE_SEEN_FOR)
            .map(|(_, id)| id.clone());
        if let Some(id) = seen {
            return Ok(Ok(id));
        }
        let id = match self.docker.image_id(image).await {
            Ok(Some(id)) => id,
            Ok(None) => {
                sink.notice(format!("pulling image {image}")).await?;
                let pulled = match self.docker.pull_image(image).await {
                    Ok(()) => self.docker.image_id(image).await,
                    Err(e) => Err(e),
                };
                match pulled {
                    Ok(Some(id)) => id,
                    Ok(None) => {
                        return Ok(Err(error(missing_image_reason(
                            image,
                            &self.host,
                            "it is still missing after the pull",
                        ))))
                    }
                    Err(e) => {
                        self.metrics.docker_error();
                        return Ok(Err(error(missing_image_reason(
                            image,
                            &self.host,
                            &e.to_string(),
                        ))));
                    }
                }
            }
            Err(e) => {
                self.metrics.docker_error();
                return Ok(Err(error(format!(
                    "cannot reach the Docker host {} to inspect the image {image}: {e}",
                    self.host
                ))));
            }
        };
        self.image_seen
            .lock()
            .unwrap()
            .insert(image.to_owned(), (Instant::now(), id.clone()));
        Ok(Ok(id))
    }

    /// Runs one step in its container until the container exits, is stopped, or the controller
    /// shuts down. The step's state moves to `running` once its container exists, just before it
    /// starts.
    #[allow(clippy::too_many_arguments)]
    async fn run_step(
        &self,
        job: &Job,
        row: &StepRow,
        spec: &StepSpec,
        secrets: &BTreeMap<String, String>,
        start: Start,
        sink: &mut LogSink,
        control: &JobControl,
        deadline: Instant,
    ) -> anyhow::Result<StepEnd> {
        let id = job.id;
        let name = self.sandbox.container_name(id, &row.name);
        let deadline = match spec.timeout_secs {
            Some(secs) => deadline.min(Instant::now() + Duration::from_secs(secs)),
            None => deadline,
        };
        let (cursor, live) = match start {
            Start::Resume { cursor } => {
                let state = self
                    .docker
                    .inspect_container(&name)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot inspect container {name}: {e}"))?
                    .with_context(|| format!("the container {name} disappeared"))?;
                if row.state == StepState::Pending {
                    sink.new_container();
                    steps::start(&self.db, id, self.epoch, row.position).await?;
                }
                let mut live = None;
                if state.status == "created" {
                    live = self.attach(id, &name).await;
                    self.docker
                        .start_container(&name)
                        .await
                        .map_err(|e| anyhow::anyhow!("could not start the container: {e}"))?;
                }
                (cursor, live)
            }
            Start::Fresh(tar) => {
                if control.cancel.is_cancelled() {
                    return Ok(StepEnd::StoppedBefore(StopKind::Cancel));
                }
                if Instant::now() >= deadline {
                    return Ok(StepEnd::StoppedBefore(StopKind::Timeout));
                }
                sink.notice(self.sandbox.step_notice(spec)).await?;
                if !spec.secrets.is_empty() {
                    sink.notice(format!(
                        "step {} gets the secret variables {} (masked in the log)",
                        row.name,
                        spec.secrets.join(", ")
                    ))
                    .await?;
                }
                let secret_env = self.secret_env(job, spec, secrets).await?;
                let run = Run {
                    secret_env: &secret_env,
                    job: id,
                    task: &job.task,
                    step: spec,
                };
                let config = container_config(&self.sandbox, &run);
                if let Err(e) = self.docker.create_container(&name, config).await {
                    self.metrics.docker_error();
                    anyhow::bail!("could not create the {} container: {e}", row.name);
                }
                if let Some(tar) = tar {
                    if let Err(e) = self.docker.upload_archive(&name, WORKSPACE, tar).await {
                        self.metrics.docker_error();
                        anyhow::bail!("could not copy the project into the container: {e}");
                    }
                }
                let live = self.attach(id, &name).await;
                sink.new_container();
                steps::start(&self.db, id, self.epoch, row.position).await?;
                if let Err(e) = self.docker.start_container(&name).await {
                    self.metrics.docker_error();
                    anyhow::bail!("could not start the {} container: {e}", row.name);
                }
                (None, live)
            }
        };

        let stop: std::sync::Mutex<Option<Stop>> = std::sync::Mutex::new(None);
        let stopper = async {
            let kind = tokio::select! {
                _ = control.cancel.cancelled() => StopKind::Cancel,
                _ = tokio::time::sleep_until(deadline) => StopKind::Timeout,
            };
            info!(job.id = %id, ?kind, "stopping the job's container");
            *stop.lock().unwrap() = Some(Stop {
                kind,
                killed: false,
            });
            if let Err(e) = self.docker.kill_container(&name, "SIGTERM").await {
                warn!(job.id = %id, "SIGTERM failed: {e}");
            }
            tokio::time::sleep(self.settings.stop_grace).await;
            if let Ok(Some(state)) = self.docker.inspect_container(&name).await {
                if state.running {
                    if let Some(stop) = stop.lock().unwrap().as_mut() {
                        stop.killed = true;
                    }
                    if let Err(e) = self.docker.kill_container(&name, "SIGKILL").await {
                        warn!(job.id = %id, "SIGKILL failed: {e}");
                    }
                }
            }
            std::future::pending::<()>().await;
        };
        let watch = self.follow(&name, cursor, live, true, sink, &control.shutdown);
        let state = tokio::select! {
            state = watch => state?,
            () = stopper => unreachable!("the stopper never ends"),
        };
        let stop = *stop.lock().unwrap();
        Ok(match state {
            None => StepEnd::Detached,
            Some(mut state) => {
                if stop.is_none() && state.exit_code == 137 && !state.oom_killed {
                    // Killed, not by us: perhaps out of memory, with Docker told after the exit.
                    match self.docker.oom_event(&name, LATE_OOM_WAIT).await {
                        Ok(oom) => state.oom_killed = oom,
                        Err(e) => warn!(job.id = %id, "cannot read Docker's events: {e}"),
                    }
                }
                StepEnd::Exited(state, stop)
            }
        })
    }

    /// Attaches to a container that is about to start, for its output as it is written (see
    /// [`Docker::attach`]); `None` (the log is then read from Docker's log) if that fails.
    async fn attach(&self, id: JobId, name: &str) -> Option<OutputStream> {
        match self.docker.attach(name).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                self.metrics.docker_error();
                warn!(job.id = %id, "cannot attach to {name}, reading its log instead: {e}");
                None
            }
        }
    }

    /// Follows a container's output into the sink until the container stops (returns its
    /// state) or the controller shuts down (returns `None`). Without `read_log`, only waits for
    /// it.
    ///
    /// The output is read from `live` (the attach stream, opened before the container
    /// started) when there is one: raw bytes as they were written. When there is none (a
    /// controller that took over a running container) or it ends while the container still
    /// runs, Docker's log is read from the cursor on: the record Docker keeps, with the same
    /// lines, so the cursor resumes exactly in either.
    async fn follow(
        &self,
        name: &str,
        cursor: Option<Cursor>,
        mut live: Option<OutputStream>,
        read_log: bool,
        sink: &mut LogSink,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<ContainerState>> {
        use futures_util::StreamExt;
        let mut parser = LogParser::new(self.settings.max_line_bytes, cursor);
        let mut lines = Vec::with_capacity(256);
        // Docker's log must be read once more after the container stopped (a follow of it can
        // end before everything was read); the attach stream ends only after all of it.
        let mut drained = false;
        loop {
            if read_log {
                let raw = live.is_some();
                let mut stream = match live.take() {
                    Some(stream) => stream,
                    None => self.docker.logs(name, parser.since()),
                };
                let mut broken = false;
                loop {
                    let deadline = sink.deadline();
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => {
                            sink.sync().await?;
                            return Ok(None);
                        }
                        _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                            sink.flush().await?;
                        }
                        item = stream.next() => match item {
                            Some(Ok(chunk)) => {
                                let may_store = if raw {
                                    parser.push_raw(chunk.stream, &chunk.bytes, chrono::Utc::now(), &mut lines);
                                    true
                                } else {
                                    parser.push_lines(&chunk, &mut lines)
                                };
                                for line in lines.drain(..) {
                                    sink.push_line(line);
                                }
                                if let (true, Some(cursor)) = (may_store, parser.cursor()) {
                                    sink.set_cursor(&cursor);
                                }
                                if sink.is_full() {
                                    sink.flush().await?;
                                }
                            }
                            Some(Err(e)) => {
                                self.metrics.docker_error();
                                warn!("reading the output of {name} failed: {e}");
                                broken = true;
                                break;
                            }
                            None => break,
                        },
                    }
                }
                if raw && !broken {
                    drained = true;
                }
            }
            let state = self
                .docker
                .inspect_container(name)
                .await
                .map_err(|e| anyhow::anyhow!("cannot inspect container {name}: {e}"))?
                .with_context(|| format!("the container {name} disappeared"))?;
            if !state.running && state.status != "created" {
                if read_log && !drained {
                    drained = true;
                    parser.rewind();
                    continue;
                }
                if read_log {
                    let cursor = parser.finish(&mut lines);
                    for line in lines.drain(..) {
                        sink.push_line(line);
                    }
                    if let Some(cursor) = cursor {
                        sink.set_cursor(&cursor);
                    }
                }
                sink.end_of_log().await?;
                return Ok(Some(state));
            }
            // Still running: the stream broke or ended (or we only wait); read Docker's log
            // from the cursor shortly.
            drained = false;
            parser.rewind();
            tokio::select! {
                _ = shutdown.cancelled() => {
                    sink.sync().await?;
                    return Ok(None);
                }
                _ = tokio::time::sleep(Duration::from_millis(if read_log { 100 } else { 250 })) => {}
            }
        }
    }
}

/// A container's output as [`Docker::attach`] and [`Docker::logs`] give it.
type OutputStream =
    futures_util::stream::BoxStream<'static, crate::docker::DockerResult<crate::docker::LogChunk>>;

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
