//! `ci submit` and `ci wait` as users run them: the real `ci` binary against a real server,
//! controller and Docker.

#[path = "support/client.rs"]
mod support;

use ci_tests::fixture;
use support::{job_id_in, run, Stack};

#[tokio::test(flavor = "multi_thread")]
async fn passing_project_streams_its_pytest_output_and_exits_0() {
    let stack = Stack::start().await;
    let out = run(stack.ci(&fixture("passing"), &["submit", "test"])).expect_code(0);
    assert!(
        out.stdout.contains("passed"),
        "pytest's summary on stdout:\n{}",
        out.stdout
    );
    assert!(out.stderr.contains("Job ID: "), "{}", out.stderr);
    let id = job_id_in(
        out.stderr
            .lines()
            .find(|l| l.starts_with("Job ID: "))
            .unwrap(),
    );
    assert!(
        out.stderr.contains(&format!("Reattach with: ci wait {id}")),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(&format!("Job {id} passed")),
        "final state:\n{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("Job ID"),
        "stdout holds only the log:\n{}",
        out.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_project_exits_1() {
    let stack = Stack::start().await;
    let out = run(stack.ci(&fixture("failing"), &["submit", "test"])).expect_code(1);
    assert!(
        out.stdout.contains("failed"),
        "pytest's summary on stdout:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(" failed"),
        "final state on stderr:\n{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn syntax_error_exits_1_and_shows_the_error() {
    let stack = Stack::start().await;
    let out = run(stack.ci(&fixture("syntax_error"), &["submit", "test"])).expect_code(1);
    assert!(
        out.stdout.contains("SyntaxError"),
        "the error is in the log:\n{}",
        out.stdout
    );
    assert!(
        out.stderr.contains(" error"),
        "final state on stderr:\n{}",
        out.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_folder_without_python_is_refused_before_uploading() {
    let stack = Stack::start().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("README.md"), "# notes\n").unwrap();
    let out = run(stack.ci(dir.path(), &["submit", "test"])).expect_code(1);
    assert!(
        out.stderr.starts_with("error: ") && out.stderr.contains("no Python file"),
        "{}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("Job ID"),
        "nothing was uploaded:\n{}",
        out.stderr
    );
    let list = run(stack.ci(dir.path(), &["list", "--json"])).expect_code(0);
    assert_eq!(list.stdout.trim(), "[]", "no job was created");
}

#[tokio::test(flavor = "multi_thread")]
async fn async_submit_then_wait_all_prints_the_whole_log() {
    let stack = Stack::start().await;
    let out = run(stack.ci(&fixture("passing"), &["submit", "test", "--async"])).expect_code(0);
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with("Job submitted: "))
        .unwrap_or_else(|| panic!("`Job submitted: <id>` on stdout:\n{}", out.stdout));
    let id = job_id_in(line);

    let all = run(stack.ci(&fixture("passing"), &["wait", &id, "--all"])).expect_code(0);
    assert!(
        all.stdout.contains("passed"),
        "the whole log:\n{}",
        all.stdout
    );
    assert!(
        all.stderr.contains(&format!("Job {id} passed")),
        "{}",
        all.stderr
    );

    // Once the job is over, `ci wait` has no new output: it prints the final state.
    let again = run(stack.ci(&fixture("passing"), &["wait", &id])).expect_code(0);
    assert_eq!(again.stdout, "", "no log lines without --all");
    assert!(
        again.stderr.contains(&format!("Job {id} passed")),
        "{}",
        again.stderr
    );

    // And a second `--all` prints exactly the same log.
    let all_again = run(stack.ci(&fixture("passing"), &["wait", &id, "--all"])).expect_code(0);
    assert_eq!(all_again.stdout, all.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn wait_on_a_failed_job_exits_1() {
    let stack = Stack::start().await;
    let out = run(stack.ci(&fixture("failing"), &["submit", "--async"])).expect_code(0);
    let id = job_id_in(out.stdout.trim());
    let waited = run(stack.ci(&fixture("failing"), &["wait", &id])).expect_code(1);
    assert!(
        waited.stderr.contains(&format!("Job {id} failed")),
        "{}",
        waited.stderr
    );

    let status = run(stack.ci(&fixture("failing"), &["status", &id, "--json"])).expect_code(0);
    let job: serde_json::Value =
        serde_json::from_str(&status.stdout).expect("status --json is JSON");
    assert_eq!(job["status"], "failed");
    assert_eq!(job["success"], false);
    let human = run(stack.ci(&fixture("failing"), &["status", &id])).expect_code(0);
    assert!(
        human.stdout.contains("Status:     failed"),
        "{}",
        human.stdout
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rejected_upload_shows_the_servers_message() {
    let db = ci_tests::TestDb::new().await;
    let ada = db.user("ada").await;
    // The limit is the controller's: it publishes it, and the server refuses by it.
    let _controller = ci_tests::Controller::start_with(&db, &["--max-entries", "2"]);
    let server = ci_tests::Server::start(&db);
    let env = support::CiEnv::new();
    let project = tempfile::tempdir().unwrap();
    std::fs::create_dir(project.path().join("tests")).unwrap();
    for n in 0..5 {
        std::fs::write(
            project.path().join(format!("tests/test_{n}.py")),
            "def test_x():\n    pass\n",
        )
        .unwrap();
    }
    let out =
        run(env.ci(&server.url, &ada.key, project.path(), &["submit", "test"])).expect_code(1);
    assert!(
        out.stderr
            .starts_with("error: the server rejected the upload"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("server said: "), "{}", out.stderr);
    assert!(out.stderr.contains("limit of 2"), "{}", out.stderr);
    assert!(!out.stderr.contains("Job ID"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reader_that_goes_away_ends_ci_wait_like_sigpipe_without_a_panic() {
    use std::io::Read;
    let stack = Stack::start().await;
    let dir = fixture("many_lines");
    let id = stack.submit_async(&dir);
    support::wait_until_finished(&stack.server.url, &stack.ada.key, &id).await;
    // `ci wait --all ID | head -c 100`, with stderr going to the same closed pipe afterwards.
    let mut cmd = stack.ci(&dir, &["wait", &id, "--all"]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("ci wait");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 100];
    stdout.read_exact(&mut first).unwrap();
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(141), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_queued_without_a_controller_says_so_and_runs_once_one_starts() {
    let db = ci_tests::TestDb::new().await;
    let ada = db.user("ada").await;
    let server = ci_tests::Server::start(&db);
    let env = support::CiEnv::new();
    let mut ci = support::CiProc::spawn(env.ci(
        &server.url,
        &ada.key,
        &fixture("passing"),
        &["submit", "test"],
    ));
    let line = ci.wait_for_line("No controller is running", ci_tests::WAIT);
    assert!(
        line.contains("none has ever started") && line.contains("ci-controller"),
        "{line}"
    );
    // Once a controller starts, the waiting job runs.
    let _controller = ci_tests::Controller::start(&db);
    let out = ci.finish(ci_tests::WAIT).expect_code(0);
    assert!(out.stderr.contains("passed"), "{}", out.stderr);

    // With the controller running, nothing is said.
    let out = run(env.ci(
        &server.url,
        &ada.key,
        &fixture("passing"),
        &["submit", "test"],
    ))
    .expect_code(0);
    assert!(!out.stderr.contains("No controller"), "{}", out.stderr);
}
