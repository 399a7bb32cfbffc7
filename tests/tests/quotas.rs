//! The operator's queue quota as a user meets it: with `--max-queued-per-user 2` and one job
//! running at a time, a user's third queued job is refused with 429 `queue_full` (the real `ci`
//! says why and exits non-zero), and the queued jobs still run.

#[path = "support/client.rs"]
mod support;

#[path = "common_server/mod.rs"]
mod common_server;

use ci_tests::ci_common::JobStatus;
use ci_tests::{fixture, wait_for, Controller, Server, TestDb, WAIT};
use support::{job_view, run, wait_until_finished, CiEnv, Stack};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_queue_quota_a_submission_is_429_and_the_queued_jobs_still_run() {
    let db = TestDb::new().await;
    let ada = db.user("ada").await;
    let server = Server::start(&db);
    let controller = Controller::start_with(
        &db,
        &["--max-queued-per-user", "2", "--max-concurrent-jobs", "1"],
    );
    let stack = Stack {
        db,
        server,
        controller,
        ada,
        env: CiEnv::new(),
    };
    let project = fixture("slow_lines");
    let first = stack.submit_async(&project);
    wait_for("the first job to run", WAIT, || async {
        let job = job_view(&stack.server.url, &stack.ada.key, &first).await;
        (job.status == JobStatus::Running).then_some(())
    })
    .await;
    let queued = [stack.submit_async(&project), stack.submit_async(&project)];

    let refused = run(stack.ci(&project, &["submit", "--async"]));
    assert_ne!(refused.code, Some(0), "{}", refused.stdout);
    assert!(
        refused.stderr.contains("2 queued jobs")
            && refused.stderr.contains("--max-queued-per-user"),
        "{}",
        refused.stderr
    );
    // The API says the same with a 429 and when to come back.
    let response = ci_tests::client()
        .post(format!("{}/api/v1/jobs/{first}/retry", stack.server.url))
        .bearer_auth(&stack.ada.key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "queue_full");

    for id in std::iter::once(&first).chain(&queued) {
        let job = wait_until_finished(&stack.server.url, &stack.ada.key, id).await;
        assert_eq!(job.status, JobStatus::Passed, "{job:?}");
    }
    // Once they ran, the user may queue again.
    run(stack.ci(&project, &["submit", "--async"])).expect_code(0);
}
