//! Ctrl-C: during `ci submit` it cancels the job; during `ci wait` it only detaches.

#[path = "support/client.rs"]
mod support;

use ci_tests::ci_common::JobStatus;
use ci_tests::fixture;
use support::{job_id_in, wait_until_finished, CiProc, Stack, CI_TIMEOUT};

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_submit_cancels_the_job() {
    let stack = Stack::start().await;
    let mut ci = CiProc::spawn(stack.ci(&fixture("slow_lines"), &["submit", "test"]));
    let id = job_id_in(&ci.wait_for_line("Job ID: ", CI_TIMEOUT));
    ci.wait_for_line("tick 2", CI_TIMEOUT);
    ci.signal("INT");
    let out = ci.finish(CI_TIMEOUT).expect_code(130);
    assert!(
        out.stderr.contains(&format!("Cancelling job {id}...")),
        "{}",
        out.stderr
    );
    assert!(
        !out.stdout.contains("tick 25"),
        "stopped before the end:\n{}",
        out.stdout
    );

    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &id).await;
    assert_eq!(job.status, JobStatus::Cancelled, "{job:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_during_wait_detaches_and_the_job_goes_on() {
    let stack = Stack::start().await;
    let here = fixture("slow_lines");
    let id = stack.submit_async(&here);

    let mut ci = CiProc::spawn(stack.ci(&here, &["wait", &id]));
    ci.wait_for_line("tick ", CI_TIMEOUT);
    ci.signal("INT");
    let out = ci.finish(CI_TIMEOUT).expect_code(130);
    assert!(
        out.stderr.contains(&format!("ci wait {id}")),
        "says how to reattach:\n{}",
        out.stderr
    );

    let job = wait_until_finished(&stack.server.url, &stack.ada.key, &id).await;
    assert_eq!(job.status, JobStatus::Passed, "{job:?}");
}
