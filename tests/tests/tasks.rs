//! Named tasks and pipelines (`[tool.ci.tasks.<name>]` in pyproject.toml) as a user meets them:
//! the real `ci`, server and controller, the steps in Docker, the fixtures
//! `pytest-fixtures/tasks_*`.
//!
//! - `tasks_pipeline`: a src-layout project whose `requirements.txt` installs a local wheel,
//!   with `lint` (its own checker script), the built-in `test`, `build` (needs both; writes
//!   `dist/`) and `deploy` (parameters, `install = false`).
//! - `tasks_reattach`: two steps, the second slow enough to kill the controller during it.
//!
//! The refusals (unknown task, broken pyproject.toml, cycles) need no controller.

#[path = "support/client.rs"]
mod support;

#[path = "support/projects.rs"]
mod projects;

#[path = "support/controller.rs"]
mod controller_support;

#[path = "common_server/mod.rs"]
mod common_server;

use std::path::Path;
use std::time::Duration;

use ci_tests::ci_common::api::{JobView, StepView, StreamEvent};
use ci_tests::ci_common::testing::zip_files;
use ci_tests::ci_common::{EventKind, JobId, JobStatus, StepState};
use ci_tests::{fixture, follow, zip_dir, Controller, Server, TestDb, WAIT};
use projects::{copy_fixture, job_id};
use serde_json::Value;
use support::{job_id_in, job_view, run, wait_until_finished, CiEnv, Out, Stack};

/// `ci submit TASK [-- PARAMS]` as ada in `dir`, to completion; its output and job id.
fn submit_task(stack: &Stack, dir: &Path, task: &str, params: &[&str]) -> (Out, String) {
    let mut args = vec!["submit", task];
    if !params.is_empty() {
        args.push("--");
        args.extend_from_slice(params);
    }
    let out = run(stack.ci(dir, &args));
    let id = job_id(&out);
    (out, id)
}

/// The job's steps as the API shows them: (name, state), in order.
fn states(job: &JobView) -> Vec<(String, StepState)> {
    let steps: &[StepView] = job.steps.as_deref().expect("the job view has its steps");
    let positions: Vec<i64> = steps.iter().map(|s| s.position).collect();
    assert_eq!(
        positions,
        (1..=steps.len() as i64).collect::<Vec<_>>(),
        "steps numbered 1.. in order: {steps:#?}"
    );
    steps.iter().map(|s| (s.name.clone(), s.state)).collect()
}

fn expect_states(job: &JobView, expected: &[(&str, StepState)]) {
    let expected: Vec<(String, StepState)> = expected
        .iter()
        .map(|(name, state)| ((*name).to_owned(), *state))
        .collect();
    assert_eq!(states(job), expected, "steps of {job:#?}");
}

