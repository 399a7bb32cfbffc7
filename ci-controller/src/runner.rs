//! One job from claim (or reattach) to its end: the workspace, the install and test phases in
//! their containers, the log, cancellation and the timeout, and the outcome.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use ci_common::api::Outcome;
use ci_common::db::jobs::{self, Job};
use ci_common::db::{uploads, DbError, SqlitePool};
use ci_common::policy::Policy;
use ci_common::project::{install_notice, pytest_command, Install, Project, RootFiles};
use ci_common::{JobId, JobStatus, Phase};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::archive::zip_to_tar;
use crate::config::human_size;
use crate::docker::{ContainerState, ContainerSummary, Docker};
use crate::logs::{Cursor, LogCap, LogParser, LogSink};
use crate::metrics::Metrics;
use crate::sandbox::{container_config, Sandbox, Step, LABEL_PHASE, WORKSPACE};
use ci_common::archive::root_files;

/// Settings of job execution that are not container settings.
#[derive(Clone, Debug)]
pub struct JobSettings {
    pub job_timeout: Duration,
    pub stop_grace: Duration,
    pub max_line_bytes: usize,
    pub log_cap: LogCap,
    pub workspace_size: u64,
    pub uid: u64,
    pub gid: u64,
}

/// What every job task shares.
pub struct Ctx<D> {
    pub docker: D,
    pub pool: SqlitePool,
    pub epoch: i64,
    /// What the operator allows (published for the server at start).
    pub policy: Policy,
    pub sandbox: Sandbox,
    pub settings: JobSettings,
    pub metrics: Arc<Metrics>,
    /// When each image was last seen present (it is not inspected again for every job).
    pub image_seen: std::sync::Mutex<std::collections::HashMap<String, Instant>>,
}

/// How long an image seen present is trusted without inspecting it again.
const IMAGE_SEEN_FOR: Duration = Duration::from_secs(30);

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

enum PhaseEnd {
    Exited(ContainerState, Option<Stop>),
    /// Stopped before the container started.
    StoppedBefore(StopKind),
    Detached,
}

enum Flow {
    Done(Outcome),
    Detached,
}

/// How a phase begins.
enum Start {
    /// Create and start a new container, uploading the project first if given.
    Fresh(Option<Bytes>),
    /// Continue an existing container: follow its log after `cursor` (or, without `read_log`,
    /// only wait for its exit: its log is already complete in the database).
    Resume {
        cursor: Option<Cursor>,
        read_log: bool,
    },
}

/// What a job runs: its image, and the commands of its install and test steps, decided from
/// the job and its project's root files.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPlan {
    pub task: String,
    pub image: String,
    pub install: Install,
    /// What the job says about its install step (see [`install_notice`]).
    pub install_notice: String,
    pub test: Vec<String>,
}

impl JobPlan {
    /// The plan of `job`, or why it cannot run (an image the operator does not allow, a broken
    /// project configuration).
    pub fn new(
        job: &Job,
        default_image: &str,
        policy: &Policy,
        root: &RootFiles,
    ) -> Result<Self, String> {
        let image = job
            .image
            .clone()
            .unwrap_or_else(|| default_image.to_owned());
        policy.check_image(&image).map_err(|e| e.to_string())?;
        let project = Project::read(root).map_err(|e| e.to_string())?;
        Ok(Self {
            task: job.task.clone(),
            image,
            install: Install::plan(root),
            install_notice: install_notice(root, &Install::plan(root)),
            test: pytest_command(project.pytest.as_ref(), &job.args()),
        })
    }

    /// The container run of one phase.
    pub fn step(&self, job: JobId, phase: Phase) -> Step<'_> {
        let command = match phase {
            Phase::Install => ["python3", "-m", "pip", "install", "--user"]
                .iter()
                .map(|s| s.to_string())
                .chain(self.install.pip_args())
                .collect(),
            Phase::Test => self.test.clone(),
        };
        Step {
            job,
            task: &self.task,
            phase,
            image: &self.image,
            command,
        }
    }
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

