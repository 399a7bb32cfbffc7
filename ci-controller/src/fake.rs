//! An in-memory Docker for testing the job state machine, and those tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bollard::container::Config;
use bytes::Bytes;
use ci_common::{JobId, LogStream};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use tokio::sync::watch;

use crate::docker::{
    ContainerState, ContainerSummary, Docker, DockerError, DockerResult, LogChunk, VolumeSummary,
};

/// How a fake container of one phase behaves.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// Docker log messages (`"<ts> <text>\n"`).
    pub messages: Vec<String>,
    pub exit_code: i64,
    pub oom: bool,
    /// Runs until killed instead of exiting at once.
    pub runs_until_killed: bool,
    /// SIGTERM does nothing (only SIGKILL stops it).
    pub ignores_term: bool,
}

struct Container {
    config: Config<String>,
    script: Script,
    status: String,
    exit_code: i64,
    oom: bool,
    exited: watch::Sender<bool>,
    uploads: usize,
}

#[derive(Default)]
struct State {
    containers: HashMap<String, Container>,
    volumes: HashMap<String, HashMap<String, String>>,
    scripts: HashMap<String, Script>,
    signals: Vec<String>,
}

#[derive(Clone, Default)]
pub struct FakeDocker {
    state: Arc<Mutex<State>>,
    pub missing_image: bool,
}

impl FakeDocker {
    /// Sets how containers of `phase` ("install" / "test") behave.
    pub fn script(&self, phase: &str, script: Script) {
        self.state
            .lock()
            .unwrap()
            .scripts
            .insert(phase.to_owned(), script);
    }

    pub fn container_names(&self) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .containers
            .keys()
            .cloned()
            .collect()
    }

    pub fn volume_names(&self) -> Vec<String> {
        self.state.lock().unwrap().volumes.keys().cloned().collect()
    }

    pub fn signals(&self) -> Vec<String> {
        self.state.lock().unwrap().signals.clone()
    }

    pub fn config(&self, name: &str) -> Option<Config<String>> {
        self.state
            .lock()
            .unwrap()
            .containers
            .get(name)
            .map(|c| c.config.clone())
    }

    pub fn uploads(&self, name: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .containers
            .get(name)
            .map_or(0, |c| c.uploads)
    }

    /// Puts an already running container in place (as a crashed controller left it).
    pub fn existing(&self, name: &str, config: Config<String>, script: Script) {
        let (exited, _) = watch::channel(false);
        self.state.lock().unwrap().containers.insert(
            name.to_owned(),
            Container {
                config,
                script,
                status: "running".into(),
                exit_code: 0,
                oom: false,
                exited,
                uploads: 0,
            },
        );
    }

    fn exit(c: &mut Container, code: i64, oom: bool) {
        c.status = "exited".into();
        c.exit_code = code;
        c.oom = oom;
        c.exited.send_replace(true);
    }
}

impl Docker for FakeDocker {
    async fn image_exists(&self, _image: &str) -> DockerResult<bool> {
        Ok(!self.missing_image)
    }

    async fn pull_image(&self, image: &str) -> DockerResult<()> {
        Err(DockerError::Api(format!("pull access denied for {image}")))
    }

    async fn create_volume(&self, name: &str, labels: HashMap<String, String>) -> DockerResult<()> {
        self.state
            .lock()
            .unwrap()
            .volumes
            .insert(name.to_owned(), labels);
        Ok(())
    }

    async fn remove_volume(&self, name: &str) -> DockerResult<()> {
        self.state.lock().unwrap().volumes.remove(name);
        Ok(())
    }