/// The `Steps:` of `ci status ID` as (name, state): `  2. lint: failed (exit 1) in 0.4s` gives
/// ("lint", "failed").
fn status_steps(stack: &Stack, dir: &Path, id: &str) -> (String, Vec<(String, String)>) {
    let out = run(stack.ci(dir, &["status", id])).expect_code(0);
    let steps = out
        .stdout
        .lines()
        .skip_while(|l| *l != "Steps:")
        .skip(1)
        .map(|line| {
            let (_, rest) = line
                .trim()
                .split_once(". ")
                .unwrap_or_else(|| panic!("not a step line: {line:?}\n{}", out.stdout));
            let (name, rest) = rest.split_once(": ").expect("name: state");
            let state = rest.split([' ', ':']).next().unwrap_or_default();
            (name.to_owned(), state.to_owned())
        })
        .collect();
    (out.stdout, steps)
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

/// The index of the only line of `text` containing `needle` (failing with the text unless
/// exactly one does).
fn only_line(text: &str, needle: &str) -> usize {
    let found: Vec<usize> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(needle))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{needle:?} should be on exactly one line, is on {}:\n{text}",
        found.len()
    );
    found[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_installs_once_then_runs_its_needs_then_itself_in_order() {
    a_pipeline_runs_in_order(&Stack::start().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_installs_once_then_runs_its_needs_then_itself_in_order_on_postgres() {
    a_pipeline_runs_in_order(&Stack::start_on(TestDb::postgres().await).await).await;
}

/// `ci tasks`, then `ci submit build` of tasks_pipeline: its steps, output, artifacts, status
/// and stream. On either backend.
async fn a_pipeline_runs_in_order(stack: &Stack) {
    let project = copy_fixture("tasks_pipeline");
    let dir = project.path.to_str().unwrap();

    // `ci tasks` reads the folder alone (no server in its environment).
    let listed = run(stack.env.command(&["tasks", "-C", dir])).expect_code(0);
    let rows: Vec<Vec<String>> = listed
        .stdout
        .lines()
        .map(|l| {
            l.split("  ")
                .filter(|c| !c.trim().is_empty())
                .map(|c| c.trim().to_owned())
                .collect()
        })
        .collect();
    let expected: Vec<Vec<String>> = [
        ["TASK", "RUNS", "COMMAND"],
        ["build", "lint → test → build", "mkdir -p dist"],
        [
            "deploy",
            "deploy",
            "echo \"to=$1 version=$2 args=$CI_ARGS\"",
        ],
        ["lint", "lint", "python3 tools/lint.py src"],
        ["test", "test", "pytest (built in)"],
    ]
    .iter()
    .map(|r| r.iter().map(|c| (*c).to_owned()).collect())
    .collect();
    assert_eq!(rows, expected, "ci tasks printed:\n{}", listed.stdout);
    let json = run(stack.env.command(&["tasks", "-C", dir, "--json"])).expect_code(0);
    let json: Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("ci tasks --json is not JSON ({e}):\n{}", json.stdout));
    let names: Vec<&str> = json
        .as_array()
        .expect("an array of tasks")
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["build", "deploy", "lint", "test"], "{json:#}");
    assert_eq!(
        json[0]["runs"],
        serde_json::json!(["lint", "test", "build"]),
        "{json:#}"
    );

    let (out, id) = submit_task(stack, &project.path, "build", &[]);
    let out = out.expect_code(0);
    // Each step's output, in the order the steps ran: lint's, pytest's, build's.
    let log = &out.stdout;
    let lint = only_line(log, "lint: 3 files checked, 0 with errors");
    let pytest = only_line(log, "4 passed");
    let build = only_line(log, "build: wrote shelf-0.1.0.zip");
    assert!(
        lint < pytest && pytest < build,
        "lint's output, then pytest's, then build's:\n{log}"
    );
    // `ls -l dist` lists the file the build wrote.
    assert!(
        log.lines()
            .skip(build + 1)
            .any(|l| l.starts_with('-') && l.ends_with(" shelf-0.1.0.zip")),
        "ls -l dist after the build's line:\n{log}"
    );
    // The notices say which task runs, with its first command, once each and in order.
    let err = &out.stderr;
    let lint_notice = only_line(err, "[ci] running task lint: python3 tools/lint.py src");
    let build_notice = only_line(err, "[ci] running task build: mkdir -p dist");
    assert!(lint_notice < build_notice, "{err}");

    // The build's artifacts: kept, listed, and downloaded with their hashes checked.
    only_line(err, "[ci] artifacts: kept 2 files");
    let out_dir = tempfile::tempdir().unwrap();
    let fetched = run(stack.ci(
        &project.path,
        &["artifacts", &id, "-o", out_dir.path().to_str().unwrap()],
    ))
    .expect_code(0);
    let listed = run(stack.ci(&project.path, &["artifacts", &id, "--json"])).expect_code(0);
    let listed: Value = serde_json::from_str(&listed.stdout).unwrap();
    let paths: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        paths,
        ["coverage.xml", "dist/shelf-0.1.0.zip"],
        "{listed:#}"
    );
    for artifact in listed.as_array().unwrap() {
        let path = out_dir.path().join(artifact["path"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "{} was not downloaded ({e}):\n{}",
                path.display(),
                fetched.stdout
            )
        });
        assert_eq!(
            ci_tests::ci_common::keys::sha256_hex(&bytes),
            artifact["sha256"].as_str().unwrap(),
            "{}",
            path.display()
        );
    }
    let wheel = std::fs::read(out_dir.path().join("dist/shelf-0.1.0.zip")).unwrap();
    assert!(wheel.starts_with(b"PK"), "the build's zip, whole");

    let job = job_view(&stack.server.url, &stack.ada.key, &id).await;
    assert_eq!(job.status, JobStatus::Passed, "{job:#?}");
    assert_eq!(job.task, "build");
    use StepState::Passed;
    expect_states(
        &job,
        &[
            ("install", Passed),
            ("lint", Passed),
            ("test", Passed),
            ("build", Passed),
        ],
    );
    let steps = job.steps.as_deref().unwrap();
    assert!(
        steps.iter().all(|s| s.exit_code == Some(0)),
        "every step exited 0: {steps:#?}"
    );
    assert!(
        steps
            .windows(2)
            .all(|w| w[0].finished_at.unwrap() <= w[1].started_at.unwrap()),
        "one step after the other: {steps:#?}"
    );
    let (text, shown) = status_steps(stack, &project.path, &id);
    assert_eq!(
        shown,
        pairs(&[
            ("install", "passed"),
            ("lint", "passed"),
            ("test", "passed"),
            ("build", "passed")
        ]),
        "ci status printed:\n{text}"
    );
    // The stream announces each step's start and end, in order.
    let events = follow(&stack.server, &stack.ada.key, &id).await;
    let step_events: Vec<(String, String)> = events
        .iter()
        .filter(|e| e.event == "step")
        .map(|e| {
            (
                e.data["name"].as_str().unwrap().to_owned(),
                e.data["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        step_events,
        pairs(&[
            ("install", "running"),
            ("install", "passed"),
            ("lint", "running"),
            ("lint", "passed"),
            ("test", "running"),
            ("test", "passed"),
            ("build", "running"),
            ("build", "passed"),
        ]),
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_step_stops_the_pipeline_and_the_job_names_it() {
    let stack = Stack::start().await;
    let project = copy_fixture("tasks_pipeline");
    std::fs::write(
        project.path.join("src/shelf/broken.py"),
        "def shelve(book:\n    return book\n",
    )
    .unwrap();

    let (out, id) = submit_task(&stack, &project.path, "build", &[]);
    let out = out.expect_code(1);
    let reason = "task lint failed: step lint exited 1";
    only_line(&out.stdout, "lint: src/shelf/broken.py:1:");
    only_line(&out.stdout, "lint: 4 files checked, 1 with errors");
    assert!(
        !out.stdout.contains("passed") && !out.stdout.contains("build: wrote"),
        "neither pytest nor the build ran:\n{}",
        out.stdout
    );
    assert!(
        !out.stderr.contains("running task build"),
        "no build notice:\n{}",
        out.stderr
    );
    // The last thing `ci` says is why the job failed.
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("failed") && last.contains(reason),
        "last line: {last:?}\n{}",
        out.stderr
    );

    let job = job_view(&stack.server.url, &stack.ada.key, &id).await;
    assert_eq!(job.status, JobStatus::Failed, "{job:#?}");
    assert_eq!(job.reason.as_deref(), Some(reason));
    use StepState::{Failed, Passed, Skipped};
    expect_states(
        &job,
        &[
            ("install", Passed),
            ("lint", Failed),
            ("test", Skipped),
            ("build", Skipped),
        ],
    );
    let steps = job.steps.as_deref().unwrap();
    assert_eq!(steps[1].exit_code, Some(1), "{steps:#?}");
    assert!(
        steps[2..].iter().all(|s| s.started_at.is_none()),
        "test and build never started: {steps:#?}"
    );
    let (text, shown) = status_steps(&stack, &project.path, &id);
    assert_eq!(
        shown,
        pairs(&[
            ("install", "passed"),
            ("lint", "failed"),
            ("test", "skipped"),
            ("build", "skipped")
        ]),
        "ci status printed:\n{text}"
    );
    assert!(text.contains(reason), "ci status shows the reason:\n{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_gets_its_parameters_quoted_and_install_false_installs_nothing() {
    let stack = Stack::start().await;
    let project = copy_fixture("tasks_pipeline");

    let (out, id) = submit_task(&stack, &project.path, "deploy", &["staging", "v 2"]);
    let out = out.expect_code(0);
    let line = only_line(&out.stdout, "to=");
    assert_eq!(
        out.stdout.lines().nth(line).unwrap(),
        "to=staging version=v 2 args=staging 'v 2'",
        "{}",
        out.stdout
    );
    only_line(&out.stderr, "installs nothing (install = false)");
    assert!(
        !out.stderr.contains("installing"),
        "nothing installed:\n{}",
        out.stderr
    );
    let job = job_view(&stack.server.url, &stack.ada.key, &id).await;
    assert_eq!(job.status, JobStatus::Passed, "{job:#?}");
    expect_states(&job, &[("deploy", StepState::Passed)]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_in_another_image_gets_its_own_install_in_that_image() {
    let other = ci_tests::test_image_nopasswd();
    let stack = projects::stack_with(&["--allowed-images", &other]).await;
    let project = copy_fixture("tasks_pipeline");
    let pyproject = project.path.join("pyproject.toml");
    let mut text = std::fs::read_to_string(&pyproject).unwrap();
    text.push_str(&format!(
        "\n[tool.ci.tasks.compat]\nimage = \"{other}\"\nneeds = [\"test\"]\nrun = \"python3 -c \
         'import greetkit, sys; print(\\\"compat:\\\", greetkit.__file__)'\"\n"
    ));
    std::fs::write(&pyproject, text).unwrap();

    let (out, id) = submit_task(&stack, &project.path, "compat", &[]);
    let out = out.expect_code(0);
    let line = only_line(&out.stdout, "compat: ");
    assert!(
        out.stdout
            .lines()
            .nth(line)
            .unwrap()
            .contains("/workspace/deps-compat/"),
        "the task imports its own install:\n{}",
        out.stdout
    );
    only_line(
        &out.stderr,
        &format!("installing requirements.txt for task compat (image {other})"),
    );
    let job = job_view(&stack.server.url, &stack.ada.key, &id).await;
    expect_states(
        &job,
        &[
            ("install", StepState::Passed),
            ("test", StepState::Passed),
            ("install-compat", StepState::Passed),
            ("compat", StepState::Passed),
        ],
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_tasks_broken_configuration_and_cycles_are_refused_before_a_job_exists() {
    // No controller: nothing here may become a job.
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start(&db);
    let env = CiEnv::new();
    let ci = |dir: &Path, args: &[&str]| run(env.ci(&server.url, &ada.key, dir, args));
    let upload = |zip: Vec<u8>, task: &'static str| {
        let server = &server;
        let key = ada.key.clone();
        async move {
            common_server::upload_with(server, "/api/v1/jobs", &key, zip, &[("task", task)]).await
        }
    };
    let tasks = "build, deploy, lint, test";

    // A task the project does not have, through the API: 422 listing the project's tasks.
    let (status, body) = upload(zip_dir(&fixture("tasks_pipeline")), "release").await;
    assert_eq!(status, 422, "{body:#}");
    assert_eq!(body["code"], "invalid", "{body:#}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("unknown task \"release\"") && error.contains(tasks),
        "{error}"
    );
    // ... and through `ci submit`, which refuses before uploading.
    let project = copy_fixture("tasks_pipeline");
    let out = ci(&project.path, &["submit", "release"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    let said = out.stderr.trim();
    assert!(
        said.starts_with("error:") && said.contains("\"release\"") && said.contains(tasks),
        "{said}"
    );
    assert!(!said.contains("Job ID"), "{said}");
    let listed = ci(&project.path, &["list", "--json"]).expect_code(0);
    assert_eq!(listed.stdout.trim(), "[]", "no job in ci list");
    // The client refuses without asking any server: even with none listening it says the same.
    let nowhere = run(env.ci(
        "http://127.0.0.1:9",
        &ada.key,
        &project.path,
        &["submit", "release"],
    ));
    assert_eq!(nowhere.code, Some(1), "{nowhere:#?}");
    assert_eq!(
        nowhere.stderr.trim(),
        said,
        "the same refusal, without a server"
    );

    // A pyproject.toml that is not TOML: refused, naming the line, by the server, by `ci
    // submit` (which uploads it: the server says what is wrong) and by `ci tasks`.
    let not_toml = "[project]\nname = \"broken\"\nversion = \"0.1.0\"\n\n\
                    [tool.ci.tasks.lint]\nrun = \"python3 tools/lint.py src\n";
    let broken = tempfile::tempdir().unwrap();
    std::fs::write(broken.path().join("pyproject.toml"), not_toml).unwrap();
    std::fs::create_dir(broken.path().join("tests")).unwrap();
    std::fs::write(
        broken.path().join("tests/test_ok.py"),
        "def test_ok():\n    pass\n",
    )
    .unwrap();
    let (status, body) = upload(zip_dir(broken.path()), "lint").await;
    assert_eq!(status, 422, "{body:#}");
    assert_eq!(body["code"], "invalid_project_config", "{body:#}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("not valid TOML") && error.contains("line 6"),
        "{error}"
    );
    let out = ci(broken.path(), &["submit", "lint"]);
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(
        out.stderr.contains("not valid TOML") && out.stderr.contains("line 6"),
        "{}",
        out.stderr
    );
    let out = run(env.command(&["tasks", "-C", broken.path().to_str().unwrap()]));
    assert_eq!(out.code, Some(1), "{out:#?}");
    assert!(out.stderr.contains("line 6"), "{}", out.stderr);

    // TOML, but a wrong [tool.ci]: `needs` given as a string, not a list, named with its line.
    let wrong = "[tool.ci.tasks.lint]\nrun = \"true\"\n\n[tool.ci.tasks.build]\nrun = \"true\"\n\
                 needs = \"lint\"\n";
    let zip = zip_files(&[
        ("pyproject.toml", wrong.as_bytes()),
        ("tests/test_ok.py", b"def test_ok():\n    pass\n"),
    ]);
    let (status, body) = upload(zip, "build").await;
    assert_eq!(status, 422, "{body:#}");
    assert_eq!(body["code"], "invalid_project_config", "{body:#}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("[tool.ci]") && error.contains("line 6") && error.contains("sequence"),
        "{error}"
    );

    // Needs that form a cycle: refused, naming it.
    let cycle = "[tool.ci.tasks.package]\nrun = \"true\"\nneeds = [\"check\"]\n\n\
                 [tool.ci.tasks.check]\nrun = \"true\"\nneeds = [\"package\"]\n";
    let zip = zip_files(&[
        ("pyproject.toml", cycle.as_bytes()),
        ("tests/test_ok.py", b"def test_ok():\n    pass\n"),
    ]);
    let (status, body) = upload(zip, "package").await;
    assert_eq!(status, 422, "{body:#}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("cycle") && error.contains("check → package → check"),
        "{error}"
    );

    // Nothing was stored.
    assert_eq!(
        common_server::counts(&db.pool).await,
        (0, 0),
        "jobs, uploads"
    );
    let listed = ci(&project.path, &["list", "--json"]).expect_code(0);
    assert_eq!(listed.stdout.trim(), "[]", "no job in ci list");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_controller_killed_during_a_later_step_is_replaced_and_no_step_runs_twice() {
    use controller_support::{
        all_events, assert_each_once, assert_well_formed, finished, log_texts, notices,
    };

    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start(&db);
    let mut first = Controller::start(&db);
    let prefix = first.prefix.clone();
    let env = CiEnv::new();
    let project = copy_fixture("tasks_reattach");
    let out = run(env.ci(
        &server.url,
        &ada.key,
        &project.path,
        &["submit", "--async", "slow"],
    ))
    .expect_code(0);
    // (`ci` warns on the way that pytest may collect no tests, though `slow` runs no pytest:
    // its pre-upload check, `check_project` in ci-client/src/project.rs, ignores the task.)
    let id = job_id_in(out.stdout.trim());
    let job_id: JobId = id.parse().expect("a job id");

    // The second step has printed its first line and sleeps.
    controller_support::running_with_line(&db, job_id, "slow: first line").await;
    first.proc.signal("KILL");
    first.proc.wait_exit(Duration::from_secs(10));
    // Killed mid-step: the first step passed, the second runs on in its container alone.
    let during = job_view(&server.url, &ada.key, &id).await;
    expect_states(
        &during,
        &[("prepare", StepState::Passed), ("slow", StepState::Running)],
    );
    assert!(
        !first.containers().is_empty(),
        "the step's container runs on"
    );

    let second = Controller::start_with_prefix(&db, &prefix, &[]);
    let view = wait_until_finished(&server.url, &ada.key, &id).await;
    let job = finished(&db, job_id, Duration::from_secs(10)).await;
    let events = all_events(&db, job_id).await;
    let lines = log_texts(&events);
    assert_eq!(
        view.status,
        JobStatus::Passed,
        "reason: {:?}\n{lines:#?}",
        view.reason
    );
    assert_well_formed(&job, &events);
    assert_each_once(
        &lines,
        &[
            "prepare: run number 1",
            "slow: first line",
            "slow: second line",
            // `prepare` ran once in the job's workspace.
            "slow: prepare ran 1 time(s)",
        ],
    );
    assert!(
        !lines.iter().any(|l| l.contains("run number 2")),
        "{lines:#?}"
    );
    let said = notices(&events);
    for task in ["prepare", "slow"] {
        let started = format!("running task {task}:");
        let count = said.iter().filter(|n| n.starts_with(&started)).count();
        assert_eq!(count, 1, "{started:?} said {count} times: {said:#?}");
    }
    // Each step started and ended once, in order, across the two controllers.
    let step_events: Vec<(String, StepState)> = events
        .iter()
        .filter(|e| e.kind == EventKind::Step)
        .map(|e| match e.to_stream_event() {
            StreamEvent::Step { step, .. } => (step.name, step.state),
            other => panic!("a step event reads as {other:?}"),
        })
        .collect();
    use StepState::{Passed, Running};
    let expected: Vec<(String, StepState)> = [
        ("prepare", Running),
        ("prepare", Passed),
        ("slow", Running),
        ("slow", Passed),
    ]
    .iter()
    .map(|(n, s)| ((*n).to_owned(), *s))
    .collect();
    assert_eq!(step_events, expected);
    expect_states(
        &view,
        &[("prepare", StepState::Passed), ("slow", StepState::Passed)],
    );

    ci_tests::wait_for(
        "the job's container and volume to be removed",
        WAIT,
        || async { (second.containers().is_empty() && second.volumes().is_empty()).then_some(()) },
    )
    .await;
    drop(second);
    drop(first);
}
