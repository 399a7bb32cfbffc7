//! The runner's tests: whole jobs against the in-memory Docker of [`crate::docker_double`].

use std::io::Write;
use std::time::Duration;

use ci_common::db::events::{self, EventRow};
use ci_common::db::jobs::{self, Job};
use ci_common::db::steps;
use ci_common::db::{lease, users, SqlitePool};
use ci_common::step::{ExitRule, Network, StepSpec};
use ci_common::{EventKind, JobStatus};

use super::*;
use crate::docker_double::{FakeDocker, Script};
use crate::logs::LogCap;
use crate::metrics::Metrics;
use crate::runner::{Ctx, JobControl, JobSettings, TaskEnd};
use crate::sandbox::{container_config, Run, Sandbox};

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
    let (dir, pool) = ci_common::testing::temp_db().await;
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
        git_network: "bridge".into(),
        runtimes: Default::default(),
        log_max_size_bytes: 1 << 20,
        identity_dir: "/nonexistent/identity".into(),
        plugins_dir: "/nonexistent/plugins".into(),
    }
}

fn ctx(w: &World, timeout: Duration, cap: LogCap) -> Arc<Ctx<FakeDocker>> {
    Arc::new(Ctx {
        host: crate::hosts::LOCAL.into(),
        docker: w.docker.clone(),
        db: w.pool.clone().into(),
        epoch: w.epoch,
        policy: ci_common::policy::Policy::new("img", &[], 1 << 20, 100),
        sandbox: sandbox(),
        settings: JobSettings {
            job_timeout: timeout,
            stop_grace: Duration::from_millis(100),
            max_line_bytes: 1024,
            log_cap: cap,
            workspace_size: 1 << 20,
            report_max_bytes: 1 << 20,
            cache: Default::default(),
            installer: Default::default(),
            source_retain: Duration::from_secs(3600),
            artifact_retain: Duration::ZERO,
            git_timeout: Duration::from_secs(60),
            max_running_per_user: 0,
            secrets: None,
            uid: 1000,
            gid: 1000,
        },
        metrics: Arc::new(Metrics::default()),
        image_seen: Default::default(),
        pip_cache_busy: Default::default(),
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
    jobs::claim_next(&w.pool, w.epoch, "img", "local")
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
async fn when_the_attach_stream_breaks_the_log_goes_on_from_dockers_log_without_a_line_lost_or_repeated(
) {
    let w = world().await;
    let n = 2500;
    w.docker.script(
        "test",
        Script {
            messages: lines(n),
            attach_breaks_after: Some(1234),
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
    let expected: Vec<String> = (0..n).map(|i| format!("line {i}")).collect();
    assert_eq!(texts(&events, EventKind::Log), expected);
    assert_eq!(job.log_lines, n as i64);
    assert_eq!(
        job.log_cursor.as_deref(),
        Some(format!("lines out={n}+0 err=0+0").as_str())
    );
    assert_eq!(
        w.docker.log_reads(),
        1,
        "Docker's log read once, after the break"
    );
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
            "running tests: python3 -m pytest -v",
            "no test report: pytest did not write one (did it start?)"
        ]
    );
    assert_eq!(job.log_lines, 3);
    assert_eq!(
        job.log_cursor.as_deref(),
        Some("lines out=3+0 err=0+0"),
        "the cursor counts the lines stored"
    );
    assert_eq!(
        w.docker.log_reads(),
        0,
        "the log was read live from the attach stream, not from Docker's log"
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
    assert_eq!(
        job.reason.as_deref(),
        Some("pip install failed: step install exited 1")
    );
    let states: Vec<_> = steps::list(&w.pool, job.id)
        .await
        .unwrap()
        .iter()
        .map(|s| (s.name.clone(), s.state, s.exit_code))
        .collect();
    assert_eq!(
        states,
        [
            ("install".to_owned(), StepState::Failed, Some(1)),
            ("test".to_owned(), StepState::Skipped, None)
        ]
    );
    let notices = texts(&events, EventKind::Notice);
    assert_eq!(notices.len(), 2, "{notices:?}");
    assert!(
        notices[0].starts_with("dependency cache miss (key "),
        "{notices:?}"
    );
    assert_eq!(notices[1], "installing requirements.txt");
    // The failed install publishes nothing: its entry and volume are gone when the job ends.
    assert_eq!(ci_common::db::cache::list(&w.pool, None).await.unwrap(), []);
    assert!(
        !w.docker.volume_names().iter().any(|v| v.contains("-deps-")),
        "{:?}",
        w.docker.volume_names()
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

    // Docker may hear of the out of memory kill only after the exit: its `oom` event says it.
    let w = world().await;
    w.docker.script(
        "test",
        Script {
            exit_code: 137,
            oom_event: true,
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
    let test = sandbox().container_name(id, "test");
    let install = sandbox().container_name(id, "install");
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
    let pool = w.pool.clone();
    let id = job.id;
    tokio::spawn(async move {
        // Cancel once the test step runs (its first line is stored).
        wait_for_log(&pool, id, "line 0").await;
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
async fn a_controller_that_lost_its_lease_leaves_the_job_and_its_container_alone() {
    let w = world().await;
    w.docker.script(
        "test",
        Script {
            messages: lines(1),
            runs_until_killed: true,
            ..Default::default()
        },
    );
    let job = claim(&w, &[("test_a.py", "")]).await;
    let id = job.id;
    let control = JobControl::default();
    let ctx = ctx(&w, Duration::from_secs(60), NO_CAP);
    let task = tokio::spawn(ctx.run_job(job, Vec::new(), control.clone()));
    wait_for_log(&w.pool, id, "line 0").await;
    lease::acquire(&w.pool, "another controller").await.unwrap();
    // The stopped step cannot be recorded under the old epoch: the task ends, not the job.
    control.cancel.cancel();
    let end = tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the task ends")
        .unwrap();
    assert!(matches!(end, TaskEnd::LeaseLost), "{end:?}");
    let job = jobs::get(&w.pool, id).await.unwrap().unwrap();
    assert_eq!(job.status, JobStatus::Running, "the new controller decides");
    assert!(!w.docker.container_names().is_empty(), "nothing cleaned up");
}

/// Waits (polling the database) until the job has a log line containing `needle`.
async fn wait_for_log(pool: &SqlitePool, id: JobId, needle: &str) {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let events = events::list_after(pool, id, 0, 100_000).await.unwrap();
            if events
                .iter()
                .any(|e| e.kind == EventKind::Log && e.text.contains(needle))
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
}

/// A step that runs `command` online or offline and passes on exit 0.
fn plain_step(name: &str) -> StepSpec {
    StepSpec {
        name: name.into(),
        title: name.into(),
        notice: format!("running {name}"),
        image: "img".into(),
        command: vec!["true".into()],
        network: Network::Offline,
        env: Vec::new(),
        timeout_secs: None,
        exit: ExitRule::Zero {
            failure: JobStatus::Failed,
        },
        stops_job: true,
        attempt: 1,
        rerun: Vec::new(),
        cache: None,
        pip_cache: None,
        artifacts: Vec::new(),
        deps_dir: None,
        secrets: Vec::new(),
    }
}

/// Leaves a job as a controller that crashed in its step `current` (1-based) left it: the
/// steps before it passed, it runs in a container with `messages`, and lines up to `cursor`
/// are stored.
async fn crashed_in(
    w: &World,
    job: &Job,
    specs: &[StepSpec],
    current: usize,
    messages: Vec<String>,
    cursor: (&str, i64),
    stored: i64,
) -> String {
    let id = job.id;
    steps::plan(&w.pool, id, w.epoch, specs).await.unwrap();
    for position in 1..current as i64 {
        steps::start(&w.pool, id, w.epoch, position).await.unwrap();
        steps::finish(
            &w.pool,
            id,
            w.epoch,
            position,
            StepState::Passed,
            Some(0),
            None,
        )
        .await
        .unwrap();
    }
    steps::start(&w.pool, id, w.epoch, current as i64)
        .await
        .unwrap();
    let mut tx = w.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
    jobs::record_log_progress(
        &mut tx,
        id,
        &jobs::LogProgress {
            lines: stored,
            cursor: Some((cursor.0.into(), cursor.1)),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let spec = &specs[current - 1];
    let name = sandbox().container_name(id, &spec.name);
    let run = Run {
        job: id,
        task: "test",
        step: spec,
        secret_env: &[],
    };
    let script = Script {
        messages,
        runs_until_killed: true,
        ..Default::default()
    };
    w.docker
        .existing(&name, container_config(&sandbox(), &run), script);
    name
}

#[tokio::test]
async fn a_reattached_job_continues_its_log_after_the_stored_cursor() {
    let w = world().await;
    let job = claim(&w, &[("test_a.py", "")]).await;
    let id = job.id;
    let root = ci_common::project::RootFiles::default();
    let (specs, _) =
        ci_common::step::test_task(&root, "img", &[], ci_common::project::Installer::Auto).unwrap();
    // The previous controller stored lines 0 and 1; line 2 shares line 1's timestamp.
    let mut messages = lines(4);
    messages[2] = messages[2].replace(".000000003Z", ".000000002Z");
    let name = crashed_in(
        &w,
        &job,
        &specs,
        1,
        messages,
        ("2024-05-01T10:00:00.000000002Z", 1),
        2,
    )
    .await;
    let job = jobs::get(&w.pool, id).await.unwrap().unwrap();
    let found = w.docker.list_containers("").await.unwrap();
    let ctx = ctx(&w, Duration::from_secs(60), NO_CAP);
    let task = tokio::spawn(ctx.clone().run_job(job, found, JobControl::default()));
    // The container exits while being followed, once what it printed is stored.
    wait_for_log(&w.pool, id, "line 3").await;
    w.docker.exit_now(&name, 0);
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
async fn a_third_step_reattaches_mid_step_like_every_step() {
    let w = world().await;
    let job = claim(&w, &[("test_a.py", "")]).await;
    let id = job.id;
    let specs = [
        plain_step("fetch"),
        plain_step("build"),
        plain_step("check"),
    ];
    let name = crashed_in(
        &w,
        &job,
        &specs,
        3,
        lines(3),
        ("2024-05-01T10:00:00.000000001Z", 1),
        1,
    )
    .await;
    let job = jobs::get(&w.pool, id).await.unwrap().unwrap();
    assert_eq!(job.step.as_deref(), Some("check"));
    let found = w.docker.list_containers("").await.unwrap();
    let ctx = ctx(&w, Duration::from_secs(60), NO_CAP);
    let task = tokio::spawn(ctx.clone().run_job(job, found, JobControl::default()));
    wait_for_log(&w.pool, id, "line 2").await;
    w.docker.exit_now(&name, 0);
    assert!(matches!(
        task.await.unwrap(),
        TaskEnd::Finished(JobStatus::Passed)
    ));
    let events = events::list_after(&w.pool, id, 0, 100).await.unwrap();
    assert_eq!(texts(&events, EventKind::Log), ["line 1", "line 2"]);
    let rows = steps::list(&w.pool, id).await.unwrap();
    let states: Vec<_> = rows.iter().map(|r| (r.name.as_str(), r.state)).collect();
    assert_eq!(
        states,
        [
            ("fetch", StepState::Passed),
            ("build", StepState::Passed),
            ("check", StepState::Passed)
        ]
    );
    // Each step's start and end are events, in order; the third ended after the reattach.
    let step_events: Vec<(String, StepState)> = events
        .iter()
        .filter(|e| e.kind == EventKind::Step)
        .map(|e| match e.to_stream_event() {
            ci_common::api::StreamEvent::Step { step, .. } => (step.name, step.state),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(step_events.len(), 6, "{step_events:?}");
    assert_eq!(
        step_events.last().unwrap(),
        &("check".to_owned(), StepState::Passed)
    );
    assert!(w.docker.container_names().is_empty(), "containers removed");
}

#[tokio::test]
async fn a_failing_step_that_does_not_stop_the_job_lets_the_next_run_and_fails_the_job() {
    let w = world().await;
    let job = claim(&w, &[("test_a.py", "")]).await;
    let id = job.id;
    let mut lint = plain_step("lint");
    lint.stops_job = false;
    let specs = [lint, plain_step("check")];
    steps::plan(&w.pool, id, w.epoch, &specs).await.unwrap();
    w.docker.script(
        "lint",
        Script {
            exit_code: 3,
            ..Default::default()
        },
    );
    let (job, events) = run(
        &w,
        ctx(&w, Duration::from_secs(60), NO_CAP),
        job,
        JobControl::default(),
    )
    .await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.reason.as_deref(),
        Some("lint failed: step lint exited 3")
    );
    let notices = texts(&events, EventKind::Notice);
    assert_eq!(notices, ["running lint", "running check"]);
    let states: Vec<_> = steps::list(&w.pool, id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states, [StepState::Failed, StepState::Passed]);
}

#[tokio::test]
async fn a_step_past_its_own_timeout_times_the_job_out() {
    let w = world().await;
    let job = claim(&w, &[("test_a.py", "")]).await;
    let mut slow = plain_step("slow");
    slow.timeout_secs = Some(0);
    steps::plan(&w.pool, job.id, w.epoch, &[slow, plain_step("after")])
        .await
        .unwrap();
    w.docker.script(
        "slow",
        Script {
            runs_until_killed: true,
            ..Default::default()
        },
    );
    let (job, _) = run(
        &w,
        ctx(&w, Duration::from_secs(60), NO_CAP),
        job,
        JobControl::default(),
    )
    .await;
    assert_eq!(job.status, JobStatus::TimedOut);
    let states: Vec<_> = steps::list(&w.pool, job.id)
        .await
        .unwrap()
        .iter()
        .map(|r| r.state)
        .collect();
    assert_eq!(states, [StepState::TimedOut, StepState::Skipped]);
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

#[tokio::test]
async fn a_test_steps_report_becomes_results_counts_and_a_summary_before_complete() {
    let w = world().await;
    let report = concat!(
        "{\"type\": \"test\", \"nodeid\": \"tests/test_a.py::test_ok\", \"file\": \"tests/test_a.py\", \"line\": 1, \"outcome\": \"passed\", \"duration\": 0.01}\n",
        "{\"type\": \"test\", \"nodeid\": \"tests/test_a.py::test_bad\", \"file\": \"tests/test_a.py\", \"line\": 4, \"outcome\": \"failed\", \"duration\": 0.02, \"message\": \"assert 1 == 2\"}\n",
        "{\"type\": \"session\", \"exitstatus\": 1, \"duration\": 0.1}\n",
    );
    w.docker.script(
        "test",
        Script {
            messages: lines(1),
            exit_code: 1,
            files: [(
                crate::sandbox::results_file("test"),
                report.as_bytes().to_vec(),
            )]
            .into(),
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
    assert_eq!(job.status, JobStatus::Failed);
    let failed = ci_common::db::test_results::list(
        &w.pool,
        job.id,
        Some(ci_common::results::TestOutcome::Failed),
        ci_common::db::test_results::Attempts::Last,
        10,
        0,
    )
    .await
    .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].message, "assert 1 == 2");
    let raw = ci_common::db::blobs::read_all(&w.pool, job.id, "reports/test.jsonl")
        .await
        .unwrap();
    assert_eq!(
        raw.as_deref(),
        Some(report.as_bytes()),
        "the raw report is kept"
    );
    assert_eq!(failed[0].line, Some(4));
    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    let summary = kinds.iter().position(|k| *k == EventKind::Summary).unwrap();
    assert_eq!(kinds[summary + 1..].last(), Some(&EventKind::Complete));
    assert!(kinds[..summary].contains(&EventKind::Log), "after the log");
    let complete = events.last().unwrap().to_stream_event();
    let counts = job.view().tests.expect("the job has counts");
    assert_eq!(counts.failures(), 1);
    assert_eq!(counts.total(), 2);
    assert!(
        serde_json::to_string(&complete)
            .unwrap()
            .contains("\"tests\""),
        "complete carries the counts: {complete:?}"
    );
}

#[tokio::test]
async fn a_missing_report_is_a_notice_not_a_changed_state() {
    let w = world().await;
    w.docker.script("test", Script::default());
    let job = claim(&w, &[("test_a.py", "")]).await;
    let (job, events) = run(
        &w,
        ctx(&w, Duration::from_secs(60), NO_CAP),
        job,
        JobControl::default(),
    )
    .await;
    assert_eq!(job.status, JobStatus::Passed);
    assert!(texts(&events, EventKind::Notice)
        .iter()
        .any(|n| n.starts_with("no test report")));
    assert_eq!(job.view().tests, None);
}

/// A claimed job asking for `retries` and `flaky`.
async fn claim_with(w: &World, retries: u32, flaky: ci_common::project::FlakyRule) -> Job {
    let user = users::create(&w.pool, "Ada", &format!("{}@example.com", JobId::new()))
        .await
        .unwrap();
    let options = ci_common::project::JobOptions {
        retries,
        flaky,
        project: Some("shop".into()),
        no_cache: false,
    };
    jobs::create_job(
        &w.pool,
        &jobs::NewJob {
            user_id: user.id,
            task: "test",
            image: None,
            args: &[],
            options: &options,
            concurrency_key: None,
            source: jobs::NewSource::Archive(&zip_of(&[("test_a.py", "")])),
            team_id: None,
        },
    )
    .await
    .unwrap();
    jobs::claim_next(&w.pool, w.epoch, "img", "local")
        .await
        .unwrap()
        .unwrap()
}

/// A pytest step's container that reports `tests` (node id, outcome) and exits as pytest would.
fn pytest_script(step: &str, tests: &[(&str, &str)]) -> Script {
    let report: String = tests
        .iter()
        .map(|(nodeid, outcome)| {
            format!(
                "{{\"type\": \"test\", \"nodeid\": \"{nodeid}\", \"outcome\": \"{outcome}\"}}\n"
            )
        })
        .collect();
    let failed = tests.iter().any(|(_, o)| *o == "failed" || *o == "error");
    Script {
        messages: lines(1),
        exit_code: i64::from(failed),
        files: [(crate::sandbox::results_file(step), report.into_bytes())].into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn failed_tests_are_retried_as_steps_and_a_test_that_then_passes_is_flaky() {
    use ci_common::project::FlakyRule;
    use ci_common::results::TestOutcome;
    let w = world().await;
    w.docker.script(
        "test",
        pytest_script(
            "test",
            &[
                ("t.py::ok", "passed"),
                ("t.py::flaky", "failed"),
                ("t.py::broken", "failed"),
            ],
        ),
    );
    w.docker.script(
        "retry-1",
        pytest_script(
            "retry-1",
            &[("t.py::flaky", "passed"), ("t.py::broken", "failed")],
        ),
    );
    w.docker.script(
        "retry-2",
        pytest_script("retry-2", &[("t.py::broken", "failed")]),
    );
    let job = claim_with(&w, 2, FlakyRule::Pass).await;
    let (job, events) = run(
        &w,
        ctx(&w, Duration::from_secs(60), NO_CAP),
        job,
        JobControl::default(),
    )
    .await;
    assert_eq!(job.status, JobStatus::Failed);
    assert!(
        job.reason
            .as_deref()
            .unwrap()
            .contains("every one of 3 attempts"),
        "{:?}",
        job.reason
    );
    let rows = steps::list(&w.pool, job.id).await.unwrap();
    let seen: Vec<_> = rows.iter().map(|r| (r.name.as_str(), r.state)).collect();
    assert_eq!(
        seen,
        [
            ("test", StepState::Failed),
            ("retry-1", StepState::Failed),
            ("retry-2", StepState::Failed)
        ]
    );
    let retry = rows[1].spec().unwrap();
    assert_eq!(
        (retry.attempt, retry.rerun.as_slice()),
        (
            2,
            &["t.py::flaky".to_owned(), "t.py::broken".to_owned()][..]
        )
    );
    assert_eq!(rows[2].spec().unwrap().rerun, ["t.py::broken"]);
    let counts = ci_common::db::test_results::counts(&w.pool, job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(counts.get(TestOutcome::Passed), 1);
    assert_eq!(counts.get(TestOutcome::Flaky), 1);
    assert_eq!(counts.get(TestOutcome::Failed), 1);
    assert_eq!(counts.total(), 3);
    let notices: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
    assert!(
        notices.iter().any(|t| t
            .contains("attempt 2 of 3: running 2 failed tests again: t.py::flaky, t.py::broken")),
        "{notices:?}"
    );
    assert!(notices
        .iter()
        .any(|t| t.contains("attempt 3 of 3: running 1 failed test again")));
}

#[tokio::test]
async fn a_job_whose_failed_tests_pass_on_a_retry_passes_unless_flaky_fails_it() {
    use ci_common::project::FlakyRule;
    for (rule, status) in [
        (FlakyRule::Pass, JobStatus::Passed),
        (FlakyRule::Fail, JobStatus::Failed),
    ] {
        let w = world().await;
        w.docker.script(
            "test",
            pytest_script("test", &[("t.py::ok", "passed"), ("t.py::flaky", "failed")]),
        );
        w.docker.script(
            "retry-1",
            pytest_script("retry-1", &[("t.py::flaky", "passed")]),
        );
        let job = claim_with(&w, 3, rule).await;
        let (job, events) = run(
            &w,
            ctx(&w, Duration::from_secs(60), NO_CAP),
            job,
            JobControl::default(),
        )
        .await;
        assert_eq!(job.status, status, "{rule:?}: {:?}", job.reason);
        let named = "1 flaky test (failed, then passed when run again): t.py::flaky";
        match rule {
            FlakyRule::Pass => assert!(
                events.iter().any(|e| e.text.contains(named)),
                "the log names the flaky test"
            ),
            FlakyRule::Fail => assert!(
                job.reason.as_deref().unwrap().starts_with(named),
                "{:?}",
                job.reason
            ),
        }
        assert_eq!(
            steps::list(&w.pool, job.id).await.unwrap().len(),
            2,
            "no third attempt"
        );
    }
}

#[tokio::test]
async fn without_retries_a_failed_test_step_ends_the_job() {
    let w = world().await;
    w.docker
        .script("test", pytest_script("test", &[("t.py::bad", "failed")]));
    let job = claim_with(&w, 0, ci_common::project::FlakyRule::Pass).await;
    let (job, _) = run(
        &w,
        ctx(&w, Duration::from_secs(60), NO_CAP),
        job,
        JobControl::default(),
    )
    .await;
    assert_eq!(job.status, JobStatus::Failed);
    assert_eq!(
        job.reason.as_deref(),
        Some("some tests failed (pytest exit 1)")
    );
    assert_eq!(steps::list(&w.pool, job.id).await.unwrap().len(), 1);
}

/// A claimed job of `user` with `files`.
async fn claim_as(w: &World, user: ci_common::UserId, files: &[(&str, &str)]) -> Job {
    jobs::create(&w.pool, user, "test", &zip_of(files))
        .await
        .unwrap();
    jobs::claim_next(&w.pool, w.epoch, "img", "local")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn the_second_job_of_a_user_with_the_same_requirements_skips_the_install() {
    use ci_common::db::cache::{self, CacheState};
    let w = world().await;
    let ada = users::create(&w.pool, "Ada", "ada@example.com")
        .await
        .unwrap();
    let bob = users::create(&w.pool, "Bob", "bob@example.com")
        .await
        .unwrap();
    let files = [("requirements.txt", "six\n"), ("test_a.py", "")];
    let run_one = |job| {
        run(
            &w,
            ctx(&w, Duration::from_secs(60), NO_CAP),
            job,
            JobControl::default(),
        )
    };

    let first = claim_as(&w, ada.id, &files).await;
    let (first, _) = run_one(first).await;
    assert_eq!(first.status, JobStatus::Passed);
    let entries = cache::list(&w.pool, None).await.unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].state, entries[0].size_bytes),
        (CacheState::Ready, 4096)
    );
    let volume = entries[0].volume.clone();
    let first_steps = steps::list(&w.pool, first.id).await.unwrap();
    let install = first_steps[0].spec().unwrap().cache.unwrap();
    let test = first_steps[1].spec().unwrap().cache.unwrap();
    assert!(install.write && !test.write && install.volume == volume && test.volume == volume);
    let sandbox = &ctx(&w, Duration::from_secs(60), NO_CAP).sandbox;
    assert_eq!(
        first_steps[0].spec().unwrap().pip_cache,
        Some(sandbox.pip_cache_volume_name(ada.id)),
        "the install step has its user's pip cache"
    );
    assert_eq!(first_steps[1].spec().unwrap().pip_cache, None);

    let second = claim_as(&w, ada.id, &files).await;
    let (second, events) = run_one(second).await;
    assert_eq!(second.status, JobStatus::Passed);
    let rows = steps::list(&w.pool, second.id).await.unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["test"], "no install step on a hit");
    let mount = rows[0].spec().unwrap().cache.unwrap();
    assert_eq!(
        (mount.volume.as_str(), mount.write),
        (volume.as_str(), false)
    );
    assert!(texts(&events, EventKind::Notice)[0].starts_with("dependency cache hit (key "));
    assert_eq!(cache::list(&w.pool, None).await.unwrap()[0].hits, 1);

    // Another user with the same requirements installs into an entry of their own.
    let theirs = claim_as(&w, bob.id, &files).await;
    let (theirs, _) = run_one(theirs).await;
    assert_eq!(theirs.status, JobStatus::Passed);
    let rows = steps::list(&w.pool, theirs.id).await.unwrap();
    assert_eq!(rows.len(), 2, "a miss: bob installs");
    assert_ne!(rows[0].spec().unwrap().cache.unwrap().volume, volume);
    assert_eq!(cache::list(&w.pool, Some(bob.id)).await.unwrap().len(), 1);

    // Changed requirements miss; --no-cache neither uses nor fills the cache.
    let changed = claim_as(
        &w,
        ada.id,
        &[("requirements.txt", "six==1.16\n"), ("test_a.py", "")],
    )
    .await;
    let (changed, _) = run_one(changed).await;
    assert_eq!(steps::list(&w.pool, changed.id).await.unwrap().len(), 2);
    let user = ada.id;
    jobs::create_job(
        &w.pool,
        &jobs::NewJob {
            user_id: user,
            task: "test",
            image: None,
            args: &[],
            options: &ci_common::project::JobOptions {
                no_cache: true,
                ..Default::default()
            },
            concurrency_key: None,
            source: jobs::NewSource::Archive(&zip_of(&files)),
            team_id: None,
        },
    )
    .await
    .unwrap();
    let uncached = jobs::claim_next(&w.pool, w.epoch, "img", "local")
        .await
        .unwrap()
        .unwrap();
    let (uncached, events) = run_one(uncached).await;
    let rows = steps::list(&w.pool, uncached.id).await.unwrap();
    assert!(rows
        .iter()
        .all(|r| r.spec().unwrap().cache.is_none() && r.spec().unwrap().pip_cache.is_none()));
    assert_eq!(rows.len(), 2);
    assert!(texts(&events, EventKind::Notice).contains(&"dependency cache: not used (--no-cache)"));
    assert_eq!(cache::list(&w.pool, Some(ada.id)).await.unwrap().len(), 2);
}

#[tokio::test]
async fn a_passed_tasks_artifacts_are_kept_within_the_caps_and_named_in_the_log() {
    let w = world().await;
    let pyproject = "[tool.ci.tasks.build]\nrun = \"make\"\ninstall = false\nartifacts = [\"dist/*.whl\", \"coverage.xml\"]\n";
    let files: std::collections::HashMap<String, Vec<u8>> = [
        ("/workspace/src/dist/a-1.0-py3-none-any.whl", &b"wheel"[..]),
        ("/workspace/src/dist/a-1.0.tar.gz", b"sdist"),
        ("/workspace/src/coverage.xml", b"<coverage/>"),
        ("/workspace/src/src/a.py", b"x = 1"),
    ]
    .into_iter()
    .map(|(p, b)| (p.to_owned(), b.to_vec()))
    .collect();
    w.docker.script(
        "build",
        Script {
            messages: lines(1),
            files,
            ..Default::default()
        },
    );
    let user = users::create(&w.pool, "Ada", "ada@example.com")
        .await
        .unwrap();
    jobs::create(
        &w.pool,
        user.id,
        "build",
        &zip_of(&[("pyproject.toml", pyproject), ("a.py", "")]),
    )
    .await
    .unwrap();
    let job = jobs::claim_next(&w.pool, w.epoch, "img", "local")
        .await
        .unwrap()
        .unwrap();
    let (job, events) = run(
        &w,
        ctx(&w, Duration::from_secs(60), NO_CAP),
        job,
        JobControl::default(),
    )
    .await;
    assert_eq!(job.status, JobStatus::Passed, "{:?}", job.reason);
    let kept: Vec<String> = ci_common::db::blobs::list(&w.pool, job.id)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(
        kept,
        [
            "artifacts/coverage.xml",
            "artifacts/dist/a-1.0-py3-none-any.whl"
        ]
    );
    let wheel =
        ci_common::db::blobs::read_all(&w.pool, job.id, "artifacts/dist/a-1.0-py3-none-any.whl")
            .await
            .unwrap();
    assert_eq!(wheel.as_deref(), Some(&b"wheel"[..]));
    assert!(
        texts(&events, EventKind::Notice)
            .contains(&"artifacts: kept 2 files (16 B): coverage.xml, dist/a-1.0-py3-none-any.whl"),
        "{:?}",
        texts(&events, EventKind::Notice)
    );
}

/// A context like [`ctx`] on the Docker host `host` with its own `docker`.
fn host_ctx(w: &World, host: &str, docker: FakeDocker) -> Arc<Ctx<FakeDocker>> {
    let base = ctx(w, Duration::from_secs(60), NO_CAP);
    Arc::new(Ctx {
        host: host.into(),
        docker,
        db: base.db.clone(),
        epoch: base.epoch,
        policy: base.policy.clone(),
        sandbox: sandbox(),
        settings: base.settings.clone(),
        metrics: base.metrics.clone(),
        image_seen: Default::default(),
        pip_cache_busy: Default::default(),
    })
}

#[tokio::test]
async fn a_job_that_had_not_started_moves_to_a_healthy_host_when_its_own_stops_answering() {
    use crate::scheduler::{Host, HostTiming, Scheduler};
    let w = world().await;
    let (down, up) = (FakeDocker::default(), FakeDocker::default());
    up.script(
        "test",
        Script {
            messages: lines(2),
            ..Default::default()
        },
    );
    down.set_down(true);
    // Placed on "down" (claimed there, as before its host stopped answering); no step started.
    let user = users::create(&w.pool, "Ada", "ada@example.com")
        .await
        .unwrap();
    jobs::create(&w.pool, user.id, "test", &zip_of(&[("test_a.py", "")]))
        .await
        .unwrap();
    let job = jobs::claim_next(&w.pool, w.epoch, "img", "down")
        .await
        .unwrap()
        .unwrap();
    let hosts = vec![
        Host::new(
            host_ctx(&w, "down", down.clone()),
            "unix:///down".into(),
            Some(1),
        ),
        Host::new(host_ctx(&w, "up", up.clone()), "unix:///up".into(), Some(1)),
    ];
    let timing = HostTiming {
        check_every: Duration::from_millis(20),
        lost_after: Duration::from_secs(60),
    };
    let shutdown = CancellationToken::new();
    let mut scheduler = Scheduler::new(
        hosts,
        timing,
        2,
        Duration::from_millis(10),
        shutdown.clone(),
    );
    let running = tokio::spawn(async move { scheduler.run().await });
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let now = jobs::get(&w.pool, job.id).await.unwrap().unwrap();
            if now.status.is_terminal() {
                return now;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the job ends on the healthy host");
    shutdown.cancel();
    running.await.unwrap().unwrap();
    assert_eq!(
        (ended.status, ended.host.as_deref()),
        (JobStatus::Passed, Some("up")),
        "{ended:?}"
    );
    let hosts = ci_common::db::docker_hosts::list(&w.pool).await.unwrap();
    let health: Vec<_> = hosts.iter().map(|h| (h.name.as_str(), h.healthy)).collect();
    assert_eq!(health, [("down", false), ("up", true)]);
}