fn oom_outcome(phase: Phase, state: &ContainerState, memory: u64) -> Outcome {
    let what = match phase {
        Phase::Install => "installing requirements",
        Phase::Test => "the tests",
    };
    let mut outcome = Outcome::new(JobStatus::Error)
        .with_reason(format!(
            "out of memory: {what} used more than the memory limit of {} and the process was killed",
            human_size(memory)
        ))
        .with_exit_code(state.exit_code);
    outcome.oom_killed = true;
    outcome
}

/// The outcome of a finished test container.
pub fn test_outcome(state: &ContainerState, memory: u64) -> Outcome {
    if state.oom_killed {
        return oom_outcome(Phase::Test, state, memory);
    }
    let code = state.exit_code;
    let (status, reason) = match code {
        0 => (JobStatus::Passed, None),
        1 => (JobStatus::Failed, Some("some tests failed (pytest exit 1)".to_owned())),
        2 => (JobStatus::Error, Some("pytest exit 2: collecting the tests failed (an import error such as a module that is not installed, or a syntax error: see the log) or the run was interrupted".to_owned())),
        3 => (JobStatus::Error, Some("pytest exit 3: internal error in pytest".to_owned())),
        4 => (JobStatus::Error, Some("pytest exit 4: pytest command line usage error".to_owned())),
        5 => (JobStatus::Error, Some("pytest exit 5: no tests were collected".to_owned())),
        137 => (JobStatus::Error, Some("the tests were killed with SIGKILL (exit 137)".to_owned())),
        other => (JobStatus::Error, Some(format!("the tests ended with exit code {other}"))),
    };
    let mut outcome = Outcome::new(status).with_exit_code(code);
    outcome.reason = reason;
    outcome
}