    async fn list_volumes(&self, _label: &str) -> DockerResult<Vec<VolumeSummary>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .volumes
            .iter()
            .map(|(name, labels)| VolumeSummary {
                name: name.clone(),
                labels: labels.clone(),
            })
            .collect())
    }

    async fn create_container(&self, name: &str, config: Config<String>) -> DockerResult<()> {
        let mut state = self.state.lock().unwrap();
        let phase = config
            .labels
            .as_ref()
            .and_then(|l| l.get("ci.phase"))
            .cloned()
            .unwrap_or_default();
        let script = state.scripts.get(&phase).cloned().unwrap_or_default();
        let (exited, _) = watch::channel(false);
        state.containers.insert(
            name.to_owned(),
            Container {
                config,
                script,
                status: "created".into(),
                exit_code: 0,
                oom: false,
                exited,
                uploads: 0,
            },
        );
        Ok(())
    }

    async fn upload_archive(&self, name: &str, _path: &str, _tar: Bytes) -> DockerResult<()> {
        let mut state = self.state.lock().unwrap();
        let c = state
            .containers
            .get_mut(name)
            .ok_or_else(|| DockerError::NotFound(name.into()))?;
        c.uploads += 1;
        Ok(())
    }

    async fn start_container(&self, name: &str) -> DockerResult<()> {
        let mut state = self.state.lock().unwrap();
        let c = state
            .containers
            .get_mut(name)
            .ok_or_else(|| DockerError::NotFound(name.into()))?;
        c.status = "running".into();
        if !c.script.runs_until_killed {
            let (code, oom) = (c.script.exit_code, c.script.oom);
            Self::exit(c, code, oom);
        }
        Ok(())
    }

    async fn inspect_container(&self, name: &str) -> DockerResult<Option<ContainerState>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .containers
            .get(name)
            .map(|c| ContainerState {
                status: c.status.clone(),
                running: c.status == "running",
                exit_code: c.exit_code,
                oom_killed: c.oom,
            }))
    }

    fn logs(&self, name: &str, _since: i64) -> BoxStream<'static, DockerResult<LogChunk>> {
        let state = self.state.lock().unwrap();
        let Some(c) = state.containers.get(name) else {
            return futures_util::stream::iter([Err(DockerError::NotFound(name.into()))]).boxed();
        };
        let chunks: Vec<DockerResult<LogChunk>> = c
            .script
            .messages
            .iter()
            .map(|m| {
                Ok(LogChunk {
                    stream: LogStream::Stdout,
                    bytes: Bytes::from(m.clone()),
                })
            })
            .collect();
        let mut exited = c.exited.subscribe();
        let until_exit = futures_util::stream::once(async move {
            let _ = exited.wait_for(|done| *done).await;
        })
        .filter_map(|()| async { None });
        futures_util::stream::iter(chunks).chain(until_exit).boxed()
    }

    async fn kill_container(&self, name: &str, signal: &str) -> DockerResult<()> {
        let mut state = self.state.lock().unwrap();
        state.signals.push(signal.to_owned());
        if let Some(c) = state.containers.get_mut(name) {
            if c.status == "running" {
                match signal {
                    "SIGKILL" => Self::exit(c, 137, false),
                    _ if !c.script.ignores_term => Self::exit(c, 143, false),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    async fn remove_container(&self, name: &str) -> DockerResult<()> {
        if let Some(mut c) = self.state.lock().unwrap().containers.remove(name) {
            Self::exit(&mut c, 137, false);
        }
        Ok(())
    }

    async fn list_containers(&self, _label: &str) -> DockerResult<Vec<ContainerSummary>> {
        Ok(self
            .state
            .lock()
            .unwrap()
            .containers
            .iter()
            .map(|(name, c)| ContainerSummary {
                name: name.clone(),
                labels: c.config.labels.clone().unwrap_or_default(),
                running: c.status == "running",
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use ci_common::db::events::{self, EventRow};
    use ci_common::db::jobs::{self, Job};
    use ci_common::db::{self, lease, users, SqlitePool};
    use ci_common::{EventKind, JobStatus, Phase};

    use super::*;
    use crate::logs::LogCap;
    use crate::metrics::Metrics;
    use crate::runner::{Ctx, JobControl, JobSettings, TaskEnd};
    use crate::sandbox::{container_config, Sandbox};

    struct World {
        _dir: tempfile::TempDir,
        pool: SqlitePool,
        docker: FakeDocker,
        epoch: i64,
    }

    fn zip_of(files: &[(&str, &str)]) -> Vec<u8> {
        let mut writer = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
        for (name, body) in files {
            writer
                .start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            writer.write_all(body.as_bytes()).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }

    async fn world() -> World {
        let dir = tempfile::tempdir().unwrap();
        let pool = db::connect(&dir.path().join("ci.db"), 4).await.unwrap();
        let epoch = lease::acquire(&pool, "test").await.unwrap().epoch;
        World {
            _dir: dir,
            pool,
            docker: FakeDocker::default(),
            epoch,
        }
    }

    fn sandbox() -> Sandbox {
        Sandbox {
            image: "img".into(),
            prefix: "t".into(),
            user: "1000:1000".into(),
            memory_bytes: 256 << 20,
            nano_cpus: 1_000_000_000,
            pids_limit: 64,
            tmp_size_bytes: 1 << 20,
            install_network: "bridge".into(),
            test_network: "none".into(),
            log_max_size_bytes: 1 << 20,
            identity_dir: "/nonexistent/identity".into(),
        }
    }

    fn ctx(w: &World, timeout: Duration, cap: LogCap) -> Arc<Ctx<FakeDocker>> {
        Arc::new(Ctx {
            docker: w.docker.clone(),
            pool: w.pool.clone(),
            epoch: w.epoch,
            policy: ci_common::policy::Policy::new("img", &[], 1 << 20, 100),
            sandbox: sandbox(),
            settings: JobSettings {
                job_timeout: timeout,
                stop_grace: Duration::from_millis(100),
                max_line_bytes: 1024,
                log_cap: cap,
                workspace_size: 1 << 20,
                uid: 1000,
                gid: 1000,
            },
            metrics: Arc::new(Metrics::default()),
            image_seen: Default::default(),
        })
    }

    const NO_CAP: LogCap = LogCap { lines: 0, bytes: 0 };

    async fn claim(w: &World, files: &[(&str, &str)]) -> Job {
        let user = users::create(&w.pool, "Ada", &format!("{}@example.com", JobId::new()))
            .await
            .unwrap();
        jobs::create(&w.pool, user.id, "test", &zip_of(files))
            .await
            .unwrap();
        jobs::claim_next(&w.pool, w.epoch, "img")
            .await
            .unwrap()
            .unwrap()
    }

    fn lines(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("2024-05-01T10:00:00.{:09}Z line {i}\n", i + 1))
            .collect()
    }

    async fn run(
        w: &World,
        ctx: Arc<Ctx<FakeDocker>>,
        job: Job,
        control: JobControl,
    ) -> (Job, Vec<EventRow>) {
        let id = job.id;
        let end = tokio::time::timeout(
            Duration::from_secs(10),
            ctx.run_job(job, Vec::new(), control),
        )
        .await
        .expect("the job ends");
        assert!(matches!(end, TaskEnd::Finished(_)), "{end:?}");
        let job = jobs::get(&w.pool, id).await.unwrap().unwrap();
        (
            job,
            events::list_after(&w.pool, id, 0, 100_000).await.unwrap(),
        )
    }

    fn texts(events: &[EventRow], kind: EventKind) -> Vec<&str> {
        events
            .iter()
            .filter(|e| e.kind == kind)
            .map(|e| e.text.as_str())
            .collect()
    }

    #[tokio::test]
    async fn a_passing_job_stores_its_log_and_leaves_nothing_behind() {
        let w = world().await;
        w.docker.script(
            "test",
            Script {
                messages: lines(3),
                ..Default::default()
            },
        );
        let job = claim(&w, &[("test_a.py", "")]).await;
        let (job, events) = run(
            &w,
            ctx(&w, Duration::from_secs(60), NO_CAP),
            job,
            JobControl::default(),
        )
        .await;
        assert_eq!(job.status, JobStatus::Passed);
        assert_eq!(job.exit_code, Some(0));
        assert_eq!(
            texts(&events, EventKind::Log),
            ["line 0", "line 1", "line 2"]
        );
        assert_eq!(
            texts(&events, EventKind::Notice),
            [
                "nothing to install (no requirements.txt, requirements-test.txt, \
                 requirements-dev.txt or test extra): skipping the install step",
                "running tests: python3 -m pytest -v"
            ]
        );
        assert_eq!(job.log_lines, 3);
        assert_eq!(
            job.log_cursor.as_deref(),
            Some("2024-05-01T10:00:00.000000003Z"),
            "the cursor is the last line's timestamp"
        );
        assert!(w.docker.container_names().is_empty(), "containers removed");
        assert!(w.docker.volume_names().is_empty(), "volume removed");
    }

    #[tokio::test]
    async fn install_failures_and_oom_end_in_error() {
        let w = world().await;
        w.docker.script(
            "install",
            Script {
                exit_code: 1,
                ..Default::default()
            },
        );
        let job = claim(&w, &[("requirements.txt", "nothing"), ("test_a.py", "")]).await;
        let (job, events) = run(
            &w,
            ctx(&w, Duration::from_secs(60), NO_CAP),
            job,
            JobControl::default(),
        )
        .await;
        assert_eq!(job.status, JobStatus::Error);
        assert_eq!(job.reason.as_deref(), Some("pip install failed (exit 1)"));
        assert_eq!(
            texts(&events, EventKind::Notice),
            ["installing requirements.txt"]
        );

        let w = world().await;
        w.docker.script(
            "test",
            Script {
                exit_code: 137,
                oom: true,
                ..Default::default()
            },
        );
        let job = claim(&w, &[("test_a.py", "")]).await;
        let (job, _) = run(
            &w,
            ctx(&w, Duration::from_secs(60), NO_CAP),
            job,
            JobControl::default(),
        )
        .await;
        assert_eq!(job.status, JobStatus::Error);
        assert!(job.oom_killed);
        assert!(job.reason.unwrap().contains("memory limit of 256m"));
    }

    #[tokio::test]
    async fn the_project_is_uploaded_into_the_first_container_only() {
        let w = world().await;
        let job = claim(&w, &[("requirements.txt", ""), ("test_a.py", "")]).await;
        let ctx = ctx(&w, Duration::from_secs(60), NO_CAP);
        // Keep the containers to look at them: the test phase runs until cancelled.
        w.docker.script(
            "test",
            Script {
                runs_until_killed: true,
                ..Default::default()
            },
        );
        let control = JobControl::default();
        let id = job.id;
        let task = tokio::spawn(ctx.clone().run_job(job, Vec::new(), control.clone()));
        let test = sandbox().container_name(id, Phase::Test);
        let install = sandbox().container_name(id, Phase::Install);
        while w.docker.config(&test).is_none() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(w.docker.uploads(&install), 1);
        assert_eq!(w.docker.uploads(&test), 0);
        control.cancel.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn cancel_sends_sigterm_then_sigkill_after_the_grace() {
        let w = world().await;
        w.docker.script(
            "test",
            Script {
                messages: lines(1),
                runs_until_killed: true,
                ignores_term: true,
                ..Default::default()
            },
        );
        let job = claim(&w, &[("test_a.py", "")]).await;
        let control = JobControl::default();
        let cancel = control.cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            cancel.cancel();
        });
        let (job, _) = run(&w, ctx(&w, Duration::from_secs(60), NO_CAP), job, control).await;
        assert_eq!(job.status, JobStatus::Cancelled);
        assert_eq!(
            job.reason.as_deref(),
            Some("cancelled by the user; killed with SIGKILL after 0.1s grace")
        );
        assert_eq!(w.docker.signals(), ["SIGTERM", "SIGKILL"]);
    }

    #[tokio::test]
    async fn a_job_past_its_timeout_is_stopped_with_sigterm() {
        let w = world().await;
        w.docker.script(
            "test",
            Script {
                runs_until_killed: true,
                ..Default::default()
            },
        );
        let job = claim(&w, &[("test_a.py", "")]).await;
        let (job, _) = run(
            &w,
            ctx(&w, Duration::from_millis(200), NO_CAP),
            job,
            JobControl::default(),
        )
        .await;
        assert_eq!(job.status, JobStatus::TimedOut);
        assert_eq!(
            job.reason.as_deref(),
            Some("timed out after 0.2s; stopped with SIGTERM")
        );
        assert_eq!(job.exit_code, Some(143));
    }

    #[tokio::test]
    async fn a_reattached_job_continues_its_log_after_the_stored_cursor() {
        let w = world().await;
        let job = claim(&w, &[("test_a.py", "")]).await;
        let id = job.id;
        jobs::set_phase(&w.pool, id, w.epoch, Phase::Test)
            .await
            .unwrap();
        // The previous controller stored lines 0 and 1; line 2 shares line 1's timestamp.
        let mut messages = lines(4);
        messages[2] = messages[2].replace(".000000003Z", ".000000002Z");
        let mut tx = w.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        jobs::record_log_progress(
            &mut tx,
            id,
            &jobs::LogProgress {
                lines: 2,
                cursor: Some(("2024-05-01T10:00:00.000000002Z".into(), 1)),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let name = sandbox().container_name(id, Phase::Test);
        let script = Script {
            messages,
            runs_until_killed: true,
            ..Default::default()
        };
        let plan = crate::runner::JobPlan {
            task: "test".into(),
            image: "img".into(),
            install: ci_common::project::Install::Nothing,
            install_notice: String::new(),
            test: vec!["python3".into(), "-m".into(), "pytest".into()],
        };
        w.docker.existing(
            &name,
            container_config(&sandbox(), &plan.step(id, Phase::Test)),
            script,
        );
        let job = jobs::get(&w.pool, id).await.unwrap().unwrap();
        let found = w.docker.list_containers("").await.unwrap();
        let ctx = ctx(&w, Duration::from_secs(60), NO_CAP);
        let task = tokio::spawn(ctx.clone().run_job(job, found, JobControl::default()));
        // The container exits while being followed.
        tokio::time::sleep(Duration::from_millis(50)).await;
        {
            let mut state = w.docker.state.lock().unwrap();
            let c = state.containers.get_mut(&name).unwrap();
            FakeDocker::exit(c, 0, false);
        }
        assert!(matches!(
            task.await.unwrap(),
            TaskEnd::Finished(JobStatus::Passed)
        ));
        let events = events::list_after(&w.pool, id, 0, 100).await.unwrap();
        assert_eq!(texts(&events, EventKind::Log), ["line 2", "line 3"]);
        assert!(
            !texts(&events, EventKind::Notice)
                .iter()
                .any(|n| n.starts_with("running tests")),
            "no new container"
        );
    }

    #[tokio::test]
    async fn a_log_past_its_cap_keeps_head_and_tail_with_one_notice() {
        let w = world().await;
        w.docker.script(
            "test",
            Script {
                messages: lines(100),
                ..Default::default()
            },
        );
        let job = claim(&w, &[("test_a.py", "")]).await;
        let (job, events) = run(
            &w,
            ctx(
                &w,
                Duration::from_secs(60),
                LogCap {
                    lines: 10,
                    bytes: 0,
                },
            ),
            job,
            JobControl::default(),
        )
        .await;
        assert_eq!(job.status, JobStatus::Passed);
        let kept: Vec<&str> = events
            .iter()
            .filter(|e| e.kind == EventKind::Log || e.text.starts_with("log truncated"))
            .map(|e| e.text.as_str())
            .collect();
        assert_eq!(
            kept,
            [
                "line 0",
                "line 1",
                "line 2",
                "line 3",
                "line 4",
                "log truncated: 90 lines (625 bytes) dropped",
                "line 95",
                "line 96",
                "line 97",
                "line 98",
                "line 99",
            ]
        );
        assert_eq!(job.log_lines, 10);
        assert_eq!(job.dropped_lines, 90);
    }

    #[tokio::test]
    async fn a_missing_image_names_the_build_script() {
        let mut w = world().await;
        w.docker.missing_image = true;
        let job = claim(&w, &[("test_a.py", "")]).await;
        let (job, _) = run(
            &w,
            ctx(&w, Duration::from_secs(60), NO_CAP),
            job,
            JobControl::default(),
        )
        .await;
        assert_eq!(job.status, JobStatus::Error);
        let reason = job.reason.unwrap();
        assert!(
            reason.contains("img") && reason.contains("scripts/build-runner-image.sh"),
            "{reason}"
        );
    }
}