/// The outcome of a finished install container, if the job cannot go on.
pub fn install_failure(state: &ContainerState, memory: u64) -> Option<Outcome> {
    if state.oom_killed {
        return Some(oom_outcome(Phase::Install, state, memory));
    }
    (state.exit_code != 0).then(|| {
        Outcome::new(JobStatus::Error)
            .with_reason(format!("pip install failed (exit {})", state.exit_code))
            .with_exit_code(state.exit_code)
    })
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
pub fn missing_image_reason(image: &str, pull_error: &str) -> String {
    format!(
        "the image {image} is not available and could not be pulled ({pull_error}); without a \
         registry, build the offline runner image with scripts/build-runner-image.sh and start \
         the controller with --image ci-runner:bookworm"
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
            self.pool.clone(),
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
            Err(e) if is_lease_lost(&e) => return TaskEnd::LeaseLost,
            Err(e) => {
                warn!(job.id = %id, "job failed inside the controller: {e:#}");
                Outcome::new(JobStatus::Error).with_reason(format!("{e:#}"))
            }
        };
        let end = match jobs::finish(&self.pool, id, Some(self.epoch), &outcome).await {
            Ok(_) => {
                info!(job.id = %id, status = %outcome.status, reason = outcome.reason.as_deref().unwrap_or(""), "job finished");
                let secs = job
                    .started_at
                    .map(|t| (chrono::Utc::now() - t).num_milliseconds() as f64 / 1000.0)
                    .unwrap_or_else(|| started.elapsed().as_secs_f64());
                self.metrics.job_finished(outcome.status, secs);
                TaskEnd::Finished(outcome.status)
            }
            Err(DbError::LeaseLost(_)) => return TaskEnd::LeaseLost,
            Err(e) => TaskEnd::Failed(format!("{:#}", anyhow::Error::from(e))),
        };
        self.cleanup(id).await;
        end
    }

    /// Removes a job's containers and volume.
    pub async fn cleanup(&self, id: JobId) {
        for phase in [Phase::Install, Phase::Test] {
            let name = self.sandbox.container_name(id, phase);
            if let Err(e) = self.docker.remove_container(&name).await {
                self.metrics.docker_error();
                warn!(job.id = %id, "cannot remove container {name}: {e}");
            }
        }
        let volume = self.sandbox.volume_name(id);
        if let Err(e) = self.docker.remove_volume(&volume).await {
            self.metrics.docker_error();
            warn!(job.id = %id, "cannot remove volume {volume}: {e}");
        }
    }

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
        let has = |phase: Phase| {
            found
                .iter()
                .any(|c| c.labels.get(LABEL_PHASE).map(String::as_str) == Some(phase.as_str()))
        };
        let db_cursor = job.log_cursor.clone().map(|ts| Cursor {
            ts,
            count: job.log_cursor_skip,
        });

        if found.is_empty() {
            return self.start_fresh(job, sink, control, deadline).await;
        }
        info!(job.id = %job.id, phase = ?job.phase, "reattaching to the job's container");
        if !has(Phase::Test) {
            let in_install = job.phase == Some(Phase::Install);
            let start = Start::Resume {
                cursor: if in_install { db_cursor } else { None },
                read_log: in_install,
            };
            let end = self
                .run_phase(job.id, None, Phase::Install, start, sink, control, deadline)
                .await?;
            if let Some(flow) = self.after_install(end) {
                return Ok(flow);
            }
            let Some(zip) = uploads::get(&self.pool, job.id).await? else {
                return Ok(error("the job's uploaded project is missing"));
            };
            let root = tokio::task::spawn_blocking(move || root_files(&zip))
                .await
                .context("reading the project failed")?;
            let plan = match root
                .map_err(|e| e.to_string())
                .and_then(|root| self.plan(job, &root))
            {
                Ok(plan) => plan,
                Err(reason) => return Ok(error(reason)),
            };
            return self
                .test_phase(
                    job.id,
                    Some(&plan),
                    Start::Fresh(None),
                    sink,
                    control,
                    deadline,
                )
                .await;
        }
        let start = Start::Resume {
            cursor: if job.phase == Some(Phase::Test) {
                db_cursor
            } else {
                None
            },
            read_log: true,
        };
        self.test_phase(job.id, None, start, sink, control, deadline)
            .await
    }

    /// The plan of a job of this controller (see [`JobPlan::new`]).
    fn plan(&self, job: &Job, root: &RootFiles) -> Result<JobPlan, String> {
        JobPlan::new(job, &self.sandbox.image, &self.policy, root)
    }

    async fn start_fresh(
        &self,
        job: &Job,
        sink: &mut LogSink,
        control: &JobControl,
        deadline: Instant,
    ) -> anyhow::Result<Flow> {
        // The workspace volume is created while the project is unpacked.
        let volume = self.sandbox.volume_name(job.id);
        let create_volume = self
            .docker
            .create_volume(&volume, self.sandbox.labels(job.id, None));
        let s = &self.settings;
        let (uid, gid, size) = (s.uid, s.gid, s.workspace_size);
        let unpack = async {
            let Some(zip) = uploads::get(&self.pool, job.id).await? else {
                return Ok(None);
            };
            let tar = tokio::task::spawn_blocking(move || zip_to_tar(&zip, uid, gid, size))
                .await
                .context("unpacking the project failed")?;
            anyhow::Ok(Some(tar))
        };
        let (created, unpacked) = tokio::join!(create_volume, unpack);
        let workspace = match unpacked? {
            None => return Ok(error("the job's uploaded project is missing")),
            Some(Err(e)) => return Ok(error(e.to_string())),
            Some(Ok(ws)) => ws,
        };
        if let Err(e) = created {
            self.metrics.docker_error();
            return Ok(error(format!("could not create the workspace volume: {e}")));
        }
        let plan = match self.plan(job, &workspace.root) {
            Ok(plan) => plan,
            Err(reason) => return Ok(error(reason)),
        };
        if let Some(flow) = self.ensure_image(&plan.image, sink).await? {
            return Ok(flow);
        }
        let mut tar = Some(Bytes::from(workspace.tar));
        if plan.install == Install::Nothing {
            sink.notice(plan.install_notice.clone()).await?;
        } else {
            let end = self
                .run_phase(
                    job.id,
                    Some(&plan),
                    Phase::Install,
                    Start::Fresh(tar.take()),
                    sink,
                    control,
                    deadline,
                )
                .await?;
            if let Some(flow) = self.after_install(end) {
                return Ok(flow);
            }
        }
        self.test_phase(
            job.id,
            Some(&plan),
            Start::Fresh(tar),
            sink,
            control,
            deadline,
        )
        .await
    }

    /// Makes sure `image` is present (pulling it if it is not); `Some` ends the job when it
    /// cannot be had.
    async fn ensure_image(&self, image: &str, sink: &mut LogSink) -> anyhow::Result<Option<Flow>> {
        let seen = self
            .image_seen
            .lock()
            .unwrap()
            .get(image)
            .is_some_and(|t| t.elapsed() < IMAGE_SEEN_FOR);
        if seen {
            return Ok(None);
        }
        match self.docker.image_exists(image).await {
            Ok(true) => {}
            Ok(false) => {
                sink.notice(format!("pulling image {image}")).await?;
                if let Err(e) = self.docker.pull_image(image).await {
                    self.metrics.docker_error();
                    return Ok(Some(error(missing_image_reason(image, &e.to_string()))));
                }
            }
            Err(e) => {
                self.metrics.docker_error();
                return Ok(Some(error(format!(
                    "cannot reach Docker to inspect the image {image}: {e}"
                ))));
            }
        }
        self.image_seen
            .lock()
            .unwrap()
            .insert(image.to_owned(), Instant::now());
        Ok(None)
    }

    /// `Some` when the job ends with the install phase.
    fn after_install(&self, end: PhaseEnd) -> Option<Flow> {
        match end {
            PhaseEnd::Detached => Some(Flow::Detached),
            PhaseEnd::StoppedBefore(kind) => Some(Flow::Done(stopped_outcome(
                Stop {
                    kind,
                    killed: false,
                },
                None,
                &self.settings,
            ))),
            PhaseEnd::Exited(state, Some(stop)) => Some(Flow::Done(stopped_outcome(
                stop,
                Some(&state),
                &self.settings,
            ))),
            PhaseEnd::Exited(state, None) => {
                install_failure(&state, self.sandbox.memory_bytes as u64).map(Flow::Done)
            }
        }
    }

    /// Runs (with the plan) or continues (without) the test container.
    async fn test_phase(
        &self,
        id: JobId,
        plan: Option<&JobPlan>,
        start: Start,
        sink: &mut LogSink,
        control: &JobControl,
        deadline: Instant,
    ) -> anyhow::Result<Flow> {
        let end = self
            .run_phase(id, plan, Phase::Test, start, sink, control, deadline)
            .await?;
        Ok(self.after_test(end))
    }

    fn after_test(&self, end: PhaseEnd) -> Flow {
        match end {
            PhaseEnd::Detached => Flow::Detached,
            PhaseEnd::StoppedBefore(kind) => Flow::Done(stopped_outcome(
                Stop {
                    kind,
                    killed: false,
                },
                None,
                &self.settings,
            )),
            PhaseEnd::Exited(state, Some(stop)) => {
                Flow::Done(stopped_outcome(stop, Some(&state), &self.settings))
            }
            PhaseEnd::Exited(state, None) => {
                Flow::Done(test_outcome(&state, self.sandbox.memory_bytes as u64))
            }
        }
    }

    /// Runs one phase in its container until the container exits, is stopped, or the
    /// controller shuts down. A fresh container needs the job's plan.
    #[allow(clippy::too_many_arguments)]
    async fn run_phase(
        &self,
        id: JobId,
        plan: Option<&JobPlan>,
        phase: Phase,
        start: Start,
        sink: &mut LogSink,
        control: &JobControl,
        deadline: Instant,
    ) -> anyhow::Result<PhaseEnd> {
        let name = self.sandbox.container_name(id, phase);
        let (cursor, read_log) = match start {
            Start::Resume { cursor, read_log } => {
                let state = self
                    .docker
                    .inspect_container(&name)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot inspect container {name}: {e}"))?
                    .with_context(|| format!("the container {name} disappeared"))?;
                if state.status == "created" {
                    self.docker
                        .start_container(&name)
                        .await
                        .map_err(|e| anyhow::anyhow!("could not start the container: {e}"))?;
                }
                (cursor, read_log)
            }
            Start::Fresh(tar) => {
                if control.cancel.is_cancelled() {
                    return Ok(PhaseEnd::StoppedBefore(StopKind::Cancel));
                }
                if Instant::now() >= deadline {
                    return Ok(PhaseEnd::StoppedBefore(StopKind::Timeout));
                }
                let plan = plan.context("a new container needs the job's plan")?;
                jobs::set_phase(&self.pool, id, self.epoch, phase).await?;
                sink.new_container();
                let step = plan.step(id, phase);
                sink.notice(match phase {
                    Phase::Install => plan.install_notice.clone(),
                    Phase::Test => format!(
                        "running tests: {}",
                        shlex::try_join(step.command.iter().map(String::as_str))
                            .unwrap_or_else(|_| step.command.join(" "))
                    ),
                })
                .await?;
                let config = container_config(&self.sandbox, &step);
                if let Err(e) = self.docker.create_container(&name, config).await {
                    self.metrics.docker_error();
                    anyhow::bail!("could not create the {} container: {e}", phase.as_str());
                }
                if let Some(tar) = tar {
                    if let Err(e) = self.docker.upload_archive(&name, WORKSPACE, tar).await {
                        self.metrics.docker_error();
                        anyhow::bail!("could not copy the project into the container: {e}");
                    }
                }
                if let Err(e) = self.docker.start_container(&name).await {
                    self.metrics.docker_error();
                    anyhow::bail!("could not start the {} container: {e}", phase.as_str());
                }
                (None, true)
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
        let watch = self.follow(&name, cursor, read_log, sink, &control.shutdown);
        let state = tokio::select! {
            state = watch => state?,
            () = stopper => unreachable!("the stopper never ends"),
        };
        let stop = *stop.lock().unwrap();
        Ok(match state {
            None => PhaseEnd::Detached,
            Some(state) => PhaseEnd::Exited(state, stop),
        })
    }

    /// Follows a container's log into the sink until the container stops (returns its state)
    /// or the controller shuts down (returns `None`). Without `read_log`, only waits for it.
    async fn follow(
        &self,
        name: &str,
        cursor: Option<Cursor>,
        read_log: bool,
        sink: &mut LogSink,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<Option<ContainerState>> {
        use futures_util::StreamExt;
        let mut parser = LogParser::new(self.settings.max_line_bytes, cursor);
        let mut lines = Vec::with_capacity(256);
        let mut drained = false;
        loop {
            if read_log {
                let mut stream = self.docker.logs(name, parser.since());
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
                                let at_line_end = parser.push_lines(&chunk, &mut lines);
                                for line in lines.drain(..) {
                                    sink.push_line(line);
                                }
                                if let (true, Some(cursor)) = (at_line_end, parser.cursor()) {
                                    sink.set_cursor(cursor);
                                }
                                if sink.is_full() {
                                    sink.flush().await?;
                                }
                            }
                            Some(Err(e)) => {
                                self.metrics.docker_error();
                                warn!("reading the log of {name} failed: {e}");
                                break;
                            }
                            None => break,
                        },
                    }
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
                    // A follow can end before everything was read (Docker ends it when the
                    // container stops, even when the reader is behind a log rotation): read
                    // what is left once more from the cursor.
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
            // Still running: the log stream broke (or we only wait); look again shortly.
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

fn is_lease_lost(e: &anyhow::Error) -> bool {
    e.chain()
        .any(|cause| matches!(cause.downcast_ref::<DbError>(), Some(DbError::LeaseLost(_))))
}
